"""IS through the stock Inception: logits are pool · Wᵀ without the output bias (real faces).

The full ``inception-2015-12-05.pt`` cannot be had offline, so a TorchScript of the
same shape is built here: the packaged FID layers as ``.layers`` plus an ``.output``
``Linear(2048, 1008)`` with seeded, non-zero weight and bias (the head that
``facemetrics/extractors/inception.py`` looks up as ``module.output``).
"""
from __future__ import annotations

import numpy as np
import pytest

from conftest import lfw_first_images, link_folder
from facemetrics.api import score
from facemetrics.extractors.inception import InceptionExtractor
from facemetrics.pipeline.features import extract
from facemetrics.imaging.images import scan
from facemetrics.metrics.inception_score import inception_score


@pytest.fixture(scope="module")
def stock_like_weights(tmp_path_factory):
    from reference_tools import write_stock_like_inception

    path, head = write_stock_like_inception(tmp_path_factory.mktemp("stock-like") / "inception-with-head.pt")
    return path, head.weight.detach().double().numpy(), head.bias.detach().double().numpy()


@pytest.fixture(scope="module")
def faces(data_dir, tmp_path_factory):
    files = lfw_first_images(data_dir)[3000:3024]
    return link_folder(tmp_path_factory.mktemp("is-faces") / "f", files)


def test_stock_head_gives_unbiased_logits(stock_like_weights, faces):
    path, w, b = stock_like_weights
    ex = InceptionExtractor(weights=str(path))
    assert ex.outputs == ("pool", "logits")
    out = extract(scan(faces), [ex], progress=False, cache=False).outputs["inception"]
    pool, logits = out["pool"].astype(np.float64), out["logits"].astype(np.float64)
    assert logits.shape == (24, 1008)
    np.testing.assert_allclose(logits, pool @ w.T, rtol=0, atol=1e-4)
    assert np.abs(logits - (pool @ w.T + b)).min() > 1e-3  # with the bias it would be told apart
    assert ex.fingerprint()["logits"] == "unbiased"


def test_is_of_stock_head_equals_is_of_pool_times_w(stock_like_weights, faces):
    path, w, b = stock_like_weights
    rec = score(str(faces), str(faces), metrics="is", inception_weights=str(path), progress=False, cache=False,
                is_splits=3, seed=5)
    pool = extract(scan(faces), [InceptionExtractor(weights=str(path))], progress=False,
                   cache=False).outputs["inception"]["pool"].astype(np.float64)
    ref = inception_score(pool @ w.T, splits=3, seed=5)
    biased = inception_score(pool @ w.T + b, splits=3, seed=5)
    got = rec["metrics"]["is"]["value"]
    assert got == pytest.approx(ref.value, rel=1e-5)
    assert abs(biased.value - ref.value) > 1e-3 * ref.value  # the bias changes IS here
