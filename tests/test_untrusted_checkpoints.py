"""Untrusted checkpoint and weights files never run code, whichever flag they come through.

Each case hands a payload file (a valid ``torch.save`` of an object whose ``__reduce__``
touches a marker file when unpickled) to one flag of ``facemetrics`` or ``python -m models``,
in a real subprocess with otherwise valid, small inputs, and checks: the marker never
appears, exit status 2, the message names the file, no traceback. A second group checks
that the files this project writes (models.train checkpoints, finetune-inception
checkpoints and training states) load with plain ``torch.load(weights_only=True)``.
"""
from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest
import torch

from conftest import REPO, lfw_first_images, link_folder

TESTS = Path(__file__).resolve().parent
NEEDS_CODE = "needs arbitrary code to load"
NOT_TORCHSCRIPT = "not a TorchScript file"


class Touch:
    """Unpickling this calls ``Path(marker).touch()`` (a pure-Python payload)."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


def write_payload(path: Path, marker: Path) -> Path:
    """A ``torch.save`` file shaped like a models checkpoint that touches ``marker`` when unpickled."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"format": "models.attngan/1", "state": {"w": torch.zeros(2)}, "payload": Touch(marker)}, path)
    return path


@dataclass
class Workspace:
    """Small real inputs shared by the cases, plus this case's payload and marker."""

    tmp: Path
    real: Path
    fake: Path
    pairs: Path
    people: Path
    payload: Path
    marker: Path


@pytest.fixture(scope="module")
def inputs(data_dir, tmp_path_factory) -> dict[str, Path]:
    """12 + 12 LFW faces, a pairs manifest between them, and two 6-image identity folders."""
    base = tmp_path_factory.mktemp("untrusted")
    files = lfw_first_images(data_dir)
    real = link_folder(base / "real", files[1000:1012])
    fake = link_folder(base / "fake", files[2000:2012])
    pairs = base / "pairs.jsonl"
    pairs.write_text("".join(
        json.dumps({"fake": f.name, "caption": "a smiling person with short hair", "real": str(r),
                    "identity": r.name}) + "\n"
        for f, r in zip(sorted(fake.iterdir()), sorted(real.iterdir()))))
    lfw = data_dir / "lfw" / "deepfunneled"
    people = base / "people"
    for name in ("Colin_Powell", "George_W_Bush"):
        link_folder(people / name, sorted((lfw / name).iterdir())[:6])
    return {"real": real, "fake": fake, "pairs": pairs, "people": people}


@pytest.fixture
def ws(inputs, tmp_path) -> Workspace:
    marker = tmp_path / "MARKER"
    return Workspace(tmp_path, inputs["real"], inputs["fake"], inputs["pairs"], inputs["people"],
                     write_payload(tmp_path / "payload.pt", marker), marker)


def fm(*args) -> list[str]:
    return [sys.executable, "-m", "facemetrics", *map(str, args)]


def models(*args) -> list[str]:
    return [sys.executable, "-m", "models", *map(str, args)]


def _score(w: Workspace, *extra) -> list[str]:
    return fm("score", w.real, w.fake, "-q", "--workers", 1, *extra)


def _clip_dir(w: Workspace) -> Path:
    """An open_clip hub-layout folder (tiny architecture config) whose weights are the payload."""
    d = w.tmp / "hub"
    d.mkdir()
    cfg = json.loads((TESTS / "data" / "open_clip" / "fm-tiny-clip.json").read_text())
    (d / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    w.payload.rename(d / "open_clip_pytorch_model.bin")
    w.payload = d / "open_clip_pytorch_model.bin"
    return d


def _run_dir(w: Workspace) -> Path:
    """A run folder whose last.pt is the payload."""
    d = w.tmp / "run"
    d.mkdir()
    w.payload.rename(d / "last.pt")
    w.payload = d / "last.pt"
    return d


def _train_state(w: Workspace) -> Path:
    """finetune-inception's OUT with OUT.train-state = the payload."""
    out = w.tmp / "ft.pt"
    w.payload.rename(str(out) + ".train-state")
    w.payload = Path(str(out) + ".train-state")
    return out


def _finetune(w: Workspace, *extra) -> list[str]:
    return fm("finetune-inception", "--data", w.people, "--min-per-class", 5, "--image-size", 80,
              "--epochs", 1, "--batch-size", 4, "--no-progress", *extra)


def _models_train(w: Workspace, *sets: str) -> list[str]:
    """A new run of ``python -m models train`` on the tests' tiny config (16 images, tiny widths,
    a few steps) with these ``--set`` overrides: it would finish in seconds if not refused."""
    from conftest_models import tiny_config
    from models import config as C

    cfg = w.tmp / "tiny.yaml"
    cfg.write_text(C.to_yaml(tiny_config()))
    args = ["train", "--config", cfg, "--out", w.tmp / "newrun", "--quiet", "--threads", 1]
    for s in sets:
        args += ["--set", s]
    return models(*args)


def _npz_real(w: Workspace) -> Path:
    """A REAL statistics .npz whose 'mu' is a pickled object array carrying the payload."""
    p = w.tmp / "real.npz"
    np.savez(p, mu=np.array([Touch(w.marker)], dtype=object))
    w.payload = p
    return p


#: case id → (command builder, extra environment builder or None, expected message fragment)
CASES: dict[str, tuple[Callable[[Workspace], list[str]], Callable[[Workspace], dict] | None, str]] = {
    "score --matcher damsm:FILE": (
        lambda w: _score(w, "--pairs", w.pairs, "--metrics", "rprec", "--matcher", f"damsm:{w.payload}"),
        None, NEEDS_CODE),
    "score --matcher clip:ARCH:FILE": (
        lambda w: _score(w, "--pairs", w.pairs, "--metrics", "clipscore", "--matcher", f"clip:ViT-S-32:{w.payload}"),
        None, NEEDS_CODE),
    "score --matcher clip:DIR": (
        lambda w: _score(w, "--pairs", w.pairs, "--metrics", "clipscore", "--matcher", f"clip:{_clip_dir(w)}"),
        None, NEEDS_CODE),
    "score --extractor FILE": (lambda w: _score(w, "--metrics", "fid", "--extractor", w.payload), None, NEEDS_CODE),
    "score --face-weights FILE": (
        lambda w: _score(w, "--pairs", w.pairs, "--metrics", "fsd", "--face-model", "facenet",
                         "--face-weights", w.payload),
        None, NEEDS_CODE),
    "score with FACEMETRICS_FACENET=FILE": (
        lambda w: _score(w, "--pairs", w.pairs, "--metrics", "fsd", "--face-model", "facenet"),
        lambda w: {"FACEMETRICS_FACENET": str(w.payload)}, NEEDS_CODE),
    "score --inception-weights FILE": (
        lambda w: _score(w, "--metrics", "fid", "--inception-weights", w.payload), None, NOT_TORCHSCRIPT),
    "score with FACEMETRICS_INCEPTION=FILE": (
        lambda w: _score(w, "--metrics", "fid"), lambda w: {"FACEMETRICS_INCEPTION": str(w.payload)}, NOT_TORCHSCRIPT),
    "score REAL.npz with a pickled array": (
        lambda w: fm("score", _npz_real(w), w.fake, "-q", "--metrics", "fid"), None,
        "is not a facemetrics statistics file"),
    "stats --extractor FILE": (
        lambda w: fm("stats", w.real, "-o", w.tmp / "s.npz", "-q", "--extractor", w.payload), None, NEEDS_CODE),
    "finetune-inception --resume": (lambda w: _finetune(w, "--out", _train_state(w), "--resume"), None, NEEDS_CODE),
    "finetune-inception --base-weights FILE": (
        lambda w: _finetune(w, "--out", w.tmp / "ft.pt", "--base-weights", w.payload), None, NOT_TORCHSCRIPT),
    "models generate --checkpoint FILE": (
        lambda w: models("generate", "--checkpoint", w.payload, "--out", w.tmp / "gen", "--quiet", "--device", "cpu"),
        None, NEEDS_CODE),
    "models train --resume DIR": (
        lambda w: models("train", "--resume", _run_dir(w), "--quiet", "--device", "cpu"), None, NEEDS_CODE),
    "models train --set clip.pretrained=FILE": (
        lambda w: _models_train(w, "text.encoder=clip", f"clip.pretrained={w.payload}"), None, NEEDS_CODE),
    "models train --set damsm.inception_weights=FILE": (
        lambda w: _models_train(w, "damsm.image_encoder=inception", f"damsm.inception_weights={w.payload}"), None, NOT_TORCHSCRIPT),
}


@pytest.mark.parametrize("case", list(CASES))
def test_payload_file_never_runs(ws, case, tmp_path):
    build, extra_env, expected = CASES[case]
    cmd = build(ws)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), str(TESTS)]), "FACEMETRICS_OFFLINE": "1",
           "FACEMETRICS_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1"}
    env.pop("FACEMETRICS_INCEPTION", None)
    env.pop("FACEMETRICS_FACENET", None)
    if extra_env is not None:
        env.update(extra_env(ws))
    r = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert not ws.marker.exists(), f"the payload ran: {r.stderr[-2000:]}"
    assert r.returncode == 2, (r.returncode, r.stderr[-3000:])
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    # the message names the file (click may wrap long lines: compare without whitespace)
    flat = "".join(r.stderr.split())
    assert "".join(str(ws.payload).split()) in flat, r.stderr[-2000:]
    assert "".join(expected.split()) in flat, r.stderr[-2000:]


# --------------------------------------------------------------------------- our own files are plain data

def _assert_plain_load(path: Path) -> dict:
    obj = torch.load(path, map_location="cpu", weights_only=True)
    assert isinstance(obj, dict)
    return obj


def test_models_train_checkpoint_loads_with_weights_only(tmp_path):
    """A stopped run's last.pt (both stages' states, optimisers, every RNG) is plain data."""
    from conftest_models import tiny_config
    from models.train import train

    run = tmp_path / "run"
    train(tiny_config(**{"train.steps": 1, "train.sample_every": 0}), run, progress=False, stop_at=1)
    ck = _assert_plain_load(run / "last.pt")
    assert ck["step"] == 1 and set(ck["rng"]) >= {"torch", "numpy", "python"}
    assert isinstance(ck["rng"]["numpy"]["keys"], torch.Tensor) and isinstance(ck["torch_version"], str)


def test_finetune_checkpoint_and_train_state_load_with_weights_only(inputs, tmp_path, monkeypatch):
    from facemetrics.finetune.train import FinetuneConfig, finetune

    monkeypatch.setenv("FACEMETRICS_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FACEMETRICS_OFFLINE", "1")
    out = tmp_path / "ft.pt"
    torch.set_num_threads(1)
    finetune(FinetuneConfig(data=str(inputs["people"]), out=str(out), labels="folders", min_per_class=5,
                            val_split=0.25, image_size=80, batch_size=4, freeze_until="mixed_9", seed=0,
                            progress=False, epochs=1), log=lambda m: None)
    assert _assert_plain_load(out)["epoch"] == 1
    st = _assert_plain_load(Path(str(out) + ".train-state"))
    assert st["epoch"] == 1 and set(st["rng"]) >= {"torch", "numpy", "python", "data_order"}
