"""In-memory image inputs: uint8 arrays and tensors, lists of images, generators.

Besides paths (folders, .zip, statistics .npz), either side of
:func:`facemetrics.score` and the batches of :class:`facemetrics.Metrics` may be

* a **uint8 numpy array or torch tensor** of shape N×H×W×3 or N×3×H×W. The layout
  is read from the axis of size 3: axis 3 → N×H×W×3, axis 1 → N×3×H×W. When
  both axis 1 and axis 3 have size 3 (N×3×H×3, e.g. 3-pixel-wide images) the
  shape is ambiguous and refused; pass such images as a list of H×W×3 arrays.
  Tensors may live on any device (they are copied to the CPU once);
* a **list (or tuple) of images**: PIL images (converted with
  ``.convert("RGB")`` exactly as decoding a file does) or H×W×3 uint8 arrays or
  tensors; sizes may differ;
* a :class:`Generated` (FAKE or REAL of ``score``): ``fn(batch_size)`` returning a
  uint8 batch as above, called until ``n`` images (see :class:`Generated`).

Under torchrun an array or list is split like a folder: every rank passes the
same images (as every rank sees the same files of a folder; only their count
is checked) and extracts its contiguous block, and the record equals a single
process's. A :class:`Generated` side is generated per rank (see there).

Every image then takes the decode-free path into the same resizers and
preprocessors as a decoded file (an H×W×3 uint8 array), so a folder of PNGs and
the same pixels in memory give the same features. Non-uint8 data is refused
(:func:`check_uint8` says how to convert); floats are never rescaled silently.

Content hash (the record's ``content_sha256`` and the feature-cache key)
------------------------------------------------------------------------
Per image, ``sha256(b"H,W,3\\0" + pixel bytes in H×W×3 C order)``
(:func:`pixel_digest`); for the whole input,
:func:`facemetrics.imaging.images.key_from_digests` over kind ``"pixels"``, the image
indices (``00000000``, ``00000001``, ...) and those digests, in order
(:func:`pixels_key`). It depends on the pixels and their order only: the same
images as an array, a tensor in either layout, a list, a generator or
accumulator batches get the same hash; one changed pixel changes it. Arrays and
lists are hashed before extraction and use it as their feature-cache key, so a
re-run on the same pixels reuses the cached features; generated and streamed
images are hashed as they arrive and are never cached (nothing can be looked
up before generating).
"""
from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Sequence

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.imaging.images import ImageSource, key_from_digests

#: ``ImageSource.kind`` of every in-memory source (the domain of the pixel content key)
PIXELS_KIND = "pixels"

UINT8_HINT = ("convert first, e.g. a float tensor in [-1, 1]: ((x + 1) * 127.5).round().clamp(0, 255)"
              ".to(torch.uint8); in [0, 1]: (x * 255).round().clamp(0, 255).to(torch.uint8); numpy in [0, 1]: "
              "np.clip(np.rint(x * 255), 0, 255).astype(np.uint8)")


# --------------------------------------------------------------------------- hashing

def pixel_digest(img: np.ndarray) -> str:
    """sha256 of one H×W×3 uint8 image: its shape (``b"H,W,3\\0"``) then its bytes in C order."""
    a = np.ascontiguousarray(img)
    h = hashlib.sha256(",".join(map(str, a.shape)).encode() + b"\0")
    h.update(a.data)
    return h.hexdigest()


def index_names(n: int, start: int = 0) -> tuple[str, ...]:
    """Names of in-memory images: their index, zero-padded to 8 digits."""
    return tuple(f"{i:08d}" for i in range(start, start + n))


def pixels_key(digests: Sequence[str]) -> str:
    """Content key of in-memory images from their :func:`pixel_digest` values, in order."""
    return key_from_digests(PIXELS_KIND, index_names(len(digests)), list(digests))


# --------------------------------------------------------------------------- validation

def _is_tensor(x: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(x, torch.Tensor)


def _is_pil(x: Any) -> bool:
    pil = sys.modules.get("PIL.Image")
    return pil is not None and isinstance(x, pil.Image)


def check_uint8(dtype: Any, param: str) -> None:
    """Refuse any dtype but uint8 (numpy or torch) with a message saying how to convert."""
    name = str(dtype).replace("torch.", "")
    if name != "uint8":
        raise FacemetricsError(f"{param}: images must be uint8 (0..255), got dtype {name}; {UINT8_HINT}", param)


def batch_layout(shape: Sequence[int], param: str) -> str:
    """``"nhwc"`` or ``"nchw"`` of a 4-d batch shape, from its axis of size 3 (see module docstring)."""
    shape = tuple(int(s) for s in shape)
    if len(shape) != 4:
        extra = " (one image? add a batch axis: x[None])" if len(shape) == 3 else ""
        raise FacemetricsError(f"{param}: an image batch must have 4 dimensions, N×H×W×3 or N×3×H×W; got shape "
                               f"{shape}{extra}", param)
    n, a, b, c = shape
    if a == 3 and c == 3:
        raise FacemetricsError(
            f"{param}: shape {shape} is ambiguous (N×3×H×3 reads as N×H×W×3 and as N×3×H×W); pass the images "
            "as a list of H×W×3 arrays instead, e.g. list(x.permute(0, 2, 3, 1).cpu().numpy())", param)
    if c != 3 and a != 3:
        raise FacemetricsError(f"{param}: shape {shape} has no colour axis of size 3 (N×H×W×3 or N×3×H×W RGB; "
                               "convert grayscale or RGBA images to RGB first)", param)
    if n < 1 or (b < 1) or (a if c == 3 else c) < 1:
        raise FacemetricsError(f"{param}: shape {shape} holds no pixels", param)
    return "nhwc" if c == 3 else "nchw"


def _item_array(item: Any, param: str) -> np.ndarray:
    """One list item as an H×W×3 uint8 array (PIL: ``.convert("RGB")`` as decoding does)."""
    if _is_pil(item):
        item.load()
        return np.asarray(item.convert("RGB"), dtype=np.uint8)
    if _is_tensor(item):
        check_uint8(item.dtype, param)
        item = item.detach().cpu().numpy()
    if not isinstance(item, np.ndarray):
        raise FacemetricsError(f"{param}: expected a PIL image or an H×W×3 uint8 array, got {type(item).__name__}",
                               param)
    check_uint8(item.dtype, param)
    if item.ndim != 3 or item.shape[2] != 3 or item.shape[0] < 1 or item.shape[1] < 1:
        raise FacemetricsError(f"{param}: list items must be H×W×3 images, got shape {tuple(item.shape)}", param)
    return item


@dataclass(frozen=True)
class Images:
    """N in-memory images, each read as a C-contiguous H×W×3 uint8 array by :meth:`get`.

    ``kind`` is ``"array"`` (one array/tensor) or ``"images"`` (a list); ``label``
    describes the input for records and messages.
    """

    kind: str
    label: str
    n: int
    _data: Any = field(repr=False, compare=False)
    _layout: str = "list"

    def __len__(self) -> int:
        return self.n

    def get(self, i: int) -> np.ndarray:
        if self._layout == "list":
            return np.ascontiguousarray(_item_array(self._data[i], "images"))
        x = self._data[i]
        return np.ascontiguousarray(x.transpose(1, 2, 0) if self._layout == "nchw" else x)


def as_images(x: Any, param: str) -> Images:
    """Validate ``x`` (array, tensor or list of images, see module docstring) and wrap it.

    Raises :class:`FacemetricsError` naming ``param`` for anything else, for
    non-uint8 data, for ambiguous or unusable shapes and for an empty input.
    """
    if _is_tensor(x):
        check_uint8(x.dtype, param)
        layout = batch_layout(x.shape, param)
        x = x.detach().cpu().numpy()
    elif isinstance(x, np.ndarray):
        check_uint8(x.dtype, param)
        layout = batch_layout(x.shape, param)
    elif isinstance(x, (list, tuple)):
        if not x:
            raise FacemetricsError(f"{param}: the list of images is empty", param)
        for i, item in enumerate(x):
            if not _is_pil(item):  # PIL images are converted when read; arrays are checked now
                _item_array(item, f"{param}[{i}]")
        return Images("images", f"<images: list of {len(x)}>", len(x), list(x))
    else:
        raise FacemetricsError(
            f"{param}: expected a path, a uint8 array/tensor (N×H×W×3 or N×3×H×W), a list of images or "
            f"facemetrics.Generated(fn, n); got {type(x).__name__}", param)
    shape = "×".join(map(str, x.shape))
    return Images("array", f"<array {shape} uint8 {layout.upper()}>", int(x.shape[0]), x, layout)


# --------------------------------------------------------------------------- sources

@dataclass(frozen=True)
class PixelSource(ImageSource):
    """In-memory images as an :class:`~facemetrics.imaging.images.ImageSource` of kind ``"pixels"``.

    ``names`` are image indices (:func:`index_names`); :func:`facemetrics.pipeline.features.extract`
    reads :meth:`image` instead of decoding and :meth:`digests` instead of file
    digests. ``images.kind`` ("array" | "images") is what records report.
    """

    images: Images | None = field(default=None, repr=False, compare=False, hash=False)

    @classmethod
    def of(cls, images: Images) -> "PixelSource":
        return cls(Path(images.label), PIXELS_KIND, index_names(images.n), images=images)

    def with_names(self, names: list[str] | tuple[str, ...]) -> "PixelSource":
        return PixelSource(self.root, self.kind, tuple(names), images=self.images)

    def path_of(self, name: str) -> str:
        return f"{self.root}[{int(name)}]"

    def read_bytes(self, name: str) -> bytes:
        raise FacemetricsError(f"{self.path_of(name)} is an in-memory image and has no file bytes")

    def image(self, name: str) -> np.ndarray:
        assert self.images is not None
        return self.images.get(int(name))

    def digests(self) -> list[str]:
        """:func:`pixel_digest` of each of ``names``, in order."""
        return [pixel_digest(self.image(n)) for n in self.names]


@dataclass(frozen=True)
class Generated:
    """A generator as a side of :func:`facemetrics.score`: ``fn(batch_size)`` called until ``n`` images.

    ``fn`` is always called with ``batch_size`` and must return a non-empty uint8
    batch (array/tensor N×H×W×3 or N×3×H×W, or a list of images); the last batch
    is truncated to ``n`` (so ``fn`` sees the same batch size on every call, and
    the images kept do not depend on ``n`` beyond the cut). Images are hashed as
    they stream and never cached. Seeding is ``fn``'s business: for reproducible
    numbers seed its random generator before scoring.

    Under torchrun each rank calls its own ``fn`` for its contiguous block of the
    ``n`` images (:func:`facemetrics.pipeline.distributed.shard_bounds`, e.g. 5 and 5 of 10
    on 2 ranks); the record is the one a single process gets from the blocks'
    images in rank order. Seed each rank's generator differently (e.g. with
    ``seed + rank``) unless identical blocks are wanted.
    """

    fn: Callable[[int], Any]
    n: int
    batch_size: int = 64

    def __post_init__(self) -> None:
        if not callable(self.fn):
            raise FacemetricsError(f"Generated: fn must be callable, got {type(self.fn).__name__}", "fn")
        for name in ("n", "batch_size"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
                raise FacemetricsError(f"Generated: {name} must be a positive integer, got {v!r}", name)

    @property
    def label(self) -> str:
        name = getattr(self.fn, "__qualname__", None) or type(self.fn).__name__
        return f"<generator {name}: {self.n} images>"

    def batches(self, count: int, param: str) -> Iterator[Images]:
        """Call ``fn(batch_size)`` until ``count`` images have been yielded (last batch truncated)."""
        left = count
        calls = 0
        while left > 0:
            got = self.fn(self.batch_size)
            calls += 1
            imgs = as_images(got, f"{param} (batch {calls} of the generator)")
            if imgs.n > left:
                imgs = _truncated(imgs, left)
            left -= imgs.n
            yield imgs


def _truncated(imgs: Images, n: int) -> Images:
    data = imgs._data[:n]
    return Images(imgs.kind, imgs.label, n, data, imgs._layout)


# --------------------------------------------------------------------------- dispatch

def is_path(x: Any) -> bool:
    return isinstance(x, (str, os.PathLike))


def resolve_input(x: Any, param: str) -> str | PixelSource | Generated:
    """A path (returned as ``str``), an in-memory input (a :class:`PixelSource`) or a :class:`Generated`."""
    if is_path(x):
        return os.fspath(x)
    if isinstance(x, Generated):
        return x
    if x is None:
        raise FacemetricsError(f"{param} is missing", param)
    return PixelSource.of(as_images(x, param))


def record_kind(x: str | PixelSource | Generated) -> str | None:
    """The record's ``kind`` of an in-memory input (None for a path: the scan decides)."""
    if isinstance(x, Generated):
        return "generator"
    if isinstance(x, PixelSource):
        assert x.images is not None
        return x.images.kind
    return None
