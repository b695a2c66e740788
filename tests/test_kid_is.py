"""KID and IS against closed forms and brute force (issue 2, item 6)."""
from __future__ import annotations

import numpy as np
import pytest

from facemetrics.errors import FacemetricsError
from facemetrics.metrics.inception_score import inception_score, inception_score_from_probs
from facemetrics.metrics.kid import kid, mmd2_unbiased


def _mmd2_bruteforce(x, y):
    d = x.shape[1]
    k = lambda a, b: (a @ b / d + 1) ** 3  # noqa: E731
    m = len(x)
    xx = sum(k(x[i], x[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    yy = sum(k(y[i], y[j]) for i in range(m) for j in range(m) if i != j) / (m * (m - 1))
    xy = sum(k(x[i], y[j]) for i in range(m) for j in range(m)) / (m * m)
    return xx + yy - 2 * xy


def test_mmd_matches_bruteforce():
    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(9, 5)), rng.normal(size=(9, 5)) + 0.3
    assert mmd2_unbiased(x, y) == pytest.approx(_mmd2_bruteforce(x, y), rel=1e-10)


def test_kid_of_a_set_with_itself_is_near_zero():
    """Against itself KID is ~0 on the scale of a real difference.

    (Subsets drawn from one finite set overlap, so the estimate is slightly
    negative, not exactly 0; independent samples are tested for unbiasedness below.)
    """
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2000, 32))
    r = kid(x, x, subsets=20, subset_size=100, seed=0)
    shifted = kid(x, x + 0.5, subsets=20, subset_size=100, seed=0)
    assert abs(r.value) < 0.05 * shifted.value
    assert r.details["seed"] == 0 and r.n == 20


def test_kid_is_unbiased_on_gaussians():
    """Mean of the m=8 estimator over many subsets ≈ population MMD² (a large-sample estimate)."""
    rng = np.random.default_rng(2)
    d = 4
    big_x = rng.normal(size=(6000, d))
    big_y = rng.normal(size=(6000, d)) * 1.3 + 0.4
    truth = mmd2_unbiased(big_x[:3000], big_y[:3000])
    r = kid(big_x, big_y, subsets=4000, subset_size=8, seed=3)
    se = r.std / np.sqrt(4000)
    assert abs(r.value - truth) < 4 * se + 0.02 * abs(truth)
    # the biased (V-statistic) estimator at m=8 is visibly off: the test can tell them apart
    def biased(x, y):
        k = lambda a, b: (a @ b.T / d + 1) ** 3  # noqa: E731
        return k(x, x).mean() + k(y, y).mean() - 2 * k(x, y).mean()
    sub = np.random.default_rng(4)
    vb = np.mean([biased(big_y[sub.choice(6000, 8, replace=False)], big_x[sub.choice(6000, 8, replace=False)])
                  for _ in range(4000)])
    assert abs(vb - truth) > 10 * se


def test_kid_seeded_and_recorded():
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=(300, 8)), rng.normal(size=(300, 8)) + 0.1
    a, b, c = kid(x, y, subset_size=50, seed=7), kid(x, y, subset_size=50, seed=7), kid(x, y, subset_size=50, seed=8)
    assert a.value == b.value and a.value != c.value
    with pytest.raises(FacemetricsError):
        kid(x[:1], y)


@pytest.mark.parametrize("k", [2, 10, 1008])
def test_is_of_uniform_one_hot_is_k(k):
    probs = np.eye(k)[np.arange(k * 10) % k]
    r = inception_score_from_probs(probs, splits=10, seed=0)
    # each split of a seeded shuffle holds a multiset of classes; with one-hot rows
    # IS of a split = exp(H(class histogram)); exactly k when every split is balanced
    assert r.value <= k + 1e-9
    balanced = inception_score_from_probs(probs[np.argsort(np.arange(k * 10) // k, kind="stable")], splits=1)
    assert balanced.value == pytest.approx(k)


def test_is_matches_direct_formula():
    rng = np.random.default_rng(6)
    logits = rng.normal(size=(200, 20)) * 3
    r = inception_score(logits, splits=4, seed=11)
    p = np.exp(logits - logits.max(1, keepdims=True)); p /= p.sum(1, keepdims=True)
    p = p[np.random.default_rng(11).permutation(200)]
    scores = []
    for part in np.array_split(p, 4):
        from scipy.stats import entropy
        py = part.mean(0)
        scores.append(np.exp(np.mean([entropy(row, py) for row in part])))
    assert r.value == pytest.approx(np.mean(scores), rel=1e-10)
    assert r.std == pytest.approx(np.std(scores), rel=1e-10)
    # identical predictions carry no information: IS = 1
    assert inception_score_from_probs(np.tile(p[:1], (50, 1)), splits=5).value == pytest.approx(1.0)


def _kid_independent(real, fake, subsets, m, seed):
    """Per-subset unbiased MMD² with the same seeded draws, written out with explicit kernels."""
    rng = np.random.default_rng(seed)
    d = real.shape[1]
    vals = []
    for _ in range(subsets):
        x = fake[rng.choice(len(fake), m, replace=False)].astype(np.float64)
        y = real[rng.choice(len(real), m, replace=False)].astype(np.float64)
        kern = lambda a, b: (np.einsum("ik,jk->ij", a, b) / d + 1.0) ** 3  # noqa: E731
        off = ~np.eye(m, dtype=bool)
        vals.append(kern(x, x)[off].mean() + kern(y, y)[off].mean() - 2 * kern(x, y).mean())
    return np.array(vals)


def test_kid_std_is_population_and_default_subset_size_is_min_1000_n1_n2():
    """KID's spread is the population std (ddof=0) over subsets; m defaults to min(1000, n1, n2)."""
    rng = np.random.default_rng(12)
    real, fake = rng.normal(size=(40, 6)), rng.normal(size=(55, 6)) + 0.2
    r = kid(real, fake, subsets=7, seed=3)  # subset_size left at its default
    vals = _kid_independent(real, fake, 7, 40, 3)  # m = n1 = 40
    assert r.details["subset_size"] == 40 and r.n == 7
    assert r.value == pytest.approx(vals.mean(), rel=1e-10)
    assert r.std == pytest.approx(vals.std(ddof=0), rel=1e-10)
    assert abs(r.std - vals.std(ddof=1)) > 1e-3 * vals.std(ddof=1)  # ddof=1 would be told apart
    r2 = kid(fake, real[:30], subsets=3, seed=9)  # now the fake side (second argument) is the smaller
    assert r2.details["subset_size"] == 30
    assert r2.value == pytest.approx(_kid_independent(fake, real[:30], 3, 30, 9).mean(), rel=1e-10)
    # the cap: both sides above 1000 -> m = 1000 (one side at 1001, the other at 1200)
    big_r, big_f = rng.normal(size=(1200, 3)), rng.normal(size=(1001, 3)) + 0.1
    rb = kid(big_r, big_f, subsets=2, seed=4)
    assert rb.details["subset_size"] == 1000
    assert rb.value == pytest.approx(_kid_independent(big_r, big_f, 2, 1000, 4).mean(), rel=1e-10)
    # the default of score()/CLI is the same 1000
    from facemetrics.options import ScoreOptions

    assert ScoreOptions().kid_subset_size == 1000  # the options object score() and the CLI share
