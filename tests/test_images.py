"""Image folders: link loops listed once (never a hang).

What could hang or eat the machine (a link loop) runs in a subprocess under a
timeout, so a regression fails instead of stalling the suite.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
from conftest import REPO, data_root, lfw_first_images, link_folder
from PIL import Image

def facemetrics(*args, cache: Path, timeout: float = 300, **env: str) -> subprocess.CompletedProcess:
    """``python -m facemetrics ARGS`` in a fresh process (offline, own cache)."""
    e = dict(os.environ)
    e.update(PYTHONPATH=str(REPO), FACEMETRICS_OFFLINE="1", FACEMETRICS_CACHE=str(cache),
             FACEMETRICS_DATA=str(data_root()), **env)
    return subprocess.run([sys.executable, "-m", "facemetrics", *map(str, args)], capture_output=True, text=True,
                          env=e, timeout=timeout)


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
from facemetrics.images import scan
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
    from facemetrics.images import scan

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
