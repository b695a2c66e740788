"""Image folders: link loops listed once (never a hang), oversized images unreadable (never a crash).

What could hang or eat the machine (a link loop, a decompression bomb) runs in a
subprocess under a timeout, so a regression fails instead of stalling the suite.
"""
from __future__ import annotations

import io
import json
import os
import struct
import subprocess
import sys
import warnings
import zipfile
import zlib
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from conftest import REPO, data_root, lfw_first_images, link_folder
from PIL import Image

from facemetrics.cli.main import cli

ENV = "FACEMETRICS_MAX_IMAGE_PIXELS"


def facemetrics(*args, cache: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``python -m facemetrics ARGS`` in a fresh process (offline, own cache, no pixel-limit variable)."""
    e = {k: v for k, v in os.environ.items() if k != ENV}
    e.update(PYTHONPATH=str(REPO), FACEMETRICS_OFFLINE="1", FACEMETRICS_CACHE=str(cache),
             FACEMETRICS_DATA=str(data_root()), **env)
    return subprocess.run([sys.executable, "-m", "facemetrics", *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=timeout)


def huge_png(width: int, height: int) -> bytes:
    """A valid 8×8 PNG whose IHDR claims ``width``×``height`` (CRC fixed): PIL sees the size at open."""
    buf = io.BytesIO()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(buf, "PNG")
    b = bytearray(buf.getvalue())
    assert b[12:16] == b"IHDR"
    b[16:24] = struct.pack(">II", width, height)
    b[29:33] = struct.pack(">I", zlib.crc32(bytes(b[12:29])))
    return bytes(b)


# --------------------------------------------------------------------------- link loops

@pytest.fixture()
def looped(data_dir, tmp_path) -> Path:
    """Real images (links to LFW files) in a folder that also holds every kind of folder link loop.

    root/x.jpg, a/1.jpg, b/2.jpg, c/d/3.jpg; self -> .; up -> ..; a/to_b -> ../b and
    b/to_a -> ../a (a loop between two subfolders); c/d/top -> ../.. (the root again);
    zz_alias -> c/d (a second path to a real folder); lfw -> an LFW person's folder
    outside the root (an ordinary link, followed).
    """
    files = lfw_first_images(data_dir)
    root = tmp_path / "looped"
    for name, f in zip(["x.jpg", "a/1.jpg", "b/2.jpg", "c/d/3.jpg"], files):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).symlink_to(f)
    (root / "self").symlink_to(".")
    (root / "up").symlink_to("..")
    (root / "a" / "to_b").symlink_to("../b")
    (root / "b" / "to_a").symlink_to("../a")
    (root / "c" / "d" / "top").symlink_to("../..")
    (root / "zz_alias").symlink_to("c/d")
    (root / "lfw").symlink_to(files[5].parent)
    return root


def _expected_names(root: Path) -> list[str]:
    person = sorted(p.name for p in (root / "lfw").iterdir() if p.suffix == ".jpg")
    return sorted(["x.jpg", "a/1.jpg", "b/2.jpg", "c/d/3.jpg"] + [f"lfw/{n}" for n in person])


SCAN_CHILD = """
import json, resource, sys, warnings
resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))  # a regression fails here, not in the machine
from facemetrics.imaging.images import scan
with warnings.catch_warnings(record=True) as caught:
    warnings.simplefilter("always")
    src = scan(sys.argv[1], "FAKE")
print(json.dumps({"names": list(src.names), "warnings": [str(w.message) for w in caught]}))
"""


def test_scan_follows_links_but_lists_each_folder_once(looped):
    r = subprocess.run([sys.executable, "-c", SCAN_CHILD, str(looped)], capture_output=True, text=True,
                       timeout=60, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert r.returncode == 0, r.stderr[-3000:]
    out = json.loads(r.stdout)
    assert out["names"] == _expected_names(looped)
    (w,) = out["warnings"]
    assert str(looped) in w and "6 folder path(s) not followed" in w
    for note in ("self -> . (a loop", "up -> .. (a loop", "c/d/top -> ../.. (a loop",
                 "a/to_b -> ../b (the same folder as 'b'", "b/to_a -> ../a (the same folder as 'a'",
                 "zz_alias -> c/d (the same folder as 'c/d'"):
        assert note in w, (note, w)


def test_scan_keeps_a_folder_at_its_real_place(tmp_path):
    """Of two paths to one folder the real one wins over a link, whatever their sorted order."""
    from facemetrics.imaging.images import scan

    root = tmp_path / "r"
    (root / "z" / "deep").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(root / "z" / "deep" / "i.png")
    (root / "a_link").symlink_to("z/deep")  # shallower and sorted first, but a link
    with pytest.warns(UserWarning, match=r"a_link -> z/deep \(the same folder as 'z/deep', listed there\)"):
        assert scan(root).names == ("z/deep/i.png",)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # a folder without duplicate paths: no warning
        assert scan(root / "z").names == ("deep/i.png",)


def test_score_on_a_folder_with_link_loops(looped, lfw_small, tmp_path):
    out = tmp_path / "rec.json"
    r = facemetrics("score", lfw_small[0], looped, "--json", out, "-q", cache=tmp_path / "cache", timeout=240)
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert rec["fake"]["n"] == len(_expected_names(looped)) and rec["metrics"]["fid"]["value"] > 0
    assert any("self -> ." in w and "up -> .." in w for w in rec["warnings"])
    assert "warning: FAKE" in r.stderr and "a/to_b -> ../b" in r.stderr


# --------------------------------------------------------------------------- oversized images

def test_decode_refuses_oversized_images_from_the_header():
    from facemetrics.imaging.images import DECODE_ERRORS, ImageTooLargeError, decode_rgb

    with warnings.catch_warnings():
        warnings.simplefilter("error")  # PIL's DecompressionBombWarning (1×–2× its limit) must not leak
        for w, h in ((20000, 20000), (10000, 10000)):
            with pytest.raises(ImageTooLargeError, match=rf"image is {w}×{h} = {w * h:,} pixels, over the limit "
                                                         r"of 89,478,485 \(raise it with --max-image-pixels or "
                                                         rf"{ENV}"):
                decode_rgb(huge_png(w, h))
    assert issubclass(ImageTooLargeError, DECODE_ERRORS)


@pytest.fixture()
def with_huge(lfw_small, tmp_path) -> Path:
    """FAKE: six LFW faces plus a PNG claiming 20000×20000 pixels."""
    d = link_folder(tmp_path / "huge", sorted(lfw_small[1].iterdir())[:6])
    (d / "zz_huge.png").write_bytes(huge_png(20000, 20000))
    return d


def test_oversized_image_is_counted_and_named_or_strict(lfw_small, with_huge, tmp_path):
    out = tmp_path / "rec.json"
    r = facemetrics("score", lfw_small[0], with_huge, "--json", out, "-q", cache=tmp_path / "cache")
    assert r.returncode == 0, r.stderr[-3000:]
    rec = json.loads(out.read_text())
    assert rec["fake"]["n"] == 6
    ((name, reason),) = rec["failed_images"]["fake"]
    assert name == "zz_huge.png"
    assert "20000×20000 = 400,000,000 pixels, over the limit of 89,478,485" in reason and ENV in reason
    assert "zz_huge.png" in r.stderr and "Traceback" not in r.stderr and "ecompression" not in r.stderr
    r = facemetrics("score", lfw_small[0], with_huge, "--strict", "-q", cache=tmp_path / "cache")
    assert r.returncode == 2, r.stderr[-3000:]
    assert "zz_huge.png: ImageTooLargeError: image is 20000×20000" in r.stderr and "--strict" in r.stderr
    assert "Traceback" not in r.stderr


def run(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def test_oversized_member_of_a_zip(with_huge, tmp_path):
    z = tmp_path / "fake.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(with_huge.iterdir()):
            zf.write(f, f"imgs/{f.name}")
    r = run("stats", z, "-o", tmp_path / "z.npz", "-q")
    assert r.exit_code == 0, r.output
    assert "n=6" in r.stdout and "warning: 1 unreadable image(s) skipped: imgs/zz_huge.png" in r.output
    r = run("stats", z, "-o", tmp_path / "z2.npz", "-q", "--strict")
    assert r.exit_code == 2 and f"{z.resolve()}::imgs/zz_huge.png: ImageTooLargeError: image is 20000×20000" in r.output
    assert not (tmp_path / "z2.npz").exists()


def _shrunk(files: list[Path], d: Path) -> Path:
    d.mkdir()
    for f in files:
        Image.open(f).convert("RGB").resize((200, 200), Image.BICUBIC).save(d / f"{f.stem}.jpg", quality=95)
    return d


@pytest.fixture()
def lfw_and_smaller(data_dir, tmp_path) -> Path:
    """Four LFW faces shrunk to 200×200 (40,000 pixels) and one untouched LFW file (250×250 = 62,500)."""
    files = lfw_first_images(data_dir)[3000:3005]
    d = _shrunk(files[:4], tmp_path / "sizes")
    (d / "zz_full.jpg").symlink_to(files[4])
    return d


def test_pixel_limit_from_the_environment(lfw_and_smaller, monkeypatch):
    """A lowered limit makes a plain LFW image too big; 0 lifts it, not reusing the refusal from the cache."""
    from facemetrics.api import compute_stats

    monkeypatch.setenv(ENV, "50000")  # 62,500 is between 1× and 2× the limit: PIL would only have warned
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        st, _, failed = compute_stats(str(lfw_and_smaller), progress=False)
    assert st.n == 4 and failed == [["zz_full.jpg", "ImageTooLargeError: image is 250×250 = 62,500 pixels, over the "
                                     f"limit of 50,000 (raise it with --max-image-pixels or {ENV}; 0 = no limit)"]]
    st, _, failed = compute_stats(str(lfw_and_smaller), progress=False, max_image_pixels=0)
    assert st.n == 5 and failed == []
    assert os.environ[ENV] == "50000"  # the argument's setting ends with the call
    monkeypatch.setenv(ENV, "62500")  # at the limit is allowed
    assert compute_stats(str(lfw_and_smaller), progress=False)[0].n == 5


def test_pixel_limit_flag_reaches_worker_processes(lfw_and_smaller, tmp_path, monkeypatch):
    monkeypatch.delenv(ENV, raising=False)
    r = run("stats", lfw_and_smaller, "-o", tmp_path / "s.npz", "-q", "--max-image-pixels", "62499",
            "--workers-kind", "process", "--workers", "2")  # a limit not run before: decoded in the workers
    assert r.exit_code == 0, r.output
    assert "n=4" in r.stdout and "warning: 1 unreadable image(s) skipped: zz_full.jpg" in r.output
    assert ENV not in os.environ  # the flag's setting ends with the run
    r = run("stats", lfw_and_smaller, "-o", tmp_path / "t.npz", "-q", "--max-image-pixels", "62499", "--strict",
            "--workers-kind", "process", "--workers", "2", "--no-cache")
    assert r.exit_code == 2 and "zz_full.jpg: ImageTooLargeError: image is 250×250 = 62,500 pixels" in r.output
    assert "Traceback" not in r.output


def test_bad_pixel_limits_are_usage_errors(lfw_and_smaller, tmp_path, monkeypatch):
    r = run("stats", lfw_and_smaller, "-o", tmp_path / "s.npz", "-q", "--max-image-pixels", "-1")
    assert r.exit_code == 2 and "--max-image-pixels" in r.output
    monkeypatch.setenv(ENV, "lots")
    r = run("stats", lfw_and_smaller, "-o", tmp_path / "t.npz", "-q")
    assert r.exit_code == 2 and f"{ENV}='lots' must be a whole number" in r.output and "Traceback" not in r.output
    assert not (tmp_path / "t.npz").exists()
