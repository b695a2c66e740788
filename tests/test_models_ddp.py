"""GAN training under torchrun (2 gloo processes) equals one process for the same global batch.

Real Face2Text v0.1 images (tiny widths, 16 images). Criterion, per network (G, G_ema, Ds,
text and image encoders; parameters and batch-norm buffers together):
``‖θ_ddp − θ_single‖ / ‖θ_single‖ ≤ 1e-4`` and every logged loss equal to 1e-4 relative.
Measured: ≤ 6e-6 (summation order differs; Adam turns a mathematically-zero gradient's
rounding noise into an lr-sized step for the odd weight). Without global-batch batch
norm the same runs differ by 6e-3 … 5e-2, so the criterion separates right from wrong.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from conftest_models import tiny_config

REPO = Path(__file__).resolve().parents[1]
TOL = 1e-4


def _config(tmp: Path, **over) -> Path:
    from models import config as C

    cfg = tiny_config(**{"damsm.steps": 3, "train.steps": 4, "train.sample_every": 0, **over})
    path = tmp / "config.yaml"
    path.write_text(C.to_yaml(cfg))
    return path


def _run(args: list, nproc: int, timeout: float = 300) -> subprocess.CompletedProcess:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(REPO))
    if nproc == 1:
        cmd = [sys.executable, "-m", "models", "train", *map(str, args)]
    else:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={nproc}",
               "-m", "models", "train", *map(str, args)]
    return subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def _ok(p: subprocess.CompletedProcess) -> dict:
    assert p.returncode == 0, p.stderr[-3000:]
    lines = [x for x in p.stdout.splitlines() if x.startswith("{")]
    assert len(lines) == 1, p.stdout  # only rank 0 reports
    return json.loads(lines[0])


def _rel_diffs(a_dir: Path, b_dir: Path) -> dict[str, float]:
    a = torch.load(a_dir / "last.pt", map_location="cpu", weights_only=True)["state"]
    b = torch.load(b_dir / "last.pt", map_location="cpu", weights_only=True)["state"]
    out = {}
    for net, sa in a.items():
        if not isinstance(sa, dict):
            continue
        keys = [k for k, v in sa.items() if torch.is_tensor(v) and v.is_floating_point()]
        assert keys and set(keys) <= set(b[net])
        diff = sum(float(((sa[k].double() - b[net][k].double()) ** 2).sum()) for k in keys) ** 0.5
        norm = sum(float((sa[k].double() ** 2).sum()) for k in keys) ** 0.5
        out[net] = diff / norm
        for k, v in sa.items():  # integer buffers (num_batches_tracked) exactly equal
            if torch.is_tensor(v) and not v.is_floating_point():
                assert torch.equal(v, b[net][k]), (net, k)
    return out


def _losses(run: Path) -> list[tuple[int, dict]]:
    rows = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    return [(r["step"], r["losses"]) for r in rows if "losses" in r]


def _assert_same_run(single: Path, ddp: Path) -> None:
    diffs = _rel_diffs(single, ddp)
    assert max(diffs.values()) <= TOL, diffs
    la, lb = _losses(single), _losses(ddp)
    assert [s for s, _ in la] == [s for s, _ in lb] and la
    for (step, x), (_, y) in zip(la, lb):
        assert x.keys() == y.keys()
        for k in x:
            assert y[k] == pytest.approx(x[k], rel=TOL, abs=1e-6), (step, k, x[k], y[k])


@pytest.mark.parametrize("text,matching,disc", [("lstm", "damsm", "attngan"), ("clip", "clip", "attngan"),
                                               ("clip", "clip", "clip")])
def test_torchrun_training_equals_single_process(tmp_path, text, matching, disc):
    """lstm-damsm covers the DAMSM stage (dropout, image-encoder batch norm, matching over the
    global batch) and periodic grids + evaluation (rank 0 alone); clip-clip the CLIP matching
    loss; both the mismatched-caption D term; clip-clip with the CLIP discriminator switching on at
    GAN step 2 (its head's update and mismatched captions over the global batch)."""
    periodic = {"train.eval_every": 2, "train.sample_every": 2} if text == "lstm" else {}
    extra = {"loss.discriminator": "clip", "clip_d.start_step": 2} if disc == "clip" else {}
    cfg = _config(tmp_path, **{"text.encoder": text, "loss.matching": matching, **periodic, **extra})
    one, two = tmp_path / "one", tmp_path / "two"
    r1 = _ok(_run(["--config", cfg, "--out", one, "--quiet", "--threads", "1"], 1))
    r2 = _ok(_run(["--config", cfg, "--out", two, "--quiet", "--threads", "1"], 2))
    assert r1["world_size"] == 1 and r2["world_size"] == 2
    assert r1["step"] == r2["step"] == (7 if matching == "damsm" else 4)
    _assert_same_run(one, two)
    start = json.loads((two / "log.jsonl").read_text().splitlines()[0])
    assert start["event"] == "start" and start["world_size"] == 2
    # one log, written by rank 0 only: as many lines as the single-process run's
    assert len((two / "log.jsonl").read_text().splitlines()) == len((one / "log.jsonl").read_text().splitlines())
    if periodic:
        evals = [[json.loads(x)["metrics"] for x in (d / "log.jsonl").read_text().splitlines() if '"metrics"' in x]
                 for d in (one, two)]
        assert len(evals[0]) == len(evals[1]) == 3  # GAN steps 0, 2, 4
        for a, b in zip(*evals):
            assert b["fid"]["value"] == pytest.approx(a["fid"]["value"], rel=1e-3)
        assert sorted(p.name for p in (two / "grids").glob("step_*.png")) == \
            sorted(p.name for p in (one / "grids").glob("step_*.png"))


def test_resume_with_another_world_size_continues_the_same_run(tmp_path):
    """2 ranks stop at global step 5 (DAMSM done, 2 GAN steps), 1 process finishes: equals 1 process throughout."""
    cfg = _config(tmp_path)
    one, mixed = tmp_path / "one", tmp_path / "mixed"
    _ok(_run(["--config", cfg, "--out", one, "--quiet", "--threads", "1"], 1))
    assert _ok(_run(["--config", cfg, "--out", mixed, "--quiet", "--stop-at", "5"], 2))["step"] == 5
    assert _ok(_run(["--resume", mixed, "--quiet", "--threads", "1"], 1))["step"] == 7
    _assert_same_run(one, mixed)


def test_batch_that_does_not_split_over_the_ranks_is_a_usage_error(tmp_path):
    cfg = _config(tmp_path, **{"train.batch_size": 3, "damsm.batch_size": 4})
    p = _run(["--config", cfg, "--out", tmp_path / "x", "--quiet"], 2)
    assert p.returncode != 0
    assert "batch size 3 does not split evenly over 2 processes" in p.stderr and "train.batch_size" in p.stderr
    ranks, _, agent = p.stderr.partition("failed (exitcode: 2)")  # a rank exited with click's usage status
    assert agent and "Traceback" not in ranks  # (the traceback after it is torchrun's own report)
    assert not (tmp_path / "x" / "last.pt").exists()
