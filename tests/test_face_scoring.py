"""score_face end to end on small real LFW / Face2Text sets: values, records, bad input, cache."""
from __future__ import annotations

import os

import shutil

import numpy as np
import pytest
from face_helpers import FACE2TEXT, LFW_IMAGES, lfw_name, need

from facemetrics.pairing.captions import PairRecord, load_pairs, pairs_from_stems, write_pairs
from facemetrics.errors import FacemetricsError
from facemetrics.pairing.face_scoring import score_face
from facemetrics.imaging.images import ImageSource, scan
from facemetrics.metrics.face import pair_distances

N_PEOPLE = 16


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("face-cache")


@pytest.fixture(scope="module")
def f2t_people():
    """Face2Text v0.1 identities with a second LFW photo: (identity, caption, real _0001, other _0002)."""
    from facemetrics.datasets import load_face2text

    s = load_face2text(need(FACE2TEXT / "v0.1" / "clean.json"), need(LFW_IMAGES))
    out = []
    for img, recs in s.by_image().items():
        other = img.with_name(img.name.replace("_0001.jpg", "_0002.jpg"))
        if other.is_file():
            out.append((recs[0].identity, recs[0], img, other))
        if len(out) == N_PEOPLE:
            break
    assert len(out) == N_PEOPLE
    return out


def _opts(cache_dir, **kw):
    return dict(progress=False, workers=2, cache_root=cache_dir, **kw)


def test_face2text_pairs_same_vs_mismatched(f2t_people, cache_dir, tmp_path):
    """FAKE = each person's second LFW photo; pairs written and read back as a manifest."""
    fake_src = ImageSource(LFW_IMAGES.resolve(), "folder", tuple(sorted(o.relative_to(LFW_IMAGES.resolve()).as_posix()
                                                                   for _, _, _, o in f2t_people)))
    rows = [PairRecord(o.relative_to(LFW_IMAGES.resolve()).as_posix(), r.caption, img, ident, r.caption_id)
            for ident, r, img, o in f2t_people]
    write_pairs(tmp_path / "pairs.jsonl", rows, real_root=LFW_IMAGES)
    pairs = load_pairs(tmp_path / "pairs.jsonl", LFW_IMAGES, LFW_IMAGES)
    # real paths are kept as given (not resolved: links stay links), naming the same files
    assert [os.path.realpath(p.real) for p in pairs] == [os.path.realpath(img) for _, _, img, _ in f2t_people]
    same, warn = score_face(pairs, fake_src, **_opts(cache_dir))
    # mismatched: each generated image against the next person's real image
    shifted = [PairRecord(p.fake, p.caption, pairs[(i + 1) % len(pairs)].real) for i, p in enumerate(pairs)]
    diff, _ = score_face(shifted, fake_src, **_opts(cache_dir))
    assert same["fss"].value > diff["fss"].value + 0.08
    assert same["fsd"].value + 0.2 < diff["fsd"].value
    assert same["fsd"].value < 0.6 < diff["fsd"].value  # dlib's same-person threshold
    d = same["fsd"].details
    assert d["embedder"] == "dlib" and d["dims"] == 128 and len(d["weights_sha256"]) == 64
    assert d["faces_detected"] == {"fake": N_PEOPLE, "real": N_PEOPLE}
    assert d["images"] == {"fake": N_PEOPLE, "real": N_PEOPLE} and d["pairs_dropped"] == 0
    assert same["fss"].n == same["fsd"].n == same["fsd_l1"].n == N_PEOPLE
    assert not warn


def test_folder_against_itself(cache_dir):
    """Every image paired with itself (explicit stem matching): FSD 0, FSS 1."""
    names = tuple(lfw_name(p, 1) for p in ("Aaron_Peirsol", "Abdullah_Gul", "Zico", "Adam_Sandler"))
    src = ImageSource(need(LFW_IMAGES).resolve(), "folder", names)
    pairs = pairs_from_stems(src, src)
    res, _ = score_face(pairs, src, **_opts(cache_dir))
    assert res["fsd"].value == 0.0 and res["fsd_l1"].value == 0.0 and res["fsd"].std == 0.0
    assert res["fss"].value == pytest.approx(1.0, abs=1e-9)
    assert res["fss"].n == 4


def test_values_match_direct_embedding(cache_dir):
    """FSD/FSS equal the distances of embeddings computed directly with the extractor."""
    from facemetrics.extractors import build_extractor
    from facemetrics.imaging.images import load_rgb

    fakes = [lfw_name("Aaron_Peirsol", 2), lfw_name("Abdullah_Gul", 2), lfw_name("Zico", 2)]
    reals = [lfw_name("Aaron_Peirsol", 1), lfw_name("Abdullah_Gul", 1), lfw_name("Aaron_Peirsol", 1)]
    root = need(LFW_IMAGES).resolve()
    src = ImageSource(root, "folder", tuple(fakes))
    res, _ = score_face([PairRecord(f, real=root / r) for f, r in zip(fakes, reals)], src, **_opts(cache_dir))
    ex = build_extractor("dlib")
    prep = ex.preprocessor()

    def emb(names):
        items = [prep(load_rgb(src, n)) for n in names]
        return ex.forward({k: np.stack([it[k] for it in items]) for k in items[0]})["embedding"]

    d = pair_distances(emb(fakes), emb(reals))
    assert res["fsd"].value == pytest.approx(d["l2"].mean(), abs=1e-6)
    assert res["fsd_l1"].value == pytest.approx(d["l1"].mean(), abs=1e-5)
    assert res["fss"].value == pytest.approx(d["cosine"].mean(), abs=1e-6)
    assert res["fss"].std == pytest.approx(d["cosine"].std(), abs=1e-6)
    assert res["fsd"].details["images"] == {"fake": 3, "real": 2}  # a real image shared by two pairs


def test_embeddings_are_cached(tmp_path, monkeypatch):
    from facemetrics.pipeline import features

    root = need(LFW_IMAGES).resolve()
    names = (lfw_name("Zico", 1), lfw_name("Zico", 2))
    src = ImageSource(root, "folder", names)
    pairs = [PairRecord(names[0], real=root / names[1]), PairRecord(names[1], real=root / names[0])]
    first, _ = score_face(pairs, src, **_opts(tmp_path))
    assert list((tmp_path / "features").rglob("*.npz"))
    calls = []
    real_run = features._run
    monkeypatch.setattr(features, "_run", lambda *a, **k: calls.append(1) or real_run(*a, **k))
    again, _ = score_face(pairs, src, **_opts(tmp_path))
    assert calls == []  # both sides came from the cache
    assert again["fss"].value == first["fss"].value
    score_face(pairs, src, **_opts(tmp_path, face_align="never"))  # another fingerprint: computed
    assert len(calls) == 2


@pytest.fixture()
def mixed_fake(tmp_path):
    """A FAKE folder: 3 LFW faces, a noise image (no face), a corrupt file."""
    fake = tmp_path / "fake"
    fake.mkdir()
    for p in ("Aaron_Peirsol", "Abdullah_Gul", "Zico"):
        shutil.copy(need(LFW_IMAGES) / lfw_name(p, 2), fake / f"{p}.jpg")
    from PIL import Image

    Image.fromarray(np.random.default_rng(0).integers(0, 256, (120, 120, 3), dtype=np.uint8)).save(fake / "noise.png")
    (fake / "broken.jpg").write_bytes(b"\xff\xd8 not really a jpeg")
    reals = {p: (LFW_IMAGES / lfw_name(p, 1)).resolve() for p in ("Aaron_Peirsol", "Abdullah_Gul", "Zico")}
    return fake, reals


def test_unreadable_and_faceless_images(mixed_fake, tmp_path):
    fake, reals = mixed_fake
    src = scan(fake, "FAKE")
    pairs = [PairRecord(f"{p}.jpg", real=r) for p, r in reals.items()]
    pairs += [PairRecord("noise.png", real=reals["Zico"]), PairRecord("broken.jpg", real=reals["Zico"])]
    opts = _opts(tmp_path)
    res, warn = score_face(pairs, src, **opts)
    d = res["fss"].details
    assert res["fss"].n == 4 and d["pairs_dropped"] == 1 and d["pairs_total"] == 5
    assert [f[0] for f in d["failed_images"]["fake"]] == [str(fake.resolve() / "broken.jpg")]
    assert d["faces_detected"] == {"fake": 3, "real": 3} and d["images"] == {"fake": 4, "real": 3}
    assert any("1 of 5 pairs left out" in w for w in warn)
    assert any("no face detected in 1 of 4 generated and 0 of 3 real" in w for w in warn)
    with pytest.raises(FacemetricsError, match=r"broken.jpg") as ei:
        score_face(pairs, src, **_opts(tmp_path, strict=True))
    assert ei.value.param == "--strict"
    with pytest.raises(FacemetricsError, match=r"--face-align always: no face detected in 1 image\(s\):\n  .*noise.png"):
        score_face(pairs, src, **_opts(tmp_path, face_align="always"))
    res, warn = score_face(pairs, src, **_opts(tmp_path, face_align="never"))
    assert res["fsd"].details["faces_detected"] == {"fake": None, "real": None}
    assert not any("no face detected" in w for w in warn)


def test_unreadable_real_is_counted(mixed_fake, tmp_path):
    fake, reals = mixed_fake
    bad_real = tmp_path / "reals" / "bad.jpg"
    bad_real.parent.mkdir()
    bad_real.write_bytes(b"GIF89a broken")
    src = scan(fake, "FAKE")
    pairs = [PairRecord("Zico.jpg", real=reals["Zico"]), PairRecord("Abdullah_Gul.jpg", real=bad_real.resolve())]
    res, warn = score_face(pairs, src, **_opts(tmp_path))
    assert res["fsd"].n == 1 and res["fsd"].details["failed_images"]["real"][0][0].endswith("bad.jpg")
    assert res["fsd"].details["fake_unpaired"] == 3
    assert any("not in the pairs manifest" in w for w in warn)


def test_pairing_errors(mixed_fake, tmp_path):
    fake, reals = mixed_fake
    src = scan(fake, "FAKE")
    with pytest.raises(FacemetricsError, match="give that pairing with --pairs") as ei:
        score_face(None, src)
    assert ei.value.param == "--pairs"
    with pytest.raises(FacemetricsError, match="--pairs"):
        score_face([], src)
    with pytest.raises(FacemetricsError, match=r"1 pairs row\(s\) have no 'real':\n  line 4: Zico.jpg"):
        score_face([PairRecord("Zico.jpg", line=4)], src)
    with pytest.raises(FacemetricsError, match="listed more than once"):
        score_face([PairRecord("Zico.jpg", real=reals["Zico"])] * 2, src)
    with pytest.raises(FacemetricsError, match=r"not images of FAKE.*\n  ghost.png"):
        score_face([PairRecord("ghost.png", real=reals["Zico"])], src)
    with pytest.raises(FacemetricsError, match="--face-model must be one of dlib, facenet"):
        score_face([PairRecord("Zico.jpg", real=reals["Zico"])], src, face_model="arcface")


def test_facenet_through_score_face(mixed_fake, tmp_path):
    """The facenet path end to end with a weights file in its layout (random values)."""
    import torch
    from facenet_random import random_state_dict, read_key_table

    from facemetrics.nets.weights import sha256_file

    fake, reals = mixed_fake
    w = tmp_path / "fn.pt"
    torch.save(random_state_dict(read_key_table(__import__("pathlib").Path(__file__).parent / "data" /
                                                "facenet_vggface2_keys.tsv")), w)
    src = scan(fake, "FAKE")
    pairs = [PairRecord(f"{p}.jpg", real=r) for p, r in reals.items()]
    res, _ = score_face(pairs, src, face_model="facenet", weights=str(w), **_opts(tmp_path))
    d = res["fss"].details
    assert d["embedder"] == "facenet" and d["dims"] == 512 and d["weights_sha256"] == sha256_file(w)
    assert d["faces_detected"] == {"fake": 3, "real": 3} and res["fss"].n == 3
    assert -1.0 <= res["fss"].value <= 1.0
