"""Matchers: spec parsing, open_clip loading from files/folders/tags (tiny random models), DAMSM hook."""
from __future__ import annotations

import hashlib
import json
import sys
import types

import numpy as np
import open_clip
import pytest
import torch

from conftest_text import TESTS, TINY_ARCH, KeyedMatcher, register_tiny_arch, save_tiny_weights
from facemetrics.errors import FacemetricsError, WeightsNotFoundError
from facemetrics.matchers import build_matcher
from facemetrics.matchers.clip import ClipMatcher


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    return save_tiny_weights(tmp_path_factory.mktemp("clip") / "tiny.pt", seed=0)


def _images(n=5, seed=0):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, (40 + 3 * i, 50, 3), dtype=np.uint8) for i in range(n)]


TEXTS = ["a young woman with long brown hair", "an old man with a grey beard", "a smiling child"]


def _direct(model, images, texts, arch=TINY_ARCH):
    """Embeddings computed straight with open_clip (independent of ClipMatcher)."""
    from PIL import Image

    _, _, pre = open_clip.create_model_and_transforms(arch)  # transform only: same preprocess cfg
    tok = open_clip.get_tokenizer(arch)
    model.eval()
    with torch.no_grad():
        x = torch.stack([pre(Image.fromarray(im)) for im in images])
        return model.encode_image(x).numpy(), model.encode_text(tok(texts)).numpy()


def test_local_file_loads_the_state_dict_exactly(tiny_weights):
    register_tiny_arch()
    torch.manual_seed(0)
    original = open_clip.create_model(TINY_ARCH)  # the model whose state dict was saved
    m = build_matcher(f"clip:{TINY_ARCH}:{tiny_weights}", "cpu", batch_size=2)
    assert isinstance(m, ClipMatcher) and m.weights_file == tiny_weights
    imgs = _images()
    ref_i, ref_t = _direct(original, imgs, TEXTS)
    np.testing.assert_allclose(m.encode_images(imgs), ref_i, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(m.encode_texts(TEXTS), ref_t, rtol=1e-5, atol=1e-6)
    # a differently seeded model gives different embeddings: the weights really were loaded
    torch.manual_seed(1)
    other = open_clip.create_model(TINY_ARCH)
    assert not np.allclose(_direct(other, imgs, TEXTS)[0], ref_i, atol=1e-3)
    fp = m.fingerprint()
    assert fp["weights_sha256"] == hashlib.sha256(tiny_weights.read_bytes()).hexdigest()
    assert fp["arch"] == TINY_ARCH and fp["context_length"] == 77 and fp["preprocess"]["size"] == [32, 32]
    assert m.max_tokens == 77


def test_local_folder_in_hub_layout(tiny_weights, tmp_path):
    cfg = json.loads((TESTS / "data/open_clip/fm-tiny-clip.json").read_text())
    d = tmp_path / "hub"
    d.mkdir()
    (d / "open_clip_config.json").write_text(json.dumps({
        "model_cfg": cfg,
        "preprocess_cfg": {"mean": [0.5, 0.5, 0.5], "std": [0.25, 0.25, 0.25]},
    }))
    (d / "open_clip_pytorch_model.bin").write_bytes(tiny_weights.read_bytes())
    m = build_matcher(f"clip:{d}", "cpu")
    assert m.local_dir == d
    fp = m.fingerprint()
    assert fp["preprocess"]["mean"] == [0.5, 0.5, 0.5]
    register_tiny_arch()
    torch.manual_seed(0)
    original = open_clip.create_model(TINY_ARCH)
    with torch.no_grad():
        ref_t = original.eval().encode_text(open_clip.get_tokenizer(TINY_ARCH)(TEXTS)).numpy()
    np.testing.assert_allclose(m.encode_texts(TEXTS), ref_t, rtol=1e-5, atol=1e-6)
    # the folder's own normalisation is used: equal to a manual transform with mean .5 / std .25
    from PIL import Image

    img = _images(1)[0]
    pre = open_clip.transform.image_transform_v2(open_clip.transform.PreprocessCfg(size=32, mean=(0.5,) * 3, std=(0.25,) * 3),
                                       is_train=False)
    with torch.no_grad():
        ref = original.encode_image(pre(Image.fromarray(img))[None]).numpy()
    np.testing.assert_allclose(m.encode_images([img]), ref, rtol=1e-5, atol=1e-6)


def test_pretrained_tag_path_uses_the_tags_config(tiny_weights, monkeypatch):
    """A registered tag goes through open_clip's download_pretrained (a local 'file' entry here)."""
    register_tiny_arch()
    from open_clip import pretrained as P

    monkeypatch.setitem(P._PRETRAINED, TINY_ARCH, {
        "fmtest": {"file": str(tiny_weights), "mean": (0.1, 0.2, 0.3), "std": (0.5, 0.5, 0.5), "quick_gelu": True},
    })
    m = build_matcher(f"clip:{TINY_ARCH}:fmtest", "cpu")
    assert m.tag == "fmtest"
    fp = m.fingerprint()
    assert fp["pretrained_tag"] == "fmtest" and fp["quick_gelu"] is True
    assert fp["preprocess"]["mean"] == [0.1, 0.2, 0.3]
    assert any(type(x).__name__ == "QuickGELU" for x in m.model.modules())


def test_pretrained_tag_without_network_is_a_clear_error(tmp_path, monkeypatch):
    import huggingface_hub.constants as C

    monkeypatch.setattr(C, "HF_HUB_OFFLINE", True)  # as without network, but failing at once
    m = build_matcher("clip:ViT-B-32:openai", "cpu", cache_dir=str(tmp_path))
    with pytest.raises(WeightsNotFoundError) as e:
        m.load()
    msg = str(e.value)
    assert "huggingface.co/timm/vit_base_patch32_clip_224.openai" in msg
    assert "--matcher clip:ViT-B-32-quickgelu:/path/to/the/file" in msg  # OpenAI weights need QuickGELU
    assert e.value.param == "--matcher"


@pytest.mark.parametrize("spec, pattern", [
    ("clip:", "empty CLIP matcher spec"),
    ("clip:ViT-B-32", r"names no weights.*openai"),
    ("clip:ViT-B-32:nosuchtag", r"neither a pretrained tag of ViT-B-32.*openai"),
    ("clip:ViT-B-32:/no/such/file.bin", "weights file not found"),
    ("clip:NoSuchArch-1:openai", "unknown open_clip architecture"),
    ("clip:/no/such/folder", "no such file or folder"),
    ("siglip:x", "unknown matcher"),
    ("", "unknown matcher"),
    ("damsm:", "name the checkpoint"),
    ("damsm:/no/such/ckpt.pth", "DAMSM checkpoint not found"),
])
def test_bad_specs(spec, pattern):
    with pytest.raises(FacemetricsError, match=pattern) as e:
        build_matcher(spec, "cpu")
    assert e.value.param == "--matcher"


def test_bare_file_needs_an_architecture(tiny_weights):
    with pytest.raises(FacemetricsError, match=r"needs its architecture: clip:ARCH:"):
        build_matcher(f"clip:{tiny_weights}", "cpu")


def test_folder_without_config(tmp_path):
    with pytest.raises(FacemetricsError, match="open_clip_config.json"):
        build_matcher(f"clip:{tmp_path}", "cpu")


def test_wrong_architecture_for_the_file(tiny_weights):
    register_tiny_arch()
    m = build_matcher(f"clip:fm-tiny-clip-wide:{tiny_weights}", "cpu")
    with pytest.raises(FacemetricsError, match=r"could not load CLIP weights .* into fm-tiny-clip-wide"):
        m.load()


def test_token_counts_and_truncation(tiny_weights):
    m = build_matcher(f"clip:{TINY_ARCH}:{tiny_weights}", "cpu")
    long = " ".join(["face"] * 100)
    counts = m.token_counts(["a man", long])
    tok = m.tokenizer
    assert counts == [len(tok.encode("a man")) + 2, 102]
    ids = tok([long])[0]
    assert int(ids[-1]) == tok.eot_token_id  # truncated to 77 with the end token kept


def _fake_models_matcher(monkeypatch, fn):
    pkg = types.ModuleType("models")
    pkg.__path__ = []
    mod = types.ModuleType("models.matcher")
    mod.load_matcher = fn
    monkeypatch.setitem(sys.modules, "models", pkg)
    monkeypatch.setitem(sys.modules, "models.matcher", mod)


def test_damsm_goes_through_models_matcher(tmp_path, monkeypatch):
    ckpt = tmp_path / "gen.pth"
    ckpt.write_bytes(b"x")
    seen = {}

    def load_matcher(path, device):
        seen["args"] = (path, device)
        return KeyedMatcher()

    _fake_models_matcher(monkeypatch, load_matcher)
    m = build_matcher(f"damsm:{ckpt}", "cpu")
    assert isinstance(m, KeyedMatcher) and seen["args"] == (str(ckpt), "cpu")

    class Duck:  # the reference generator's matcher need not subclass Matcher
        max_tokens = 18

        def encode_images(self, images):
            return np.ones((len(images), 3))

        def encode_texts(self, texts):
            return np.ones((len(texts), 3))

        def fingerprint(self):
            return {"matcher": "damsm", "checkpoint_sha256": "ab" * 32}

    def load_with_kind(path, device="cpu", kind=None):
        seen["kind"] = kind
        return Duck()

    _fake_models_matcher(monkeypatch, load_with_kind)
    m = build_matcher(f"damsm:{ckpt}", "cpu")
    assert seen["kind"] == "damsm" and m.max_tokens == 18 and m.fingerprint()["matcher"] == "damsm"
    assert m.encode_texts(["a", "b"]).shape == (2, 3) and m.token_counts(["a"]) is None
    m.load("cpu")

    _fake_models_matcher(monkeypatch, lambda p, d: None)
    with pytest.raises(FacemetricsError, match="holds no DAMSM"):
        build_matcher(f"damsm:{ckpt}", "cpu")

    def broken(p, d):
        raise KeyError("text_encoder")

    _fake_models_matcher(monkeypatch, broken)
    with pytest.raises(FacemetricsError, match="could not load DAMSM encoders.*text_encoder"):
        build_matcher(f"damsm:{ckpt}", "cpu")


def test_damsm_without_the_models_package(tmp_path, monkeypatch):
    ckpt = tmp_path / "gen.pth"
    ckpt.write_bytes(b"x")
    monkeypatch.setitem(sys.modules, "models.matcher", None)  # import fails
    with pytest.raises(FacemetricsError, match=r"models\.matcher.*could not be imported"):
        build_matcher(f"damsm:{ckpt}", "cpu")


def test_clip_image_path_splits_for_the_shared_pass(tiny_weights):
    """Picklable preprocessing (for decode workers) + batched encoding equals encode_images."""
    import pickle

    from facemetrics.matchers.extractor import image_extractor

    m = build_matcher(f"clip:{TINY_ARCH}:{tiny_weights}", "cpu", batch_size=2)
    imgs = _images()
    prep = pickle.loads(pickle.dumps(m.image_preprocessor()))
    batch = np.stack([prep(a) for a in imgs])
    assert batch.shape == (len(imgs), 3, 32, 32) and batch.dtype == np.float32
    np.testing.assert_array_equal(m.encode_preprocessed(batch), m.encode_images(imgs))
    ex = image_extractor(m)
    assert ex.fingerprint() == {"extractor": "matcher-image", "matcher": m.fingerprint()}
    assert image_extractor(KeyedMatcher()) is None  # no split path: reads images itself
