"""The ``clean`` preset's input path in torch: decode and resize on any device (a GPU too).

Today every image is decoded by PIL and resized by PIL on the CPU
(:func:`facemetrics.imaging.images.decode_rgb`, :func:`facemetrics.imaging.resize.resize_clean`), which
bounds a GPU run by the CPU. This module does both steps with torch ops, batched:

1. **Decode** (:func:`decode_images`): JPEGs with ``torchvision.io.decode_jpeg``
   (libjpeg-turbo on the CPU, nvjpeg with ``device="cuda"``); every other file, and
   every JPEG the torch decoder cannot take, with PIL (:func:`facemetrics.imaging.images.decode_rgb`).

2. **Resize** (:func:`resize_clean_torch`): PIL's ``ImagingResample`` for a mode-"F"
   image with ``Image.BICUBIC``, i.e. clean-fid's ``mode="clean"`` resize, written as
   two matrix products with precomputed weights, batched over images and channels.

Exact and approximate
---------------------
* Resize, ``dtype=torch.float64``: the weights are PIL's (same formulas, in double).
  The two passes run in PIL's order (:func:`pil_vertical_first`) and the first pass is
  rounded to float32 (PIL stores the intermediate image in mode F); then the second
  pass, rounded to float32 and clipped to [0, 255]. Only the summation order inside
  each dot product differs from PIL's, so results are bit-identical except for rare
  one-ulp flips (none were seen in testing). The tests require ≤ 1e-4 absolute.
* Resize, ``dtype=torch.float32`` (the GPU default): the same weights and order in
  float32 arithmetic; differences of a few float32 ulps of 255, i.e. ~1e-4 absolute
  at most (see the tests for the bound).
* Decode on the CPU: the pixels were identical to PIL's on the LFW and CelebA JPEGs
  tested, since torchvision and Pillow both link libjpeg-turbo (islow IDCT, fancy
  upsampling). This is measured, not guaranteed: another libjpeg build may differ by ±1.
* torchvision 0.29 deprecates its image codecs in favour of TorchCodec (0.16+); when they
  go, :func:`_torch_decode_jpegs` is the one function to port (and re-measure).
* Decode on a GPU (nvjpeg): **approximate**. nvjpeg's IDCT and chroma upsampling are not
  libjpeg's, so pixels may differ by a few levels. A record made this way must say so.

Which files use the torch decoder
---------------------------------
JPEGs whose PIL header mode is ``"RGB"`` or ``"L"``. Grayscale is then decoded with
``ImageReadMode.RGB``, which copies the gray channel three times, as PIL's
``convert("RGB")`` does. Other files go through PIL:

* CMYK/YCCK JPEGs (they matched PIL on the CPU, but nvjpeg's handling is unknown);
* PNG and every other format (PIL's conversions of 16-bit, palette and alpha images
  are the protocol, and ``decode_image`` returns 16-bit PNGs unconverted);
* JPEGs the torch decoder rejects (truncated, corrupt). PIL then raises or decodes
  them exactly as the PIL path would, so failures stay the same too.

The header is read with ``PIL.Image.open``, which parses only the header. That also
applies PIL's decompression-bomb check, as the PIL path does.
"""
from __future__ import annotations

import contextlib
import functools
import io
import re
import warnings
from dataclasses import dataclass
from typing import TYPE_CHECKING, Iterator, Sequence

import numpy as np

from facemetrics.imaging.images import DECODE_ERRORS, decode_rgb

if TYPE_CHECKING:  # pragma: no cover
    import torch

#: PIL's bicubic parameter (``#define a -0.5`` in Pillow's Resample.c); Keys' kernel.
BICUBIC_A = -0.5
#: the bicubic kernel's support (half-width) in input pixels, before antialias scaling
BICUBIC_SUPPORT = 2.0
#: PIL header modes whose JPEGs go through the torch decoder
TORCH_JPEG_MODES = ("RGB", "L")
#: torchvision 0.29 warns on every decode that its image codecs are deprecated (for TorchCodec)
_TORCHVISION_DEPRECATION = "The image decoding and encoding capabilities of TorchVision are deprecated"


# --------------------------------------------------------------------------- resize weights

def bicubic_kernel(x: np.ndarray, a: float = BICUBIC_A) -> np.ndarray:
    """Keys' cubic convolution kernel as Pillow evaluates it (float64).

    With ``t = |x|``::

        k(t) = ((a + 2) t − (a + 3)) t² + 1      for t < 1
        k(t) = (((t − 5) t + 8) t − 4) · a       for 1 ≤ t < 2
        k(t) = 0                                 otherwise

    The Horner forms and the order of operations are Pillow's, so the weights match it
    to the last bit.
    """
    t = np.abs(np.asarray(x, dtype=np.float64))
    near = ((a + 2.0) * t - (a + 3.0)) * t * t + 1.0
    far = (((t - 5.0) * t + 8.0) * t - 4.0) * a
    return np.where(t < 1.0, near, np.where(t < 2.0, far, 0.0))


def _pil_windows(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, float]:
    """Output pixels' centres and ``[xmin, xmax)`` input windows, as Pillow's ``precompute_coeffs``.

    ``scale = n_in / n_out``; ``filterscale = max(scale, 1)`` (kernel widened only when
    downscaling: antialias); ``support = 2 · filterscale``; output pixel ``i`` is centred
    at ``(i + 0.5) · scale`` in input coordinates (pixel ``j`` covers ``[j, j + 1)``);
    its window is ``xmin = trunc(centre − support + 0.5)``,
    ``xmax = trunc(centre + support + 0.5)``, clipped to ``[0, n_in]``.
    Returns (centre, xmin, xmax, filterscale).
    """
    scale = float(n_in) / n_out
    filterscale = max(scale, 1.0)
    support = BICUBIC_SUPPORT * filterscale
    centre = (np.arange(n_out, dtype=np.float64) + 0.5) * scale
    xmin = np.maximum(np.trunc(centre - support + 0.5), 0).astype(np.int64)
    xmax = np.minimum(np.trunc(centre + support + 0.5), n_in).astype(np.int64)
    return centre, xmin, xmax, filterscale


def pil_bicubic_weights(n_in: int, n_out: int, a: float = BICUBIC_A) -> np.ndarray:
    """Pillow's bicubic resampling weights along one axis as a dense ``n_out × n_in`` float64 matrix.

    Row ``i`` holds ``k((j − centre_i + 0.5) · (1 / filterscale))`` for the input pixels
    ``j`` of its window (see :func:`_pil_windows`), divided by the sum of the row (the
    sum taken left to right, as Pillow does; a zero sum leaves the row as is).
    ``resized = W_rows @ image @ W_cols.T`` then resizes an H×W image.
    """
    if n_in < 1 or n_out < 1:
        raise ValueError(f"sizes must be positive, got {n_in} -> {n_out}")
    centre, xmin, xmax, filterscale = _pil_windows(n_in, n_out)
    width = xmax - xmin
    ksize = int(width.max())
    offs = np.arange(ksize)
    valid = offs[None, :] < width[:, None]
    taps = xmin[:, None] + offs[None, :]
    k = bicubic_kernel((taps - centre[:, None] + 0.5) * (1.0 / filterscale), a) * valid
    total = np.zeros(n_out)
    for c in range(ksize):  # sequential sum, as Pillow's loop
        total = total + k[:, c]
    k = np.divide(k, total[:, None], out=k.copy(), where=total[:, None] != 0.0)
    dense = np.zeros((n_out, n_in))
    rows = np.broadcast_to(np.arange(n_out)[:, None], taps.shape)
    dense[rows[valid], taps[valid]] = k[valid]
    return dense


@functools.lru_cache(maxsize=64)
def _weights(n_in: int, n_out: int, device: str, dtype: "torch.dtype", a: float) -> "torch.Tensor":
    import torch

    return torch.from_numpy(pil_bicubic_weights(n_in, n_out, a)).to(device=device, dtype=dtype)


def resize_weights(n_in: int, n_out: int, device: "str | torch.device" = "cpu", dtype: "torch.dtype | None" = None,
                   a: float = BICUBIC_A) -> "torch.Tensor":
    """:func:`pil_bicubic_weights` as a torch tensor on ``device``, cached per (sizes, device, dtype, a)."""
    import torch

    return _weights(n_in, n_out, str(torch.device(device)), dtype or torch.float32, a)


# --------------------------------------------------------------------------- resize

def pil_vertical_first(h_in: int, w_in: int, h_out: int, w_out: int) -> bool:
    """Whether PIL resamples rows (the vertical pass) before columns for this resize.

    Pillow up to its 2024 sources always runs the horizontal pass first. The installed
    Pillow 13.0 runs the vertical pass first iff ``h_in > h_out`` and
    ``2 · (w_in − w_out) < h_in − h_out`` (a tie runs horizontal first). This rule was
    found by measurement: with the other order, about 30 % of pixels differ by one or two
    float32 ulps. It matched the winning order on 500 random shapes and on ties. It
    matters only for the last bit: either order is within 1e-4 of the other. The tests
    compare against the installed PIL, so a Pillow that changes the rule fails them.
    """
    return h_in > h_out and 2 * (w_in - w_out) < h_in - h_out



def _pass(y: "torch.Tensor", n_in: int, size: int, dim: int, dtype: "torch.dtype", a: float) -> "torch.Tensor":
    """One separable pass along ``dim`` (-1: columns, -2: rows) with PIL's weights; none if ``n_in == size``."""
    import torch

    if n_in == size:
        return y
    weights = resize_weights(n_in, size, y.device, dtype, a)
    return torch.matmul(y, weights.T) if dim == -1 else torch.matmul(weights, y)


@contextlib.contextmanager
def _no_tf32(device: "torch.device") -> Iterator[None]:
    """Full float32 matmuls on CUDA (no TF32, whose 10-bit mantissa would move values by ~0.1)."""
    import torch

    if device.type != "cuda":
        yield
        return
    saved = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        yield
    finally:
        torch.backends.cuda.matmul.allow_tf32 = saved


def resize_clean_torch(x: "torch.Tensor", size: int = 299, *, dtype: "torch.dtype | None" = None,
                       a: float = BICUBIC_A) -> "torch.Tensor":
    """clean-fid's ``clean`` resize of ``x`` (``(..., H, W)``, any real dtype, any device).

    Every ``H × W`` plane (each channel of each image) is resized as PIL resizes a mode-"F"
    image with ``Image.BICUBIC`` to ``size × size``:

    * horizontal pass ``x @ Wc.T`` with ``Wc = pil_bicubic_weights(W, size)`` and vertical
      pass ``Wr @ x`` with ``Wr = pil_bicubic_weights(H, size)``, in PIL's order
      (:func:`pil_vertical_first`), the first one rounded to float32 (PIL's intermediate
      mode-F image); a pass whose size does not change is skipped, as in PIL;
    * clipped to [0, 255] (clean-fid's ``np.clip``), no re-quantisation.

    ``dtype`` is the arithmetic dtype (float32 when None): float64 reproduces PIL
    (see the module docstring), float32 is for GPUs (TF32 is switched off for the two
    matmuls). Returns float32 ``(..., size, size)`` on ``x``'s device, in [0, 255] units.
    Dense weights cost ``H·W·size + H·size²`` multiply-adds per plane (≈ 41 M at
    250 → 299): cheap on a GPU; on a CPU, PIL's banded loop is faster.
    """
    import torch

    dtype = dtype or torch.float32
    h, w = int(x.shape[-2]), int(x.shape[-1])
    first, second = ((-2, h), (-1, w)) if pil_vertical_first(h, w, size, size) else ((-1, w), (-2, h))
    with _no_tf32(x.device):
        y = _pass(x.to(dtype), first[1], size, first[0], dtype, a)
        y = y.to(torch.float32).to(dtype)
        y = _pass(y, second[1], size, second[0], dtype, a)
    return y.to(torch.float32).clamp_(0.0, 255.0)


# --------------------------------------------------------------------------- decode

def torch_decodable(data: bytes) -> bool:
    """Whether ``data`` goes through the torch JPEG decoder: a JPEG whose PIL header mode is RGB or L.

    Reads only the header. Data PIL cannot even identify returns False (PIL then reports it).
    """
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as im:
            return im.format == "JPEG" and im.mode in TORCH_JPEG_MODES
    except DECODE_ERRORS:
        return False


def _error_text(e: BaseException) -> str:
    """The PIL path's failure text (features._decode_and_prep): type, message, no buffer address."""
    return re.sub(r" at 0x[0-9a-fA-F]+", "", f"{type(e).__name__}: {e}")


def _pil_decode(data: bytes, device: "str | torch.device") -> "torch.Tensor":
    """PIL's decode (the protocol's) as a ``3 × H × W`` uint8 tensor on ``device``."""
    import torch

    return torch.from_numpy(np.array(decode_rgb(data).transpose(2, 0, 1), order="C", copy=True)).to(device)


def _torch_decode_jpegs(blobs: list[bytes], device: "str | torch.device") -> list["torch.Tensor | None"]:
    """``decode_jpeg`` of every blob (one batched call; per image if that fails), None where it fails.

    torchvision's deprecation warning is silenced here, so it does not reach the records
    (``api.score`` records every warning). ``warnings.catch_warnings`` is not thread-safe:
    call this from one thread (the batched nvjpeg decode wants one call per batch anyway).
    """
    import torch

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=_TORCHVISION_DEPRECATION, category=DeprecationWarning)
        from torchvision.io import ImageReadMode, decode_jpeg

        tensors = [torch.frombuffer(bytearray(b), dtype=torch.uint8) for b in blobs]
        try:
            return list(decode_jpeg(tensors, mode=ImageReadMode.RGB, device=device))
        except RuntimeError:
            out: list[torch.Tensor | None] = []
            for t in tensors:
                try:
                    out.append(decode_jpeg(t, mode=ImageReadMode.RGB, device=device))
                except RuntimeError:
                    out.append(None)
            return out


def decode_images(blobs: Sequence[bytes], device: "str | torch.device" = "cpu", *, use_torch: bool = True,
                  ) -> list["torch.Tensor | str"]:
    """Decode encoded images to ``3 × H × W`` uint8 RGB tensors on ``device``, in order.

    With ``use_torch``, JPEGs that :func:`torch_decodable` accepts are decoded by
    torchvision in one batched call, and the rest, plus any JPEG it rejects, by PIL
    (see the module docstring for what is exact). ``use_torch=False`` uses PIL only,
    the protocol's decoder. An entry the PIL path cannot read is its failure text
    (e.g. ``"OSError: image file is truncated ..."``), in place of a tensor.
    """
    out: list[torch.Tensor | str | None] = [None] * len(blobs)
    jpeg_idx = [i for i, b in enumerate(blobs) if use_torch and torch_decodable(b)]
    for i, t in zip(jpeg_idx, _torch_decode_jpegs([blobs[i] for i in jpeg_idx], device) if jpeg_idx else []):
        out[i] = t
    for i, b in enumerate(blobs):
        if out[i] is None:
            try:
                out[i] = _pil_decode(b, device)
            except DECODE_ERRORS as e:
                out[i] = _error_text(e)
    return out  # type: ignore[return-value]


# --------------------------------------------------------------------------- pipeline

@dataclass
class CleanBatch:
    """Network-ready images of one batch and where each came from.

    ``images[k]`` (float32, ``3 × size × size``, [0, 255]) is input ``ok[k]``;
    ``failed`` lists ``(input index, failure text)`` for the unreadable ones.
    """

    images: "torch.Tensor"
    ok: list[int]
    failed: list[tuple[int, str]]


def resize_decoded(images: Sequence["torch.Tensor"], size: int = 299, *, dtype: "torch.dtype | None" = None,
                   ) -> "torch.Tensor":
    """Resize decoded ``3 × H × W`` images of any sizes to one ``B × 3 × size × size`` float32 tensor.

    Images of the same size are stacked and resized in one batched call
    (:func:`resize_clean_torch`); the output keeps the input order. All images must be
    on one device.
    """
    import torch

    if not images:
        raise ValueError("no images to resize")
    groups: dict[tuple[int, int], list[int]] = {}
    for k, im in enumerate(images):
        groups.setdefault((int(im.shape[-2]), int(im.shape[-1])), []).append(k)
    out = torch.empty((len(images), 3, size, size), dtype=torch.float32, device=images[0].device)
    for idx in groups.values():
        out[idx] = resize_clean_torch(torch.stack([images[k] for k in idx]), size, dtype=dtype)
    return out


def clean_batch(blobs: Sequence[bytes], device: "str | torch.device" = "cpu", size: int = 299, *,
                use_torch_decode: bool = True, decode_device: "str | torch.device | None" = None,
                dtype: "torch.dtype | None" = None) -> CleanBatch:
    """Encoded image bytes to the ``clean`` preset's network input on ``device``.

    :func:`decode_images` on ``decode_device`` (``device`` when None), the uint8 images moved
    to ``device``, then :func:`resize_decoded`. The result is ``B × 3 × size × size`` float32
    in [0, 255] for the readable inputs, ready for ``(x − 128) / 128``
    (:data:`facemetrics.imaging.resize.PRESET_NORMALISATION`) and the Inception layers.
    ``use_torch_decode=False`` decodes with PIL (the protocol). The resize then matches the
    PIL path to ≤ 1e-4 with ``dtype=torch.float64`` and to a few float32 ulps with float32.
    ``decode_device="cpu"`` with a CUDA ``device`` decodes with libjpeg-turbo (PIL's pixels,
    see the module docstring) and resizes on the GPU.
    """
    import torch

    decoded = decode_images(blobs, device if decode_device is None else decode_device, use_torch=use_torch_decode)
    ok = [i for i, d in enumerate(decoded) if not isinstance(d, str)]
    failed = [(i, d) for i, d in enumerate(decoded) if isinstance(d, str)]
    if ok:
        moved = [decoded[i].to(device, non_blocking=True) for i in ok]  # type: ignore[union-attr]
        images = resize_decoded(moved, size, dtype=dtype)
    else:
        images = torch.empty((0, 3, size, size), dtype=torch.float32, device=device)
    return CleanBatch(images, ok, failed)
