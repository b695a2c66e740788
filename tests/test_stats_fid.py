"""Streaming statistics and the Fréchet distance (issue 2, items 4 and 5)."""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import scipy.linalg

from facemetrics.metrics.fid import fid_from_stats, frechet_distance
from facemetrics.stats import FeatureStats


def _rel(a, b):
    return np.max(np.abs(a - b)) / np.max(np.abs(b))


def test_batch_size_and_sharding_do_not_change_statistics():
    x = np.random.default_rng(0).normal(size=(300, 64)).astype(np.float32) * 3 + 1
    one = FeatureStats.from_features(x, chunk=1)
    big = FeatureStats.from_features(x, chunk=64)
    assert one.n == big.n == 300
    assert _rel(one.mean, big.mean) < 1e-6 and _rel(one.cov, big.cov) < 1e-6
    merged = FeatureStats.from_features(x[:123]) + FeatureStats.from_features(x[123:])
    assert _rel(merged.mean, big.mean) < 1e-12 and _rel(merged.cov, big.cov) < 1e-12
    # equals numpy's unbiased covariance
    np.testing.assert_allclose(big.cov, np.cov(x.astype(np.float64), rowvar=False), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(big.mean, x.astype(np.float64).mean(0), rtol=1e-12)


def test_network_batch_size_1_vs_64_on_real_faces(lfw_small):
    from facemetrics.extractors.inception import InceptionExtractor
    from facemetrics.pipeline.features import extract
    from facemetrics.imaging.images import scan

    ex = InceptionExtractor()
    src = scan(lfw_small[0])
    src = src.with_names(src.names[:6])
    f1 = extract(src, [ex], batch_size=1, cache=False, progress=False).outputs["inception"]["pool"]
    f64 = extract(src, [ex], batch_size=64, cache=False, progress=False).outputs["inception"]["pool"]
    s1, s64 = FeatureStats.from_features(f1), FeatureStats.from_features(f64)
    assert _rel(s1.mean, s64.mean) < 1e-5 and _rel(s1.cov, s64.cov) < 1e-5


def _random_spd(d, rng, cond=10.0):
    q, _ = np.linalg.qr(rng.normal(size=(d, d)))
    w = np.linspace(1.0, cond, d)
    return (q * w) @ q.T


def _scipy_fid(mu1, s1, mu2, s2):
    covmean = scipy.linalg.sqrtm(s1 @ s2)
    covmean = np.real(covmean)
    return float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(covmean))


@pytest.mark.parametrize("d", [2, 16, 128])
def test_frechet_matches_scipy_sqrtm(d):
    rng = np.random.default_rng(d)
    mu1, mu2 = rng.normal(size=d), rng.normal(size=d)
    s1, s2 = _random_spd(d, rng), _random_spd(d, rng)
    ours = frechet_distance(mu1, s1, mu2, s2)
    assert ours == pytest.approx(_scipy_fid(mu1, s1, mu2, s2), rel=1e-6)


def test_frechet_closed_forms():
    rng = np.random.default_rng(3)
    s = _random_spd(10, rng)
    mu = rng.normal(size=10)
    assert frechet_distance(mu, s, mu, s) == pytest.approx(0.0, abs=1e-9)
    # 1-D: (m1 − m2)² + (σ1 − σ2)²
    assert frechet_distance(np.array([1.0]), np.array([[4.0]]), np.array([3.0]), np.array([[9.0]])) == \
        pytest.approx(4.0 + 1.0)
    # commuting diagonal covariances: Σ (√a − √b)²
    a, b = np.diag([1.0, 4.0, 9.0]), np.diag([4.0, 1.0, 16.0])
    assert frechet_distance(np.zeros(3), a, np.zeros(3), b) == pytest.approx(1 + 1 + 1)


def test_frechet_finite_on_rank_deficient():
    rng = np.random.default_rng(4)
    x = rng.normal(size=(20, 64))  # n < d: rank 19
    y = rng.normal(size=(20, 64)) + 0.5
    sx, sy = FeatureStats.from_features(x), FeatureStats.from_features(y)
    with pytest.warns(UserWarning, match="rank-deficient"):
        r = fid_from_stats(sx, sy)
    assert np.isfinite(r.value) and r.value > 0
    assert fid_from_stats(sx, sx).value == pytest.approx(0.0, abs=1e-6)
