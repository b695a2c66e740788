"""The cache is an optimisation: full disks, --no-cache and tampered entries (issue 3, items 4 and 7).

A full disk is made real with ``RLIMIT_FSIZE``: the CLI runs in a subprocess whose
file-size limit is 0 bytes (SIGXFSZ ignored), so every write to a regular file
fails with EFBIG ("File too large") exactly where ENOSPC would, while stdout and
stderr (pipes) still work.
"""
from __future__ import annotations

import json
import os
import resource
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import REPO, link_folder


def _full_disk() -> None:
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails with EFBIG instead of a kill
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))


def run_cli(args: list, cache: Path, full_disk: bool = False) -> subprocess.CompletedProcess:
    """``python -m facemetrics ARGS`` in a fresh process with FACEMETRICS_CACHE=cache (offline)."""
    env = dict(os.environ, PYTHONPATH=str(REPO), FACEMETRICS_OFFLINE="1", FACEMETRICS_CACHE=str(cache),
               PYTHONDONTWRITEBYTECODE="1")
    return subprocess.run([sys.executable, "-m", "facemetrics", *map(str, args)], env=env, capture_output=True,
                          text=True, preexec_fn=_full_disk if full_disk else None, timeout=600)


@pytest.fixture(scope="module")
def six(lfw_small, tmp_path_factory) -> tuple[Path, Path]:
    """6 + 6 LFW faces (links)."""
    base = tmp_path_factory.mktemp("six")
    return tuple(link_folder(base / s, sorted(p.resolve() for p in src.iterdir())[:6])  # type: ignore[return-value]
                 for s, src in zip("ab", lfw_small))


@pytest.fixture(scope="module")
def reference_fid(six) -> float:
    from facemetrics.api import score

    return score(str(six[0]), str(six[1]), progress=False)["metrics"]["fid"]["value"]


def _cache_warnings(text: str) -> list[str]:
    return [ln for ln in text.splitlines() if ln.startswith("warning: cannot write to the cache")]


def test_full_disk_cache_write_is_a_warning(six, reference_fid, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    r = run_cli(["score", *six, "--json", "-", "-q"], cache, full_disk=True)
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert json.loads(r.stdout)["metrics"]["fid"]["value"] == pytest.approx(reference_fid, rel=1e-9)
    warned = _cache_warnings(r.stderr)
    assert len(warned) == 1, r.stderr  # once, however many cache files failed
    assert str(cache) in warned[0] and "File too large" in warned[0]
    assert not [p for p in cache.rglob("*") if p.is_file()]  # nothing half-written


def test_full_disk_json_record_is_a_clear_error(six, tmp_path):
    out = tmp_path / "rec.json"
    r = run_cli(["score", *six, "--json", out, "-q"], tmp_path / "cache", full_disk=True)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert "fid ↓" in r.stdout  # the table came first: the result is not lost
    assert f"Error: cannot write the JSON record {out}: [Errno 27] File too large" in r.stderr
    assert list(tmp_path.glob("*rec.json*")) == []


def test_full_disk_stats_out_is_a_clear_error(six, tmp_path):
    out = tmp_path / "ref.npz"
    r = run_cli(["stats", six[0], "-o", out, "-q"], tmp_path / "cache", full_disk=True)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr
    assert f"Error: cannot write the statistics file {out}: [Errno 27] File too large" in r.stderr
    assert len(_cache_warnings(r.stderr)) == 1
    assert list(tmp_path.glob("*ref.npz*")) == []


def test_cache_folder_unusable_is_a_warning(six, reference_fid, tmp_path, monkeypatch):
    """A file where the cache folder should be: mkdir fails (ENOTDIR), scoring goes on."""
    from facemetrics.api import score

    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("FACEMETRICS_CACHE", str(blocker))
    rec = score(str(six[0]), str(six[1]), progress=False)
    assert rec["metrics"]["fid"]["value"] == pytest.approx(reference_fid, rel=1e-9)
    warned = [w for w in rec["warnings"] if w.startswith("cannot write to the cache")]
    assert len(warned) == 1 and str(blocker) in warned[0] and "Not a directory" in warned[0], rec["warnings"]
    assert blocker.read_text() == ""


def test_no_cache_writes_nothing_into_the_cache_folder(six, tmp_path):
    cache = tmp_path / "cache"
    cache.mkdir()
    r = run_cli(["score", *six, "--no-cache", "-q"], cache)
    assert r.returncode == 0, r.stderr
    r = run_cli(["stats", six[0], "-o", tmp_path / "ref.npz", "--no-cache", "-q"], cache)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "ref.npz").is_file()
    assert sorted(cache.rglob("*")) == []


def _entries(cache: Path) -> dict[tuple[str, ...], Path]:
    """Cache entries by the image names they hold."""
    out = {}
    for p in cache.rglob("*.npz"):
        with np.load(p) as z:
            out[tuple(str(n) for n in z["names"])] = p
    return out


def test_tampered_or_copied_entry_is_detected_and_recomputed(six, reference_fid, tmp_path, monkeypatch):
    from facemetrics.api import score

    a, b = six
    cache = tmp_path / "cache"
    monkeypatch.setenv("FACEMETRICS_CACHE", str(cache))
    first = score(str(a), str(b), progress=False)
    assert first["metrics"]["fid"]["value"] == pytest.approx(reference_fid, rel=1e-9)
    entries = _entries(cache)
    real_entry = entries[tuple(sorted(p.name for p in a.iterdir()))]
    fake_entry = entries[tuple(sorted(p.name for p in b.iterdir()))]

    # 1. same keys, other numbers: REAL's entry now holds FAKE's features (its digest kept)
    with np.load(real_entry) as z:
        arrays = {k: z[k] for k in z.files}
    with np.load(fake_entry) as z:
        arrays["out_pool"] = z["out_pool"]
    np.savez(real_entry, **arrays)
    # 2. and a whole valid entry copied under another entry's name
    for tampered in ("arrays", "copy"):
        if tampered == "copy":
            shutil.copyfile(fake_entry, real_entry)
        rec = score(str(a), str(b), progress=False)
        assert rec["metrics"]["fid"]["value"] == pytest.approx(first["metrics"]["fid"]["value"], rel=1e-9)
        warned = [w for w in rec["warnings"] if w.startswith(f"feature cache entry {real_entry} ")]
        assert len(warned) == 1 and "does not match its digest" in warned[0], rec["warnings"]
    # the entry was rewritten: the next run uses it without a word
    rec = score(str(a), str(b), progress=False)
    assert not [w for w in rec["warnings"] if "cache" in w]
    assert rec["metrics"]["fid"]["value"] == pytest.approx(first["metrics"]["fid"]["value"], rel=1e-9)
