"""``--resize-on device``: the clean resize as torch ops on the network's device (for GPUs).

Checked here on the CPU with real faces: features and FID agree with the PIL path (the
protocol) within the stated tolerances, images of different sizes share a batch, the
fingerprint and the record say so (cached apart, statistics not mixed), and the presets
and extractors without a torch resize are usage errors naming the flag.
"""
from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

import facemetrics
from facemetrics.cli.main import cli
from facemetrics.errors import FacemetricsError
from facemetrics.extractors.inception import InceptionExtractor
from facemetrics.imaging.images import scan
from facemetrics.pipeline.features import extract
from facemetrics.pipeline.sides import build_feature_extractor


@pytest.fixture(scope="module")
def mixed_sizes(data_dir, tmp_path_factory):
    """6 LFW faces (250×250) and 6 CelebA faces (89×109) in one folder (links)."""
    from conftest import lfw_first_images, link_folder

    celeba = sorted((data_dir / "celeba" / "89x109").glob("*.jpg"))[:6]
    return link_folder(tmp_path_factory.mktemp("mixed") / "m", lfw_first_images(data_dir)[300:306] + celeba)


def _pool(src, where: str) -> np.ndarray:
    ex = InceptionExtractor(resize_on=where)
    return extract(src, [ex], batch_size=5, workers=2, cache=False, progress=False).outputs["inception"]["pool"]


def test_device_resize_features_match_pil_on_mixed_sizes(mixed_sizes):
    src = scan(str(mixed_sizes))
    pil, dev = _pool(src, "cpu"), _pool(src, "device")
    assert pil.shape == dev.shape == (12, 2048)
    # float32 resize within ~1e-4 of PIL's in [0, 255] units: pool features move by ~1e-6 of their scale
    assert np.abs(pil - dev).max() <= 1e-4 * np.abs(pil).max()


def test_device_resize_fid_within_reference_tolerance_and_marked(lfw_small):
    a, b = map(str, lfw_small)
    ref = facemetrics.score(a, b, metrics="fid", progress=False, ci=0)
    dev = facemetrics.score(a, b, metrics="fid", progress=False, ci=0, resize_on="device")
    x, y = ref["metrics"]["fid"]["value"], dev["metrics"]["fid"]["value"]
    assert abs(x - y) / x < 1e-6  # the tolerance the presets keep against the reference tools
    assert "resize" not in ref["protocol"] and "exact" not in ref["protocol"]
    assert dev["protocol"]["resize"].startswith("torch float32")
    fp_cpu, fp_dev = InceptionExtractor().fingerprint(), InceptionExtractor(resize_on="device").fingerprint()
    assert "resize" not in fp_cpu and {k: v for k, v in fp_dev.items() if k != "resize"} == fp_cpu


def test_device_resize_cached_apart(lfw_small, tmp_path):
    src = scan(str(lfw_small[0]))
    kw = dict(batch_size=8, workers=2, cache=True, progress=False, cache_root=tmp_path)
    first = extract(src, [InceptionExtractor()], **kw)
    other = extract(src, [InceptionExtractor(resize_on="device")], **kw)
    again = extract(src, [InceptionExtractor(resize_on="device")], **kw)
    assert not first.from_cache["inception"] and not other.from_cache["inception"]
    assert again.from_cache["inception"]


def test_statistics_of_the_pil_path_are_not_mixed_with_device_resize(lfw_small, tmp_path):
    ref = tmp_path / "ref.npz"
    res = CliRunner().invoke(cli, ["stats", str(lfw_small[0]), "-o", str(ref), "-q"])
    assert res.exit_code == 0, res.output
    res = CliRunner().invoke(cli, ["score", str(ref), str(lfw_small[1]), "--resize-on", "device", "-q"])
    assert res.exit_code == 2 and "another protocol" in res.output and "resize" in res.output


def test_usage_errors_name_the_flag(lfw_small, tmp_path):
    res = CliRunner().invoke(cli, ["score", *map(str, lfw_small), "--resize-on", "device", "--preset", "tf1", "-q"])
    assert res.exit_code == 2 and "--resize-on" in res.output and "clean preset only" in res.output
    res = CliRunner().invoke(cli, ["score", *map(str, lfw_small), "--resize-on", "gpu", "-q"])
    assert res.exit_code == 2 and "--resize-on" in res.output
    with pytest.raises(FacemetricsError, match="FID Inception only") as e:
        build_feature_extractor(str(tmp_path / "net.pt"), "clean", None, "fp32", "device")
    assert e.value.param == "--resize-on"
