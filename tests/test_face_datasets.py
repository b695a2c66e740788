"""LFW View 2 and Face2Text loaders on the real files."""
from __future__ import annotations

from collections import Counter

import pytest
from face_helpers import CELEBA, FACE2TEXT, LFW, LFW_IMAGES, need

from facemetrics.datasets import load_face2text, load_lfw_pairs, load_lfw_people
from facemetrics.datasets.lfw import lfw_image_path
from facemetrics.errors import FacemetricsError


def test_lfw_pairs_structure():
    pairs = load_lfw_pairs(need(LFW / "pairs.txt"))
    assert len(pairs) == 6000
    per_fold = Counter((p.fold, p.same) for p in pairs)
    assert per_fold == {(f, s): 300 for f in range(10) for s in (True, False)}
    assert all(p.left_name == p.right_name for p in pairs if p.same)
    assert all(p.left_name != p.right_name for p in pairs if not p.same)
    first = pairs[0]
    assert (first.left_name, first.left_number, first.right_number) == ("Abel_Pacheco", 1, 4)
    two = load_lfw_pairs(LFW / "pairs.txt", folds=[0, 1])
    assert two == pairs[:1200]
    for p in two:  # every image of the first two folds exists
        a, b = p.paths(need(LFW_IMAGES))
        assert a.is_file() and b.is_file(), (a, b)
    with pytest.raises(FacemetricsError, match="out of range"):
        load_lfw_pairs(LFW / "pairs.txt", folds=[10])


def test_lfw_pairs_bad_file(tmp_path):
    p = tmp_path / "pairs.txt"
    p.write_text("1\t1\nA\t1\t2\nA\t1\n")
    with pytest.raises(FacemetricsError, match=r"pairs.txt:3: expected a different-person"):
        load_lfw_pairs(p)
    p.write_text("1\t2\nA\t1\t2\n")
    with pytest.raises(FacemetricsError, match="expected 4 pair lines, found 1"):
        load_lfw_pairs(p)


def test_lfw_people():
    folds = load_lfw_people(need(LFW / "people.txt"))
    assert len(folds) == 10
    assert folds[0][0] == ("Abdel_Madi_Shabneh", 1)
    assert len(folds[0]) == 601
    names = [n for f in folds for n, _ in f]
    assert len(names) == len(set(names))  # a person is in one fold only
    assert lfw_image_path("/r", "Zico", 3).as_posix() == "/r/Zico/Zico_0003.jpg"


def test_face2text_v01_clean_binds_lfw_jpgs():
    s = load_face2text(need(FACE2TEXT / "v0.1" / "clean.json"), need(LFW_IMAGES))
    assert s.version == "0.1"
    assert len(s.records) == 1237 and not s.skipped
    imgs = s.images()
    assert len(imgs) == 400
    assert all(p.suffix == ".jpg" and p.name.endswith("_0001.jpg") for p in imgs)
    assert s.missing_images() == []  # all 400 are LFW images
    r0 = s.records[0]
    assert r0.identity == "Katerina_Smrzova" and r0.caption_id == "582" and r0.image_id == "1"
    assert r0.image == (LFW_IMAGES / "Katerina_Smrzova" / "Katerina_Smrzova_0001.jpg").resolve()
    assert r0.caption.startswith("A young woman with long light brown hair")
    assert Counter(len(v) for v in s.by_image().values()) == {3: 191, 4: 127, 2: 74, 1: 8}


def test_face2text_v01_raw_counts_empty():
    s = load_face2text(need(FACE2TEXT / "v0.1" / "raw.json"), LFW_IMAGES)
    assert len(s.records) + len(s.skipped) == 1445
    assert len(s.skipped) == 17 and all(r == "empty description" for _, r in s.skipped)


def test_face2text_v10_celeba():
    s = load_face2text(need(FACE2TEXT / "v1.0" / "raw.json"), need(CELEBA))
    assert s.version == "1.0"
    assert len(s.records) == 5685 and len(s.images()) == 4076
    assert s.records[0].image.name == "000035.jpg" and s.records[0].identity is None
    assert len(s.images()) - len(s.missing_images()) == 177  # the CelebA subset held here
    with pytest.raises(FacemetricsError, match="v0.1 but the file has the v1.0 schema"):
        load_face2text(FACE2TEXT / "v1.0" / "raw.json", CELEBA, version="0.1")


def test_face2text_bad_json(tmp_path):
    (tmp_path / "x.json").write_text('{"a": 1}')
    with pytest.raises(FacemetricsError, match="neither the v0.1 nor the v1.0"):
        load_face2text(tmp_path / "x.json", tmp_path)
