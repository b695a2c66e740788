"""Improved precision and recall (Kynkäänniemi et al. 2019) and density and coverage (Naeem et al. 2020).

With real features X = {x_i} (N of them) and fake features Y = {y_j} (M), and
r_k(x_i) the Euclidean distance from x_i to its k-th nearest neighbour *within its
own set*, the sample itself excluded (so ``np.partition`` of the row's distances at
k, self at distance 0 being the 0-th), and B(x, r) the closed ball ‖z − x‖ ≤ r:

* **precision** = (1/M) Σ_j 1[∃ i: y_j ∈ B(x_i, r_k(x_i))]: how much of the fake set
  lies in the real manifold (k = 3, ``--pr-k``);
* **recall** = (1/N) Σ_i 1[∃ j: x_i ∈ B(y_j, r_k(y_j))]: how much of the real set lies
  in the fake manifold (fake radii, k = 3);
* **density** = (1/(kM)) Σ_j Σ_i 1[y_j ∈ B(x_i, r_k(x_i))]: how many real balls hold
  each fake sample, on average, over k (k = 5, ``--dc-k``; 1 when fake ≈ real, may
  exceed 1);
* **coverage** = (1/N) Σ_i 1[∃ j: y_j ∈ B(x_i, r_k(x_i))]: the fraction of real balls
  holding some fake sample (real radii, k = 5).

Closed balls (≤) as the authors' code (NVlabs' and torch-fidelity's ``<=``); the ``prdc``
package uses < (they differ only on exact ties: duplicated images). Distances are exact
Euclidean in float64, ‖a‖² + ‖b‖² − 2aᵀb clamped at 0, computed in row blocks of
:data:`BLOCK_BYTES`: memory is O(block × max(N, M)) plus the features, never N × M, so 50k ×
50k features of 2048-d run in a few GB (features 0.8 GB each in float64, one block 256 MB).

The metrics are registered on the Inception pool features (``precision``, ``recall``,
``density``, ``coverage``) and on the face embedder's embeddings (``precision_face``, ...,
``--face-model``); each records its features, k, N and M. Their interval
(:mod:`facemetrics.metrics.uncertainty`) is a percentile bootstrap over the per-sample
indicators (fake samples for precision and density, real samples for recall and coverage),
the other set's balls held fixed.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.result import MetricResult

#: bytes of one block of float64 distances (rows × columns × 8)
BLOCK_BYTES = 1 << 28
#: default k of precision/recall (Kynkäänniemi et al.) and of density/coverage (Naeem et al.)
PR_K, DC_K = 3, 5


def _block_rows(n_cols: int, block_bytes: int) -> int:
    return max(1, block_bytes // (8 * max(1, n_cols)))


def _sq_norms(x: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", x, x)


def _distances(a: np.ndarray, b: np.ndarray, a2: np.ndarray, b2: np.ndarray) -> np.ndarray:
    """Euclidean distances of rows ``a`` to rows ``b`` (float64; squared norms given)."""
    d2 = a2[:, None] + b2[None, :] - 2.0 * (a @ b.T)
    return np.sqrt(np.maximum(d2, 0.0, out=d2), out=d2)


def knn_radii(x: np.ndarray, ks: tuple[int, ...], *, block_bytes: int = BLOCK_BYTES) -> dict[int, np.ndarray]:
    """r_k(x_i) for each k of ``ks``: the distance to the k-th nearest other row (one blocked pass)."""
    x = np.asarray(x, dtype=np.float64)
    n = len(x)
    if max(ks) >= n:
        raise FacemetricsError(f"k = {max(ks)} nearest neighbours need more than {max(ks)} samples, got {n}")
    x2 = _sq_norms(x)
    out = {k: np.empty(n) for k in ks}
    step = _block_rows(n, block_bytes)
    for s in range(0, n, step):
        d = _distances(x[s:s + step], x, x2[s:s + step], x2)
        part = np.partition(d, sorted(set(ks)), axis=1)  # column 0 is the row itself (distance 0)
        for k in ks:
            out[k][s:s + step] = part[:, k]
    return out


@dataclass
class PRDCCounts:
    """Per-sample indicators of one real/fake pair of feature sets (see module docstring)."""

    precision: np.ndarray  # (M,) fake sample in some real ball (k_pr)
    recall: np.ndarray  # (N,) real sample in some fake ball (k_pr)
    density: np.ndarray  # (M,) number of real balls (k_dc) holding the fake sample, / k_dc
    coverage: np.ndarray  # (N,) real ball (k_dc) holding some fake sample
    k_pr: int
    k_dc: int


def prdc_counts(real: np.ndarray, fake: np.ndarray, *, k_pr: int = PR_K, k_dc: int = DC_K,
                block_bytes: int = BLOCK_BYTES) -> PRDCCounts:
    """The four per-sample indicators in one blocked pass over fake rows × all real rows."""
    x, y = np.asarray(real, dtype=np.float64), np.asarray(fake, dtype=np.float64)
    if x.ndim != 2 or y.ndim != 2 or x.shape[1] != y.shape[1]:
        raise FacemetricsError(f"real and fake features must be 2-d of one width, got {x.shape} and {y.shape}")
    for k, flag, sets in ((k_pr, "--pr-k", (("real", x), ("fake", y))), (k_dc, "--dc-k", (("real", x),))):
        if k < 1:
            raise FacemetricsError(f"{flag} must be at least 1, got {k}", flag)
        for side, rows in sets:
            if k >= len(rows):
                raise FacemetricsError(f"{flag} {k}: k nearest neighbours need more than {k} samples per set, "
                                       f"{side} has {len(rows)}", flag)
    rx = knn_radii(x, (k_pr, k_dc), block_bytes=block_bytes)
    ry = knn_radii(y, (k_pr,), block_bytes=block_bytes)[k_pr]
    x2, y2 = _sq_norms(x), _sq_norms(y)
    prec, dens = np.zeros(len(y), bool), np.zeros(len(y))
    rec, cov = np.zeros(len(x), bool), np.zeros(len(x), bool)
    step = _block_rows(len(x), block_bytes)
    for s in range(0, len(y), step):
        d = _distances(y[s:s + step], x, y2[s:s + step], x2)  # (fake block, N)
        prec[s:s + step] = (d <= rx[k_pr][None, :]).any(axis=1)
        inside = d <= rx[k_dc][None, :]
        dens[s:s + step] = inside.sum(axis=1) / k_dc
        cov |= inside.any(axis=0)
        rec |= (d <= ry[s:s + step, None]).any(axis=0)
    return PRDCCounts(prec.astype(np.float64), rec.astype(np.float64), dens, cov.astype(np.float64), k_pr, k_dc)


def prdc(real: np.ndarray, fake: np.ndarray, *, k_pr: int = PR_K, k_dc: int = DC_K,
         block_bytes: int = BLOCK_BYTES) -> dict[str, float]:
    """precision, recall, density, coverage of ``fake`` against ``real`` (module docstring)."""
    c = prdc_counts(real, fake, k_pr=k_pr, k_dc=k_dc, block_bytes=block_bytes)
    return {m: float(getattr(c, m).mean()) for m in ("precision", "recall", "density", "coverage")}


# --------------------------------------------------------------------------- registry specs

#: metric -> (which set its per-sample values range over, which k, summary)
_DEFS = {
    "precision": ("fake", "pr", "fraction of fake samples inside the real manifold (k-NN balls)"),
    "recall": ("real", "pr", "fraction of real samples inside the fake manifold (k-NN balls)"),
    "density": ("fake", "dc", "real k-NN balls holding each fake sample, / k (Naeem et al.)"),
    "coverage": ("real", "dc", "fraction of real k-NN balls holding a fake sample (Naeem et al.)"),
}
#: feature space suffix -> (extractor role, output)
_SPACES = {"": ("inception", "pool"), "_face": ("face", "embedding")}


def _counts(inputs, role: str, output: str) -> PRDCCounts:
    """The pass for one feature space, shared by its four metrics (memoised on the inputs)."""
    o = inputs.options
    k_pr, k_dc = getattr(o, "pr_k", PR_K), getattr(o, "dc_k", DC_K)
    key = ("prdc", role, output, k_pr, k_dc)
    if key not in inputs.memo:
        real, fake = inputs.row("real", role, output), inputs.row("fake", role, output)
        inputs.memo[key] = prdc_counts(real, fake, k_pr=k_pr, k_dc=k_dc)
    return inputs.memo[key]


def _make_compute(metric: str, suffix: str):
    over, which, _ = _DEFS[metric]
    role, output = _SPACES[suffix]
    name = metric + suffix

    def compute(inputs) -> dict[str, MetricResult]:
        from facemetrics.metrics.uncertainty import bootstrap_interval, ci_settings

        c = _counts(inputs, role, output)
        values = getattr(c, metric)
        k = c.k_pr if which == "pr" else c.k_dc
        fp = inputs.extractors[role].fingerprint()
        real, fake = inputs.row("real", role, output), inputs.row("fake", role, output)
        res = MetricResult(name, float(values.mean()), higher_is_better=True, n=len(values), details={
            "k": k, "features": f"{role} {output}", "extractor": fp.get("extractor"),
            "weights_sha256": fp.get("weights_sha256"),
            "dims": int(real.shape[1]), "n_real": len(real), "n_fake": len(fake), "distance": "euclidean",
            "ball": "closed (<=)", "radii": "fake" if metric == "recall" else "real",
            "definition": "Kynkäänniemi et al. 2019" if which == "pr" else "Naeem et al. 2020"})
        res.samples = values
        cfg = ci_settings(inputs.options)
        if cfg.enabled:
            res.ci = bootstrap_interval(values, cfg, what=name)
            if res.ci is not None:
                res.ci["resampled"] = f"the {len(values)} {over} samples' indicators, the other set's balls fixed"
        return {name: res}

    compute.__module__ = __name__
    return compute


def _register() -> None:
    from facemetrics.metrics.registry import MetricSpec, Need, register

    for suffix, (role, output) in _SPACES.items():
        for metric, (_, _, summary) in _DEFS.items():
            register(MetricSpec(
                name=metric + suffix, higher_is_better=True, needs=(Need(role, output, "rows"),),
                compute=_make_compute(metric, suffix),
                summary=summary + (" of the face embeddings" if suffix else " of the Inception pool features"),
                protocol=("k", "features", "dims", "n_real", "n_fake", "distance")))


_register()
