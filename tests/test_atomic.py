"""Atomic writes (facemetrics/storage/atomic.py): a failed rename keeps the old file and leaves no temp file."""
from __future__ import annotations

import os

import numpy as np
import pytest

from facemetrics.storage import atomic


@pytest.mark.parametrize("write", [
    lambda p: atomic.atomic_write_text(p, "new contents"),
    lambda p: atomic.atomic_write_bytes(p, b"new contents"),
    lambda p: atomic.atomic_save_npz(p, a=np.arange(5)),
], ids=["text", "bytes", "npz"])
def test_failed_rename_keeps_old_file_and_no_temp(tmp_path, monkeypatch, write):
    target = tmp_path / "out.npz"
    target.write_bytes(b"old contents")
    calls = []

    def failing_replace(src, dst):
        calls.append((src, dst))
        raise OSError("injected rename failure")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="injected rename failure"):
        write(target)
    assert calls and os.path.dirname(calls[0][0]) == str(tmp_path)  # the temp file sat beside the target
    assert target.read_bytes() == b"old contents"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.npz"]  # no .tmp left behind


def test_successful_write_replaces(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("old")
    atomic.atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt"]
