"""The approximate bf16 path: marked in fingerprint and record, cached apart, kept out of exact tables.

The speed and the FID deviation on 2×1,000 LFW images are benchmarks (benchmarks/bench_bf16.py);
here only what must hold: bf16 features are close to fp32 ones (bfloat16 keeps 8 bits of
mantissa: per-image relative L2 error a few percent at most) and nothing mixes them up.
"""
from __future__ import annotations

import json

import numpy as np
import pytest
from click.testing import CliRunner

import facemetrics
from facemetrics.cli.main import cli
from facemetrics.errors import FacemetricsError
from facemetrics.extractors.inception import InceptionExtractor
from facemetrics.imaging.images import decode_rgb
from facemetrics.report.tables import LoadedRecord, build_table


def test_bf16_features_close_to_fp32_and_fingerprinted_apart(lfw_small):
    files = sorted(lfw_small[0].iterdir())[:6]
    imgs = [decode_rgb(f.read_bytes()) for f in files]
    feats = {}
    for prec in ("fp32", "bf16"):
        ex = InceptionExtractor(precision=prec)
        prep = ex.preprocessor()
        feats[prec] = ex.forward({"image": np.stack([prep(i)["image"] for i in imgs])})["pool"]
    a, b = feats["fp32"], feats["bf16"]
    rel = np.linalg.norm(a - b, axis=1) / np.linalg.norm(a, axis=1)
    assert 0 < rel.max() < 0.05  # approximate, but not another network
    f32, b16 = InceptionExtractor().fingerprint(), InceptionExtractor(precision="bf16").fingerprint()
    assert "precision" not in f32 and b16["precision"] == "bf16"  # exact fingerprints (and caches) unchanged
    assert {k: v for k, v in b16.items() if k != "precision"} == f32
    with pytest.raises(FacemetricsError, match="unknown precision"):
        InceptionExtractor(precision="fp16")


def test_bf16_record_says_not_exact_and_fid_is_close(lfw_small):
    a, b = map(str, lfw_small)
    exact = facemetrics.score(a, b, metrics="fid", progress=False)
    approx = facemetrics.score(a, b, metrics="fid", precision="bf16", progress=False)
    assert "exact" not in exact["protocol"]
    assert approx["protocol"]["exact"] is False and approx["protocol"]["precision"] == "bf16"
    f32, b16 = exact["metrics"]["fid"]["value"], approx["metrics"]["fid"]["value"]
    assert f32 != b16 and abs(b16 - f32) / f32 < 0.02


def test_bf16_statistics_are_not_mixed_with_fp32(lfw_small, tmp_path):
    ref = tmp_path / "ref_bf16.npz"
    res = CliRunner().invoke(cli, ["stats", str(lfw_small[0]), "-o", str(ref), "--precision", "bf16", "-q"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["score", str(ref), str(lfw_small[1]), "-q"])
    assert res.exit_code == 2 and "another protocol" in res.output and "REAL" in res.output


def test_bf16_refused_for_a_finetuned_extractor(tmp_path, lfw_small):
    ckpt = tmp_path / "net.pt"
    ckpt.write_bytes(b"not read: the flag is refused first")
    res = CliRunner().invoke(cli, ["score", str(lfw_small[0]), str(lfw_small[1]), "--extractor", str(ckpt),
                                   "--precision", "bf16", "-q"])
    assert res.exit_code == 2 and "--precision" in res.output and "FID Inception only" in res.output


def _rec(path, exact):
    rec = json.loads(json.dumps({"schema": "facemetrics.record/1", "label": path, "protocol": {"preset": "clean"},
                                 "metrics": {"fid": {"value": 10.0, "higher_is_better": False}}}))
    if not exact:
        rec["protocol"].update(exact=False, precision="bf16")
    return LoadedRecord(path, rec)


def test_report_refuses_to_mix_approximate_and_exact_even_with_force():
    for force in (False, True):
        with pytest.raises(FacemetricsError, match="approximate records \\(b.json") as e:
            build_table([_rec("a.json", True), _rec("b.json", False)], force=force)
        assert e.value.param == "RECORDS"
    assert build_table([_rec("b.json", False), _rec("c.json", False)]).values.shape[0] == 2  # all approximate: fine
