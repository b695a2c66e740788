"""R-precision (AttnGAN / DM-GAN protocol, fixed as in DESIGN.md §3).

For each generated image *i* with true caption *t(i)* (an index into a caption
pool), draw ``n_negatives`` (99) captions uniformly **without replacement** from
the pool entries that describe a different real image *and* (when identities
are known) a different identity than *t(i)*; the positive itself is therefore
never drawn. Score the true caption and the negatives by the cosine of the image
embedding and each caption embedding. The image is a **hit** when its true
caption's cosine is strictly greater than every negative's: ties count against
the image (a tie is a miss), so a constant matcher scores 0, not 1.

The hits are shuffled with the seed and split into ``folds`` (10) folds of
near-equal size (``numpy.array_split``); the value is the mean of the per-fold
hit rates and ``std`` their population standard deviation (ddof=0).

Unlike DM-GAN's copy, every image is used (not 2,999 of each 3,000) and the
positive is never redrawn as a negative. With fewer than ``n_negatives``
eligible captions for some image the function refuses (it never silently uses
fewer); pass a smaller ``n_negatives`` explicitly to evaluate a small pool.
"""
from __future__ import annotations

from collections import defaultdict
from typing import Hashable, Sequence

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.result import MetricResult


def _normalise(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, dtype=np.float64)
    norm = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(norm > 0, norm, 1.0)


def excluded_captions(
    true_caption_index: int,
    image_ids: Sequence[Hashable],
    identities: Sequence[Hashable | None],
    _groups: tuple[dict, dict] | None = None,
) -> np.ndarray:
    """Sorted pool indices that may not serve as negatives for caption ``true_caption_index``.

    These are the captions of the same real image and, when the positive's
    identity is known (not None), every caption of the same identity.
    """
    by_image, by_identity = _groups if _groups is not None else _group(image_ids, identities)
    t = int(true_caption_index)
    out = set(by_image[image_ids[t]])
    ident = identities[t]
    if ident is not None:
        out.update(by_identity[ident])
    return np.array(sorted(out), dtype=np.int64)


def _group(image_ids: Sequence[Hashable], identities: Sequence[Hashable | None]) -> tuple[dict, dict]:
    by_image: dict = defaultdict(list)
    by_identity: dict = defaultdict(list)
    for j, (img, ident) in enumerate(zip(image_ids, identities)):
        by_image[img].append(j)
        if ident is not None:
            by_identity[ident].append(j)
    return by_image, by_identity


def sample_negatives(
    true_caption_index: Sequence[int],
    image_ids: Sequence[Hashable],
    identities: Sequence[Hashable | None] | None,
    n_negatives: int,
    rng: np.random.Generator,
) -> np.ndarray:
    """``(N, n_negatives)`` pool indices: for each image, negatives drawn uniformly
    without replacement from the eligible captions (see :func:`excluded_captions`).

    Sampling is exact: ``n_negatives`` distinct ranks are drawn from
    ``range(n_eligible)`` and mapped to the rank-th eligible pool index, so the
    cost per image does not grow with the pool size. Raises
    :class:`FacemetricsError` naming the shortfall when some image has fewer
    eligible captions than ``n_negatives``.
    """
    m = len(image_ids)
    if identities is None:
        identities = [None] * m
    if len(identities) != m:
        raise ValueError(f"identities has {len(identities)} entries, the caption pool {m}")
    groups = _group(image_ids, identities)
    t_idx = np.asarray(true_caption_index, dtype=np.int64)
    out = np.empty((len(t_idx), n_negatives), dtype=np.int64)
    cache: dict[int, np.ndarray] = {}
    worst: tuple[int, int] | None = None
    for i, t in enumerate(t_idx):
        t = int(t)
        if t not in cache:
            excl = excluded_captions(t, image_ids, identities, groups)
            cache[t] = excl - np.arange(len(excl))  # excluded index minus how many exclusions precede it
        shifted = cache[t]
        n_eligible = m - len(shifted)
        if n_eligible < n_negatives:
            if worst is None or n_eligible < worst[1]:
                worst = (i, n_eligible)
            continue
        ranks = rng.choice(n_eligible, size=n_negatives, replace=False)
        # rank r -> r + (number of excluded indices e_k with e_k - k <= r)
        out[i] = ranks + np.searchsorted(shifted, ranks, side="right")
    if worst is not None:
        i, n_el = worst
        raise FacemetricsError(
            f"R-precision needs {n_negatives} negative captions per image but the caption pool "
            f"({m} captions) leaves only {n_el} for image {i} (caption {int(t_idx[i])}) after excluding "
            f"captions of the same image and identity; short by {n_negatives - n_el}. Score more images "
            f"or choose fewer negatives explicitly"
        )
    return out


def r_precision(
    image_emb: np.ndarray,
    caption_emb: np.ndarray,
    true_caption_index: Sequence[int],
    image_ids: Sequence[Hashable],
    identities: Sequence[Hashable | None] | None = None,
    *,
    n_negatives: int = 99,
    folds: int = 10,
    seed: int = 0,
) -> MetricResult:
    """R-precision of generated-image embeddings against a caption pool.

    ``image_emb`` (N, d): one row per generated image. ``caption_emb`` (M, d):
    the caption pool. ``true_caption_index`` (N,): the pool row of each image's
    caption. ``image_ids`` / ``identities`` (M,): the real image and the identity
    (None = unknown) each pool caption describes. See the module docstring for
    the protocol (strict ranking: ties are misses).
    """
    image_emb, caption_emb = np.asarray(image_emb), np.asarray(caption_emb)
    t_idx = np.asarray(true_caption_index, dtype=np.int64)
    _check_inputs(image_emb, caption_emb, t_idx, image_ids, n_negatives, folds)
    n, m = len(image_emb), len(caption_emb)
    rng = np.random.default_rng(seed)
    neg = sample_negatives(t_idx, image_ids, identities, n_negatives, rng)
    hits = _hits(image_emb, caption_emb, t_idx, neg)
    order = rng.permutation(n)
    fold_rates = np.array([hits[f].mean() for f in np.array_split(order, folds)])
    return MetricResult(
        name="rprec",
        value=float(fold_rates.mean()),
        higher_is_better=True,
        std=float(fold_rates.std(ddof=0)),
        n=int(n),
        details={
            "n_negatives": int(n_negatives),
            "folds": int(folds),
            "seed": int(seed),
            "caption_pool": int(m),
            "hits": int(hits.sum()),
            "ties": "count against (hit only when the true caption scores strictly above every negative)",
            "negatives": "without replacement, never the same real image or identity",
            "similarity": "cosine",
            "std_kind": "population std over folds",
            "fold_values": [float(v) for v in fold_rates],
        },
        samples=hits,
    )


def _check_inputs(image_emb: np.ndarray, caption_emb: np.ndarray, t_idx: np.ndarray, image_ids: Sequence[Hashable],
                  n_negatives: int, folds: int) -> None:
    n, m = len(image_emb), len(caption_emb)
    if image_emb.ndim != 2 or caption_emb.ndim != 2 or image_emb.shape[1] != caption_emb.shape[1]:
        raise ValueError(f"embedding shapes {image_emb.shape} and {caption_emb.shape} do not match")
    if t_idx.shape != (n,):
        raise ValueError(f"true_caption_index must have {n} entries, got shape {t_idx.shape}")
    if n and (t_idx.min() < 0 or t_idx.max() >= m):
        raise ValueError("true_caption_index out of range of the caption pool")
    if len(image_ids) != m:
        raise ValueError(f"image_ids has {len(image_ids)} entries, the caption pool {m}")
    if n_negatives < 1:
        raise FacemetricsError(f"n_negatives must be at least 1, got {n_negatives}")
    if folds < 1 or n < folds:
        raise FacemetricsError(f"R-precision over {folds} folds needs at least {folds} images, got {n}")


def _hits(image_emb: np.ndarray, caption_emb: np.ndarray, t_idx: np.ndarray, neg: np.ndarray) -> np.ndarray:
    """Per image: whether its true caption scores strictly above each of its negatives (``neg`` (N, k))."""
    n, n_negatives = len(image_emb), neg.shape[1]
    # unit rows in float32: the gather of N x n_negatives caption rows is memory-bound (30k images x 99
    # negatives x 512-d take ~10 s in float32 on 2 cores, 3x that in float64); float32 rounding (~1e-7)
    # decides a ranking only for captions whose cosines agree to 7 digits
    img = _normalise(image_emb).astype(np.float32)
    cap = _normalise(caption_emb).astype(np.float32)
    hits = np.empty(n, dtype=bool)
    d = img.shape[1]
    chunk = max(1, (1 << 24) // ((n_negatives + 1) * max(d, 1)))  # ~64 MB of gathered caption rows per block
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        # positive and negatives in one product, so identical caption rows get identical scores (a tie)
        rows = np.concatenate([t_idx[a:b, None], neg[a:b]], axis=1)
        scores = np.matmul(cap[rows], img[a:b, :, None])[:, :, 0]
        hits[a:b] = scores[:, 0] > scores[:, 1:].max(axis=1)
    return hits


# --------------------------------------------------------------------------- registry spec

def _compute(inputs) -> dict[str, MetricResult]:
    from facemetrics.metrics.uncertainty import bootstrap_interval, ci_settings, fold_mean

    tp = inputs.paired["matcher"]
    r = r_precision(tp.image_emb, tp.caption_emb, tp.true_index, tp.image_ids, tp.identities,
                    n_negatives=tp.n_negatives, folds=tp.folds, seed=inputs.options.seed)
    r.details.update(tp.details)
    cfg = ci_settings(inputs.options)
    if cfg.enabled:
        r.ci = bootstrap_interval(r.samples, cfg, fold_mean(tp.folds), f"mean of the {tp.folds} fold hit rates",
                                  what="R-precision")
    return {"rprec": r}


def _register() -> None:
    from facemetrics.metrics.registry import MetricSpec, Need, register

    register(MetricSpec(
        name="rprec", higher_is_better=True, needs=(Need("matcher", "embedding", "paired", ("fake",)),),
        compute=_compute, summary="R-precision of each image's caption against 99 negatives",
        protocol=("n_negatives", "folds", "seed", "matcher")))


_register()
