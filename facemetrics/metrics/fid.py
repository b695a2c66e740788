"""Fréchet Inception Distance.

d² = ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂)

tr √(Σ₁Σ₂) is computed as Σᵢ √λᵢ of the symmetric PSD matrix √Σ₁ Σ₂ √Σ₁ (which
is similar to Σ₁Σ₂, so has the same eigenvalues): two symmetric eigen
decompositions in float64, negative round-off eigenvalues clamped to 0. This is
exact for PSD inputs, finite for rank-deficient ones, and several times faster
than ``scipy.linalg.sqrtm`` at 2048 dimensions.

A covariance may also be given as a :class:`CovFactor` F (m × d, Σ = FᵀF: the
centred rows of m ≤ d samples divided by √(m − 1)), as the subsampling intervals of
:mod:`facemetrics.metrics.uncertainty` do. Then tr Σ = ‖F‖²_F and, since the non-zero
eigenvalues of Σ₁Σ₂ are those of a smaller symmetric matrix,

* both factored: tr √(Σ₁Σ₂) = ‖F₁F₂ᵀ‖_* (the sum of the singular values of the
  m₁ × m₂ matrix F₁F₂ᵀ, since F₁Σ₂F₁ᵀ = (F₁F₂ᵀ)(F₁F₂ᵀ)ᵀ);
* one factored: tr √(Σ₁Σ₂) = Σᵢ √λᵢ(F₂Σ₁F₂ᵀ) (an m₂ × m₂ eigen problem).

Same value (to round-off), at O(d·m₁·m₂) instead of two d × d eigen decompositions.
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.result import MetricResult
from facemetrics.stats import FeatureStats, GaussianStats


def _sqrt_psd(a: np.ndarray) -> np.ndarray:
    w, v = np.linalg.eigh(a)
    return (v * np.sqrt(np.clip(w, 0, None))) @ v.T


@dataclass(frozen=True)
class CovFactor:
    """A covariance Σ = FᵀF held as its factor F (m × d float64), e.g. of m ≤ d samples."""

    f: np.ndarray

    @classmethod
    def of_rows(cls, x: np.ndarray) -> tuple[np.ndarray, "CovFactor"]:
        """(mean, factor) of rows ``x`` (m × d): F = (x − x̄)/√(m − 1), so FᵀF is the unbiased covariance."""
        x = np.asarray(x, dtype=np.float64)
        mu = x.mean(axis=0)
        return mu, cls((x - mu) / np.sqrt(x.shape[0] - 1))

    @property
    def dims(self) -> int:
        return int(self.f.shape[1])

    def trace(self) -> float:
        return float(np.einsum("ij,ij->", self.f, self.f))


def _dims(s) -> tuple[int, ...]:
    return (s.dims, s.dims) if isinstance(s, CovFactor) else np.shape(s)


def trace_sqrt_product(sigma1, sigma2) -> float:
    """tr √(Σ₁Σ₂) for symmetric PSD Σ₁, Σ₂ via the eigenvalues of √Σ₁ Σ₂ √Σ₁.

    Either may be a :class:`CovFactor` (see the module docstring for the smaller problems solved then).
    """
    if isinstance(sigma1, CovFactor) and isinstance(sigma2, CovFactor):
        return float(np.linalg.svd(sigma1.f @ sigma2.f.T, compute_uv=False).sum())
    if isinstance(sigma1, CovFactor):
        sigma1, sigma2 = sigma2, sigma1  # tr √(Σ₁Σ₂) = tr √(Σ₂Σ₁)
    s1 = np.asarray(sigma1, dtype=np.float64)
    if isinstance(sigma2, CovFactor):
        m = sigma2.f @ s1 @ sigma2.f.T
        lam = np.linalg.eigvalsh((m + m.T) / 2)
        # F Σ₁ Fᵀ has rank ≤ rank F: its null eigenvalues come out as ±1e-16·λ_max, whose square roots
        # (1e-8) would add up; below the numerical rank (m · eps · λ_max) they are zeros
        lam = np.where(lam > lam.max(initial=0.0) * len(lam) * np.finfo(np.float64).eps, lam, 0.0)
        return float(np.sqrt(lam).sum())
    r = _sqrt_psd((s1 + s1.T) / 2)
    m = r @ np.asarray(sigma2, dtype=np.float64) @ r
    lam = np.linalg.eigvalsh((m + m.T) / 2)
    return float(np.sqrt(np.clip(lam, 0, None)).sum())


def frechet_distance(mu1: np.ndarray, sigma1, mu2: np.ndarray, sigma2) -> float:
    """Squared Fréchet distance between N(μ₁, Σ₁) and N(μ₂, Σ₂) (a Σ may be a :class:`CovFactor`)."""
    mu1 = np.asarray(mu1, dtype=np.float64)
    mu2 = np.asarray(mu2, dtype=np.float64)
    s1 = sigma1 if isinstance(sigma1, CovFactor) else np.asarray(sigma1, dtype=np.float64)
    s2 = sigma2 if isinstance(sigma2, CovFactor) else np.asarray(sigma2, dtype=np.float64)
    if mu1.shape != mu2.shape or _dims(s1) != _dims(s2):
        raise ValueError(f"shape mismatch: {mu1.shape}/{_dims(s1)} vs {mu2.shape}/{_dims(s2)}")

    def tr(s) -> float:
        return s.trace() if isinstance(s, CovFactor) else float(np.trace(s))

    diff = mu1 - mu2
    d2 = float(diff @ diff + tr(s1) + tr(s2) - 2.0 * trace_sqrt_product(s1, s2))
    return max(d2, 0.0)


def fid_from_stats(real: FeatureStats | GaussianStats, fake: FeatureStats | GaussianStats) -> MetricResult:
    """FID of two feature statistics; warns when n < dims (rank-deficient covariance).

    Either side may be a :class:`~facemetrics.stats.GaussianStats` (a foreign
    mu/sigma file), whose n is unknown (None): no rank check for it.
    """
    if real.dims != fake.dims:
        raise FacemetricsError(f"FID: real statistics are {real.dims}-d, fake features {fake.dims}-d")
    for label, st in (("real", real), ("fake", fake)):
        if st.n is not None and st.n < st.dims:
            warnings.warn(
                f"FID: {label} set has {st.n} images for {st.dims}-d features; its covariance is "
                f"rank-deficient and FID is biased upwards (use more images to compare with published numbers)",
                stacklevel=2,
            )
    value = frechet_distance(real.mean, real.cov, fake.mean, fake.cov)
    return MetricResult("fid", value, higher_is_better=False, n=None,
                        details={"n_real": real.n, "n_fake": fake.n, "dims": real.dims,
                                 "covariance": "unbiased (n-1)", "sqrt": "eigh of sqrt(S1) S2 sqrt(S1)"})


# --------------------------------------------------------------------------- interval

def gaussian_of_rows(x: np.ndarray):
    """(μ, Σ) of rows ``x`` in float64: Σ as a :class:`CovFactor` when m ≤ d, else from :class:`FeatureStats`."""

    if x.shape[0] <= x.shape[1]:
        return CovFactor.of_rows(x)
    st = FeatureStats.from_features(x)
    return st.mean, st.cov


def fid_interval(fake: np.ndarray, theta_hat: float, cfg: Any, *, real: np.ndarray | None = None,
                 real_stats: Any = None) -> dict[str, Any]:
    """Subsampling interval of FID. ``real``: REAL's per-image features (drawn too), else ``real_stats``
    (mean/cov, kept fixed: only FAKE is drawn)."""
    from facemetrics.metrics.uncertainty import subsample_interval


    fake = np.asarray(fake)
    if real is not None:
        real = np.asarray(real)

        def stat(idx: dict[str, np.ndarray]) -> float:
            return frechet_distance(*gaussian_of_rows(real[idx["real"]]), *gaussian_of_rows(fake[idx["fake"]]))

        n = {"real": len(real), "fake": len(fake)}
    else:
        mu_r, cov_r = np.asarray(real_stats.mean, dtype=np.float64), np.asarray(real_stats.cov, dtype=np.float64)

        def stat(idx: dict[str, np.ndarray]) -> float:
            return frechet_distance(mu_r, cov_r, *gaussian_of_rows(fake[idx["fake"]]))

        n = {"fake": len(fake)}
    ci = subsample_interval(theta_hat, stat, n, level=cfg.level, draws=cfg.subsample_draws, seed=cfg.seed, floor=0.0,
                            what="FID")
    if ci is not None and real is None:
        ci["note"] = ("REAL is a statistics file without per-image features: only FAKE was subsampled, so the "
                      "interval omits REAL's sampling variability")
    return ci


# --------------------------------------------------------------------------- registry spec

def inception_protocol(inputs) -> dict:
    """Details every Inception-family result carries: the preset and the extractor's name."""
    fp = inputs.extractors["inception"].fingerprint()
    return {"preset": inputs.options.preset, "extractor": fp.get("extractor")}


def _compute(inputs) -> dict[str, MetricResult]:
    from facemetrics.metrics.uncertainty import ci_settings

    real_st, fake_st = inputs.stat("real"), inputs.stat("fake")
    res = fid_from_stats(real_st, fake_st)
    for k, v in inception_protocol(inputs).items():
        res.details.setdefault(k, v)
    cfg = ci_settings(inputs.options)
    if cfg.enabled:
        fake = inputs.row("fake")
        if fake is None:
            warnings.warn("FID: no interval, FAKE's per-image features were not kept", stacklevel=2)
        else:
            res.ci = fid_interval(fake, res.value, cfg, real=inputs.row("real"), real_stats=real_st)
    return {"fid": res}


def _register() -> None:
    from facemetrics.metrics.registry import MetricSpec, Need, register

    register(MetricSpec(
        name="fid", higher_is_better=False, compute=_compute,
        # the rows feed the interval (REAL's when it has them: a statistics file may not)
        needs=(Need("inception", "pool", "stats"),
               Need("inception", "pool", "rows", optional=True, enabled_by=("ci", "keep_rows"))),
        summary="Fréchet distance of the Inception pool features of REAL and FAKE",
        protocol=("preset", "extractor", "covariance", "n_real", "n_fake", "dims")))


_register()
