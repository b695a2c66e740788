"""The dlib embedder on the LFW View 2 protocol (folds 1-2: 1,200 pairs, 1,583 images).

dlib reports 99.38% verification accuracy at Euclidean distance 0.6 on all 6,000
pairs (original LFW images); we require >= 97% on the first two folds of the
deep-funneled images through our own pipeline (detector, 5-point chip, descriptor,
``features.extract``), and that FSS / FSD separate same-person from
different-person pairs by a clear margin. One module-scoped extraction (~1-3
minutes on 2 cores) feeds every test.
"""
from __future__ import annotations

import numpy as np
import pytest
from face_helpers import LFW, LFW_IMAGES, lfw_name, need

from facemetrics.datasets import load_lfw_pairs
from facemetrics.imaging.images import ImageSource
from facemetrics.metrics.face import face_similarity

FOLDS = [0, 1]


@pytest.fixture(scope="module")
def lfw(tmp_path_factory):
    from facemetrics.extractors import build_extractor
    from facemetrics.pipeline.features import extract

    pairs = load_lfw_pairs(need(LFW / "pairs.txt"), folds=FOLDS)
    left = [lfw_name(p.left_name, p.left_number) for p in pairs]
    right = [lfw_name(p.right_name, p.right_number) for p in pairs]
    src = ImageSource(need(LFW_IMAGES).resolve(), "folder", tuple(sorted(set(left + right))))
    ex = build_extractor("dlib")
    x = extract(src, [ex], workers=2, progress=False, cache_root=tmp_path_factory.mktemp("lfw-cache"))
    assert not x.failed and len(x.names) == len(src)
    out = x.outputs["dlib"]
    row = {n: i for i, n in enumerate(x.names)}
    emb = out["embedding"]
    return {
        "pairs": pairs,
        "same": np.array([p.same for p in pairs]),
        "fold": np.array([p.fold for p in pairs]),
        "left": emb[[row[n] for n in left]],
        "right": emb[[row[n] for n in right]],
        "detected": int(out["detected"].sum()),
        "n_images": len(x.names),
    }


def test_verification_accuracy_at_0_6(lfw):
    assert len(lfw["pairs"]) == 1200 and lfw["n_images"] == 1583
    dist = np.linalg.norm(lfw["left"].astype(np.float64) - lfw["right"], axis=1)
    correct = (dist < 0.6) == lfw["same"]
    acc = correct.mean()
    print(f"\nLFW folds {FOLDS}: accuracy {acc:.4f} on {len(correct)} pairs; "
          f"faces detected in {lfw['detected']}/{lfw['n_images']} images; "
          + ", ".join(f"fold {f}: {correct[lfw['fold'] == f].mean():.4f}" for f in FOLDS))
    assert acc >= 0.97
    for f in FOLDS:
        assert correct[lfw["fold"] == f].mean() >= 0.95
    assert lfw["detected"] >= 0.99 * lfw["n_images"]


def test_fss_fsd_separate_same_from_different_people(lfw):
    s = lfw["same"]
    same = face_similarity(lfw["left"][s], lfw["right"][s])
    diff = face_similarity(lfw["left"][~s], lfw["right"][~s])
    assert same["fss"].n == diff["fss"].n == 600
    print(f"\nsame-person FSS {same['fss'].value:.4f}±{same['fss'].std:.4f} FSD {same['fsd'].value:.4f}±{same['fsd'].std:.4f}; "
          f"different-person FSS {diff['fss'].value:.4f}±{diff['fss'].std:.4f} FSD {diff['fsd'].value:.4f}±{diff['fsd'].std:.4f}")
    for name, margin in (("fss", 0.08), ("fsd", 0.30), ("fsd_l1", 2.5)):
        a, b = same[name], diff[name]
        gap = (a.value - b.value) if a.higher_is_better else (b.value - a.value)
        pooled = np.sqrt((a.std**2 + b.std**2) / 2)
        assert gap >= margin, (name, gap)
        assert gap / pooled >= 3.0, (name, gap / pooled)  # separated by >= 3 pooled std
    assert same["fsd"].value < 0.6 < diff["fsd"].value
