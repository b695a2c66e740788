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
    """Every test session gets its own feature/weights cache and torch home (never the user's).

    ``TORCH_HOME`` holds torch.hub's checkpoints (pytorch-fid's and torch-fidelity's
    weights, built offline by :func:`reference_fid_weights`) and torch-fidelity's
    ``fidelity_cache``. A real VGGFace2 FaceNet checkpoint in the user's torch home
    stays visible through ``$FACEMETRICS_FACENET``.
    """
    from facemetrics.extractors import facenet as fn

    saved = {k: os.environ.get(k) for k in ("FACEMETRICS_CACHE", "FACEMETRICS_OFFLINE", "TORCH_HOME", fn.ENV_VAR)}
    user_facenet = fn._torch_home() / "checkpoints" / fn.WEIGHTS_NAME
    if user_facenet.is_file() and not os.environ.get(fn.ENV_VAR):
        os.environ[fn.ENV_VAR] = str(user_facenet)
    os.environ["FACEMETRICS_CACHE"] = str(tmp_path_factory.mktemp("fm-cache"))
    os.environ["FACEMETRICS_OFFLINE"] = "1"
    os.environ["TORCH_HOME"] = str(tmp_path_factory.mktemp("torch-home"))
    yield
    for k, v in saved.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


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
    """clean-fid's offline file at exactly the path it reads, checked before use
    (:func:`reference_tools.ensure_cleanfid_inception`); the session fails naming it when it cannot be had."""
    from reference_tools import ReferenceWeightsError, ensure_cleanfid_inception

    try:
        return ensure_cleanfid_inception()
    except ReferenceWeightsError as e:
        pytest.fail(str(e))


@pytest.fixture(scope="session")
def reference_fid_weights() -> dict[str, Path]:
    """pytorch-fid's and torch-fidelity's weights files in this session's $TORCH_HOME (built offline)."""
    from reference_tools import write_reference_weights

    return write_reference_weights(os.environ["TORCH_HOME"])


# ---------------------------------------------------------------- skip guard
#: The only skip a healthy offline run may report: the real VGGFace2 FaceNet checkpoint
#: cannot be downloaded here (no pinned sha256, no network at test time).
ALLOWED_SKIPS: tuple[str, ...] = (
    "tests/test_face_facenet.py::test_real_vggface2_weights_separate_people",
)
_unexpected_skips: list[tuple[str, str]] = []


def _record_skip(report) -> None:
    if not report.skipped or hasattr(report, "wasxfail"):
        return
    nodeid = report.nodeid
    if any(nodeid == a or nodeid.endswith("/" + a) for a in ALLOWED_SKIPS):
        return
    reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else str(report.longrepr)
    _unexpected_skips.append((nodeid, reason))


def pytest_runtest_logreport(report):
    _record_skip(report)


def pytest_collectreport(report):
    _record_skip(report)  # a whole module skipped at import (e.g. a missing dependency)


def pytest_sessionfinish(session, exitstatus):
    """Fail the run when anything but the allowed skip was skipped (a broken install must not pass)."""
    if _unexpected_skips and exitstatus == 0:
        session.exitstatus = 1


def pytest_terminal_summary(terminalreporter):
    if _unexpected_skips:
        terminalreporter.section("unexpected skips (the run fails)", sep="=", red=True)
        for nodeid, reason in _unexpected_skips:
            terminalreporter.line(f"{nodeid}: {reason}")
        terminalreporter.line(f"Only {', '.join(ALLOWED_SKIPS)} may skip (tests/conftest.py ALLOWED_SKIPS).")
