"""The CLIP discriminator variant (loss.discriminator=clip): losses before and after its switch, the head
trained only after it, exact resume on either side of the switch, config errors (tiny config, CPU).
DDP equals one process: tests/test_models_ddp.py."""
from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from conftest_models import tiny_config

#: lstm-damsm with the CLIP discriminator from GAN step 1: 2 DAMSM steps, GAN steps 0 (ordinary), 1, 2 (CLIP)
CLIP_D = {"loss.discriminator": "clip", "clip_d.start_step": 1}


def _log(run_dir):
    return [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def clip_d_run(tmp_path_factory):
    from models.train import train

    d = tmp_path_factory.mktemp("clip_d")
    assert train(tiny_config(**CLIP_D), d, progress=False)["status"] == "done"
    return d


def test_switch_changes_the_losses_and_trains_the_head_only_after_it(clip_d_run, tmp_path):
    from models.train import train

    gan = [r for r in _log(clip_d_run) if r.get("phase") == "gan"]
    assert [r["step"] for r in gan] == [3, 4, 5]
    for r in gan:
        assert all(math.isfinite(v) for v in r["losses"].values()), r
    assert "d_clip" not in gan[0]["losses"] and all("d_clip" in r["losses"] for r in gan[1:])
    before = tmp_path / "before"
    train(tiny_config(**CLIP_D), before, progress=False, stop_at=3)  # after GAN step 0: not switched yet
    head0 = torch.load(before / "last.pt", weights_only=True)["state"]["clip_d"]
    assert float(head0["scale"]) == 10.0 and float(head0["bias"]) == 0.0  # untouched before the switch
    assert torch.load(before / "last.pt", weights_only=True)["optim"]["clip_d"]["state"] == {}
    head = torch.load(clip_d_run / "last.pt", weights_only=True)["state"]["clip_d"]
    assert float(head["scale"]) != 10.0 and float(head["bias"]) != 0.0
    # the ordinary variant's first GAN step is the CLIP-D run's (the switch comes after it)
    plain = tmp_path / "plain"
    train(tiny_config(), plain, progress=False, stop_at=3)
    first = [r for r in _log(plain) if r.get("phase") == "gan"][0]["losses"]
    assert first == pytest.approx(gan[0]["losses"], rel=1e-6)


@pytest.mark.parametrize("stop_at", [3, 4])  # before the switch (GAN step 0 done), after it
def test_resume_across_the_switch_equals_uninterrupted_run(clip_d_run, tmp_path, stop_at):
    from models.train import resume, train

    run = tmp_path / "run"
    assert train(tiny_config(**CLIP_D), run, progress=False, stop_at=stop_at)["status"] == "stopped"
    assert resume(run, progress=False)["status"] == "done"
    a = torch.load(clip_d_run / "last.pt", weights_only=True)
    b = torch.load(run / "last.pt", weights_only=True)

    def tensors(x, path=""):
        if isinstance(x, dict):
            for k in x:
                yield from tensors(x[k], f"{path}/{k}")
        elif isinstance(x, (list, tuple)):
            for i, v in enumerate(x):
                yield from tensors(v, f"{path}[{i}]")
        elif isinstance(x, torch.Tensor):
            yield path, x

    ta = dict(tensors({"state": a["state"], "optim": a["optim"]}))
    tb = dict(tensors({"state": b["state"], "optim": b["optim"]}))
    assert ta.keys() == tb.keys() and any(k.startswith("/state/clip_d") for k in ta)
    assert [k for k in ta if not torch.equal(ta[k], tb[k])] == []


def _cli(args):
    from models.__main__ import cli

    return CliRunner().invoke(cli, args)


def test_bad_clip_discriminator_config_is_a_usage_error(tmp_path):
    out = str(tmp_path / "x")
    r = _cli(["train", "--out", out, "--set", "loss.discriminator=stylegan"])
    assert r.exit_code == 2 and "loss.discriminator" in r.output and "attngan, clip" in r.output
    r = _cli(["train", "--out", out, "--set", "loss.discriminator=clip", "--set", "clip_d.start_step=-1"])
    assert r.exit_code == 2 and "clip_d.start_step" in r.output
    r = _cli(["train", "--out", out, "--set", "loss.discriminator=clip", "--set", "clip.model="])
    assert r.exit_code == 2 and "loss.discriminator" in r.output and "clip.model" in r.output
    r = _cli(["train", "--out", out, "--set", "clip_d.start=5"])
    assert r.exit_code == 2 and "clip_d.start_step" in r.output  # the suggestion
