"""FSD / FSS formulas against scipy.spatial.distance, computed pair by pair."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.spatial import distance

from facemetrics.metrics.face import face_similarity, pair_distances


def _data(n=37, d=128, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)).astype(np.float32), rng.normal(size=(n, d)).astype(np.float32)


def test_against_scipy_pairwise():
    g, r = _data()
    res = face_similarity(g, r)
    l2 = np.array([distance.euclidean(a.astype(np.float64), b.astype(np.float64)) for a, b in zip(g, r)])
    l1 = np.array([distance.cityblock(a.astype(np.float64), b.astype(np.float64)) for a, b in zip(g, r)])
    cs = np.array([1.0 - distance.cosine(a.astype(np.float64), b.astype(np.float64)) for a, b in zip(g, r)])
    for name, ref in (("fsd", l2), ("fsd_l1", l1), ("fss", cs)):
        m = res[name]
        assert m.value == pytest.approx(ref.mean(), rel=1e-12, abs=1e-12)
        # population std: sqrt(mean((x - mean)^2)), written out
        assert m.std == pytest.approx(np.sqrt(((ref - ref.mean()) ** 2).mean()), rel=1e-9, abs=1e-12)
        assert m.n == len(g)
    assert res["fsd"].higher_is_better is False
    assert res["fsd_l1"].higher_is_better is False
    assert res["fss"].higher_is_better is True


def test_identical_and_opposite():
    g, _ = _data(n=5)
    res = face_similarity(g, g.copy())
    assert res["fsd"].value == 0.0 and res["fsd_l1"].value == 0.0
    assert res["fss"].value == pytest.approx(1.0, abs=1e-12)
    res = face_similarity(g, -g)
    assert res["fss"].value == pytest.approx(-1.0, abs=1e-12)
    assert res["fsd"].value == pytest.approx(np.mean(2 * np.linalg.norm(g.astype(np.float64), axis=1)), rel=1e-12)


def test_scale_invariance_of_fss_only():
    g, r = (x.astype(np.float64) for x in _data(n=8))
    a, b = face_similarity(g, r), face_similarity(3 * g, r)
    assert a["fss"].value == pytest.approx(b["fss"].value, rel=1e-12)
    assert a["fsd"].value != pytest.approx(b["fsd"].value)


def test_details_copied():
    g, r = _data(n=3)
    res = face_similarity(g, r, {"embedder": "dlib"})
    assert all(m.details["embedder"] == "dlib" for m in res.values())
    assert "population" in res["fss"].details["std_kind"]


@pytest.mark.parametrize(
    "g,r,msg",
    [
        (np.zeros((3, 4)) + 1, np.zeros((2, 4)) + 1, "one shape"),
        (np.zeros((0, 4)), np.zeros((0, 4)), "no pairs"),
        (np.ones((2, 4)), np.array([[1, 1, 1, 1], [0, 0, 0, 0.0]]), "zero embedding"),
        (np.ones((2, 4)), np.array([[1, 1, 1, np.nan], [1, 1, 1, 1]]), "NaN"),
        (np.ones(4), np.ones(4), "one shape"),
    ],
)
def test_bad_inputs(g, r, msg):
    with pytest.raises(ValueError, match=msg):
        pair_distances(g, r)
