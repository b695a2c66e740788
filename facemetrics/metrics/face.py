"""FSD and FSS: face distance / similarity between paired generated and real images.

For pairs i = 1..n, with g_i = e(generated image i), r_i = e(real image whose
caption produced it) and e(.) a face embedding (DESIGN.md §3):

* ``fsd``    = mean_i ||g_i - r_i||_2           (lower is better)
* ``fsd_l1`` = mean_i ||g_i - r_i||_1           (lower is better)
* ``fss``    = mean_i <g_i, r_i> / (||g_i|| ||r_i||)  (higher is better)

Each comes with the population standard deviation (ddof = 0) of its per-pair
values and n. Computed in float64.
"""
from __future__ import annotations

import numpy as np

from facemetrics.result import MetricResult


def pair_distances(fake_emb: np.ndarray, real_emb: np.ndarray) -> dict[str, np.ndarray]:
    """Per-pair ``l2``, ``l1`` distances and ``cosine`` similarities (float64, length n)."""
    g = np.asarray(fake_emb, dtype=np.float64)
    r = np.asarray(real_emb, dtype=np.float64)
    if g.ndim != 2 or r.ndim != 2 or g.shape != r.shape:
        raise ValueError(f"embeddings must be two (n, d) arrays of one shape, got {g.shape} and {r.shape}")
    if g.shape[0] == 0:
        raise ValueError("no pairs to compare")
    if not (np.isfinite(g).all() and np.isfinite(r).all()):
        raise ValueError("embeddings contain NaN or infinite values")
    diff = g - r
    ng = np.linalg.norm(g, axis=1)
    nr = np.linalg.norm(r, axis=1)
    if (ng == 0).any() or (nr == 0).any():
        raise ValueError("cosine similarity is undefined for a zero embedding")
    return {
        "l2": np.linalg.norm(diff, axis=1),
        "l1": np.abs(diff).sum(axis=1),
        "cosine": np.einsum("ij,ij->i", g, r) / (ng * nr),
    }


def face_similarity(fake_emb: np.ndarray, real_emb: np.ndarray, details: dict | None = None) -> dict[str, MetricResult]:
    """``{"fsd", "fsd_l1", "fss"}`` for row-aligned embeddings (row i of each is pair i).

    ``details`` (embedder, weights sha256, face counts, ...) is copied into each result.
    """
    d = pair_distances(fake_emb, real_emb)
    n = int(d["l2"].shape[0])
    base = dict(details or {})
    base["std_kind"] = "population (ddof=0) over pairs"

    def res(name: str, values: np.ndarray, higher: bool, definition: str) -> MetricResult:
        return MetricResult(
            name=name,
            value=float(values.mean()),
            higher_is_better=higher,
            std=float(values.std(ddof=0)),
            n=n,
            details={**base, "definition": definition},
            samples=values,
        )

    return {
        "fsd": res("fsd", d["l2"], False, "mean L2 distance of paired face embeddings"),
        "fsd_l1": res("fsd_l1", d["l1"], False, "mean L1 distance of paired face embeddings"),
        "fss": res("fss", d["cosine"], True, "mean cosine similarity of paired face embeddings"),
    }


# --------------------------------------------------------------------------- registry specs

def _with_intervals(inputs, results: dict[str, MetricResult]) -> dict[str, MetricResult]:
    """Each result with the percentile bootstrap interval of its per-pair mean (unless ``--ci 0``)."""
    from facemetrics.metrics.uncertainty import bootstrap_interval, ci_settings

    cfg = ci_settings(inputs.options)
    if cfg.enabled:
        for r in results.values():
            r.ci = bootstrap_interval(r.samples, cfg, what=r.name.upper())
    return results


def _fsd(inputs) -> dict[str, MetricResult]:
    fp = inputs.paired["face"]
    res = face_similarity(fp.fake, fp.real, fp.details)
    return _with_intervals(inputs, {"fsd": res["fsd"], "fsd_l1": res["fsd_l1"]})


def _fss(inputs) -> dict[str, MetricResult]:
    fp = inputs.paired["face"]
    return _with_intervals(inputs, {"fss": face_similarity(fp.fake, fp.real, fp.details)["fss"]})


def _register() -> None:
    from facemetrics.metrics.registry import MetricSpec, Need, register

    need = (Need("face", "embedding", "paired"),)
    keys = ("embedder", "weights_sha256", "face_align", "faces_detected", "pairs_dropped")
    register(MetricSpec(name="fsd", higher_is_better=False, needs=need, compute=_fsd, bundle=("fss",),
                        summary="mean L2 (and L1) distance of paired face embeddings", protocol=keys))
    register(MetricSpec(name="fss", higher_is_better=True, needs=need, compute=_fss, bundle=("fsd",),
                        summary="mean cosine similarity of paired face embeddings", protocol=keys))


_register()
