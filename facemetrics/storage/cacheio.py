"""Writes into the user cache folder: best effort, and none at all under ``--no-cache``.

Everything facemetrics keeps in the cache folder (feature entries, the per-folder
file-digest index, the sha256 memo of weight files) is an optimisation: losing
it costs time, never a result. So

* a cache write that fails with an :class:`OSError` (full disk, quota, read-only
  folder, a file where a folder is expected) is reported once per cache folder
  as a :class:`CacheWarning` naming the file and the OS error, and the caller
  goes on as if it had no cache;
* inside :func:`cache_disabled` (``score``/``stats --no-cache``) nothing is read
  from or written to the cache folder: :func:`cache_enabled` is False for every
  writer, however deep in the call stack.
"""
from __future__ import annotations

import contextlib
import threading
import warnings
from pathlib import Path
from typing import Callable, Iterator


class CacheWarning(UserWarning):
    """The feature/weights cache could not be used as intended (a write failed, an entry is corrupt)."""


_LOCK = threading.Lock()
_DISABLED = 0  # depth of active cache_disabled() blocks (process-wide: worker threads see it too)
_WARNED_ROOTS: set[str] = set()


@contextlib.contextmanager
def cache_disabled(disable: bool = True) -> Iterator[None]:
    """While active (and ``disable`` is true), :func:`cache_enabled` is False in every thread."""
    global _DISABLED
    if not disable:
        yield
        return
    with _LOCK:
        _DISABLED += 1
    try:
        yield
    finally:
        with _LOCK:
            _DISABLED -= 1


def cache_enabled() -> bool:
    """False inside :func:`cache_disabled`: then nothing may touch the cache folder."""
    return _DISABLED == 0


def os_reason(err: OSError) -> str:
    """``[Errno 28] No space left on device`` style text of an OS error (without a temporary file's name)."""
    if err.errno is not None and err.strerror:
        return f"[Errno {err.errno}] {err.strerror}"
    return str(err) or type(err).__name__


def warn_cache_write_failed(path: str | Path, root: str | Path, err: OSError) -> None:
    """Warn (once per cache folder ``root``) that writing ``path`` failed; the caller carries on."""
    key = str(root)
    with _LOCK:
        if key in _WARNED_ROOTS:
            return
        _WARNED_ROOTS.add(key)
    warnings.warn(CacheWarning(
        f"cannot write to the cache {root}: {path}: {os_reason(err)}. The results are not affected; this run "
        "goes on without saving to the cache (free some space, set FACEMETRICS_CACHE to another folder, or "
        "pass --no-cache)"), stacklevel=3)


def try_cache_write(path: str | Path, root: str | Path, write: Callable[[], None]) -> bool:
    """Run ``write()`` (which writes ``path`` under the cache folder ``root``) unless the cache is disabled.

    Returns True when it wrote; False when the cache is disabled or the write
    failed with an :class:`OSError` (then warned, see :func:`warn_cache_write_failed`).
    """
    if not cache_enabled():
        return False
    try:
        write()
    except OSError as e:
        warn_cache_write_failed(path, root, e)
        return False
    return True
