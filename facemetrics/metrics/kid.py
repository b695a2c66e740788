"""Kernel Inception Distance (Bińkowski et al. 2018), seeded.

With the cubic polynomial kernel k(x, y) = (xᵀy / d + 1)³, each of ``subsets``
draws takes m = min(subset_size, n₁, n₂) fake and m real features without
replacement (a fresh draw per subset, from ``numpy.random.default_rng(seed)``) and
computes the unbiased estimate

MMD²ᵤ = [Σ_{i≠j} k(xᵢ,xⱼ) + Σ_{i≠j} k(yᵢ,yⱼ)] / (m(m−1)) − 2 Σ_{i,j} k(xᵢ,yⱼ) / m².

KID is the mean over subsets, reported with the population std (ddof=0). This is
clean-fid's and StyleGAN2-ADA's estimator; unlike clean-fid, the draws are seeded.
"""
from __future__ import annotations

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.result import MetricResult


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of two equal-size samples under the cubic polynomial kernel."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    m, d = x.shape
    kxx = (x @ x.T / d + 1) ** 3
    kyy = (y @ y.T / d + 1) ** 3
    kxy = (x @ y.T / d + 1) ** 3
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


def kid(real: np.ndarray, fake: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> MetricResult:
    """KID mean and population std over seeded subsets (see module docstring)."""
    n1, n2 = len(real), len(fake)
    m = min(subset_size, n1, n2)
    if m < 2:
        raise FacemetricsError(f"KID needs at least 2 images on each side (real {n1}, fake {n2})")
    if subsets < 1:
        raise FacemetricsError("KID needs at least one subset", "--kid-subsets")
    rng = np.random.default_rng(seed)
    vals = np.empty(subsets)
    for s in range(subsets):
        x = fake[rng.choice(n2, m, replace=False)]
        y = real[rng.choice(n1, m, replace=False)]
        vals[s] = mmd2_unbiased(x, y)
    return MetricResult("kid", float(vals.mean()), higher_is_better=False, std=float(vals.std()), n=subsets,
                        details={"subsets": subsets, "subset_size": m, "seed": seed,
                                 "kernel": "(x.y/d+1)^3", "std_kind": "population over subsets"})


# --------------------------------------------------------------------------- registry spec

def _compute(inputs) -> dict[str, MetricResult]:
    from facemetrics.metrics.fid import inception_protocol

    real, fake = inputs.row("real"), inputs.row("fake")
    if real is None:
        raise FacemetricsError(
            f"KID needs per-image features and {inputs.labels.get('real', 'REAL')} holds statistics only; "
            "re-create it with `facemetrics stats FOLDER --features -o FILE.npz`", "REAL")
    o = inputs.options
    res = kid(real, fake, subsets=o.kid_subsets, subset_size=o.kid_subset_size, seed=o.seed)
    for k, v in inception_protocol(inputs).items():
        res.details.setdefault(k, v)
    return {"kid": res}


def _register() -> None:
    from facemetrics.metrics.registry import MetricSpec, Need, register

    register(MetricSpec(
        name="kid", higher_is_better=False, needs=(Need("inception", "pool", "rows"),), compute=_compute,
        summary="unbiased MMD² of the Inception pool features, cubic kernel, seeded subsets",
        protocol=("preset", "extractor", "subsets", "subset_size", "seed")))


_register()
