"""Face2Text loaders, the identity split, augmentation, batching and caption coding."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest_models import require_data


def test_face2text_v01_records_match_the_json():
    from models.data import load_face2text_v01

    root = require_data()
    rows = json.loads((root / "face2text/v0.1/clean.json").read_text())
    recs = load_face2text_v01(root)
    assert len(recs) == len(rows) == 400
    assert sum(len(r.captions) for r in recs) == sum(len(r["descriptions"]) for r in rows)
    assert {len(r.captions) for r in recs} <= {1, 2, 3, 4}
    r = recs[0]
    assert r.path.is_file() and r.path.suffix == ".jpg" and r.path.parent.name == r.identity
    assert len({r.identity for r in recs}) == 400


def test_face2text_v10_uses_only_present_celeba_images():
    from models.data import load_face2text_v10

    root = require_data()
    recs = load_face2text_v10(root)
    rows = json.loads((root / "face2text/v1.0/raw.json").read_text())
    present = {p.name for p in (root / "celeba").rglob("*.jpg")}
    want = {r["filename"] for r in rows} & present
    assert {r.path.name for r in recs} == want and len(recs) == 177
    assert sum(len(r.captions) for r in recs) == sum(r["filename"] in present for r in rows)
    assert {len(r.captions) for r in recs} <= {1, 2}


def test_split_is_identity_disjoint_seeded_and_complete(tmp_path):
    from models.data import FaceRecord, split_records, Caption

    cap = (Caption("a face", "0"),)
    recs = [FaceRecord(f"p{i // 3}/{i}", None, f"p{i // 3}", cap) for i in range(60)]  # 20 ids x 3 images
    tr, te = split_records(recs, 0.25, seed=5)
    assert len(tr) + len(te) == 60 and len({r.identity for r in te}) == 5
    assert not {r.identity for r in tr} & {r.identity for r in te}
    assert [r.key for r in split_records(recs, 0.25, seed=5)[1]] == [r.key for r in te]
    assert [r.key for r in split_records(recs, 0.25, seed=6)[1]] != [r.key for r in te]


def test_split_refuses_an_empty_training_side():
    from facemetrics.errors import FacemetricsError
    from models.data import Caption, FaceRecord, split_records

    recs = [FaceRecord("a", None, "a", (Caption("x", "0"),))]
    with pytest.raises(FacemetricsError, match="no training identity"):
        split_records(recs, 0.5, 0)


def test_augmentation_is_attngan_like_and_deterministic():
    from PIL import Image

    from models.data import augment

    img = Image.fromarray(np.arange(250 * 250 * 3, dtype=np.uint8).reshape(250, 250, 3) % 251)
    a = augment(img, 128, np.random.default_rng([1, 2]))
    b = augment(img, 128, np.random.default_rng([1, 2]))
    assert [t.shape for t in a] == [(3, 64, 64), (3, 128, 128)]
    assert all((x == y).all() for x, y in zip(a, b))
    assert -1.0 <= float(a[1].min()) and float(a[1].max()) <= 1.0
    crops = {augment(img, 64, np.random.default_rng(s))[0].sum().item() for s in range(8)}
    assert len(crops) > 1  # random crop / flip vary with the seed


def test_step_batches_cover_each_epoch_once():
    from models.data import StepBatchSampler

    s = StepBatchSampler(10, 3, seed=0, phase=1, start=0, end=9)
    batches = list(s)
    assert s.per_epoch == 3 and len(batches) == 9
    for e in range(3):
        idx = [k[0] for b in batches[3 * e: 3 * e + 3] for k in b]
        assert len(set(idx)) == 9 and all(k[1] == e for b in batches[3 * e: 3 * e + 3] for k in b)
    # a sampler started later yields the same keys for the same steps
    assert list(StepBatchSampler(10, 3, 0, 1, 4, 9)) == batches[4:]


def test_word_coder_limits():
    from facemetrics.errors import FacemetricsError
    from models.data import WordCoder, tokenize

    c = WordCoder.build(["A man, with short hair.", "a woman"], words_num=4)
    assert tokenize("A man, with short-hair!") == ["a", "man", "with", "short", "hair"]
    ids, n, tr = c.encode("a man with short")
    assert n == 4 and not tr and (ids > 1).all()
    ids, n, tr = c.encode("a man with blue short hair", policy="truncate")
    assert tr and n == 4 and list(ids) == [c.stoi["a"], c.stoi["man"], c.stoi["with"], 1]  # blue -> <unk>
    with pytest.raises(FacemetricsError, match="over the LSTM encoder's limit of 4"):
        c.encode("a man with blue short hair", policy="error")
    ids, n, tr = c.encode("a man with blue short hair", rng=np.random.default_rng(0))
    assert tr and n == 4  # training: ordered random subset
    kept = [c.itos[i] for i in ids]
    order = ["a", "man", "with", "<unk>", "short", "hair"]
    assert [order.index(w) for w in kept] == sorted(order.index(w) for w in kept)


def test_clip_coder_truncation_keeps_end_token():
    from facemetrics.errors import FacemetricsError
    from models.data import ClipCoder

    c = ClipCoder(12)
    ids, n, tr = c.encode("a smiling woman")
    assert ids[0] == c.sot and ids[n + 1] == c.eot and not tr and (ids[n + 2:] == 0).all()
    long = " ".join(["face"] * 30)
    ids, n, tr = c.encode(long)
    assert tr and n == 10 and ids[-1] == c.eot and ids.argmax() == 11
    with pytest.raises(FacemetricsError, match="over CLIP's limit of 10"):
        c.encode(long, policy="error")


def test_face2text_v10_counts_and_warns_about_the_missing_images():
    """Only the captioned CelebA images present are used; the rest are skipped with a count."""
    from models.data import load_face2text_v10, load_records

    root = require_data()
    rows = json.loads((root / "face2text/v1.0/raw.json").read_text())
    present = {p.name for p in (root / "celeba").rglob("*.jpg")}
    named = {r["filename"] for r in rows}
    stats: dict = {}
    with pytest.warns(UserWarning, match=rf"{len(named - present)} of the {len(named)} images .* skipped .* "
                                         r"using the 177 present images"):
        recs = load_face2text_v10(root, stats=stats)
    assert stats["images_present"] == len(recs) == 177 and stats["images_missing"] == len(named - present)
    assert stats["images_named"] == len(named) == 4076 and stats["captions_named"] == len(rows)
    assert stats["captions_of_missing_images"] == sum(r["filename"] not in present for r in rows)
    assert stats["captions_used"] + stats["captions_of_missing_images"] + stats["captions_without_words"] == len(rows)
    assert all(r.path.is_file() and r.path.parent.name == "89x109" for r in recs)
    from models import config as C

    cfg = C.build_config(None, [f"data.root={root}", "data.dataset=face2text-v1.0"])
    st: dict = {}
    with pytest.warns(UserWarning):
        assert [r.key for r in load_records(cfg, st)] == [r.key for r in recs]
    assert st["dataset"] == "face2text-v1.0" and st["images"] == 177 and st["images_missing"] == stats["images_missing"]


def test_face2text_v10_split_is_deterministic_by_seed():
    import warnings

    from models.data import load_face2text_v10, split_records

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        recs = load_face2text_v10(require_data())
    tr, te = split_records(recs, 0.2, seed=0)
    assert len(te) == 35 and len(tr) == 142  # no identity file: each image is its own identity
    assert not {r.key for r in tr} & {r.key for r in te}
    tr2, te2 = split_records(recs, 0.2, seed=0)
    assert [r.key for r in te2] == [r.key for r in te] and [r.key for r in tr2] == [r.key for r in tr]
    assert [r.key for r in split_records(recs, 0.2, seed=1)[1]] != [r.key for r in te]
