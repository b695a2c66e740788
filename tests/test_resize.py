"""Resizers of the presets against independent computations (issue 2, item 3)."""
from __future__ import annotations

import numpy as np
import pytest

from facemetrics.imaging.resize import get_resizer


def tf1_bilinear_reference(img: np.ndarray, out: int) -> np.ndarray:
    """TF1 resize_bilinear(align_corners=False), written as the textbook per-pixel formula."""
    h, w, c = img.shape
    res = np.zeros((out, out, c))
    for i in range(out):
        sy = i * h / out
        y0 = int(np.floor(sy)); y1 = min(y0 + 1, h - 1); dy = sy - y0
        for j in range(out):
            sx = j * w / out
            x0 = int(np.floor(sx)); x1 = min(x0 + 1, w - 1); dx = sx - x0
            top = img[y0, x0] * (1 - dx) + img[y0, x1] * dx
            bot = img[y1, x0] * (1 - dx) + img[y1, x1] * dx
            res[i, j] = top * (1 - dy) + bot * dy
    return res


def half_pixel_bilinear_reference(img: np.ndarray, out: int) -> np.ndarray:
    """PyTorch bilinear, align_corners=False: source = (i + 0.5)·in/out − 0.5, clamped at 0."""
    h, w, c = img.shape
    res = np.zeros((out, out, c))
    for i in range(out):
        sy = max((i + 0.5) * h / out - 0.5, 0.0)
        y0 = min(int(np.floor(sy)), h - 1); y1 = min(y0 + 1, h - 1); dy = sy - y0
        for j in range(out):
            sx = max((j + 0.5) * w / out - 0.5, 0.0)
            x0 = min(int(np.floor(sx)), w - 1); x1 = min(x0 + 1, w - 1); dx = sx - x0
            top = img[y0, x0] * (1 - dx) + img[y0, x1] * dx
            bot = img[y1, x0] * (1 - dx) + img[y1, x1] * dx
            res[i, j] = top * (1 - dy) + bot * dy
    return res


@pytest.mark.parametrize("shape,out", [((7, 5, 3), 11), ((13, 17, 3), 6), ((8, 8, 3), 8)])
def test_tf1_matches_formula(shape, out):
    img = np.random.default_rng(0).integers(0, 256, shape, dtype=np.uint8)
    got = get_resizer("tf1", out)(img)
    assert got.dtype == np.float32 and got.shape == (out, out, 3)
    np.testing.assert_allclose(got, tf1_bilinear_reference(img.astype(np.float64), out), atol=1e-3)


@pytest.mark.parametrize("shape,out", [((7, 5, 3), 11), ((13, 17, 3), 6)])
def test_pytorch_fid_matches_formula(shape, out):
    img = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    got = get_resizer("pytorch-fid", out)(img)
    np.testing.assert_allclose(got, half_pixel_bilinear_reference(img.astype(np.float64), out), atol=1e-3)


def test_clean_matches_cleanfid_resizer(data_dir):
    from cleanfid.resize import build_resizer
    from PIL import Image

    path = next((data_dir / "lfw" / "deepfunneled" / "Aaron_Eckhart").glob("*.jpg"))
    img = np.asarray(Image.open(path).convert("RGB"))
    ours = get_resizer("clean")(img)
    ref = build_resizer("clean")(img)
    assert ours.dtype == np.float32 and ours.shape == (299, 299, 3)
    np.testing.assert_array_equal(ours, ref)
    assert ours.min() >= 0 and ours.max() <= 255
    # no re-quantisation: bicubic produces non-integer values
    assert np.any(ours != np.round(ours))


def test_tf1_and_clean_differ_on_real_image(data_dir):
    from PIL import Image

    path = next((data_dir / "lfw" / "deepfunneled" / "Aaron_Eckhart").glob("*.jpg"))
    img = np.asarray(Image.open(path).convert("RGB"))
    assert np.abs(get_resizer("clean")(img) - get_resizer("tf1")(img)).mean() > 0.1
