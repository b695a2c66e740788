"""The ``tf1`` and ``pytorch-fid`` presets against the real tools, on real faces.

* ``--preset tf1`` = torch-fidelity 0.4.0 (``calculate_metrics(fid=True)`` on the folders),
  and = torchmetrics 1.9.0's ``FrechetInceptionDistance(antialias=False)`` (torch-fidelity's
  extractor and TF1 resize inside torchmetrics);
* ``--preset pytorch-fid`` = pytorch-fid 0.3.0 (``calculate_fid_given_paths``, dims 2048).

The tools run offline on weights built from the packaged FID layers (see
``tests/reference_tools.py``; the mapping is checked first, feature by feature).
How each tool reads the files: torch-fidelity ``PIL.Image.open(f).convert("RGB")`` then
``pil_to_tensor`` (uint8, resized inside the network by its TF1-compatible bilinear);
pytorch-fid ``PIL.Image.open(f).convert("RGB")`` then ``ToTensor()`` (float in [0, 1],
``F.interpolate(bilinear, align_corners=False)`` to 299, ``2x − 1``); torchmetrics gets
uint8 tensors decoded here the same way (PIL, RGB). facemetrics decodes with PIL too.
LFW images are 250×250 RGB JPEGs, so decoding is the same in all four.
"""
from __future__ import annotations

import random
import warnings

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import lfw_first_images, link_folder
from facemetrics.api import score

N_PER_SIDE = 100
SEED = 20240611


@pytest.fixture(scope="module")
def lfw_draw(data_dir, tmp_path_factory):
    """A seeded draw of 2×100 LFW faces of 200 distinct people (one image each)."""
    files = random.Random(SEED).sample(lfw_first_images(data_dir), 2 * N_PER_SIDE)
    base = tmp_path_factory.mktemp("lfw-draw")
    return link_folder(base / "a", files[:N_PER_SIDE]), link_folder(base / "b", files[N_PER_SIDE:])


def _load_uint8(folder) -> torch.Tensor:
    files = sorted(folder.iterdir())
    return torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files])).permute(0, 3, 1, 2)


def _ours(a, b, preset: str) -> float:
    rec = score(str(a), str(b), metrics="fid", preset=preset, progress=False, cache=False)
    assert rec["real"]["n"] == rec["fake"]["n"] == N_PER_SIDE
    return rec["metrics"]["fid"]["value"]


@pytest.fixture(scope="module")
def ours_tf1(lfw_draw) -> float:
    return _ours(*lfw_draw, "tf1")


@pytest.fixture(scope="module")
def ours_pytorch_fid(lfw_draw) -> float:
    return _ours(*lfw_draw, "pytorch-fid")


def _rel(x: float, ref: float) -> float:
    return abs(x - ref) / abs(ref)


def test_reference_weights_reproduce_packaged_layers(data_dir, reference_fid_weights):
    """Each tool's network, on the built file, gives the packaged network's pool features (1e-4 abs)."""
    from pytorch_fid.inception import InceptionV3
    from torch_fidelity.feature_extractor_inceptionv3 import FeatureExtractorInceptionV3

    from reference_tools import packaged_net

    files = lfw_first_images(data_dir)[500:504]
    x = torch.from_numpy(np.stack([np.asarray(Image.open(f).convert("RGB").resize((299, 299), Image.BICUBIC))
                                   for f in files])).permute(0, 3, 1, 2).contiguous()
    net = packaged_net()
    with torch.no_grad():
        ref_tf = net((x.float() - 128) / 128)
        ref_pt = net((x.float() / 255) * 2 - 1)
        tfe = FeatureExtractorInceptionV3("inception-v3-compat", ["2048", "logits_unbiased"])  # hub file
        pool, logits = tfe(x)
        pfid = InceptionV3([3], resize_input=False, normalize_input=True).eval()  # hub file
        pool_pt = pfid(x.float() / 255)[0].reshape(len(files), 2048)
    np.testing.assert_allclose(pool.numpy(), ref_tf.numpy(), atol=1e-4, rtol=0)
    np.testing.assert_allclose(pool_pt.numpy(), ref_pt.numpy(), atol=1e-4, rtol=0)
    assert float(ref_tf.abs().max()) > 0.5  # features, not zeros
    assert torch.isnan(logits).all()  # no logits head in the packaged layers: fc is NaN on purpose


def test_tf1_preset_equals_torch_fidelity(lfw_draw, ours_tf1, reference_fid_weights):
    import torch_fidelity

    a, b = lfw_draw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = torch_fidelity.calculate_metrics(input1=str(a), input2=str(b), fid=True, cuda=False, batch_size=50,
                                               cache=False, save_cpu_ram=True, verbose=False)
    ref = ref["frechet_inception_distance"]
    ours = ours_tf1
    print(f"tf1 vs torch-fidelity: ours={ours!r} ref={ref!r} rel={_rel(ours, ref):.2e}")
    assert ours == pytest.approx(ref, rel=1e-5)


def test_pytorch_fid_preset_equals_pytorch_fid(lfw_draw, ours_pytorch_fid, reference_fid_weights):
    from pytorch_fid.fid_score import calculate_fid_given_paths

    a, b = lfw_draw
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = float(calculate_fid_given_paths([str(a), str(b)], batch_size=50, device="cpu", dims=2048,
                                              num_workers=0))
    ours = ours_pytorch_fid
    print(f"pytorch-fid preset vs pytorch-fid: ours={ours!r} ref={ref!r} rel={_rel(ours, ref):.2e}")
    assert ours == pytest.approx(ref, rel=1e-5)


def test_tf1_preset_equals_torchmetrics_without_antialias(lfw_draw, ours_tf1, reference_fid_weights):
    from torchmetrics.image.fid import FrechetInceptionDistance

    a, b = lfw_draw
    metric = FrechetInceptionDistance(feature=2048, antialias=False, normalize=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for folder, real in ((a, True), (b, False)):
            imgs = _load_uint8(folder)
            for i in range(0, len(imgs), 50):
                metric.update(imgs[i:i + 50], real=real)
        ref = float(metric.compute())
    ours = ours_tf1
    print(f"tf1 vs torchmetrics(antialias=False): ours={ours!r} ref={ref!r} rel={_rel(ours, ref):.2e}")
    assert ours == pytest.approx(ref, rel=1e-5)


def test_the_tolerance_tells_the_presets_apart(ours_tf1, ours_pytorch_fid):
    """The two presets differ only in resize and normalisation; 1e-5 relative separates them by far."""
    print(f"tf1 vs pytorch-fid preset: rel={_rel(ours_pytorch_fid, ours_tf1):.2e}")
    assert _rel(ours_pytorch_fid, ours_tf1) > 100 * 1e-5
