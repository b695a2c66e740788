"""Shared helpers for the face-metric tests (data location, small LFW subsets)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
DATA = Path(os.environ.get("FACEMETRICS_DATA", REPO.parent / "shared" / "data"))
LFW = DATA / "lfw"
LFW_IMAGES = LFW / "deepfunneled"
FACE2TEXT = DATA / "face2text"
CELEBA = DATA / "celeba" / "89x109"


def need(path: Path) -> Path:
    """``path``, or a test failure saying the real data are missing (as tests/conftest.py does)."""
    if not path.exists():
        pytest.fail(f"real test data not found: {path} (set FACEMETRICS_DATA)")
    return path


def lfw_name(person: str, number: int) -> str:
    return f"{person}/{person}_{number:04d}.jpg"
