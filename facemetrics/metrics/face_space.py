"""Distribution metrics in face-embedding space: ``fd_face``, ``kid_face`` and ``vendi_face``.

Computed on the face embedder's ``embedding`` rows (``--face-model``: dlib's 128-d
descriptor; FaceNet's 512-d with ``--face-weights``) of every REAL and FAKE image. They are
*not* FID/KID: the network judges identity, not ImageNet content, and the numbers are on
another scale, hence the names.

* **fd_face**: the Fréchet distance ‖μ₁ − μ₂‖² + tr Σ₁ + tr Σ₂ − 2 tr √(Σ₁Σ₂) of the
  embeddings (unbiased covariances, :func:`facemetrics.metrics.fid.frechet_distance`). With
  n < d images a covariance is rank-deficient and the value biased upwards: warned, and
  ``rank_deficient`` in the details.
* **kid_face**: KID's unbiased MMD² with the cubic kernel k(x, y) = (xᵀy/d + 1)³ at the
  embedding's d (:func:`facemetrics.metrics.kid.kid`: ``--kid-subsets`` seeded subsets of
  min(``--kid-subset-size``, n₁, n₂)).
* **vendi_face** (Friedman & Dieng 2023), identity diversity of FAKE: with the embeddings
  L2-normalised, K = XXᵀ (cosine kernel, K_ii = 1) and λ the eigenvalues of K/n,
  VS = exp(−Σ λ_i log λ_i) (0 log 0 = 0): the effective number of distinct faces, from 1
  (all alike) to n (mutually orthogonal). Computed from the d×d dual XᵀX/n (same non-zero
  eigenvalues). REAL's Vendi score is in the details for reference. Its interval is a
  percentile bootstrap over FAKE's images (resampled with replacement: a duplicated image
  lowers diversity, so the interval is conservative).

Images in which no face was found are embedded from the centred crop (as FSD/FSS do, see
``--face-align``); the details count them.
"""
from __future__ import annotations

import warnings

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.result import MetricResult


def vendi_score(x: np.ndarray) -> float:
    """Vendi score of rows ``x`` under the cosine kernel (module docstring)."""
    x = np.asarray(x, dtype=np.float64)
    if len(x) < 1:
        raise FacemetricsError("the Vendi score needs at least one embedding")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    x = x / np.where(norms > 0, norms, 1.0)
    w = np.linalg.eigvalsh(x.T @ x / len(x)) if x.shape[1] < len(x) else np.linalg.eigvalsh(x @ x.T / len(x))
    w = w[w > 0]
    return float(np.exp(-np.sum(w * np.log(w))))


def _rows(inputs, side: str) -> np.ndarray:
    return np.asarray(inputs.row(side, "face", "embedding"), dtype=np.float64)


def _protocol(inputs, real: np.ndarray | None, fake: np.ndarray) -> dict:
    fp = inputs.extractors["face"].fingerprint()
    det = {"extractor": fp.get("extractor"), "weights_sha256": fp.get("weights_sha256"),
           "features": "face embedding", "dims": int(fake.shape[1]), "n_fake": len(fake)}
    if real is not None:
        det["n_real"] = len(real)
    for side in ("real", "fake"):
        found = inputs.row(side, "face", "detected")
        if found is not None:
            det[f"no_face_{side}"] = int((~np.asarray(found, dtype=bool)).sum())
    return det


def _fd_face(inputs) -> dict[str, MetricResult]:
    from facemetrics.metrics.fid import fid_interval, frechet_distance
    from facemetrics.metrics.uncertainty import ci_settings
    from facemetrics.stats import FeatureStats

    real, fake = _rows(inputs, "real"), _rows(inputs, "fake")
    sr, sf = FeatureStats.from_features(real), FeatureStats.from_features(fake)
    details = {**_protocol(inputs, real, fake), "covariance": "unbiased (n-1)"}
    small = [f"{s} has {st.n}" for s, st in (("real", sr), ("fake", sf)) if st.n < st.dims]
    if small:
        warnings.warn(f"fd_face: {', '.join(small)} images for {sr.dims}-d face embeddings; the covariance is "
                      "rank-deficient and fd_face is biased upwards", stacklevel=2)
        details["rank_deficient"] = True
    res = MetricResult("fd_face", frechet_distance(sr.mean, sr.cov, sf.mean, sf.cov), higher_is_better=False,
                       details=details)
    cfg = ci_settings(inputs.options)
    if cfg.enabled:
        res.ci = fid_interval(fake, res.value, cfg, real=real)
    return {"fd_face": res}


def _kid_face(inputs) -> dict[str, MetricResult]:
    from facemetrics.metrics.kid import kid, kid_interval
    from facemetrics.metrics.uncertainty import ci_settings

    real, fake = _rows(inputs, "real"), _rows(inputs, "fake")
    o = inputs.options
    res = kid(real, fake, subsets=o.kid_subsets, subset_size=o.kid_subset_size, seed=o.seed)
    res.name = "kid_face"
    res.details.update(_protocol(inputs, real, fake))
    cfg = ci_settings(o)
    if cfg.enabled:
        res.ci = kid_interval(real, fake, res.value, cfg, subsets=o.kid_subsets, subset_size=o.kid_subset_size)
    return {"kid_face": res}


def _vendi_face(inputs) -> dict[str, MetricResult]:
    from facemetrics.metrics.uncertainty import bootstrap_interval, ci_settings

    fake = _rows(inputs, "fake")
    real = inputs.row("real", "face", "embedding")
    details = {**_protocol(inputs, None if real is None else np.asarray(real), fake), "kernel": "cosine",
               "definition": "exp(-sum l log l), l = eigenvalues of K/n (Friedman & Dieng 2023)",
               "real_vendi": None if real is None else vendi_score(real)}
    res = MetricResult("vendi_face", vendi_score(fake), higher_is_better=True, n=len(fake), details=details)
    cfg = ci_settings(inputs.options)
    if cfg.enabled:
        res.ci = bootstrap_interval(np.arange(len(fake)), cfg, what="vendi_face",
                                    statistic=lambda idx, axis=-1: _vendi_of_indices(fake, idx, axis),
                                    statistic_name="Vendi score of the resampled images")
    return {"vendi_face": res}


def _vendi_of_indices(x: np.ndarray, idx: np.ndarray, axis: int = -1) -> np.ndarray:
    """Vendi score of the rows ``x[idx]`` for each resample in ``idx`` (scipy.stats.bootstrap's vectorised form)."""
    idx = np.asarray(idx).astype(int)
    if idx.ndim == 1:
        return np.asarray(vendi_score(x[idx]))
    idx = np.moveaxis(idx, axis, -1)
    return np.array([vendi_score(x[row]) for row in idx.reshape(-1, idx.shape[-1])]).reshape(idx.shape[:-1])


def _register() -> None:
    from facemetrics.metrics.registry import MetricSpec, Need, register

    both = (Need("face", "embedding", "rows"), Need("face", "detected", "rows"))
    register(MetricSpec(
        name="fd_face", higher_is_better=False, needs=both, compute=_fd_face,
        summary="Fréchet distance of the face embeddings of REAL and FAKE (not FID)",
        protocol=("extractor", "features", "dims", "n_real", "n_fake")))
    register(MetricSpec(
        name="kid_face", higher_is_better=False, needs=both, compute=_kid_face,
        summary="KID's cubic-kernel MMD² of the face embeddings (not KID)",
        protocol=("extractor", "features", "dims", "subsets", "subset_size", "seed")))
    register(MetricSpec(
        name="vendi_face", higher_is_better=True, compute=_vendi_face,
        needs=(Need("face", "embedding", "rows"), Need("face", "detected", "rows"),
               Need("face", "embedding", "rows", ("real",), optional=True)),
        summary="identity diversity of FAKE: Vendi score of its face embeddings (cosine kernel)",
        protocol=("extractor", "features", "kernel", "n_fake")))


_register()
