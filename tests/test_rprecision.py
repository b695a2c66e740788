"""R-precision: protocol (negatives), brute-force agreement, perfect/random/tie matchers."""
from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from facemetrics.errors import FacemetricsError
from facemetrics.metrics.rprecision import excluded_captions, r_precision, sample_negatives


def _pool(n_ident=60, per=(1, 2, 3), seed=0):
    """A caption pool: identities with 1–3 real images, each image with 1–2 captions."""
    rng = np.random.default_rng(seed)
    image_ids, identities = [], []
    for k in range(n_ident):
        for im in range(rng.choice(per)):
            for _ in range(rng.integers(1, 3)):
                image_ids.append(f"id{k}/img{im}")
                identities.append(f"id{k}")
    return image_ids, identities


def test_negatives_never_positive_same_image_or_identity_and_distinct():
    image_ids, identities = _pool()
    m = len(image_ids)
    t_idx = np.arange(m)
    neg = sample_negatives(t_idx, image_ids, identities, 99, np.random.default_rng(1))
    assert neg.shape == (m, 99)
    for i, t in enumerate(t_idx):
        row = neg[i]
        assert len(set(row.tolist())) == 99, "drawn with replacement"
        assert t not in row
        for j in row:
            assert image_ids[j] != image_ids[t]
            assert identities[j] != identities[t]
        # the exclusion set is exactly "same image or same identity" (brute force)
        brute = [j for j in range(m) if image_ids[j] == image_ids[t] or identities[j] == identities[t]]
        assert excluded_captions(t, image_ids, identities).tolist() == brute


def test_negatives_uniform_over_eligible():
    """Every eligible caption is drawn, each about equally often (chi-square)."""
    image_ids, identities = _pool(n_ident=70, seed=3)
    t = 5
    eligible = [j for j in range(len(image_ids)) if identities[j] != identities[t]]
    draws = 4000
    neg = sample_negatives(np.full(draws, t), image_ids, identities, 99, np.random.default_rng(7))
    counts = np.bincount(neg.ravel(), minlength=len(image_ids))
    assert set(np.nonzero(counts)[0].tolist()) == set(eligible)
    obs = counts[eligible]
    expected = draws * 99 / len(eligible)
    # each count is Binomial(draws, 99/len(eligible)); a chi-square on the counts
    chi2 = ((obs - expected) ** 2 / (expected * (1 - 99 / len(eligible)))).sum()
    p = stats.chi2.sf(chi2, len(eligible) - 1)
    assert p > 1e-4, (chi2, p)


def test_matches_brute_force_loop():
    rng = np.random.default_rng(0)
    image_ids, identities = _pool(n_ident=80, seed=1)
    m = len(image_ids)
    cap = rng.standard_normal((m, 16))
    n = 137
    t_idx = rng.integers(0, m, n)
    img = cap[t_idx] + 1.3 * rng.standard_normal((n, 16))  # partly informative
    res = r_precision(img, cap, t_idx, image_ids, identities, n_negatives=99, folds=10, seed=11)

    # independent loop: same seeded draws (negatives first, then the fold shuffle)
    g = np.random.default_rng(11)
    neg = sample_negatives(t_idx, image_ids, identities, 99, g)
    order = g.permutation(n)

    def cos(a, b):
        return sum(x * y for x, y in zip(a, b)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))

    hits = []
    for i in range(n):
        pos = cos(img[i], cap[t_idx[i]])
        hits.append(all(pos > cos(img[i], cap[j]) for j in neg[i]))
    fold_rates = [np.mean([hits[k] for k in f]) for f in np.array_split(order, 10)]
    assert res.value == pytest.approx(np.mean(fold_rates), abs=1e-12)
    assert res.std == pytest.approx(np.std(fold_rates), abs=1e-12)
    assert res.details["hits"] == sum(hits)
    assert 0.0 < res.value < 1.0
    assert res.n == n and res.higher_is_better


def test_perfect_embeddings_give_one():
    rng = np.random.default_rng(2)
    m = 300
    cap = rng.standard_normal((m, 64))
    res = r_precision(cap.copy(), cap, np.arange(m), [f"i{j}" for j in range(m)], None, seed=0)
    assert res.value == 1.0 and res.std == 0.0


def test_random_embeddings_give_one_percent_within_binomial_bound():
    rng = np.random.default_rng(3)
    n = 3000
    img = rng.standard_normal((n, 32))
    cap = rng.standard_normal((n, 32))
    res = r_precision(img, cap, np.arange(n), list(range(n)), list(range(n)), seed=0)
    lo, hi = stats.binom.interval(0.999, n, 1 / 100)
    hits = res.details["hits"]
    assert lo <= hits <= hi, (hits, lo, hi)
    assert res.value == pytest.approx(hits / n, abs=1e-12)  # equal folds: mean of fold means = overall mean


def test_ties_count_against():
    m = 150
    same = np.ones((m, 8))
    res = r_precision(same, same, np.arange(m), list(range(m)), None)
    assert res.value == 0.0


def test_same_identity_excluded_even_if_it_would_win():
    """The other photo's caption of the same person scores above the positive: it must never be drawn."""
    rng = np.random.default_rng(4)
    k = 150
    v = rng.standard_normal((k, 32))
    cap = np.concatenate([v + 0.05 * rng.standard_normal((k, 32)), v])  # rows k..2k-1: "other photo", exact match
    image_ids = [f"p{j}/a" for j in range(k)] + [f"p{j}/b" for j in range(k)]
    identities = [f"p{j}" for j in range(k)] * 2
    t_idx = np.arange(k)
    res = r_precision(v, cap, t_idx, image_ids, identities, seed=0)
    assert res.value == 1.0
    # without identities the other photo's caption is eligible and wins whenever drawn
    res2 = r_precision(v, cap, t_idx, image_ids, None, seed=0)
    expected = 1 - 99 / (2 * k - 1)
    assert res2.value < 1.0
    lo, hi = stats.binom.interval(0.999, k, expected)
    assert lo <= res2.details["hits"] <= hi


def test_shortfall_is_an_error_unless_fewer_negatives_are_asked():
    m = 60
    emb = np.eye(m)
    with pytest.raises(FacemetricsError, match=r"needs 99 negative.*only 59.*short by 40"):
        r_precision(emb, emb, np.arange(m), list(range(m)), None)
    res = r_precision(emb, emb, np.arange(m), list(range(m)), None, n_negatives=30, folds=5, seed=9)
    assert res.value == 1.0
    assert res.details["n_negatives"] == 30 and res.details["folds"] == 5 and res.details["seed"] == 9


def test_seeded_and_recorded():
    rng = np.random.default_rng(5)
    m = 400
    cap = rng.standard_normal((m, 8))
    img = cap + 1.5 * rng.standard_normal((m, 8))
    ids = list(range(m))
    a = r_precision(img, cap, ids, ids, None, seed=1)
    b = r_precision(img, cap, ids, ids, None, seed=1)
    c = r_precision(img, cap, ids, ids, None, seed=2)
    assert a.value == b.value and a.details["fold_values"] == b.details["fold_values"]
    assert a.details["fold_values"] != c.details["fold_values"]
    assert a.details["seed"] == 1 and a.details["n_negatives"] == 99 and a.details["folds"] == 10
    assert len(a.details["fold_values"]) == 10


def test_too_few_images_for_folds():
    emb = np.eye(120)[:5]
    with pytest.raises(FacemetricsError, match="10 folds"):
        r_precision(emb, np.eye(120), np.arange(5), list(range(120)), None)
