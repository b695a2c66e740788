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

from typing import Any, Callable

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.result import MetricResult


def cubic_kernel(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    """k(xᵢ, yⱼ) = (xᵢᵀyⱼ / d + 1)³ for all row pairs (float64)."""
    x = np.asarray(x, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    return (x @ y.T / x.shape[1] + 1) ** 3


def mmd2_from_kernels(kxx: np.ndarray, kyy: np.ndarray, kxy: np.ndarray) -> float:
    """Unbiased MMD² of two equal-size samples from their m × m kernel matrices."""
    m = kxx.shape[0]
    within = (kxx.sum() - np.trace(kxx) + kyy.sum() - np.trace(kyy)) / (m * (m - 1))
    return float(within - 2.0 * kxy.sum() / (m * m))


def mmd2_unbiased(x: np.ndarray, y: np.ndarray) -> float:
    """Unbiased MMD² of two equal-size samples under the cubic polynomial kernel."""
    return mmd2_from_kernels(cubic_kernel(x, x), cubic_kernel(y, y), cubic_kernel(x, y))


def subset_values(n_real: int, n_fake: int, mmd2: Callable[[np.ndarray, np.ndarray], float], *, subsets: int,
                  size: int, seed: int) -> np.ndarray:
    """``mmd2(fake_index, real_index)`` on each of ``subsets`` seeded draws of ``size`` indices per side
    (fake first, then real, without replacement, from ``numpy.random.default_rng(seed)``)."""
    rng = np.random.default_rng(seed)
    vals = np.empty(subsets)
    for s in range(subsets):
        fi = rng.choice(n_fake, size, replace=False)
        ri = rng.choice(n_real, size, replace=False)
        vals[s] = mmd2(fi, ri)
    return vals


def kid(real: np.ndarray, fake: np.ndarray, *, subsets: int = 100, subset_size: int = 1000,
        seed: int = 0) -> MetricResult:
    """KID mean and population std over seeded subsets (see module docstring)."""
    n1, n2 = len(real), len(fake)
    m = min(subset_size, n1, n2)
    if m < 2:
        raise FacemetricsError(f"KID needs at least 2 images on each side (real {n1}, fake {n2})")
    if subsets < 1:
        raise FacemetricsError("KID needs at least one subset", "--kid-subsets")
    vals = subset_values(n1, n2, lambda fi, ri: mmd2_unbiased(fake[fi], real[ri]), subsets=subsets, size=m,
                         seed=seed)
    return MetricResult("kid", float(vals.mean()), higher_is_better=False, std=float(vals.std()), n=subsets,
                        details={"subsets": subsets, "subset_size": m, "seed": seed,
                                 "kernel": "(x.y/d+1)^3", "std_kind": "population over subsets"})


# --------------------------------------------------------------------------- interval

def kid_interval(real: np.ndarray, fake: np.ndarray, theta_hat: float, cfg: Any, *, subsets: int,
                 subset_size: int) -> dict[str, Any]:
    """Subsampling interval of KID (same estimator per draw: module docstring)."""
    from facemetrics.metrics import uncertainty
    from facemetrics.metrics.uncertainty import subsample_interval


    real, fake = np.asarray(real), np.asarray(fake)
    n = {"real": len(real), "fake": len(fake)}
    precompute = 8 * (n["real"] + n["fake"]) ** 2 <= uncertainty.KERNEL_BYTES
    if precompute:
        krr, kff, kfr = cubic_kernel(real, real), cubic_kernel(fake, fake), cubic_kernel(fake, real)

    def stat(idx: dict[str, np.ndarray]) -> float:
        r, f = idx["real"], idx["fake"]
        size = min(subset_size, len(r), len(f))
        if not precompute:
            return kid(real[r], fake[f], subsets=subsets, subset_size=subset_size, seed=cfg.seed).value
        if size == len(r) == len(f):  # every subset is the whole draw: one value (MMD² ignores order)
            return mmd2_from_kernels(kff[np.ix_(f, f)], krr[np.ix_(r, r)], kfr[np.ix_(f, r)])

        def mmd(fi: np.ndarray, ri: np.ndarray) -> float:
            a, b = f[fi], r[ri]
            return mmd2_from_kernels(kff[np.ix_(a, a)], krr[np.ix_(b, b)], kfr[np.ix_(a, b)])

        return float(subset_values(len(r), len(f), mmd, subsets=subsets, size=size, seed=cfg.seed).mean())

    ci = subsample_interval(theta_hat, stat, n, level=cfg.level, draws=cfg.subsample_draws, seed=cfg.seed,
                            what="KID")
    if ci is not None:
        ci["kid_per_draw"] = f"mean over {subsets} seeded subsets of min({subset_size}, m) (seed {cfg.seed})"
    return ci


# --------------------------------------------------------------------------- bootstrap


# --------------------------------------------------------------------------- registry spec

def _compute(inputs) -> dict[str, MetricResult]:
    from facemetrics.metrics.fid import inception_protocol
    from facemetrics.metrics.uncertainty import ci_settings

    real, fake = inputs.row("real"), inputs.row("fake")
    if real is None:
        raise FacemetricsError(
            f"KID needs per-image features and {inputs.labels.get('real', 'REAL')} holds statistics only; "
            "re-create it with `facemetrics stats FOLDER --features -o FILE.npz`", "REAL")
    o = inputs.options
    res = kid(real, fake, subsets=o.kid_subsets, subset_size=o.kid_subset_size, seed=o.seed)
    for k, v in inception_protocol(inputs).items():
        res.details.setdefault(k, v)
    cfg = ci_settings(o)
    if cfg.enabled:
        res.ci = kid_interval(real, fake, res.value, cfg, subsets=o.kid_subsets, subset_size=o.kid_subset_size)
    return {"kid": res}


def _register() -> None:
    from facemetrics.metrics.registry import MetricSpec, Need, register

    register(MetricSpec(
        name="kid", higher_is_better=False, needs=(Need("inception", "pool", "rows"),), compute=_compute,
        summary="unbiased MMD² of the Inception pool features, cubic kernel, seeded subsets",
        protocol=("preset", "extractor", "subsets", "subset_size", "seed")))


_register()
