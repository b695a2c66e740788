"""Image sources: folder or .zip scanning, decoding to RGB uint8, content keys.

Decoding follows clean-fid exactly: ``PIL.Image.open(f).convert("RGB")`` then
``np.asarray`` (grayscale, RGBA, palette and 16-bit images convert as PIL does).
Files are listed recursively, sorted by their POSIX path relative to the source
root, so the order (and therefore every seeded subset) does not depend on the
file system.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from facemetrics.errors import FacemetricsError

#: File extensions read as images (compared case-insensitively).
IMAGE_EXTENSIONS: frozenset[str] = frozenset(
    {"bmp", "jpg", "jpeg", "png", "webp", "tif", "tiff", "pgm", "ppm"}
)

#: Errors PIL raises for files that are not decodable images.
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


def scan(path: str | os.PathLike, param: str | None = None) -> ImageSource:
    """List the images under ``path`` (a folder, recursively, or a .zip).

    Raises :class:`FacemetricsError` naming ``param`` when the path is missing,
    is not a folder or zip, or holds no image files.
    """
    p = Path(path)
    label = f"{param} " if param else ""
    if not p.exists():
        raise FacemetricsError(f"{label}path does not exist: {p}", param)
    if p.is_dir():
        names = []
        for dirpath, dirnames, filenames in os.walk(p, followlinks=True):
            dirnames.sort()
            rel = Path(dirpath).relative_to(p)
            for fn in filenames:
                if _is_image_name(fn):
                    names.append((rel / fn).as_posix())
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


def decode_rgb(data: bytes) -> np.ndarray:
    """Decode image bytes to an H×W×3 uint8 array exactly as clean-fid does.

    ``PIL.Image.open(...).convert("RGB")``: grayscale is replicated, alpha is
    dropped (not composited), palettes are expanded, 16-bit modes go through PIL's
    own conversion. Raises one of :data:`DECODE_ERRORS` for undecodable data.
    """
    from PIL import Image

    with Image.open(io.BytesIO(data)) as im:
        im.load()
        rgb = im.convert("RGB")
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
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    digest = h.hexdigest()
    index[key] = [stamp, digest]
    return digest


def _load_index(index_path: Path | None) -> dict:
    from facemetrics.cacheio import cache_enabled

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
    is written under ``--no-cache`` (:func:`facemetrics.cacheio.cache_enabled`).
    """
    if index_path is None:
        return
    from facemetrics.atomic import atomic_write_text
    from facemetrics.cacheio import try_cache_write

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
