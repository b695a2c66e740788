"""Training, resume, generate and bad-input tests of the reference producer (tiny config, CPU)."""
from __future__ import annotations

import json
import math

import pytest
import torch
from click.testing import CliRunner

from conftest_models import require_data, tiny_config
from facemetrics.errors import FacemetricsError

VARIANTS = [("lstm", "damsm"), ("lstm", "clip"), ("clip", "damsm"), ("clip", "clip")]


def _log(run_dir):
    return [json.loads(x) for x in (run_dir / "log.jsonl").read_text().splitlines()]


@pytest.fixture(scope="module")
def lstm_run(tmp_path_factory):
    """An uninterrupted lstm-damsm run of 2 DAMSM + 3 GAN steps."""
    from models.train import train

    d = tmp_path_factory.mktemp("straight")
    train(tiny_config(), d, progress=False)
    return d


@pytest.fixture(scope="module")
def clip_run(tmp_path_factory):
    """An uninterrupted clip-damsm run (frozen CLIP text, cached per caption)."""
    from models.train import train

    d = tmp_path_factory.mktemp("straight_clip")
    train(tiny_config(**{"text.encoder": "clip"}), d, progress=False)
    return d


@pytest.mark.parametrize("text,matching", VARIANTS)
def test_variant_trains_with_finite_losses(tmp_path, text, matching, request):
    from models.train import train

    if (text, matching) == ("lstm", "damsm"):
        run = request.getfixturevalue("lstm_run")
    elif (text, matching) == ("clip", "damsm"):
        run = request.getfixturevalue("clip_run")
    else:
        run = tmp_path / "run"
        res = train(tiny_config(**{"text.encoder": text, "loss.matching": matching}), run, progress=False)
        assert res["status"] == "done"
    log = _log(run)
    start = log[0]
    assert start["event"] == "start" and start["variant"] == f"{text}-{matching}"
    damsm = [r for r in log if r.get("phase") == "damsm"]
    gan = [r for r in log if r.get("phase") == "gan"]
    # the DAMSM stage exists exactly when the run has DAMSM encoders
    assert len(damsm) == (0 if (text, matching) == ("clip", "clip") else 2)
    assert len(gan) == 3
    for r in damsm + gan:
        assert r["losses"] and all(math.isfinite(v) for v in r["losses"].values()), r
    key = "clip_loss" if matching == "clip" else "w_loss"
    assert all(key in r["losses"] for r in gan)
    assert (run / "last.pt").is_file()
    assert sorted(p.name for p in (run / "grids").glob("*.png")) == [
        "step_0000000.png", "step_0000002.png", "step_0000003.png"]
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["variant"] == f"{text}-{matching}" and ck["gan_step"] == 3
    if text == "clip":  # frozen random CLIP weights are rebuilt from the seed, not stored
        assert ck["clip"]["weights"] == "random" and "text_encoder" not in ck["state"]


def _tensors(x, path=""):
    if isinstance(x, dict):
        for k in x:
            yield from _tensors(x[k], f"{path}/{k}")
    elif isinstance(x, (list, tuple)):
        for i, v in enumerate(x):
            yield from _tensors(v, f"{path}[{i}]")
    elif isinstance(x, torch.Tensor):
        yield path, x


@pytest.mark.parametrize("text,stop_at", [("lstm", 1), ("lstm", 3), ("clip", 3)])  # in DAMSM, in GAN
def test_resume_equals_uninterrupted_run(tmp_path, request, text, stop_at):
    from models.train import resume, train

    straight = request.getfixturevalue(f"{text}_run")
    run = tmp_path / "run"
    assert train(tiny_config(**{"text.encoder": text}), run, progress=False,
                 stop_at=stop_at)["status"] == "stopped"
    assert torch.load(run / "last.pt", weights_only=True)["step"] == stop_at
    assert resume(run, progress=False)["status"] == "done"
    a = torch.load(straight / "last.pt", weights_only=True)
    b = torch.load(run / "last.pt", weights_only=True)
    assert a["step"] == b["step"] == 5
    ta = dict(_tensors({"state": a["state"], "optim": a["optim"]}))
    tb = dict(_tensors({"state": b["state"], "optim": b["optim"]}))
    assert ta.keys() == tb.keys() and len(ta) > 50
    diff = [k for k in ta if not torch.equal(ta[k], tb[k])]
    assert diff == []
    # the resumed log holds each step once
    steps = [r["step"] for r in _log(run) if "phase" in r]
    assert steps == sorted(set(steps)) == [1, 2, 3, 4, 5]


def test_generate_writes_pngs_and_pairs_manifest(tmp_path, lstm_run):
    from PIL import Image

    from models.__main__ import cli

    out = tmp_path / "samples"
    r = CliRunner().invoke(cli, ["generate", "--checkpoint", str(lstm_run / "last.pt"), "--captions", "test",
                                 "--out", str(out), "--quiet", "--n-per-caption", "2"])
    assert r.exit_code == 0, r.output
    rows = [json.loads(x) for x in (out / "pairs.jsonl").read_text().splitlines()]
    ck = torch.load(lstm_run / "last.pt", weights_only=True)
    n_caps = sum(len(d["captions"]) for d in ck["test_records"])
    assert len(rows) == 2 * n_caps == len(list(out.glob("*.png")))
    test_paths = {d["path"] for d in ck["test_records"]}
    real_test = {p.resolve().as_posix() for p in (lstm_run / "real_test").iterdir()}
    assert real_test == test_paths == {l for l in (lstm_run / "test_real.txt").read_text().split()}
    for row in rows:
        assert set(row) == {"fake", "caption", "real", "identity", "caption_id"}
        im = Image.open(out / row["fake"])
        assert im.size == (64, 64) and im.mode == "RGB"
        assert row["real"] in test_paths and row["identity"] in row["real"]
    # same seed, same images; the two samples of one caption differ
    out2 = tmp_path / "again"
    CliRunner().invoke(cli, ["generate", "--checkpoint", str(lstm_run), "--out", str(out2), "--quiet",
                             "--n-per-caption", "2"])
    a = Image.open(out / rows[0]["fake"]).tobytes()
    assert a == Image.open(out2 / rows[0]["fake"]).tobytes()
    assert a != Image.open(out / rows[1]["fake"]).tobytes()


def test_test_images_never_reach_training(lstm_run):
    ck = torch.load(lstm_run / "last.pt", weights_only=True)
    train_keys, test_keys = set(ck["split"]["train"]), set(ck["split"]["test"])
    assert train_keys and test_keys and not train_keys & test_keys
    test_ids = {d["identity"] for d in ck["test_records"]}
    assert not any(k.split("/")[0] in test_ids for k in train_keys)


# ----------------------------------------------------------------------------- bad input

def _cli(args):
    from models.__main__ import cli

    return CliRunner().invoke(cli, args)


def test_unknown_config_key_is_a_usage_error(tmp_path):
    r = _cli(["train", "--out", str(tmp_path / "x"), "--set", "train.batchsize=4"])
    assert r.exit_code == 2 and "unknown config key 'train.batchsize'" in r.output
    assert "train.batch_size" in r.output  # suggestion
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  resolutoin: 64\n")
    r = _cli(["train", "--config", str(cfg), "--out", str(tmp_path / "x")])
    assert r.exit_code == 2 and "model.resolutoin" in r.output and "model.resolution" in r.output
    r = _cli(["train", "--out", str(tmp_path / "x"), "--set", "model.resolution=96"])
    assert r.exit_code == 2 and "must be one of 64, 128, 256" in r.output
    r = _cli(["train", "--out", str(tmp_path / "x"), "--set", "train.steps=many"])
    assert r.exit_code == 2 and "must be int" in r.output


def test_checkpoint_of_another_variant_is_refused(tmp_path, lstm_run):
    r = _cli(["generate", "--checkpoint", str(lstm_run / "last.pt"), "--out", str(tmp_path / "s"),
              "--variant", "clip-clip"])
    assert r.exit_code == 2 and "is variant lstm-damsm" in r.output
    r = _cli(["train", "--resume", str(lstm_run), "--set", "text.encoder=clip"])
    assert r.exit_code == 2 and "cannot change text.encoder" in r.output
    other = tmp_path / "other.yaml"
    other.write_text("text: {encoder: clip}\nloss: {matching: clip}\n")
    r = _cli(["train", "--resume", str(lstm_run), "--config", str(other)])
    assert r.exit_code == 2 and "variant clip-clip" in r.output and "lstm-damsm" in r.output
    junk = tmp_path / "junk.pt"
    torch.save({"weights": torch.zeros(1)}, junk)
    r = _cli(["generate", "--checkpoint", str(junk), "--out", str(tmp_path / "s2")])
    assert r.exit_code == 2 and "not a models checkpoint" in r.output
    r = _cli(["train", "--config", str(other), "--out", str(lstm_run)])
    assert r.exit_code == 2 and "already holds a run" in r.output


def test_captions_over_the_limit(tmp_path, lstm_run):
    caps = tmp_path / "caps.txt"
    long = "a man with " + " ".join(["very"] * 20) + " short hair"
    caps.write_text(f"a smiling woman\n{long}\n")
    r = _cli(["generate", "--checkpoint", str(lstm_run), "--captions", str(caps), "--out", str(tmp_path / "e"),
              "--long-captions", "error"])
    assert r.exit_code == 2 and "limit of 12 words" in r.output and "has 25" in r.output
    r = _cli(["generate", "--checkpoint", str(lstm_run), "--captions", str(caps), "--out", str(tmp_path / "t"),
              "--quiet"])
    assert r.exit_code == 0 and "1 of 2 captions exceed" in r.output
    rows = [json.loads(x) for x in (tmp_path / "t" / "pairs.jsonl").read_text().splitlines()]
    assert [x["caption"] for x in rows] == ["a smiling woman", long] and "real" not in rows[0]


def test_generate_then_facemetrics_score_end_to_end(tmp_path, lstm_run, monkeypatch):
    """generate → `facemetrics score REAL FAKE --pairs` works without extra flags, and the FID that
    training's periodic evaluation computes for the same images is the same number."""
    from facemetrics.cli.main import cli as fm_cli
    from models.__main__ import cli
    from models.evaluate import evaluate
    from models.system import load_checkpoint, system_from_checkpoint
    from models.data import record_from_dict

    monkeypatch.setenv("FACEMETRICS_CACHE", str(tmp_path / "cache"))
    out = tmp_path / "samples"
    r = CliRunner().invoke(cli, ["generate", "--checkpoint", str(lstm_run / "last.pt"), "--out", str(out),
                                 "--limit", "8", "--seed", "5", "--quiet"])
    assert r.exit_code == 0, r.output
    rec_path = tmp_path / "rec.json"
    r = CliRunner().invoke(fm_cli, ["score", str(lstm_run / "real_test"), str(out), "--pairs",
                                    str(out / "pairs.jsonl"), "--metrics", "fid", "--quiet", "--json", str(rec_path)])
    assert r.exit_code == 0, r.output
    rec = json.loads(rec_path.read_text())
    assert rec["fake"]["n"] == 8 and rec["real"]["n"] == len(list((lstm_run / "real_test").iterdir()))
    fid_cli = rec["metrics"]["fid"]["value"]
    assert math.isfinite(fid_cli) and fid_cli > 0

    ck = load_checkpoint(str(lstm_run))
    system = system_from_checkpoint(ck, torch.device("cpu"))
    before = sorted(p.name for p in tmp_path.rglob("*.png"))
    res = evaluate(system, [record_from_dict(d) for d in ck["test_records"]], lstm_run / "real_test",
                   seed=5, limit=8, rprec_negatives=3, rprec_folds=2)
    assert res["n"] == 8 and res["fid"]["value"] == pytest.approx(fid_cli, rel=1e-6)
    assert res["fid"]["n_fake"] == 8 and res["fid"]["n_real"] == rec["real"]["n"]
    assert 0.0 <= res["rprec"]["value"] <= 1.0 and res["rprec"]["details"]["matcher"] == "damsm"
    assert res["rprec"]["details"]["n_negatives"] == 3 and res["rprec"]["details"]["folds"] == 2
    assert sorted(p.name for p in tmp_path.rglob("*.png")) == before  # scored in memory: no image written


def test_face2text_v10_run_with_periodic_evaluation(tmp_path):
    """CelebA (v1.0) records, split by image, and the periodic R-precision lines of the log."""
    from models.train import train

    cfg = tiny_config(**{"data.dataset": "face2text-v1.0", "data.max_images": 0, "data.test_fraction": 0.1,
                         "damsm.steps": 1, "train.steps": 2, "train.eval_every": 2, "train.eval_images": 8,
                         "train.eval_rprec_negatives": 5, "train.eval_rprec_folds": 4,
                         "train.eval_fid": False, "train.sample_every": 0})
    train(cfg, tmp_path, progress=False)
    log = _log(tmp_path)
    assert log[0]["n_train"] + log[0]["n_test"] == 177 and log[0]["n_test"] == 18
    evals = [r for r in log if "metrics" in r]
    assert [r["gan_step"] for r in evals] == [0, 2]
    for r in evals:
        rp = r["metrics"]["rprec"]
        assert r["metrics"]["n"] == 8 and 0.0 <= rp["value"] <= 1.0 and rp["details"]["matcher"] == "damsm"
        assert rp["details"]["n_negatives"] == 5 and rp["details"]["folds"] == 4 and rp["n"] == 8
        assert rp["details"]["negatives"] == "without replacement, never the same real image or identity"
        assert "fid" not in r["metrics"]
    reals = (tmp_path / "test_real.txt").read_text().split()
    assert len(reals) == 18 and all("celeba" in p for p in reals)


def test_evaluation_set_too_small_for_rprecision_fails_before_training(tmp_path):
    """99 negatives (the default protocol) from 13 held-out captions: refused at start, naming the keys."""
    from models.train import train

    cfg = tiny_config(**{"train.eval_every": 2, "train.eval_rprec_negatives": 99, "damsm.steps": 1,
                         "train.steps": 2, "train.sample_every": 0})
    with pytest.raises(FacemetricsError) as e:
        train(cfg, tmp_path / "run", progress=False)
    assert "needs 99 negative captions" in str(e.value) and "train.eval_rprec_negatives" in str(e.value)
    assert not (tmp_path / "run" / "log.jsonl").exists()
    cfg = tiny_config(**{"train.eval_every": 2, "train.eval_rprec_folds": 20, "train.eval_rprec_negatives": 3})
    with pytest.raises(FacemetricsError, match="over 20 folds needs at least 20 evaluation captions"):
        train(cfg, tmp_path / "run2", progress=False)
