"""FID∞ and IS∞: the metrics extrapolated to infinitely many images (Chong & Forsyth, CVPR 2020).

FID and IS computed from N images are biased, and the bias is, to first order, linear in
1/N: FID_N ≈ FID∞ + s/N. Following Chong & Forsyth, the metric is computed at
``count`` = 15 sample sizes and the line fitted by least squares; the intercept is the
estimate at N = ∞.

Protocol (fixed here):

* fractions fₖ = ``numpy.linspace(0.2, 1, 15)`` of each side; at fraction fₖ every side s
  with per-image rows draws round(fₖ·n_s) rows *without replacement* (one draw per size,
  real before fake, all from one ``numpy.random.default_rng(seed)``; the last size is the
  whole set). N = the number of FAKE images drawn; sizes that round to the same N are kept
  once. Scaling both sides by one fraction keeps their bias terms a/N_real + b/N_fake
  proportional to 1/N, so the intercept removes both. When REAL is a statistics file
  without features its statistics are used whole at every size (the paper's setting: a
  large reference set), so FID∞ then still holds REAL's own O(1/n_real) bias.
* FID at each size: float64 sufficient statistics of the drawn rows and
  :func:`facemetrics.metrics.fid.frechet_distance` (as the intervals in
  :mod:`facemetrics.metrics.uncertainty`).
* IS at each size: one split of the drawn images, IS_N = exp(mean KL(p(y|x) ‖ p̂_N(y)))
  (:func:`facemetrics.metrics.inception_score.inception_score_from_probs` with
  ``splits=1``), which is what the paper extrapolates (not the 10-split IS).
* fit: ordinary least squares of the values on [1, 1/N] (``numpy.linalg.lstsq``); the
  result is the intercept, with the slope s, the fit's residual RMS
  √(mean (vₖ − a − s/Nₖ)²), the sizes and the values in ``details``.

No interval is attached: the 15 values come from nested draws of one sample, so the
regression's own standard error would understate the uncertainty (use the FID interval).
"""
from __future__ import annotations

from typing import Any

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.result import MetricResult

SIZES = 15
MIN_FRACTION = 0.2


def fractions(count: int = SIZES, lo: float = MIN_FRACTION) -> np.ndarray:
    """The ``count`` fractions of each side, evenly spaced from ``lo`` to 1."""
    return np.linspace(lo, 1.0, count)


def fit_inverse_n(sizes: np.ndarray, values: np.ndarray) -> dict[str, float]:
    """Least-squares fit v = a + s/N: ``{"intercept": a, "slope": s, "rms": residual RMS}``."""
    n = np.asarray(sizes, dtype=np.float64)
    v = np.asarray(values, dtype=np.float64)
    design = np.stack([np.ones_like(n), 1.0 / n], axis=1)
    (a, s), *_ = np.linalg.lstsq(design, v, rcond=None)
    rms = float(np.sqrt(np.mean((v - design @ np.array([a, s])) ** 2)))
    return {"intercept": float(a), "slope": float(s), "rms": rms}


def _draw_sizes(n: dict[str, int], count: int, lo: float, seed: int) -> list[dict[str, np.ndarray]]:
    """One index draw per size: every side of ``n`` at fraction fₖ (duplicate FAKE sizes dropped)."""
    rng = np.random.default_rng(seed)
    draws: list[dict[str, np.ndarray]] = []
    seen: set[int] = set()
    for f in fractions(count, lo):
        m = {s: max(2, int(round(f * ns))) for s, ns in n.items()}
        idx = {s: np.sort(rng.choice(n[s], m[s], replace=False)) for s in n}
        if m["fake"] not in seen:
            seen.add(m["fake"])
            draws.append(idx)
    if len(draws) < 3:
        raise FacemetricsError(f"an extrapolation to N = ∞ needs at least 3 distinct sample sizes; {n['fake']} FAKE "
                               "images give fewer (score more images)", "--metrics")
    return draws


def _result(name: str, higher: bool, sizes: list[int], values: list[float], seed: int, count: int, lo: float,
            extra: dict[str, Any]) -> MetricResult:
    fit = fit_inverse_n(np.array(sizes), np.array(values))
    return MetricResult(name, fit["intercept"], higher_is_better=higher, n=len(sizes), details={
        "sizes": sizes, "values": values, "slope": fit["slope"], "rms": fit["rms"], "seed": seed,
        "fit": "least squares of value on [1, 1/N] (Chong & Forsyth 2020); value = intercept",
        "fractions": f"numpy.linspace({lo}, 1, {count}) of each side, drawn without replacement", **extra})


def fid_infinity(fake: np.ndarray, *, real: np.ndarray | None = None, real_stats: Any = None, seed: int = 0,
                 count: int = SIZES, lo: float = MIN_FRACTION) -> MetricResult:
    """FID∞ of FAKE's rows against REAL's rows (drawn too) or REAL's fixed statistics (module docstring)."""
    from facemetrics.metrics.fid import frechet_distance, gaussian_of_rows

    fake = np.asarray(fake)
    n = {"fake": len(fake)} if real is None else {"real": len(real), "fake": len(fake)}
    if real is None:
        mu_r, cov_r = np.asarray(real_stats.mean, dtype=np.float64), np.asarray(real_stats.cov, dtype=np.float64)
    sizes, real_sizes, values = [], [], []
    for idx in _draw_sizes(n, count, lo, seed):
        if real is None:
            r = (mu_r, cov_r)
        else:
            r = gaussian_of_rows(np.asarray(real)[idx["real"]])
            real_sizes.append(int(len(idx["real"])))
        values.append(frechet_distance(*r, *gaussian_of_rows(fake[idx["fake"]])))
        sizes.append(int(len(idx["fake"])))
    extra = {"real_sizes": real_sizes if real is not None else None,
             "real_drawn": real is not None}
    if real is None:
        extra["note"] = "REAL is a statistics file without features: its statistics are used whole at every size"
    return _result("fid_inf", False, sizes, values, seed, count, lo, extra)


def is_infinity(logits: np.ndarray, *, seed: int = 0, count: int = SIZES, lo: float = MIN_FRACTION) -> MetricResult:
    """IS∞ of FAKE's logits: one-split IS at each size, extrapolated (module docstring)."""
    from facemetrics.metrics.inception_score import inception_score_from_probs, softmax

    p = softmax(logits)
    sizes, values = [], []
    for idx in _draw_sizes({"fake": len(p)}, count, lo, seed):
        values.append(inception_score_from_probs(p[idx["fake"]], splits=1, seed=seed).value)
        sizes.append(int(len(idx["fake"])))
    return _result("is_inf", True, sizes, values, seed, count, lo, {"splits_per_size": 1})


# --------------------------------------------------------------------------- registry specs

def _fid_inf(inputs) -> dict[str, MetricResult]:
    from facemetrics.metrics.fid import inception_protocol

    res = fid_infinity(inputs.row("fake"), real=inputs.row("real"), real_stats=inputs.stat("real"),
                       seed=inputs.options.seed)
    res.details.update(inception_protocol(inputs))
    return {"fid_inf": res}


def _is_inf(inputs) -> dict[str, MetricResult]:
    from facemetrics.metrics.fid import inception_protocol

    res = is_infinity(inputs.row("fake", output="logits"), seed=inputs.options.seed)
    res.details["logits"] = inputs.extractors["inception"].fingerprint().get("logits")
    res.details.update(inception_protocol(inputs))
    return {"is_inf": res}


def _register() -> None:
    from facemetrics.metrics.inception_score import check_head
    from facemetrics.metrics.registry import MetricSpec, Need, register

    keys = ("preset", "extractor", "sizes", "values", "slope", "rms", "seed", "fit")
    register(MetricSpec(
        name="fid_inf", higher_is_better=False, compute=_fid_inf,
        needs=(Need("inception", "pool", "stats", ("real",)), Need("inception", "pool", "rows", ("fake",)),
               Need("inception", "pool", "rows", ("real",), optional=True)),
        summary="FID extrapolated to N = ∞ from 15 sample sizes (Chong & Forsyth 2020)", protocol=keys))
    register(MetricSpec(
        name="is_inf", higher_is_better=True, compute=_is_inf, check=check_head,
        needs=(Need("inception", "logits", "rows", ("fake",)),),
        summary="IS (one split) extrapolated to N = ∞ from 15 sample sizes (Chong & Forsyth 2020)",
        protocol=(*keys, "logits")))


_register()
