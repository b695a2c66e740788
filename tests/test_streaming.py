"""The streaming accumulator facemetrics.Metrics: update/compute/reset, and in-memory inputs under torchrun.

Uses the small deterministic ``toy`` extractor of tests/dist_worker.py (the
Inception check of the accumulator is in tests/test_inputs.py).
"""
from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

import dist_worker  # noqa: F401  (registers the "toy" extractor)
import facemetrics
from conftest import REPO
from facemetrics.api import score
from facemetrics.errors import FacemetricsError
from facemetrics.imaging.images import decode_rgb
from facemetrics.imaging.inputs import pixel_digest, pixels_key

REL = 1e-6
OPTS = dict(extractor="toy", kid_subset_size=6, kid_subsets=20, is_splits=2, seed=3)
UNEVEN = [1, 4, 6, 7, 9, 10]  # split points: 7 batches of 1, 3, 2, 1, 2, 1, 2 images


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


@pytest.fixture(scope="module")
def fake(lfw_small) -> np.ndarray:
    return np.stack([decode_rgb(f.read_bytes()) for f in sorted(lfw_small[1].iterdir())])


@pytest.fixture(scope="module")
def folder_record(lfw_small) -> dict:
    return score(str(lfw_small[0]), str(lfw_small[1]), metrics="fid,kid,is", progress=False, cache=False, **OPTS)


def same_numbers(a: dict, b: dict, metrics=("fid", "kid", "is")) -> None:
    for m in metrics:
        assert rel(a["metrics"][m]["value"], b["metrics"][m]["value"]) < REL, m
        if b["metrics"][m]["std"] is not None:
            assert rel(a["metrics"][m]["std"], b["metrics"][m]["std"]) < REL, m
        assert a["metrics"][m]["details"] == b["metrics"][m]["details"] or m == "fid", m
    assert a["protocol"] == b["protocol"] and a["real"] == b["real"] and a["fake"]["n"] == b["fake"]["n"]


@pytest.mark.parametrize("batch_size", [4, 32])
def test_seven_uneven_batches_equal_one_score_call(lfw_small, fake, folder_record, batch_size):
    m = facemetrics.Metrics("fid,kid,is", real=str(lfw_small[0]), batch_size=batch_size, **OPTS)
    for part in np.split(np.arange(12), UNEVEN):
        m.update(torch.from_numpy(fake[part]).permute(0, 3, 1, 2))
    assert m.n == 12
    rec = m.compute()
    same_numbers(rec, folder_record)
    assert rec["fake"] == {"path": "<stream: 12 images>", "kind": "stream", "n": 12,
                           "content_sha256": pixels_key([pixel_digest(x) for x in fake])}
    assert rec["warnings"] == folder_record["warnings"] and rec["failed_images"] == {"real": [], "fake": []}
    assert set(rec) == set(folder_record)


def test_compute_again_and_reset(lfw_small, fake, folder_record):
    m = facemetrics.Metrics("fid,kid", real=str(lfw_small[0]), **OPTS)
    m.update(fake[:5])
    part = m.compute()
    assert part["fake"]["n"] == 5
    m.update(list(fake[5:]))  # more images after a compute: they join the same accumulation
    same_numbers(m.compute(), folder_record, ("fid", "kid"))
    m.reset()
    assert m.n == 0
    with pytest.raises(FacemetricsError, match="fewer than 2 images"):
        m.compute()
    m.update(fake[::-1])  # same images, another order: same FID, another hash
    rec = m.compute()
    assert rel(rec["metrics"]["fid"]["value"], folder_record["metrics"]["fid"]["value"]) < REL
    assert rec["fake"]["content_sha256"] != pixels_key([pixel_digest(x) for x in fake])
    m.reset()
    m.update(fake[:6])
    assert rel(m.compute()["metrics"]["fid"]["value"], part["metrics"]["fid"]["value"]) > 1e-3


def test_real_side_kinds(lfw_small, fake, folder_record, tmp_path):
    from facemetrics.api import compute_stats

    real_px = np.stack([decode_rgb(f.read_bytes()) for f in sorted(lfw_small[0].iterdir())])
    st, feats, _ = compute_stats(str(lfw_small[0]), extractor="toy", progress=False)
    ref = tmp_path / "ref.npz"
    st.save(ref, feats)
    for real, kind in ((real_px, "array"), (str(ref), "stats")):
        m = facemetrics.Metrics("fid,kid", real=real, **OPTS)
        m.update(fake)
        rec = m.compute()
        assert rec["real"]["kind"] == kind and rec["real"]["n"] == 12
        assert rel(rec["metrics"]["fid"]["value"], folder_record["metrics"]["fid"]["value"]) < REL
        assert rel(rec["metrics"]["kid"]["value"], folder_record["metrics"]["kid"]["value"]) < REL
    only_is = facemetrics.Metrics("is", **OPTS)  # IS needs no REAL
    only_is.update(fake)
    rec = only_is.compute()
    assert rec["real"] is None and rel(rec["metrics"]["is"]["value"], folder_record["metrics"]["is"]["value"]) < REL


def test_accumulator_refusals(lfw_small):
    with pytest.raises(FacemetricsError, match="support fid, kid, is only"):
        facemetrics.Metrics("fid,fss", real=str(lfw_small[0]), **OPTS)
    with pytest.raises(FacemetricsError, match="real is missing"):
        facemetrics.Metrics("fid", **OPTS)
    m = facemetrics.Metrics("fid", real=str(lfw_small[0]), **OPTS)
    with pytest.raises(FacemetricsError, match=r"images: images must be uint8.*127\.5"):
        m.update(torch.rand(2, 3, 16, 16))
    assert m.n == 0  # a refused batch adds nothing


def test_torchrun_array_generator_and_accumulator_equal_one_process(lfw_small, fake, folder_record, tmp_path):
    """2 gloo ranks: the array split in blocks, a per-rank generator, per-rank updates → the single-process record."""
    fake_file, out = tmp_path / "fake.npy", tmp_path / "recs.json"
    np.save(fake_file, fake)
    env = {"PYTHONPATH": str(REPO), "FACEMETRICS_OFFLINE": "1", "FACEMETRICS_DIST_TIMEOUT": "120",
           "FACEMETRICS_CACHE": str(tmp_path / "cache")}
    import os

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           str(REPO / "tests" / "inmem_worker.py"), str(out), str(lfw_small[0]), str(fake_file)]
    p = subprocess.run(cmd, env={**os.environ, **env}, cwd=REPO, capture_output=True, text=True, timeout=600)
    assert p.returncode == 0, p.stderr[-3000:]
    recs = json.loads(out.read_text())
    single = score(str(lfw_small[0]), fake, metrics="fid,kid,is", progress=False, cache=False, **OPTS)
    for kind, rec in recs.items():
        same_numbers(rec, folder_record)
        assert rec["fake"]["content_sha256"] == single["fake"]["content_sha256"], kind
        assert rec["fake"]["n"] == 12 and rec["fake"]["kind"] == kind
    assert recs["array"]["fake"] == single["fake"]
