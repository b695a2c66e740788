"""Intervals on every number: seeded subsampling (FID, KID) and percentile bootstrap (per-sample metrics).

Every function here is pure and seeded: the same inputs and seed give the same interval.
An interval travels as :attr:`MetricResult.ci <facemetrics.result.MetricResult>`, a dict::

    {"lo", "hi", "level", "method", "draws", "seed", ...method's own keys}

**Subsampling (FID, KID).** With n_s items on side s (real, fake), each of ``draws`` (B,
default 50) draws takes m_s = ⌊f·n_s⌋ items of each side *without replacement* (f = 1/2;
each side its own draw, real before fake, from ``numpy.random.default_rng(seed)``) and
computes the metric θ*_b on them. With the centred deviations δ_b = θ*_b − mean_b θ*_b and
q_p their p-quantile (``numpy.quantile(method="weibull")``: plotting positions
p(B + 1), which do not shrink the tails of 50 draws as the default linear rule does), the
interval at level 1 − α is the *basic* (hybrid) subsampling interval

    [θ̂ − c·q_{1−α/2}, θ̂ − c·q_{α/2}],   c = √(m/(n − m)).

The rescaling c is the finite-population form of Politis & Romano's √(m/n): a draw of m of
n items without replacement has Var(θ*_m | data) ≈ σ²(1/m − 1/n) = σ²(n − m)/(mn), while
Var θ̂ ≈ σ²/n, so the ratio of the spreads is √(m/(n − m)) (the delete-d jackknife factor of
Shao & Wu 1989 with d = n − m). At f = 1/2, c = 1; the textbook √(m/n) = 0.71 assumes
m/n → 0 and, at m = n/2, gives intervals that are 29 % too short (4-d Gaussians with
closed-form FID, n = 1000, 400 data sets, B = 50: a nominal 90 % interval covered 88 % with
√(m/(n − m)) and 72 % with √(m/n); nominal 95 %: 94 %; see ``tests/test_uncertainty.py``). With several sides,
c uses the mean of m_s/(n_s − m_s) (all equal to 1 at f = 1/2 for even n_s).

The deviations are centred on the draws' mean, not on θ̂ (θ̂ the metric on all the data):
the interval is for the number reported, FID at this n (its expectation E[FID_n] over
data sets of n), and always contains θ̂ up to the asymmetry of the draws. FID is biased
upwards by about s/N at sample size N, so θ*_m sits about s(1/m − 1/n) above θ̂; centring
on θ̂ would shift the interval by that bias (towards the population FID) and, with 2048-d
features and a few hundred images, place it entirely below the value shown beside it
(2×200 LFW: FID 80.1, uncentred interval [46.4, 57.3]). The bias itself is what FID∞
(:mod:`facemetrics.metrics.extrapolated`) estimates; two models scored at the same n share
it to first order, which is why the interval and the paired comparison are at n. FID's lower end is clamped at 0 (FID ≥ 0). Per draw FID is computed from the
float64 sufficient statistics of the drawn rows (:class:`~facemetrics.metrics.fid.CovFactor`
when m ≤ d, :class:`~facemetrics.stats.FeatureStats` otherwise) by
:func:`facemetrics.metrics.fid.frechet_distance`. When REAL is a statistics file without
per-image features only FAKE is drawn (REAL's statistics fixed): the interval then omits
REAL's sampling variability and says so (``"sides": ["fake"]``).

KID per draw is the same estimator as the point value (``subsets`` seeded subsets of
min(subset_size, m) of the draw, seed = the run's seed), evaluated on kernel matrices of the
whole sets computed once (when they fit in :data:`KERNEL_BYTES`); when a subset is the whole
draw the ``subsets`` identical values are computed once.

**Percentile bootstrap (FSD, FSS, CLIP score, R-precision).** ``scipy.stats.bootstrap``
with ``method="percentile"``, ``draws`` (default 1000) resamples of the per-sample values
(per pair, per image, per caption's hit) with replacement, ``rng =
numpy.random.default_rng(seed)``; the statistic is the metric's own (the mean; for
R-precision the mean of the per-fold hit rates over ``numpy.array_split`` folds of the
resample).
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, Callable, Sequence

import numpy as np

from facemetrics.errors import FacemetricsError

DEFAULT_LEVEL = 0.95
SUBSAMPLE_DRAWS = 50
BOOTSTRAP_DRAWS = 1000
SUBSAMPLE_FRACTION = 0.5
#: most bytes the three KID kernel matrices of the whole sets may take; above, each draw computes its own
KERNEL_BYTES = 1 << 30


@dataclass(frozen=True)
class CISettings:
    """The run's interval settings: ``level`` (0 = no interval), ``draws`` (None = the method's default), seed."""

    level: float = DEFAULT_LEVEL
    draws: int | None = None
    seed: int = 0

    @property
    def enabled(self) -> bool:
        return self.level > 0

    @property
    def subsample_draws(self) -> int:
        return SUBSAMPLE_DRAWS if self.draws is None else self.draws

    @property
    def bootstrap_draws(self) -> int:
        return BOOTSTRAP_DRAWS if self.draws is None else self.draws


def check_level(level: float, draws: int | None = None) -> None:
    """Refuse a level outside (0, 1) (0 itself = off) and fewer than 2 draws, naming the flag."""
    if not (level == 0 or 0 < level < 1):
        raise FacemetricsError(f"--ci is a confidence level in (0, 1), e.g. 0.95, or 0 for no interval; got {level}",
                               "--ci")
    if draws is not None and draws < 2:
        raise FacemetricsError(f"--ci-draws must be at least 2, got {draws}", "--ci-draws")


def ci_settings(options: Any) -> CISettings:
    """The interval settings of a run's options (``ci``, ``ci_draws``, ``seed``; defaults when absent)."""
    level = float(getattr(options, "ci", DEFAULT_LEVEL) or 0.0)
    draws = getattr(options, "ci_draws", None)
    check_level(level, draws)
    return CISettings(level, draws, int(getattr(options, "seed", 0)))


# --------------------------------------------------------------------------- subsampling

#: fewest items per side a subsampling interval is computed from (fewer: no interval, with a warning)
MIN_SUBSAMPLE_ITEMS = 4


def subsample_sizes(n: dict[str, int], fraction: float = SUBSAMPLE_FRACTION) -> dict[str, int]:
    """m_s = ⌊fraction · n_s⌋ per side (at least 2, at most n_s − 1)."""
    return {side: min(ns - 1, max(2, int(np.floor(fraction * ns)))) for side, ns in n.items()}


def _too_few(what: str, n: dict[str, int], least: int) -> bool:
    small = {s: k for s, k in n.items() if k < least}
    if small:
        warnings.warn(f"{what}: no interval, {', '.join(f'{s} has {k}' for s, k in small.items())} item(s) "
                      f"(at least {least} needed)", stacklevel=3)
    return bool(small)


def basic_interval(theta_hat: float, values: np.ndarray, level: float, scale: float,
                   centre: float | None = None) -> tuple[float, float]:
    """[θ̂ − c·q_{1−α/2}, θ̂ − c·q_{α/2}] of the deviations δ = values − centre (``numpy.quantile``, weibull);
    ``centre`` defaults to θ̂ (the textbook basic interval); :func:`subsample_interval` passes the draws' mean."""
    alpha = 1.0 - level
    dev = np.asarray(values, dtype=np.float64) - (theta_hat if centre is None else centre)
    q_lo, q_hi = np.quantile(dev, [alpha / 2, 1 - alpha / 2], method="weibull")
    return float(theta_hat - scale * q_hi), float(theta_hat - scale * q_lo)


def fpc_scale(n: dict[str, int], m: dict[str, int]) -> float:
    """c = √(mean_s m_s/(n_s − m_s)): the spread of a without-replacement draw rescaled to n (module docstring)."""
    return float(np.sqrt(np.mean([m[s] / (n[s] - m[s]) for s in n])))


def subsample_interval(theta_hat: float, statistic: Callable[[dict[str, np.ndarray]], float], n: dict[str, int], *,
                       level: float, draws: int, seed: int, fraction: float = SUBSAMPLE_FRACTION,
                       rescale: str = "fpc", floor: float | None = None, what: str = "metric") -> dict[str, Any] | None:
    """The subsampling interval of θ̂ = ``statistic`` on all the data (module docstring); None (with a
    warning naming ``what``) when a side has fewer than :data:`MIN_SUBSAMPLE_ITEMS` items.

    ``statistic(index)`` gets one sorted index array per side of ``n`` (e.g. ``{"real": ..., "fake": ...}``)
    and returns the metric on those rows. ``rescale``: ``"fpc"`` (√(m/(n−m)), the default) or
    ``"politis-romano"`` (√(m/n), too short at m = n/2; kept for the coverage test). ``floor``: clamp
    the lower end (0 for FID).
    """
    if _too_few(what, n, MIN_SUBSAMPLE_ITEMS):
        return None
    m = subsample_sizes(n, fraction)
    if rescale == "fpc":
        scale = fpc_scale(n, m)
    elif rescale == "politis-romano":
        scale = float(np.sqrt(np.mean([m[s] / n[s] for s in n])))
    else:
        raise ValueError(f"rescale must be 'fpc' or 'politis-romano', got {rescale!r}")
    rng = np.random.default_rng(seed)
    values = np.empty(draws)
    for b in range(draws):
        idx = {s: np.sort(rng.choice(n[s], m[s], replace=False)) for s in n}
        values[b] = statistic(idx)
    lo, hi = basic_interval(theta_hat, values, level, scale, centre=float(values.mean()))
    if floor is not None:
        lo, hi = max(lo, floor), max(hi, floor)
    return {"lo": lo, "hi": hi, "level": level, "method": "subsampling without replacement (basic interval, deviations centred on the draws' mean)",
            "draws": draws, "seed": seed, "fraction": fraction, "subsample": dict(m), "of": dict(n),
            "sides": list(n), "rescale": "sqrt(m/(n-m))" if rescale == "fpc" else "sqrt(m/n)", "scale": scale,
            "draws_mean": float(values.mean()), "draws_std": float(values.std())}


def fold_mean(folds: int) -> Callable[..., np.ndarray]:
    """The statistic 'mean of the per-fold means over ``numpy.array_split`` folds' (R-precision), vectorised."""
    def stat(x: np.ndarray, axis: int = -1) -> np.ndarray:
        x = np.moveaxis(np.asarray(x, dtype=np.float64), axis, -1)
        return np.mean([p.mean(axis=-1) for p in np.array_split(x, folds, axis=-1)], axis=0)

    return stat


def bootstrap_interval(values: Sequence[float] | np.ndarray, cfg: CISettings,
                       statistic: Callable[..., np.ndarray] | None = None,
                       statistic_name: str = "mean", what: str = "metric") -> dict[str, Any] | None:
    """Percentile bootstrap interval of ``statistic`` (default: the mean) of per-sample ``values``
    (None, with a warning, for fewer than 2 values)."""
    from scipy.stats import bootstrap

    v = np.asarray(values, dtype=np.float64).ravel()
    if _too_few(what, {"the sample": len(v)}, 2):
        return None
    stat = statistic or (lambda x, axis=-1: np.mean(x, axis=axis))
    draws = cfg.bootstrap_draws
    batch = max(1, min(draws, (1 << 23) // len(v)))  # at most ~64 MB of resampled values at a time
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # constant data (e.g. no hit at all): the interval is the point, no warning
        res = bootstrap((v,), stat, n_resamples=draws, confidence_level=cfg.level, method="percentile",
                        vectorized=True, batch=batch, rng=np.random.default_rng(cfg.seed))
    lo, hi = float(res.confidence_interval.low), float(res.confidence_interval.high)
    if not (np.isfinite(lo) and np.isfinite(hi)):  # degenerate (all values equal): the interval is the point
        lo = hi = float(stat(v))
    return {"lo": lo, "hi": hi, "level": cfg.level, "method": "percentile bootstrap (scipy.stats.bootstrap)",
            "draws": draws, "seed": cfg.seed, "resampled": f"{len(v)} per-sample values with replacement",
            "statistic": statistic_name}


def attach(result: Any, ci: dict[str, Any] | None) -> Any:
    """``result.ci = ci``; returns the result."""
    result.ci = ci
    return result


# --------------------------------------------------------------------------- paired comparison of two runs

def sign_flip_p(d: np.ndarray, statistic: Callable[..., np.ndarray], draws: int, seed: int) -> float:
    """Two-sided p-value of 'no difference' for paired differences ``d`` by random sign flips.

    Under H₀ (A and B exchangeable within each pair) every dᵢ is as likely as −dᵢ; with
    ``draws`` seeded flips s ∈ {−1, 1}ⁿ, p = (1 + #{|T(s·d)| ≥ |T(d)|}) / (draws + 1), T the statistic
    (a Monte-Carlo permutation test: exact in level for any n).
    """
    d = np.asarray(d, dtype=np.float64)
    obs = abs(float(statistic(d)))
    rng = np.random.default_rng(seed)
    count, done = 0, 0
    chunk = max(1, (1 << 22) // max(len(d), 1))
    while done < draws:
        k = min(chunk, draws - done)
        signs = rng.choice(np.array([-1.0, 1.0]), size=(k, len(d)))
        count += int((np.abs(statistic(signs * d, axis=-1)) >= obs * (1 - 1e-12)).sum())
        done += k
    return (1 + count) / (draws + 1)


def paired_bootstrap(a: np.ndarray, b: np.ndarray, cfg: CISettings,
                     statistic: Callable[..., np.ndarray] | None = None, statistic_name: str = "mean",
                     what: str = "metric") -> dict[str, Any]:
    """B − A of a per-sample metric over the same pairs: the statistic of dᵢ = bᵢ − aᵢ, its percentile
    bootstrap interval (pairs resampled together) and the sign-flip p-value (:func:`sign_flip_p`)."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired values must have one shape, got {a.shape} and {b.shape}")
    stat = statistic or (lambda x, axis=-1: np.mean(x, axis=axis))
    d = b - a
    ci = bootstrap_interval(d, cfg, stat, statistic_name, what)
    p = sign_flip_p(d, stat, cfg.bootstrap_draws, cfg.seed)
    return {"diff": float(stat(d)), "ci": ci, "p_value": p,
            "test": f"paired sign-flip permutation test of the {statistic_name} of B - A "
                    f"({cfg.bootstrap_draws} seeded flips, two-sided)", "n": int(len(d))}


def paired_subsample(theta_a: float, theta_b: float, stat_a: Callable[[np.ndarray, np.ndarray], float],
                     stat_b: Callable[[np.ndarray, np.ndarray], float], n_real: int, n_fake_a: int, n_fake_b: int,
                     cfg: CISettings, fraction: float = SUBSAMPLE_FRACTION) -> dict[str, Any]:
    """B − A of a two-sample metric (FID, KID) by joint subsampling with one REAL shared by both runs.

    Each of ``draws`` draws takes one REAL subsample R (used by both runs) and one FAKE index draw F
    (used by both when the FAKE sets have one size, as for two generators on one manifest; separate
    draws otherwise), each of ⌊f·n⌋ without replacement, and computes Δ*_b = θ_B(R, F_B) − θ_A(R, F_A).
    With Δ̂ = θ_B − θ_A and c = √(m/(n − m)) (as in :func:`subsample_interval`), the interval is
    [Δ̂ − c·q_{1−α/2}, Δ̂ − c·q_{α/2}] of δ = Δ* − mean Δ* (centred as in :func:`subsample_interval`:
    the difference at this n), and the two-sided p-value of Δ = 0 is the
    subsampling test's p = (1 + #{|c·δ_b| ≥ |Δ̂|}) / (draws + 1): how often the rescaled sampling
    spread of Δ̂ reaches the observed difference (Politis & Romano 1994). The smallest p possible
    is 1/(draws + 1): use more draws (``--draws``) for small p-values.
    """
    n = {"real": n_real, "fake_a": n_fake_a, "fake_b": n_fake_b}
    if _too_few("the paired comparison", n, MIN_SUBSAMPLE_ITEMS):
        raise FacemetricsError("a subsampling comparison needs at least 4 images per side", "RUN_A")
    m = subsample_sizes(n, fraction)
    scale = fpc_scale(n, m)
    shared = n_fake_a == n_fake_b
    rng = np.random.default_rng(cfg.seed)
    draws = cfg.subsample_draws
    deltas = np.empty(draws)
    for b in range(draws):
        r = np.sort(rng.choice(n_real, m["real"], replace=False))
        fa = np.sort(rng.choice(n_fake_a, m["fake_a"], replace=False))
        fb = fa if shared else np.sort(rng.choice(n_fake_b, m["fake_b"], replace=False))
        deltas[b] = stat_b(r, fb) - stat_a(r, fa)
    diff = float(theta_b - theta_a)
    centre = float(deltas.mean())  # as in subsample_interval: the difference at this n, not its bias-shifted form
    lo, hi = basic_interval(diff, deltas, cfg.level, scale, centre=centre)
    p = (1 + int((np.abs(scale * (deltas - centre)) >= abs(diff)).sum())) / (draws + 1)
    ci = {"lo": lo, "hi": hi, "level": cfg.level,
          "method": "joint subsampling without replacement (basic interval, deviations centred on the draws' mean)",
          "draws": draws, "seed": cfg.seed, "fraction": fraction, "subsample": dict(m), "of": dict(n),
          "rescale": "sqrt(m/(n-m))", "scale": scale, "real": "one REAL draw shared by A and B",
          "fake": "one index draw shared by A and B" if shared else "separate draws"}
    return {"diff": diff, "ci": ci, "p_value": p, "n": None,
            "test": f"subsampling test of B - A = 0 ({draws} joint draws, two-sided)"}
