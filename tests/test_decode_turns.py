"""The CPU schedule of the decode pass: decoding and the networks take turns (no preprocess
call runs while a forward runs), the GPU schedule overlaps them, and the features are the
same either way (real LFW faces through the FID Inception)."""
from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from facemetrics.extractors.base import FeatureExtractor
from facemetrics.imaging.images import scan
from facemetrics.pipeline import features
from facemetrics.pipeline.features import extract, take_turns

_LOCK = threading.Lock()


class _Timed:
    """A picklable preprocessor that records when it ran (thread workers share the list)."""

    def __init__(self, log: list) -> None:
        self.log = log

    def __call__(self, img: np.ndarray) -> dict:
        t0 = time.perf_counter()
        time.sleep(0.004)
        out = {"mean": img.reshape(-1, 3).astype(np.float64).mean(axis=0)}
        with _LOCK:
            self.log.append((t0, time.perf_counter()))
        return out


class TimedExtractor(FeatureExtractor):
    """Mean colour per image; records the time spans of its preprocess and forward calls."""

    name = "timed"
    outputs = ("mean",)

    def __init__(self) -> None:
        self.prep_spans: list = []
        self.forward_spans: list = []

    def preprocessor(self):
        return _Timed(self.prep_spans)

    def forward(self, batch):
        t0 = time.perf_counter()
        time.sleep(0.03)
        self.forward_spans.append((t0, time.perf_counter()))
        return {"mean": batch["mean"]}

    def fingerprint(self):
        return {"extractor": "timed", "version": 1}


def _overlaps(a: list, b: list) -> int:
    return sum(1 for s0, s1 in a for f0, f1 in b if s0 < f1 and f0 < s1)


@pytest.mark.parametrize("overlap", ["0", "1"])
def test_turns_keep_decoding_out_of_the_forward(lfw_small, monkeypatch, overlap):
    monkeypatch.setenv("FACEMETRICS_OVERLAP", overlap)
    ex = TimedExtractor()
    res = extract(scan(str(lfw_small[0])), [ex], batch_size=3, workers=2, cache=False, progress=False)
    assert len(res.names) == 12 and len(ex.forward_spans) == 4 and len(ex.prep_spans) == 12
    hits = _overlaps(ex.prep_spans, ex.forward_spans)
    if overlap == "0":  # turns: not one preprocess call intersects a forward
        assert hits == 0
    else:  # overlap: the next images are decoded while the network runs
        assert hits > 0


def test_inception_features_identical_both_ways(lfw_small, monkeypatch):
    from facemetrics.extractors.inception import InceptionExtractor

    src = scan(str(lfw_small[0]))
    pools = {}
    for mode in ("0", "1"):
        monkeypatch.setenv("FACEMETRICS_OVERLAP", mode)
        res = extract(src, [InceptionExtractor()], batch_size=5, workers=2, cache=False, progress=False)
        pools[mode] = res.outputs["inception"]["pool"]
    assert pools["0"].shape == (12, 2048)
    np.testing.assert_array_equal(pools["0"], pools["1"])


def test_default_schedule(monkeypatch):
    monkeypatch.delenv("FACEMETRICS_OVERLAP", raising=False)
    assert take_turns("cpu") and not take_turns("cuda") and not take_turns("cuda:1")
    monkeypatch.setenv("FACEMETRICS_OVERLAP", "1")
    assert not take_turns("cpu")
    monkeypatch.setenv("FACEMETRICS_OVERLAP", "0")
    assert take_turns("cuda")


def test_decoded_keeps_order_and_errors():
    """Both schedules yield every name once, in order, errors included."""
    from concurrent.futures import ThreadPoolExecutor

    names = [f"n{i}" for i in range(11)]
    with ThreadPoolExecutor(2) as pool:
        def submit(n):
            return pool.submit(lambda: (n, None, "bad") if n == "n4" else (n, [n], None))
        for turn in (0, 3):
            out = list(features._decoded(names, submit, 4, turn))
            assert [o[0] for o in out] == names
            assert out[4] == ("n4", None, "bad")


class _BackgroundRunner:
    """A ProcessRunner stand-in: works in a background thread (as dlib's processes do) and records
    when its work ran."""

    def __init__(self, spans: list) -> None:
        from concurrent.futures import ThreadPoolExecutor

        self.spans, self.pool = spans, ThreadPoolExecutor(1)

    def preprocessor(self):
        return _Timed([])

    def submit(self, items):
        def work():
            t0 = time.perf_counter()
            time.sleep(0.04)
            self.spans.append((t0, time.perf_counter()))
            return {"mean": np.stack([it["mean"] for it in items])}

        fut = self.pool.submit(work)
        return fut.result


class RunnerExtractor(TimedExtractor):
    """Runs in 'worker processes' (a background thread here), like the dlib embedder."""

    name = "runner"

    def __init__(self) -> None:
        super().__init__()
        self.runner_spans: list = []

    def process_runner(self, workers):
        return _BackgroundRunner(self.runner_spans)

    def fingerprint(self):
        return {"extractor": "runner", "version": 1}


@pytest.mark.parametrize("overlap", ["0", "1"])
def test_worker_process_extractors_take_their_turn_on_cpu(lfw_small, monkeypatch, overlap):
    """Turns: a runner's batch is finished before the network's forward of the pass runs (dlib's processes
    and torch's threads never share the cores); overlap (GPU): the runner works beside the forwards."""
    monkeypatch.setenv("FACEMETRICS_OVERLAP", overlap)
    net, runner = TimedExtractor(), RunnerExtractor()
    res = extract(scan(str(lfw_small[0])), [runner, net], batch_size=3, workers=2, cache=False, progress=False)
    assert len(runner.runner_spans) == 4 and len(net.forward_spans) == 4
    np.testing.assert_array_equal(res.outputs["runner"]["mean"], res.outputs["timed"]["mean"])
    hits = _overlaps(runner.runner_spans, net.forward_spans)
    assert (hits == 0) if overlap == "0" else (hits > 0)


def test_planner_starts_the_paired_extractors_before_loading_the_others(monkeypatch):
    """The face embedder is built and started (its worker pool forked) before the Inception weights load."""
    from facemetrics.options import ScoreOptions
    from facemetrics.pipeline import planner
    from facemetrics.pipeline.distributed import DistContext

    order: list[str] = []
    face = RunnerExtractor()
    face.start = lambda workers: order.append(f"start face {workers}")  # type: ignore[method-assign]

    def build(role, specs, opts):
        order.append(f"build {role}")
        return face if role == "face" else TimedExtractor()

    monkeypatch.setattr(planner, "_build_role", build)
    from facemetrics.metrics.registry import resolve

    specs = resolve("fid,fsd")
    exs = planner._build_extractors(DistContext(device="cpu"), specs, ScoreOptions(workers=3))
    assert order == ["build face", "start face 3", "build inception"]
    assert list(exs) == ["inception", "face"]
