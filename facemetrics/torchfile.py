"""Reading and writing ``torch.save`` files with clear errors and atomic writes.

Every checkpoint or weights file that facemetrics and ``models/`` read goes
through :func:`load_torch` (``torch.save`` files) or :func:`load_torchscript`
(TorchScript archives such as the FID Inception weights). A missing file, a truncated download, or a file of
another kind is the user's mistake, not a bug, so it becomes a
:class:`~facemetrics.errors.FacemetricsError` naming the file and the flag
(a click usage error, exit 2) instead of a traceback. ``torch.load`` on
arbitrary bytes can raise almost any exception type (``UnpicklingError``,
``IndexError``, ``UnicodeDecodeError``, ``KeyError``, ``OverflowError``,
``MemoryError``, ``SystemError``…), so every ``Exception`` is caught;
``KeyboardInterrupt`` still propagates.
"""
from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any, Callable

from facemetrics.errors import FacemetricsError


_PLAIN_SCALARS = (str, int, float, bool, type(None))


def check_plain(obj: Any, where: str = "") -> None:
    """Raise ``TypeError`` unless ``obj`` is made of tensors (and torch dtypes, devices and sizes),
    plain containers (dict,
    ``OrderedDict``, list, tuple) and plain scalars only: what
    ``torch.load(weights_only=True)`` reads back without any Python code. Exact types are
    required (a ``str`` subclass such as ``torch.__version__`` pickles as its class)."""
    import collections

    import torch

    if isinstance(obj, (torch.Tensor, torch.dtype, torch.device)) or type(obj) in (*_PLAIN_SCALARS, torch.Size):
        return
    if type(obj) in (dict, collections.OrderedDict):
        for k, v in obj.items():
            check_plain(k, f"{where}[key {k!r}]")
            check_plain(v, f"{where}[{k!r}]")
        return
    if type(obj) in (list, tuple):
        for i, v in enumerate(obj):
            check_plain(v, f"{where}[{i}]")
        return
    raise TypeError(f"value{where} is a {type(obj).__module__}.{type(obj).__qualname__}: only tensors, "
                    "plain containers and plain scalars may be saved (files must load with weights_only=True)")


def save_torch(obj: Any, path: str | os.PathLike) -> None:
    """``torch.save`` through an atomic write (a reader never sees a partial file).

    ``obj`` must pass :func:`check_plain`, so that every file written here loads with
    ``torch.load(weights_only=True)`` (and so with :func:`load_torch`).
    """
    import torch

    from facemetrics.atomic import atomic_open

    check_plain(obj)
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


def _read(p: Path, what: str, param: str | None, kind: str, reader: Callable[[], Any]) -> Any:
    """Run ``reader`` on the existing file ``p``; any failure becomes a FacemetricsError."""
    if not p.is_file():
        raise FacemetricsError(f"{what} does not exist: {p}", param)
    try:
        with warnings.catch_warnings():
            # garbage read as a legacy pickle warns about its "protocol" before failing
            warnings.filterwarnings("ignore", message="Detected pickle protocol")
            # torch.jit.load's deprecation notice is torch's business, not the user's
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
            return reader()
    except Exception as e:  # noqa: BLE001 - any unreadable file is the user's, see module doc
        first = (str(e).splitlines() or [""])[0][:200]
        raise FacemetricsError(
            f"{what} {p} is corrupted or not a {kind} file ({type(e).__name__}: {first})", param) from None


def load_torch(path: str | os.PathLike, what: str, param: str | None, *,
               weights_only: bool = True, map_location: Any = "cpu") -> Any:
    """``torch.load`` with a :class:`FacemetricsError` for a missing or unreadable file.

    ``what`` names the file in the message ("checkpoint", "CLIP weights"…) and
    ``param`` is the flag it came from. ``weights_only=True`` (the default) reads
    tensors and plain containers only; pass ``False`` only for files this
    project wrote itself.
    """
    import torch

    p = Path(path)
    return _read(p, what, param, "torch",
                 lambda: torch.load(p, map_location=map_location, weights_only=weights_only))


def load_torchscript(path: str | os.PathLike, what: str, param: str | None) -> Any:
    """``torch.jit.load(map_location="cpu")`` with the same errors as :func:`load_torch`."""
    import torch

    p = Path(path)
    return _read(p, what, param, "TorchScript", lambda: torch.jit.load(str(p), map_location="cpu"))


def load_torch_dict(path: str | os.PathLike, what: str, param: str | None, **kw: Any) -> dict:
    """:func:`load_torch`, refusing a file that does not hold a dict."""
    obj = load_torch(path, what, param, **kw)
    if not isinstance(obj, dict):
        raise FacemetricsError(f"{what} {Path(path)} holds a {type(obj).__name__}, not a dict", param)
    return obj
