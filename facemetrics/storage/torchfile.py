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

Loading never runs code from the file: :func:`load_torch` always reads with
``torch.load(weights_only=True)`` (tensors, plain containers and numbers only;
there is no way to opt out), and a file whose pickle needs anything else (a
``__reduce__`` payload, a numpy array, a custom class) is refused with a message
of its own (:func:`unsafe_pickle_error`), distinct from "corrupted". TorchScript
archives (:func:`load_torchscript`) are read by torch's C++ loader, which runs
TorchScript code only and resolves no Python globals from the archive's pickles.
"""
from __future__ import annotations

import os
import pickle
import re
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

    from facemetrics.storage.atomic import atomic_open

    check_plain(obj)
    with atomic_open(path, "wb") as f:
        torch.save(obj, f)


# the weights_only unpickler's words for a well-formed pickle that names a global outside its
# allow-list ("Unsupported global: GLOBAL os.system was not an allowed global by default",
# "Trying to load unsupported GLOBAL posix.system whose module posix is blocked")
_UNSAFE_GLOBAL = re.compile(r"GLOBAL (\S+) (?:was not an allowed global|whose module \S+ is blocked)")
_STRING_OPS = {"SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE", "SHORT_BINSTRING", "BINSTRING", "STRING"}


def _pickle_stream(p: Path) -> bytes:
    """The main pickle of a ``torch.save`` file: ``data.pkl`` of a zip archive, else the start of
    the file (a legacy file's first pickle)."""
    import zipfile

    if zipfile.is_zipfile(p):
        with zipfile.ZipFile(p) as z:
            name = next(n for n in z.namelist() if n == "data.pkl" or n.endswith("/data.pkl"))
            return z.read(name)
    with open(p, "rb") as f:
        return f.read(1 << 20)


def _pickle_globals(p: Path) -> tuple[int, list[str]] | None:
    """``(protocol, globals named)`` of the file's pickle, parsed without running anything
    (:func:`pickletools.genops`); ``None`` when it is not a well-formed pickle."""
    import io
    import pickletools

    try:
        f = io.BytesIO(_pickle_stream(p))
        names: list[str] = []
        pushed: list[str | None] = []  # strings pushed since the last other opcode (STACK_GLOBAL's operands)
        memo: dict[int, str | None] = {}
        proto = 0
        for op, arg, _ in pickletools.genops(f):
            if op.name == "PROTO":
                proto = int(arg)
            elif op.name == "GLOBAL":
                names.append(str(arg).replace(" ", "."))
            elif op.name in _STRING_OPS:
                pushed.append(str(arg))
            elif op.name in ("GET", "BINGET", "LONG_BINGET"):
                pushed.append(memo.get(int(arg)))
            elif op.name in ("MEMOIZE", "PUT", "BINPUT", "LONG_BINPUT"):
                memo[len(memo) if op.name == "MEMOIZE" else int(arg)] = pushed[-1] if pushed else None
            elif op.name == "STACK_GLOBAL":
                mod, name = (pushed[-2:] if len(pushed) >= 2 else [None, None])
                names.append(f"{mod}.{name}" if mod and name else "a global named at run time")
                pushed = []
            else:
                pushed = []
    except Exception:  # noqa: BLE001 - any parse failure means "not a well-formed pickle"
        return None
    return proto, names


def _allowed_globals() -> set[str]:
    """Names ``torch.load(weights_only=True)`` accepts (torch's private list; empty if it moved)."""
    try:
        from torch._weights_only_unpickler import _get_allowed_globals

        return set(_get_allowed_globals())
    except Exception:  # noqa: BLE001 - a torch without that helper: list every global
        return set()


def unsafe_pickle_error(e: BaseException, p: Path, what: str, param: str | None) -> FacemetricsError | None:
    """The refusal for a well-formed pickle that ``torch.load(weights_only=True)`` rejected
    (it names a Python global outside torch's allow-list, or uses opcodes that loader does not
    read), or ``None`` when ``e`` is any other failure (a corrupted file)."""
    if not isinstance(e, pickle.UnpicklingError):
        return None
    m = _UNSAFE_GLOBAL.search(str(e))
    parsed = _pickle_globals(p)
    if m is None and parsed is None:
        return None  # a broken pickle, not a refused one
    allowed = _allowed_globals()
    names = sorted({n for n in (parsed[1] if parsed else []) if n not in allowed})
    if not names and m is not None:
        names = [m.group(1)]
    if not names:
        return FacemetricsError(
            f"{what} {p} is a pickle (protocol {parsed[0]}) that torch.load(weights_only=True) cannot read; "
            "re-save it with torch.save's default protocol; refusing to unpickle it with code execution "
            "allowed", param)
    shown = ", ".join(names[:5]) + (", ..." if len(names) > 5 else "")
    return FacemetricsError(
        f"{what} {p} needs arbitrary code to load (its pickle references {shown}; only tensors, numbers, "
        "strings and plain containers are read. Written by an older version of models.train or "
        "facemetrics, or by a tool that pickles Python objects?); refusing to unpickle it", param)


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
        unsafe = unsafe_pickle_error(e, p, what, param)
        if unsafe is not None:
            raise unsafe from None
        first = next((line for line in str(e).splitlines() if line.strip()), "")[:200]
        raise FacemetricsError(
            f"{what} {p} is corrupted or not a {kind} file ({type(e).__name__}: {first})", param) from None


def load_torch(path: str | os.PathLike, what: str, param: str | None, *, map_location: Any = "cpu") -> Any:
    """``torch.load(weights_only=True)`` with a :class:`FacemetricsError` for a missing,
    unreadable or code-carrying file.

    ``what`` names the file in the message ("checkpoint", "CLIP weights"…) and
    ``param`` is the flag it came from. Only tensors and plain containers load,
    whoever wrote the file: every file this project writes is made of them.
    """
    import torch

    p = Path(path)
    return _read(p, what, param, "torch",
                 lambda: torch.load(p, map_location=map_location, weights_only=True))


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
