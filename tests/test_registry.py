"""The metric registry: built-in specs, bundles, bad names, and a metric added in one file (here, this test)."""
from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from facemetrics.errors import FacemetricsError
from facemetrics.extractors.base import FeatureExtractor
from facemetrics.metrics import registry
from facemetrics.result import MetricResult


def test_builtins_in_documented_order_with_directions():
    names = registry.available()
    assert names[:7] == ["fid", "kid", "is", "fsd", "fss", "rprec", "clipscore"]
    assert [registry.get(n).higher_is_better for n in names[:7]] == [False, False, True, False, True, True, True]
    assert registry.get("is").needs[0].sides == ("fake",)
    assert registry.get("fsd").paired and not registry.get("fid").paired


def test_bundles_and_parsing():
    assert [s.name for s in registry.resolve("fss")] == ["fsd", "fss"]  # computed together, in registry order
    assert [s.name for s in registry.resolve("kid, FID,kid")] == ["kid", "fid"]
    with pytest.raises(FacemetricsError, match="unknown metric.*nope"):
        registry.parse_metrics("fid,nope")
    with pytest.raises(FacemetricsError, match=r"\(none\)"):
        registry.parse_metrics(" , ")


def test_result_without_its_protocol_is_refused():
    spec = registry.MetricSpec("toy_unrecorded", True, (registry.Need("inception", "pool", "stats"),),
                               compute=lambda inputs: {"toy_unrecorded": MetricResult("toy_unrecorded", 1.0, True)},
                               protocol=("seed",))
    with pytest.raises(RuntimeError, match="does not record seed"):
        registry.compute_all([spec], registry.MetricInputs(options=None))


# ----------------------------------------------------------------------------- a metric in one file

class MeanPixelExtractor(FeatureExtractor):
    """Per-image mean colour (3-d), no network: the toy metric's own extractor."""

    name = "meanpix"
    outputs = ("mean",)

    def preprocessor(self):
        return _mean_colour

    def forward(self, batch):
        return {"mean": batch["mean"]}

    def fingerprint(self):
        return {"extractor": "meanpix", "version": 1}


def _mean_colour(img: np.ndarray) -> dict:
    return {"mean": img.reshape(-1, 3).astype(np.float64).mean(axis=0)}


def _mean_pixel_distance(inputs) -> dict[str, MetricResult]:
    a, b = inputs.stat("real", "meanpix", "mean"), inputs.stat("fake", "meanpix", "mean")
    d = float(np.linalg.norm(a.mean - b.mean))
    return {"mpd": MetricResult("mpd", d, False, n=b.n, details={"definition": "||mean colour real - fake||_2",
                                                                   "n_real": a.n})}


@pytest.fixture
def mpd_registered():
    spec = registry.register(registry.MetricSpec(
        name="mpd", higher_is_better=False, needs=(registry.Need("meanpix", "mean", "stats"),),
        compute=_mean_pixel_distance, protocol=("definition",), extractor=lambda opts: MeanPixelExtractor()))
    yield spec
    registry.unregister("mpd")


def _independent_mpd(a, b) -> float:
    def mean_of_means(folder):
        return np.mean([np.asarray(Image.open(p).convert("RGB"), np.float64).reshape(-1, 3).mean(0)
                        for p in sorted(folder.iterdir())], axis=0)
    return float(np.linalg.norm(mean_of_means(a) - mean_of_means(b)))


def test_toy_metric_registered_from_a_test_runs_end_to_end(mpd_registered, lfw_small, tmp_path, monkeypatch):
    """A newcomer's metric: one spec + one extractor, nothing else edited; with FID beside it in one pass."""
    import facemetrics

    monkeypatch.setenv("FACEMETRICS_CACHE", str(tmp_path / "cache"))
    a, b = lfw_small
    rec = facemetrics.score(str(a), str(b), metrics="mpd,fid", progress=False)
    assert list(rec["metrics"]) == ["mpd", "fid"]
    got = rec["metrics"]["mpd"]
    assert got["higher_is_better"] is False and got["n"] == 12
    assert got["value"] == pytest.approx(_independent_mpd(a, b), rel=1e-9)
    alone = facemetrics.score(str(a), str(b), metrics="fid", progress=False)
    assert rec["metrics"]["fid"]["value"] == pytest.approx(alone["metrics"]["fid"]["value"], rel=1e-12)


def _folder_pixels(folder) -> list[np.ndarray]:
    return [np.asarray(Image.open(p).convert("RGB")) for p in sorted(folder.iterdir())]


def test_toy_metric_on_in_memory_images_takes_the_same_plan(mpd_registered, lfw_small, tmp_path, monkeypatch):
    """In-memory sides go through the planner like folders: any registered metric works on them."""
    import facemetrics

    monkeypatch.setenv("FACEMETRICS_CACHE", str(tmp_path / "cache"))
    a, b = lfw_small
    rec = facemetrics.score(_folder_pixels(a), np.stack(_folder_pixels(b)), metrics="mpd", progress=False)
    assert rec["metrics"]["mpd"]["value"] == pytest.approx(_independent_mpd(a, b), rel=1e-9)
    assert (rec["real"]["kind"], rec["fake"]["kind"]) == ("images", "array")


def test_generator_is_refused_for_a_role_other_than_inception(mpd_registered, lfw_small):
    import facemetrics

    pix = np.stack(_folder_pixels(lfw_small[1]))
    gen = facemetrics.Generated(lambda bs: pix[:bs], n=len(pix), batch_size=4)
    with pytest.raises(FacemetricsError, match="role\\(s\\) meanpix") as e:
        facemetrics.score(str(lfw_small[0]), gen, metrics="mpd", progress=False)
    assert e.value.param == "--metrics"
