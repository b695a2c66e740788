"""The resizers of the presets (DESIGN.md §2).

Every resizer maps an H×W×3 uint8 image to a ``size``×``size``×3 float32 array in
[0, 255] units; the network normalisation that follows is
:data:`PRESET_NORMALISATION`.

* ``clean`` (clean-fid ``mode="clean"``): each channel becomes a PIL mode-"F"
  float image, is resized with PIL's bicubic filter and clipped to [0, 255];
  no re-quantisation to uint8.
* ``tf1`` (torch-fidelity / TTUR): TensorFlow 1.x ``resize_bilinear`` with
  ``align_corners=False`` and no half-pixel centres: output pixel ``i`` samples the
  input at ``i · in/out`` (top-left aligned), neighbours clamped at the border.
* ``pytorch-fid``: ``torch.nn.functional.interpolate(mode="bilinear",
  align_corners=False)`` (half-pixel centres, no antialias).
"""
from __future__ import annotations

import functools
from typing import Callable

import numpy as np

from facemetrics.errors import FacemetricsError

PRESETS: tuple[str, ...] = ("clean", "tf1", "pytorch-fid")

#: (shift, scale) such that the network input is (x − shift) / scale for x in [0, 255].
#: clean and tf1 use (x − 128)/128; pytorch-fid scales to [0, 1] then 2x − 1.
PRESET_NORMALISATION: dict[str, tuple[float, float]] = {
    "clean": (128.0, 128.0),
    "tf1": (128.0, 128.0),
    "pytorch-fid": (127.5, 127.5),
}

Resizer = Callable[[np.ndarray], np.ndarray]


def check_preset(preset: str) -> str:
    if preset not in PRESETS:
        raise FacemetricsError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}", "--preset")
    return preset


def resize_clean(img: np.ndarray, size: int = 299) -> np.ndarray:
    """clean-fid's resize: per-channel PIL "F" bicubic, clipped to [0, 255], float32."""
    from PIL import Image

    out = np.empty((size, size, 3), dtype=np.float32)
    for c in range(3):
        ch = Image.fromarray(np.ascontiguousarray(img[:, :, c], dtype=np.float32), mode="F")
        out[:, :, c] = np.asarray(ch.resize((size, size), resample=Image.BICUBIC))
    np.clip(out, 0, 255, out=out)
    return out


def _tf1_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weights of TF1 bilinear (align_corners=False) along one axis."""
    scale = n_in / n_out
    src = np.arange(n_out, dtype=np.float64) * scale
    i0 = np.floor(src).astype(np.int64)
    i0 = np.minimum(i0, n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    frac = (src - i0).astype(np.float32)
    return i0, i1, frac


def resize_tf1(img: np.ndarray, size: int = 299) -> np.ndarray:
    """TF1 ``resize_bilinear(align_corners=False)``: samples at ``i·in/out``, float32 math."""
    x = img.astype(np.float32)
    h, w = x.shape[:2]
    y0, y1, fy = _tf1_axis(h, size)
    x0, x1, fx = _tf1_axis(w, size)
    top = x[y0]
    bottom = x[y1]
    rows = top + (bottom - top) * fy[:, None, None]
    left = rows[:, x0]
    right = rows[:, x1]
    return np.ascontiguousarray(left + (right - left) * fx[None, :, None], dtype=np.float32)


def resize_pytorch_fid(img: np.ndarray, size: int = 299) -> np.ndarray:
    """pytorch-fid: bilinear ``F.interpolate(align_corners=False)`` of the [0, 1] image, ×255."""
    import torch
    import torch.nn.functional as F

    t = torch.from_numpy(np.ascontiguousarray(img)).permute(2, 0, 1)[None].float() / 255.0
    r = F.interpolate(t, size=(size, size), mode="bilinear", align_corners=False)
    return (r[0].permute(1, 2, 0) * 255.0).contiguous().numpy()


_RESIZERS = {"clean": resize_clean, "tf1": resize_tf1, "pytorch-fid": resize_pytorch_fid}


def get_resizer(preset: str, size: int = 299) -> Resizer:
    """A picklable ``uint8 H×W×3 -> float32 size×size×3`` resizer for ``preset``."""
    return functools.partial(_RESIZERS[check_preset(preset)], size=size)
