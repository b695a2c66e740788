"""Atomic file writes: write a temporary file in the target folder, then rename.

A reader never sees a half-written file, and an interrupted write leaves only a
``.tmp`` file that is removed on the error path.
"""
from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path
from typing import IO, Iterator


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_open(path: str | os.PathLike, mode: str = "wb") -> Iterator[IO]:
    """Open a temporary file beside ``path``; on success rename it onto ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual permissions
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> None:
    with atomic_open(path, "wb") as f:
        f.write(data)


def atomic_write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_open(path, "w") as f:
        f.write(text)


def atomic_save_npz(path: str | os.PathLike, **arrays) -> None:
    """``np.savez`` to ``path`` atomically (the name is kept exactly, no .npz added)."""
    import numpy as np

    with atomic_open(path, "wb") as f:
        np.savez(f, **arrays)


@contextlib.contextmanager
def output_file(path: str | os.PathLike, what: str, param: str | None = None) -> Iterator[None]:
    """Turn an :class:`OSError` raised inside the block into an :class:`OutputWriteError` naming ``path``.

    For the result files the user asked for (``score --json``, ``stats -o``): a
    full disk is then a one-line error, and the atomic write left nothing behind.
    """
    from facemetrics.storage.cacheio import os_reason
    from facemetrics.errors import OutputWriteError

    try:
        yield
    except OSError as e:
        raise OutputWriteError(f"cannot write {what} {path}: {os_reason(e)} (nothing was written)", param) from None
