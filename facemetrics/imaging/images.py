"""Image sources: folder or .zip scanning, decoding to RGB uint8, content keys.

Decoding follows clean-fid exactly: ``PIL.Image.open(f).convert("RGB")`` then
``np.asarray`` (grayscale, RGBA, palette and 16-bit images convert as PIL does).
Files are listed recursively, sorted by their POSIX path relative to the source
root, so the order (and therefore every seeded subset) does not depend on the
file system. Links are followed, each directory is listed once (loops and
second paths to a folder are skipped with a warning, see :func:`scan`). An image
with more pixels than :func:`max_image_pixels` (PIL's 89,478,485 unless
``$FACEMETRICS_MAX_IMAGE_PIXELS`` or ``--max-image-pixels`` says otherwise) is
unreadable like a corrupt file, refused from its header before it is decoded.
"""
from __future__ import annotations

import contextlib
import hashlib
import heapq
import io
import json
import os
import threading
import warnings
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.storage.digest import file_sha256

#: File extensions read as images (compared case-insensitively).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {"bmp", "jpg", "jpeg", "png", "webp", "tif", "tiff", "pgm", "ppm"}
)

#: Errors PIL raises for files that are not decodable images (:class:`ImageTooLargeError` is a ValueError).
DECODE_ERRORS: tuple[type[BaseException], ...] = (OSError, SyntaxError, ValueError, EOFError)


def _is_image_name(name: str) -> bool:
    return name.rsplit(".", 1)[-1].lower() in IMAGE_EXTENSIONS if "." in name else False


@dataclass(frozen=True)
class ImageSource:
    """A set of images: a folder (recursive) or a .zip archive.

    ``names`` are POSIX paths relative to ``root`` (or archive member names),
    sorted. ``subset`` restricts a source to some of its names (shards, pairs).
    """

    root: Path
    kind: str  # "folder" | "zip"
    names: tuple[str, ...]
    _zip: dict = field(default_factory=dict, repr=False, compare=False, hash=False)

    def __len__(self) -> int:
        return len(self.names)

    def with_names(self, names: list[str] | tuple[str, ...]) -> "ImageSource":
        """The same source restricted to ``names`` (kept in the given order)."""
        return ImageSource(self.root, self.kind, tuple(names))

    def path_of(self, name: str) -> str:
        """Human-readable location of one image, for messages."""
        return f"{self.root}::{name}" if self.kind == "zip" else str(self.root / name)

    def read_bytes(self, name: str) -> bytes:
        if self.kind == "zip":
            zf = self._zip.get(os.getpid())
            if zf is None:  # one handle per process (workers fork)
                zf = zipfile.ZipFile(self.root)
                self._zip.clear()
                self._zip[os.getpid()] = zf
            return zf.read(name)
        return (self.root / name).read_bytes()


def _dir_id(path: str) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the directory ``path`` resolves to, or None when it cannot be read."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_dev, st.st_ino


def _contains(outer: str, inner: str) -> bool:
    """Whether the real path ``inner`` is ``outer`` or lies below it."""
    return inner == outer or inner.startswith(outer.rstrip(os.sep) + os.sep)


def _list_folder(root: Path) -> tuple[list[str], list[str]]:
    """Image names under ``root`` (following links, each directory once) and the skipped folder paths.

    A directory, judged by the (st_dev, st_ino) of what its path resolves to
    (the root included), is listed under one path only: the one through the
    fewest folder links, then with the fewest levels, then the first in sorted
    POSIX order; so a folder's real place wins over a link to it, and any other
    path to it is skipped. A folder link that points at a folder holding it on
    the walked path (``self -> .``, ``up -> ..``, ``a/b/top -> ../..``) is a loop
    and is not entered, so nothing outside ``root`` comes in through it. Links
    to files are always followed (two links to one file are two images).
    Returns (names, one note per skipped folder path).
    """
    names: list[str] = []
    skipped: list[str] = []
    seen: dict[tuple[int, int], str] = {}
    # (links on the path, depth, POSIX name under the root, path as walked, real paths of it and above)
    heap: list[tuple[int, int, str, str, tuple[str, ...]]] = [(0, 0, "", str(root), (os.path.realpath(root),))]
    while heap:
        links, depth, rel, path, chain = heapq.heappop(heap)
        key = _dir_id(path)
        if key is None:
            continue
        if key in seen:
            what = f"{rel} -> {os.readlink(path)}" if os.path.islink(path) else rel
            where = repr(seen[key]) if seen[key] else "the root"
            skipped.append(f"{what} (the same folder as {where}, listed there)")
            continue
        seen[key] = rel
        try:
            with os.scandir(path) as it:
                entries = list(it)
        except OSError:  # an unreadable folder is left out, as os.walk does
            continue
        for e in entries:
            name = f"{rel}/{e.name}" if rel else e.name
            try:
                is_dir = e.is_dir()  # follows links
            except OSError:
                is_dir = False
            if not is_dir:
                if _is_image_name(e.name):
                    names.append(name)
                continue
            link = e.is_symlink()
            real = os.path.realpath(e.path) if link else os.path.join(chain[-1], e.name)
            if link and any(_contains(real, c) for c in chain):
                skipped.append(f"{name} -> {os.readlink(e.path)} (a loop: it points at a folder holding it)")
                continue
            heapq.heappush(heap, (links + link, depth + 1, name, e.path, chain + (real,)))
    return names, skipped


def scan(path: str | os.PathLike, param: str | None = None) -> ImageSource:
    """List the images under ``path`` (a folder, recursively, or a .zip).

    Folders: links to files and to folders are followed, but no directory is
    listed twice: a link that loops (``self -> .``, ``up -> ..``) is not
    entered, and of several paths to one directory (two folders linking to each
    other, a link to a sibling folder) only one is kept: the one through the
    fewest folder links, then the shallowest, then the first in sorted POSIX
    order, so a folder's real place wins over a link to it (see
    :func:`_list_folder`). A warning (``warnings.warn``, a UserWarning) names
    every folder path not followed. Names are the POSIX paths relative to
    ``path``, sorted.

    Raises :class:`FacemetricsError` naming ``param`` when the path is missing,
    is not a folder or zip, or holds no image files.
    """
    p = Path(path)
    label = f"{param} " if param else ""
    if not p.exists():
        raise FacemetricsError(f"{label}path does not exist: {p}", param)
    if p.is_dir():
        names, skipped = _list_folder(p)
        if skipped:
            warnings.warn(f"{label}{p}: {len(skipped)} folder path(s) not followed, to list each folder once: "
                          + "; ".join(skipped), stacklevel=2)
        kind = "folder"
    elif p.suffix.lower() == ".zip":
        try:
            with zipfile.ZipFile(p) as zf:
                names = [i.filename for i in zf.infolist() if not i.is_dir() and _is_image_name(i.filename)]
        except zipfile.BadZipFile as e:
            raise FacemetricsError(f"{label}is not a readable zip archive: {p} ({e})", param) from None
        kind = "zip"
    else:
        raise FacemetricsError(
            f"{label}must be an image folder, a .zip of images or a statistics .npz: {p}", param
        )
    if not names:
        exts = ", ".join(sorted(IMAGE_EXTENSIONS))
        raise FacemetricsError(f"{label}holds no image files ({exts}): {p}", param)
    names.sort()
    return ImageSource(p.resolve(), kind, tuple(names))


#: environment variable holding the largest image (width × height, in pixels) that is decoded
MAX_PIXELS_ENV = "FACEMETRICS_MAX_IMAGE_PIXELS"
#: PIL's own default limit (``PIL.Image.MAX_IMAGE_PIXELS``: 1 GiB of 24-bit pixels / 4 = 89,478,485)
PIL_MAX_IMAGE_PIXELS = int(1024 * 1024 * 1024 // 4 // 3)

_pil_check = {"default": PIL_MAX_IMAGE_PIXELS, "off": False}
_pil_lock = threading.Lock()


class ImageTooLargeError(ValueError):
    """An image with more pixels than :func:`max_image_pixels` allows; it is not decoded."""


def _pil_default_limit() -> int | None:
    """PIL's limit as it stood when facemetrics first decoded an image, PIL's own check then switched off.

    facemetrics checks the pixel count itself (:func:`max_image_pixels`), so
    PIL's check, which raises ``DecompressionBombError`` above twice its limit
    and warns (``DecompressionBombWarning``) between one and two times it, is
    turned off for the process (``PIL.Image.MAX_IMAGE_PIXELS = None``): its
    warning cannot leak and a raised limit is not refused by PIL. A value the
    program set before (None included: no limit) becomes facemetrics' default.
    """
    if _pil_check["off"]:
        return _pil_check["default"]  # type: ignore[return-value]
    from PIL import Image

    with _pil_lock:
        if not _pil_check["off"]:
            _pil_check["default"] = Image.MAX_IMAGE_PIXELS
            Image.MAX_IMAGE_PIXELS = None
            _pil_check["off"] = True
    return _pil_check["default"]  # type: ignore[return-value]


def max_image_pixels() -> int | None:
    """The largest image decoded, in pixels (width × height); None = no limit.

    ``$FACEMETRICS_MAX_IMAGE_PIXELS`` (a whole number; 0 = no limit; the
    ``--max-image-pixels`` flag of ``score`` and ``stats`` sets it) or, unset,
    PIL's limit (``PIL.Image.MAX_IMAGE_PIXELS``, 89,478,485 unless the program
    changed it). Read at every decode, so worker processes and torchrun ranks,
    which inherit the environment, apply the same limit. Raises
    :class:`FacemetricsError` naming the variable for a value that is not a
    whole number >= 0.
    """
    default = _pil_default_limit()  # also switches PIL's own check off
    raw = os.environ.get(MAX_PIXELS_ENV, "").strip()
    if not raw:
        return default
    try:
        value = int(raw.replace(",", "").replace("_", ""))
    except ValueError:
        value = -1
    if value < 0:
        raise FacemetricsError(f"{MAX_PIXELS_ENV}={raw!r} must be a whole number of pixels >= 0 (0: no limit)",
                               "--max-image-pixels")
    return value or None


def check_image_pixels(size: tuple[int, int], limit: int | None) -> None:
    """Raise :class:`ImageTooLargeError` when a ``size`` = (width, height) image is over ``limit`` pixels."""
    w, h = size
    if limit is not None and w * h > limit:
        raise ImageTooLargeError(
            f"image is {w}×{h} = {w * h:,} pixels, over the limit of {limit:,} (raise it with "
            f"--max-image-pixels or {MAX_PIXELS_ENV}; 0 = no limit)")


def decode_settings_key(fingerprint_key: str) -> str:
    """``fingerprint_key`` extended by the decode settings that change which images are usable.

    With the default pixel limit the key is unchanged (existing cache entries
    stay valid); another limit gives another key, so an image refused under one
    limit is not reported from the cache as refused under a raised one.
    """
    limit = max_image_pixels()
    if limit == _pil_default_limit():
        return fingerprint_key
    return hashlib.sha256(f"{fingerprint_key}|max_image_pixels={limit}".encode()).hexdigest()


@contextlib.contextmanager
def pixel_limit(value: int | None) -> Iterator[None]:
    """Within the block, images over ``value`` pixels are unreadable (0: no limit; None: keep the setting).

    Sets ``$FACEMETRICS_MAX_IMAGE_PIXELS`` for the block (restored after it), so
    decode worker processes started inside it apply the same limit; checks the
    setting in force either way, so a bad value fails before any image is read.
    """
    if value is not None and value < 0:
        raise FacemetricsError(f"--max-image-pixels must be >= 0 (0: no limit), got {value}", "--max-image-pixels")
    old = os.environ.get(MAX_PIXELS_ENV)
    if value is not None:
        os.environ[MAX_PIXELS_ENV] = str(value)
    try:
        max_image_pixels()
        yield
    finally:
        if value is not None:
            if old is None:
                os.environ.pop(MAX_PIXELS_ENV, None)
            else:
                os.environ[MAX_PIXELS_ENV] = old


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode image bytes to an H×W×3 uint8 array exactly as clean-fid does.

    ``PIL.Image.open(...).convert("RGB")``: grayscale is replicated, alpha is
    dropped (not composited), palettes are expanded, 16-bit modes go through PIL's
    own conversion. An image over :func:`max_image_pixels` raises
    :class:`ImageTooLargeError` (a ValueError) from its header, before any pixel
    is decoded. Raises one of :data:`DECODE_ERRORS` for undecodable data.
    """
    from PIL import Image

    limit = max_image_pixels()
    try:
        with Image.open(io.BytesIO(data)) as im:
            check_image_pixels(im.size, limit)
            im.load()
            rgb = im.convert("RGB")
    except Image.DecompressionBombError as e:  # PIL's check, should a program have turned it back on
        raise ImageTooLargeError(str(e)) from None
    arr = np.asarray(rgb, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3 or arr.shape[0] < 1 or arr.shape[1] < 1:
        raise ValueError(f"decoded to an unusable shape {arr.shape}")
    return arr


def load_rgb(source: ImageSource, name: str) -> np.ndarray:
    """Read and decode one image of ``source``."""
    return decode_rgb(source.read_bytes(name))


# --------------------------------------------------------------------------- content keys

def _file_digest(path: Path, index: dict) -> str:
    """sha256 of a file's bytes, reusing ``index`` when size, mtime and ctime match.

    ctime cannot be set by user tools (unlike mtime), so any write to the file
    invalidates the fast path.
    """
    st = path.stat()
    key = str(path)
    stamp = [st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino]
    hit = index.get(key)
    if hit is not None and hit[0] == stamp:
        return hit[1]
    digest = file_sha256(path)
    index[key] = [stamp, digest]
    return digest


def _load_index(index_path: Path | None) -> dict:
    from facemetrics.storage.cacheio import cache_enabled

    if index_path is None or not cache_enabled() or not index_path.exists():
        return {}
    try:
        return json.loads(index_path.read_text())
    except (OSError, ValueError):
        return {}


def _save_index(index_path: Path | None, index: dict) -> None:
    """Write the digest index, merging what other processes wrote since it was read.

    Several processes (ranks, shard jobs) may update the index of one folder at
    once; re-reading just before the atomic rename keeps their entries in all but
    a millisecond-wide race (the index is only an accelerator either way). Nothing
    is written under ``--no-cache`` (:func:`facemetrics.storage.cacheio.cache_enabled`).
    """
    if index_path is None:
        return
    from facemetrics.storage.atomic import atomic_write_text
    from facemetrics.storage.cacheio import try_cache_write

    merged = {**_load_index(index_path), **index}
    # a failed write (full disk, ...) is a warning: the index only saves re-reading files.
    # Its cache root is the folder above index/ (FeatureCache.index_path).
    try_cache_write(index_path, index_path.parent.parent, lambda: atomic_write_text(index_path, json.dumps(merged)))


def file_digests(source: ImageSource, index_path: Path | None = None) -> list[str]:
    """sha256 of each file of a folder source, in ``source.names`` order.

    For a zip source, a one-element list: the sha256 of the archive. Uses and
    updates the size/mtime/ctime index at ``index_path`` (see :func:`content_key`).
    """
    index = _load_index(index_path)
    before = dict(index)
    if source.kind == "zip":
        out = [_file_digest(source.root, index)]
    else:
        out = [_file_digest(source.root / n, index) for n in source.names]
    if index != before:
        _save_index(index_path, index)
    return out


def key_from_digests(kind: str, names: list[str] | tuple[str, ...], digests: list[str]) -> str:
    """The content key of ``names`` given :func:`file_digests` (see :func:`content_key`).

    Lets a key over many files be assembled from digests computed in pieces
    (shards, ranks) and equal the key of a single pass.
    """
    h = hashlib.sha256()
    h.update(kind.encode())
    if kind == "zip":
        h.update(digests[0].encode())
        for n in names:
            h.update(b"\0" + n.encode())
    else:
        if len(digests) != len(names):
            raise ValueError(f"{len(names)} names but {len(digests)} digests")
        for n, d in zip(names, digests):
            h.update(b"\0" + n.encode() + b"\0" + d.encode())
    return h.hexdigest()


def content_key(source: ImageSource, index_path: Path | None = None) -> str:
    """A sha256 over the sorted (name, file sha256) pairs of ``source``.

    Two sources get the same key exactly when they hold the same names with the
    same bytes. ``index_path`` (a JSON file) stores per-file digests keyed by
    path, size, mtime and ctime, so an unchanged folder is not re-read.
    """
    return key_from_digests(source.kind, source.names, file_digests(source, index_path))
