"""Shared fixtures: real data location, an isolated cache, LFW subsets, clean-fid's offline file."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("FACEMETRICS_DATA", REPO.parent / "shared" / "data"))


@pytest.fixture(scope="session")
def data_dir() -> Path:
    root = data_root()
    if not (root / "lfw" / "deepfunneled").is_dir():
        pytest.fail(f"real test data not found at {root} (set FACEMETRICS_DATA)")
    return root


@pytest.fixture(autouse=True, scope="session")
def _isolated_cache(tmp_path_factory):
    """Every test session gets its own feature/weights cache (never the user's)."""
    old = os.environ.get("FACEMETRICS_CACHE")
    os.environ["FACEMETRICS_CACHE"] = str(tmp_path_factory.mktemp("fm-cache"))
    os.environ["FACEMETRICS_OFFLINE"] = "1"
    yield
    if old is None:
        os.environ.pop("FACEMETRICS_CACHE", None)
    else:
        os.environ["FACEMETRICS_CACHE"] = old


def lfw_first_images(data: Path) -> list[Path]:
    """``Name_0001.jpg`` of every LFW person, sorted by name (one image per identity)."""
    root = data / "lfw" / "deepfunneled"
    people = sorted(p.name for p in root.iterdir() if p.is_dir())
    return [root / p / f"{p}_0001.jpg" for p in people]


def link_folder(dest: Path, files: list[Path]) -> Path:
    """A folder of symlinks to ``files`` (the data are never copied)."""
    dest.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        (dest / f"{i:05d}_{f.name}").symlink_to(f)
    return dest


@pytest.fixture(scope="session")
def lfw_200_pair(data_dir, tmp_path_factory) -> tuple[Path, Path]:
    """Two disjoint folders of 200 LFW faces (different identities)."""
    files = lfw_first_images(data_dir)
    base = tmp_path_factory.mktemp("lfw200")
    return link_folder(base / "a", files[:200]), link_folder(base / "b", files[200:400])


@pytest.fixture(scope="session")
def lfw_small(data_dir, tmp_path_factory) -> tuple[Path, Path]:
    """Two disjoint folders of 12 LFW faces, for fast end-to-end tests."""
    files = lfw_first_images(data_dir)
    base = tmp_path_factory.mktemp("lfw12")
    return link_folder(base / "a", files[1000:1012]), link_folder(base / "b", files[2000:2012])


@pytest.fixture(scope="session")
def cleanfid_inception() -> Path:
    """clean-fid reads <tempdir>/inception-2015-12-05.pt; build it offline from the packaged layers.

    An existing file (e.g. the real download) is left alone.
    """
    import tempfile

    from facemetrics.extractors.inception import write_layers_torchscript

    target = Path(tempfile.gettempdir()) / "inception-2015-12-05.pt"
    if not target.is_file():
        write_layers_torchscript(target)
    return target
