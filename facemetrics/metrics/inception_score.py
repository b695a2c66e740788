"""Inception Score (Salimans et al. 2016).

IS = exp(E_x KL(p(y|x) ‖ p(y))), with p(y) the mean of p(y|x) over a split.
The images are shuffled with ``numpy.random.default_rng(seed).permutation`` and
split into ``splits`` contiguous parts of near-equal size (``np.array_split``);
IS is computed on each and reported as the mean and the *population* std
(ddof=0). torch-fidelity reports the same mean; torchmetrics uses the sample std.
For the ImageNet network the probabilities are the softmax of the 1008 logits
computed without the output bias (torch-fidelity's ``logits_unbiased``).
"""
from __future__ import annotations

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.result import MetricResult


def softmax(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def inception_score_from_probs(probs: np.ndarray, *, splits: int = 10, seed: int = 0) -> MetricResult:
    """IS from per-image class probabilities (rows summing to 1)."""
    p = np.asarray(probs, dtype=np.float64)
    n = p.shape[0]
    if n < splits:
        raise FacemetricsError(f"IS with {splits} splits needs at least {splits} images, have {n}")
    p = p[np.random.default_rng(seed).permutation(n)]
    scores = []
    for part in np.array_split(p, splits):
        py = part.mean(axis=0, keepdims=True)
        with np.errstate(divide="ignore", invalid="ignore"):
            kl = np.where(part > 0, part * (np.log(part) - np.log(py)), 0.0)
        scores.append(np.exp(kl.sum(axis=1).mean()))
    s = np.array(scores)
    return MetricResult("is", float(s.mean()), higher_is_better=True, std=float(s.std()), n=n,
                        details={"splits": splits, "seed": seed, "std_kind": "population over splits",
                                 "split_rule": "seeded permutation, np.array_split"})


def inception_score(logits: np.ndarray, *, splits: int = 10, seed: int = 0) -> MetricResult:
    """IS from logits (softmax taken here)."""
    return inception_score_from_probs(softmax(logits), splits=splits, seed=seed)
