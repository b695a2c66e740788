"""FaceNet (InceptionResnetV1): key layout, strict state-dict loading, numerics, weights lookup.

``tests/data/facenet_vggface2_keys.tsv`` lists the state-dict keys and shapes of
facenet-pytorch 2.6.0's ``InceptionResnetV1`` as built for the VGGFace2 checkpoint;
``facenet_reference_embeddings.npy`` is that implementation's output for the seeded
random state dict and inputs of :mod:`facenet_random`. Only the test with the real
VGGFace2 file skips when the file is absent.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from face_helpers import LFW, LFW_IMAGES, lfw_name, need
from facenet_random import random_state_dict, read_key_table, reference_input

from facemetrics.errors import FacemetricsError, WeightsNotFoundError
from facemetrics.extractors import build_extractor
from facemetrics.extractors import facenet as fn

DATA = Path(__file__).parent / "data"
KEYS = read_key_table(DATA / "facenet_vggface2_keys.tsv")


@pytest.fixture(scope="module")
def state():
    """The seeded random state dict in facenet-pytorch's VGGFace2 layout (built once)."""
    return random_state_dict(KEYS, seed=0)


@pytest.fixture(scope="module")
def net():
    """One embedding network (no logits head) shared by the tests that only load into it."""
    return fn.build_network()


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory, state):
    import torch

    path = tmp_path_factory.mktemp("fn") / "random-vggface2-layout.pt"
    torch.save(state, path)
    return path


def test_key_table_matches_network():
    net = fn.build_network(num_classes=fn.VGGFACE2_CLASSES)
    ours = [(k, list(v.shape), str(v.dtype).replace("torch.", "")) for k, v in net.state_dict().items()]
    assert ours == KEYS  # same names, order, shapes, dtypes
    assert len(KEYS) == 716


def test_strict_load_drops_only_logits_and_matches_reference(net, state):
    import torch

    dropped = fn.load_state_dict_strict(net, state)
    assert dropped == ["logits.weight", "logits.bias"]
    x = torch.from_numpy(reference_input()).permute(0, 3, 1, 2).float().sub(127.5).div(128.0)
    with torch.no_grad():
        out = net(x).numpy()
    ref = np.load(DATA / "facenet_reference_embeddings.npy")
    np.testing.assert_allclose(out, ref, atol=2e-5, rtol=0)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)


def test_wrong_state_dict_is_named(net, state):
    sd = dict(state)
    del sd["repeat_2.3.branch1.1.conv.weight"]
    with pytest.raises(FacemetricsError, match=r"my.pt is not a facenet-pytorch.*Missing keys \(1\): repeat_2.3.branch1.1.conv.weight"):
        fn.load_state_dict_strict(net, sd, "my.pt")
    sd = dict(state)
    sd["extra.weight"] = sd["last_bn.weight"]
    with pytest.raises(FacemetricsError, match=r"Unexpected keys \(1\): extra.weight"):
        fn.load_state_dict_strict(net, sd, "my.pt")


def test_weights_resolution_order(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    for var in ("TORCH_HOME", "FACEMETRICS_CACHE", fn.ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    with pytest.raises(WeightsNotFoundError) as ei:
        fn.resolve_weights()
    msg = str(ei.value)
    user = tmp_path / "xdg" / "facemetrics" / fn.WEIGHTS_NAME
    hub = tmp_path / "xdg" / "torch" / "checkpoints" / fn.WEIGHTS_NAME
    assert f"${fn.ENV_VAR} (not set)" in msg
    assert msg.index(str(user)) < msg.index(str(hub)) < msg.index("Fix:")  # tried in this order
    assert fn.WEIGHTS_URL in msg and "--face-weights PATH" in msg and ei.value.param == "--face-weights"

    hub.parent.mkdir(parents=True)
    hub.write_bytes(b"hub")
    assert fn.resolve_weights() == hub
    user.parent.mkdir(parents=True)
    user.write_bytes(b"user")
    assert fn.resolve_weights() == user
    env = tmp_path / "env.pt"
    env.write_bytes(b"env")
    monkeypatch.setenv(fn.ENV_VAR, str(env))
    assert fn.resolve_weights() == env
    explicit = tmp_path / "explicit.pt"
    explicit.write_bytes(b"x")
    assert fn.resolve_weights(explicit) == explicit
    with pytest.raises(FacemetricsError, match="weights file not found: .*nope.pt") as ei:
        fn.resolve_weights(tmp_path / "nope.pt")
    assert ei.value.param == "--face-weights"
    monkeypatch.setenv(fn.ENV_VAR, str(tmp_path / "gone.pt"))
    assert fn.resolve_weights() == user  # a stale env var is passed over for a later place


def test_extractor_loads_file_and_embeds(random_weights, net, state):
    from facemetrics.imaging.images import ImageSource, load_rgb
    from facemetrics.nets.weights import sha256_file

    ex = build_extractor("facenet", weights=str(random_weights))
    assert ex.fingerprint()["weights_sha256"] == sha256_file(random_weights)
    src = ImageSource(need(LFW_IMAGES), "folder", (lfw_name("Aaron_Peirsol", 1), lfw_name("Aaron_Peirsol", 2)))
    prep = ex.preprocessor()
    items = [prep(load_rgb(src, n)) for n in src.names]
    assert all(it["face"].shape == (160, 160, 3) and it["face"].dtype == np.uint8 for it in items)
    assert all(bool(it["detected"]) for it in items)
    out = ex.forward({k: np.stack([it[k] for it in items]) for k in items[0]})
    assert out["embedding"].shape == (2, 512) and out["detected"].tolist() == [True, True]
    np.testing.assert_allclose(np.linalg.norm(out["embedding"], axis=1), 1.0, atol=1e-5)
    assert ex.dropped_keys == ["logits.weight", "logits.bias"]
    # the forward pass is the network on (x - 127.5) / 128 of the NCHW face
    import torch

    x = torch.from_numpy(np.stack([it["face"] for it in items])).permute(0, 3, 1, 2).float()
    with torch.no_grad():
        fn.load_state_dict_strict(net, state)
        ref = net((x - 127.5) / 128.0).numpy()
    np.testing.assert_allclose(out["embedding"], ref, atol=1e-5)


def test_missing_weights_error_when_used(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    for var in ("TORCH_HOME", "FACEMETRICS_CACHE", fn.ENV_VAR):
        monkeypatch.delenv(var, raising=False)
    ex = build_extractor("facenet")  # constructing loads nothing
    with pytest.raises(WeightsNotFoundError, match="Tried"):
        ex.load()
    (tmp_path / "bad.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(FacemetricsError, match="FaceNet weights .* is corrupted or not a torch file"):
        build_extractor("facenet", weights=str(tmp_path / "bad.pt")).load()


def test_real_vggface2_weights_separate_people():
    """The real checkpoint, when present: same-person pairs closer than different-person pairs."""
    try:
        path = fn.resolve_weights()
    except WeightsNotFoundError as e:
        pytest.skip(f"VGGFace2 FaceNet weights not available here: {e}")
    from facemetrics.datasets import load_lfw_pairs
    from facemetrics.imaging.images import ImageSource, load_rgb
    from facemetrics.metrics.face import pair_distances

    pairs = load_lfw_pairs(need(LFW / "pairs.txt"), folds=[0])[250:350]  # 50 same, 50 different
    ex = build_extractor("facenet", weights=str(path))
    ex.load()
    src = ImageSource(LFW_IMAGES, "folder", ())
    prep = ex.preprocessor()

    def emb(names):
        items = [prep(load_rgb(src, n)) for n in names]
        return ex.forward({k: np.stack([it[k] for it in items]) for k in items[0]})["embedding"]

    left = emb([lfw_name(p.left_name, p.left_number) for p in pairs])
    right = emb([lfw_name(p.right_name, p.right_number) for p in pairs])
    cos = pair_distances(left, right)["cosine"]
    same = np.array([p.same for p in pairs])
    assert cos[same].mean() - cos[~same].mean() > 0.3


def test_wrong_shape_is_named(net, state):
    sd = dict(state)
    sd["last_linear.weight"] = sd["last_linear.weight"][:256]
    with pytest.raises(FacemetricsError, match=r"Wrong shapes \(1\): last_linear.weight \(256, 1792\) != \(512, 1792\)"):
        fn.load_state_dict_strict(net, sd, "my.pt")
