"""CLIP score (Hessel et al. 2021, without their w = 2.5 rescaling), DESIGN.md §3.

For each generated image *i* and the caption that produced it,
``s_i = 100 · max(cos(E_img(i), E_txt(i)), 0)``; the value is the mean of the
``s_i`` and ``std`` their population standard deviation (ddof=0), ``n`` the
number of images. The clamp at 0 is applied **per image**, before averaging;
torchmetrics' ``CLIPScore`` instead clamps the mean (``max(100 · mean cos, 0)``),
which differs whenever some cosine is negative.
"""
from __future__ import annotations

import numpy as np

from facemetrics.result import MetricResult


def per_image_clip_scores(image_emb: np.ndarray, text_emb: np.ndarray) -> np.ndarray:
    """``100 · max(cos, 0)`` for each aligned (image, caption) row pair."""
    a = np.asarray(image_emb, dtype=np.float64)
    b = np.asarray(text_emb, dtype=np.float64)
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(f"image and text embeddings must have the same (n, d) shape, got {a.shape} and {b.shape}")
    na = np.linalg.norm(a, axis=1)
    nb = np.linalg.norm(b, axis=1)
    denom = na * nb
    cos = np.einsum("nd,nd->n", a, b) / np.where(denom > 0, denom, 1.0)
    return 100.0 * np.maximum(cos, 0.0)


def clip_score(image_emb: np.ndarray, text_emb: np.ndarray) -> MetricResult:
    """Mean CLIP score of aligned image/caption embeddings (see module docstring)."""
    s = per_image_clip_scores(image_emb, text_emb)
    if len(s) == 0:
        raise ValueError("CLIP score of zero images")
    return MetricResult(
        name="clipscore",
        value=float(s.mean()),
        higher_is_better=True,
        std=float(s.std(ddof=0)),
        n=int(len(s)),
        details={
            "formula": "mean over images of 100 * max(cos(image, caption), 0)",
            "clamp": "per image (torchmetrics clamps the mean instead)",
            "std_kind": "population std over images",
            "n_clamped_to_zero": int((s == 0).sum()),
        },
        samples=s,
    )


# --------------------------------------------------------------------------- registry spec

def _compute(inputs) -> dict[str, MetricResult]:
    tp = inputs.paired["matcher"]
    from facemetrics.metrics.uncertainty import bootstrap_interval, ci_settings

    c = clip_score(tp.image_emb, tp.caption_emb[tp.true_index])
    c.details.update(tp.details)
    cfg = ci_settings(inputs.options)
    if cfg.enabled:
        c.ci = bootstrap_interval(c.samples, cfg, what="CLIP score")
    return {"clipscore": c}


def _register() -> None:
    from facemetrics.metrics.registry import MetricSpec, Need, register

    register(MetricSpec(
        name="clipscore", higher_is_better=True, needs=(Need("matcher", "embedding", "paired", ("fake",)),),
        compute=_compute, summary="mean 100·max(cos, 0) of each image and its caption", protocol=("matcher",)))


_register()
