"""The run's matcher (models.matcher.load_matcher) used for R-precision."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from conftest_models import tiny_config


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    from models.train import train

    d = tmp_path_factory.mktemp("m")
    train(tiny_config(**{"loss.matching": "clip", "train.steps": 1, "train.sample_every": 0}), d, progress=False)
    return d


def test_damsm_and_clip_matchers_of_a_checkpoint(run):
    from PIL import Image

    from models.matcher import load_matcher
    from models.system import load_checkpoint

    ck = load_checkpoint(str(run))
    path = ck["test_records"][0]["path"]
    real = np.asarray(Image.open(path).convert("RGB"))
    texts = [d["captions"][0][1] for d in ck["test_records"]] + ["a man with " + "very " * 80 + "short hair"]
    for kind, dim, limit in (("damsm", 16, 12), ("clip", 16, 75)):
        m = load_matcher(str(run / "last.pt"), "cpu", kind=kind)
        assert m.max_tokens == limit
        fp = m.fingerprint()
        assert fp["matcher"] == kind and fp["variant"] == "lstm-clip" and len(fp["checkpoint_sha256"]) == 64
        ie = m.encode_images([real, real[:100, :120].copy()])
        with pytest.warns(UserWarning, match="truncated"):
            te = m.encode_texts(texts)
        assert ie.shape == (2, dim) and te.shape == (len(texts), dim) and ie.dtype == np.float32
        assert np.isfinite(ie).all() and np.isfinite(te).all()
        # deterministic and independent of batching
        m.batch_size = 1
        with pytest.warns(UserWarning):
            assert np.allclose(m.encode_texts(texts), te, atol=1e-5)
    assert load_matcher(str(run)).kind == "clip"  # the run's own matching loss


def test_damsm_matcher_embeds_what_the_encoders_compute(run):
    from models.matcher import load_matcher

    m = load_matcher(str(run), kind="damsm")
    img = np.random.default_rng(0).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    x = torch.from_numpy(img).permute(2, 0, 1).float()[None] / 127.5 - 1
    with torch.no_grad():
        want = m.system.image_encoder.eval()(x)[1]
        ids, _ = m.system.encode_captions(["a young man"])
        sent = m.system.text_encoder.eval()(*ids["lstm"])[1]
    assert np.allclose(m.encode_images([img]), want.numpy(), atol=1e-6)
    assert np.allclose(m.encode_texts(["a young man"]), sent.numpy(), atol=1e-6)


def test_clip_only_checkpoint_has_no_damsm_matcher(tmp_path):
    from facemetrics.errors import FacemetricsError
    from models.matcher import load_matcher
    from models.train import train

    train(tiny_config(**{"text.encoder": "clip", "loss.matching": "clip", "train.steps": 1,
                         "train.sample_every": 0}), tmp_path, progress=False)
    with pytest.raises(FacemetricsError, match="no DAMSM encoders"):
        load_matcher(str(tmp_path), kind="damsm")
    with pytest.raises(FacemetricsError, match="checkpoint not found"):
        load_matcher(str(tmp_path / "nope.pt"))


def test_damsm_matcher_splits_its_image_path_for_the_shared_pass(run):
    """The damsm kind's picklable preprocessing + batched step equals encode_images; the clip
    kind keeps image sizes and has no split path (it reads FAKE on its own)."""
    import pickle

    from PIL import Image

    from facemetrics.matchers import build_matcher
    from facemetrics.matchers.extractor import image_extractor
    from models.matcher import load_matcher
    from models.system import load_checkpoint

    recs = load_checkpoint(str(run))["test_records"]
    imgs = [np.asarray(Image.open(r["path"]).convert("RGB")) for r in recs]
    m = load_matcher(str(run), kind="damsm")
    prep = pickle.loads(pickle.dumps(m.image_preprocessor()))
    batch = np.stack([prep(a) for a in imgs])
    assert batch.shape == (len(imgs), 3, 64, 64) and batch.dtype == np.float32
    np.testing.assert_array_equal(m.encode_preprocessed(batch), m.encode_images(imgs))
    assert load_matcher(str(run), kind="clip").image_preprocessor() is None
    ex = image_extractor(build_matcher(f"damsm:{run / 'last.pt'}"))
    assert ex is not None and ex.fingerprint()["matcher"]["matcher"] == "damsm"
    out = ex.forward({"image": np.stack([ex.preprocessor()(a)["image"] for a in imgs])})["embedding"]
    np.testing.assert_array_equal(out, m.encode_images(imgs))
