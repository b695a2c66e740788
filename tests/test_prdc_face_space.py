"""Precision/recall/density/coverage and the face-space metrics, checked against their reference
implementations (the `prdc` package, torch-fidelity's precision/recall, the `vendi-score` package)
on real LFW features, closed forms, and end to end through the CLI in one pass per side."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from click.testing import CliRunner

from facemetrics.cli.main import cli
from facemetrics.errors import FacemetricsError
from facemetrics.metrics.face_space import vendi_score
from facemetrics.metrics.prdc import knn_radii, prdc, prdc_counts

TOL = 1e-6


@pytest.fixture(scope="module")
def lfw_pool(lfw_200_pair):
    """Inception pool features of 2×200 LFW faces (feature cache shared with the other tests)."""
    from facemetrics.api import compute_stats

    return tuple(compute_stats(str(d), progress=False)[1].astype(np.float64) for d in lfw_200_pair)


@pytest.fixture(scope="module")
def lfw_faces(lfw_200_pair):
    """dlib face embeddings of the same 2×200 faces."""
    from facemetrics.extractors import build_extractor
    from facemetrics.imaging.images import scan
    from facemetrics.pipeline.features import extract

    ex = build_extractor("dlib")
    return tuple(extract(scan(str(d), "X"), [ex], progress=False).outputs["dlib"]["embedding"].astype(np.float64)
                 for d in lfw_200_pair)


def test_prdc_equals_the_prdc_package_on_lfw_features(lfw_pool, lfw_faces):
    from prdc import compute_prdc

    for real, fake in (lfw_pool, lfw_faces):
        for k in (3, 5):
            ref = compute_prdc(real, fake, nearest_k=k)
            got = prdc(real, fake, k_pr=k, k_dc=k)
            for m in ("precision", "recall", "density", "coverage"):
                assert got[m] == pytest.approx(float(ref[m]), abs=TOL), (m, k)
    # the numbers are not trivial on real faces (a test that cannot fail would be all ones)
    got = prdc(*lfw_pool)
    assert 0 < got["precision"] < 1 and 0 < got["coverage"] < 1


def test_precision_recall_equal_torch_fidelity(lfw_pool):
    from torch_fidelity.metric_prc import calculate_precision_recall_full

    real, fake = lfw_pool
    # torch-fidelity's convention: features_1 = generated, features_2 = real
    p, r = calculate_precision_recall_full(torch.from_numpy(fake), torch.from_numpy(real), neighborhood=3)
    got = prdc(real, fake, k_pr=3)
    assert got["precision"] == pytest.approx(p, abs=TOL) and got["recall"] == pytest.approx(r, abs=TOL)


def test_blocked_pass_equals_one_block_exactly(lfw_pool):
    real, fake = lfw_pool[0][:120], lfw_pool[1][:90]
    whole = prdc_counts(real, fake, block_bytes=1 << 40)
    tiny = prdc_counts(real, fake, block_bytes=8 * 7 * 120)  # 7 rows a block
    for m in ("precision", "recall", "density", "coverage"):
        assert np.array_equal(getattr(whole, m), getattr(tiny, m)), m
    radii = knn_radii(real, (3,), block_bytes=8 * 5 * 120)[3]
    d = np.sqrt(((real[:, None] - real[None]) ** 2).sum(-1))
    assert np.allclose(radii, np.sort(d, axis=1)[:, 3], rtol=1e-9)  # self at column 0


def test_closed_forms():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 8))
    same = prdc(x, x.copy())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0
    far = prdc(x, x + 1e3)  # disjoint manifolds
    assert far == {"precision": 0.0, "recall": 0.0, "density": 0.0, "coverage": 0.0}
    with pytest.raises(FacemetricsError, match="--dc-k 5: k nearest neighbours need more than 5 samples") as e:
        prdc(x[:5], x[:5])
    assert e.value.param == "--dc-k"


def test_vendi_equals_the_vendi_score_package(lfw_faces):
    from vendi_score import vendi

    for x in lfw_faces:
        assert vendi_score(x) == pytest.approx(float(vendi.score_dual(x, normalize=True)), rel=TOL)
        xn = x / np.linalg.norm(x, axis=1, keepdims=True)
        assert vendi_score(x) == pytest.approx(float(vendi.score_K(xn @ xn.T)), rel=TOL)
    assert vendi_score(np.tile([[1.0, 2.0, 3.0]], (10, 1))) == pytest.approx(1.0)  # identical: 1
    assert vendi_score(np.eye(7) * 3) == pytest.approx(7.0)  # orthogonal: n


def test_all_new_metrics_end_to_end_in_one_pass_per_side(lfw_small, tmp_path, monkeypatch):
    import facemetrics.pipeline.features as features

    calls = []
    real_extract = features.extract

    def counting(source, extractors, **kw):
        calls.append((str(source.root), sorted(e.name for e in extractors)))
        return real_extract(source, extractors, **kw)

    monkeypatch.setattr(features, "extract", counting)
    import facemetrics.pipeline.side as side

    monkeypatch.setattr(side, "extract", counting)
    out = tmp_path / "rec.json"
    names = "fid,precision,recall,density,coverage,precision_face,recall_face,density_face,coverage_face,"\
            "fd_face,kid_face,vendi_face"
    res = CliRunner().invoke(cli, ["score", str(lfw_small[0]), str(lfw_small[1]), "--metrics", names,
                                   "--json", str(out), "--no-cache", "-q", "--kid-subset-size", "6"])
    assert res.exit_code == 0, res.output
    rec = json.loads(out.read_text())
    assert list(rec["metrics"]) == ["fid", "precision", "recall", "density", "coverage", "precision_face",
                                    "recall_face", "density_face", "coverage_face", "fd_face", "kid_face",
                                    "vendi_face"]
    assert sorted(calls) == [(str(lfw_small[0]), ["dlib", "inception"]), (str(lfw_small[1]), ["dlib", "inception"])]
    m = rec["metrics"]
    assert m["precision"]["details"]["k"] == 3 and m["coverage"]["details"]["k"] == 5
    assert m["precision_face"]["details"]["dims"] == 128 and m["precision"]["details"]["dims"] == 2048
    assert m["fd_face"]["details"]["rank_deficient"] is True  # 12 images, 128-d
    assert any("fd_face" in w and "rank-deficient" in w for w in rec["warnings"])
    assert 1 <= m["vendi_face"]["value"] <= 12 and m["vendi_face"]["details"]["real_vendi"] > 1
    assert all(m[k]["ci"] is not None for k in ("precision", "fd_face", "vendi_face"))


def test_bad_k_is_a_usage_error_naming_the_flag(lfw_small):
    res = CliRunner().invoke(cli, ["score", str(lfw_small[0]), str(lfw_small[1]), "--metrics", "coverage",
                                   "--dc-k", "0", "-q"])
    assert res.exit_code == 2 and "--dc-k" in res.output
    res = CliRunner().invoke(cli, ["score", str(lfw_small[0]), str(lfw_small[1]), "--metrics", "coverage",
                                   "--dc-k", "12", "-q", "--ci", "0"])
    assert res.exit_code == 2 and "--dc-k" in res.output and "more than 12 samples" in res.output


def test_face_rows_metric_beside_fsd_embeds_each_image_once(data_dir, tmp_path, monkeypatch):
    """fd_face (face rows of both sides) with FSD whose pairs' real images are REAL: REAL's one pass feeds
    dlib once (the planner once listed the face role twice there), and FSD equals its value alone."""
    import facemetrics.imaging.images as images
    import facemetrics.pipeline.features as features
    import facemetrics.pipeline.side as side
    from conftest import link_folder
    from facemetrics.api import score

    root = data_dir / "lfw" / "deepfunneled"
    people = [p for p in sorted(x.name for x in root.iterdir()) if (root / p / f"{p}_0002.jpg").is_file()][60:65]
    real = link_folder(tmp_path / "real", [root / p / f"{p}_0001.jpg" for p in people])
    fake = tmp_path / "fake"
    fake.mkdir()
    reals = sorted(real.iterdir())
    rows = []
    for i, p in enumerate(people):
        (fake / f"g{i}.jpg").symlink_to(root / p / f"{p}_0002.jpg")
        rows.append(json.dumps({"fake": f"g{i}.jpg", "caption": f"photo {i}", "real": str(reals[i])}))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(rows) + "\n")
    decoded: list[int] = []
    calls: list[tuple[str, list[str]]] = []
    orig, real_extract = images.decode_rgb, features.extract

    def counting(source, extractors, *args, **kw):
        calls.append((str(source.root), [e.name for e in extractors]))
        return real_extract(source, extractors, *args, **kw)

    monkeypatch.setattr(images, "decode_rgb", lambda data: decoded.append(1) or orig(data))
    monkeypatch.setattr(features, "extract", counting)
    monkeypatch.setattr(side, "extract", counting)
    rec = score(str(real), str(fake), metrics="fd_face,fsd", pairs=str(pairs), progress=False, cache=False)
    assert len(decoded) == 5 + 5  # each image decoded once
    assert sorted(calls) == [(str(fake), ["dlib"]), (str(real), ["dlib"])]  # and embedded once
    monkeypatch.setattr(images, "decode_rgb", orig)
    alone = score(str(real), str(fake), metrics="fsd", pairs=str(pairs), progress=False, cache=False)
    assert rec["metrics"]["fsd"]["value"] == pytest.approx(alone["metrics"]["fsd"]["value"], rel=1e-12)
    assert rec["metrics"]["fd_face"]["details"]["n_real"] == 5 and rec["metrics"]["fd_face"]["value"] > 0
