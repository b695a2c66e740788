"""``python -m models sweep``: grid parsing and errors, cells, manifest, the training budget over
resumes, and a 2-cell sweep end to end (train → generate → score → report) on real Face2Text data."""
from __future__ import annotations

import json
import os

import pytest
from click.testing import CliRunner

from conftest_models import require_data, tiny_config
from facemetrics.errors import FacemetricsError
from models import config as C
from models import sweep as S


# ----------------------------------------------------------------------------- grid

def test_grid_values_take_the_keys_types():
    axes = S.parse_grid(["loss.lambda=1,5,10", "text.words_num=18, 32", "text.encoder=lstm,clip",
                         "train.g_lr=1e-4,2.0e-4"])
    assert [a.key for a in axes] == ["loss.lambda", "text.words_num", "text.encoder", "train.g_lr"]
    assert axes[0].values == (1.0, 5.0, 10.0) and all(isinstance(v, float) for v in axes[0].values)
    assert axes[1].values == (18, 32) and axes[1].raws == ("18", "32")
    assert axes[2].values == ("lstm", "clip")
    assert axes[3].values == (1e-4, 2e-4)  # YAML 1.1 reads 1e-4 as a string; a float key takes it as a float


@pytest.mark.parametrize("items,msg", [
    ([], "give at least one --grid"),
    (["loss.lambda="], "no values for loss.lambda"),
    (["loss.lambda=1,,5"], "an empty value in the list for loss.lambda"),
    (["loss.lamda=1,2"], "unknown config key 'loss.lamda'.*did you mean loss.lambda"),
    (["loss.lambda=abc"], "'loss.lambda' .* must be float, got 'abc'"),
    (["text.words_num=18.5"], "'text.words_num' .* must be int, got 18.5"),
    (["text.encoder=lstm,gru"], "'text.encoder' .* must be one of lstm, clip, got 'gru'"),
    (["loss.lambda=1,1.0"], "value '1.0' of loss.lambda is given twice"),
    (["loss.lambda=1", "loss.lambda=2"], "loss.lambda is already a grid axis"),
    (["train.budget_minutes=1,2"], "set by the sweep's --minutes"),
    (["data.root=/x"], "set by the sweep's --data"),
    (["clip.custom=1"], "clip.custom holds a dict"),
    (["loss"], "must look like key.sub=v1,v2"),
])
def test_bad_grids_are_usage_errors_naming_the_key(items, msg):
    with pytest.raises(FacemetricsError, match=msg) as e:
        S.parse_grid(items)
    assert e.value.param == "--grid"


def test_cells_are_the_cartesian_product_named_by_their_overrides():
    base = C.build_config(None, ["device=cpu"])
    cells = S.build_cells(S.parse_grid(["loss.lambda=1,5,10", "damsm.gamma1=4,5", "clip.pretrained=/a b/w.pt"]), base)
    assert len(cells) == 6
    assert [c.name for c in cells[:3]] == [
        "loss.lambda=1,damsm.gamma1=4,clip.pretrained=%2Fa%20b%2Fw.pt",
        "loss.lambda=1,damsm.gamma1=5,clip.pretrained=%2Fa%20b%2Fw.pt",
        "loss.lambda=5,damsm.gamma1=4,clip.pretrained=%2Fa%20b%2Fw.pt"]
    assert len({c.name for c in cells}) == 6 and all("/" not in c.name for c in cells)
    assert cells[5].overrides == {"loss.lambda": 10.0, "damsm.gamma1": 5.0, "clip.pretrained": "/a b/w.pt"}
    assert cells[5].config["loss"]["lambda"] == 10.0 and cells[5].config["damsm"]["gamma1"] == 5.0
    assert base["loss"]["lambda"] == 5.0  # the base is left alone
    with pytest.raises(FacemetricsError, match="grid cell text.words_num=0: .*'text.words_num' must be >= 1") as e:
        S.build_cells(S.parse_grid(["text.words_num=0,5"]), base)
    assert e.value.param == "--grid"


def test_cli_usage_errors_exit_2_naming_the_flag(tmp_path):
    from models.__main__ import cli

    r = CliRunner()
    res = r.invoke(cli, ["sweep", "--grid", "loss.lambda=", "--minutes", "1", "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "no values for loss.lambda" in res.output and "'--grid'" in res.output
    res = r.invoke(cli, ["sweep", "--grid", "loss.nope=1", "--minutes", "1", "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "unknown config key 'loss.nope'" in res.output
    res = r.invoke(cli, ["sweep", "--grid", "loss.lambda=1", "--minutes", "0", "--out", str(tmp_path / "s")])
    assert res.exit_code == 2 and "'--minutes'" in res.output
    res = r.invoke(cli, ["sweep", "--grid", "loss.lambda=1", "--minutes", "1", "--out", str(tmp_path / "s"),
                         "--sort", "kid"])
    assert res.exit_code == 2 and "--sort 'kid' is not among --metrics" in res.output
    res = r.invoke(cli, ["sweep", "--grid", "loss.lambda=1", "--minutes", "1", "--out", str(tmp_path / "s"),
                         "--set", "train.max_minutes=3"])
    assert res.exit_code == 2 and "set by the sweep's --minutes" in res.output
    res = r.invoke(cli, ["sweep", "--minutes", "1", "--out", str(tmp_path / "s")])  # no grid at all
    assert res.exit_code == 2 and "give at least one --grid" in res.output
    res = r.invoke(cli, ["sweep", "--grid", "loss.lambda=1,5", "--grid", "loss.discriminator=clip",
                         "--set", "clip.model=", "--minutes", "1", "--out", str(tmp_path / "s"),
                         "--data", str(tmp_path)])
    assert res.exit_code == 2 and "'loss.discriminator' is clip, which needs a CLIP model" in res.output
    assert "clip.model" in res.output and "'--grid'" in res.output
    assert not (tmp_path / "s").exists()  # nothing is written before the input is valid


def test_manifest_refuses_another_sweep_in_the_same_folder(tmp_path):
    opts = S.SweepOptions(grid=["loss.lambda=1,5"], minutes=0.5, out=tmp_path, data=str(tmp_path))
    axes = S.parse_grid(opts.grid)
    base = S.base_config(opts)
    cells = S.build_cells(axes, base)
    m = S.Manifest.open(tmp_path, S.sweep_spec(opts, axes, base), cells)
    assert [c["status"] for c in m.data["cells"]] == ["pending", "pending"]
    assert m.data["cells"][0]["seeds"] == {"seed": 0, "split_seed": 0, "clip_init_seed": 0, "generate": 0, "score": 0}
    S.Manifest.open(tmp_path, S.sweep_spec(opts, axes, base), cells)  # the same sweep: fine
    opts.minutes = 1.0
    base2 = S.base_config(opts)
    with pytest.raises(FacemetricsError, match="different base_config, minutes .*--minutes") as e:
        S.Manifest.open(tmp_path, S.sweep_spec(opts, axes, base2), S.build_cells(axes, base2))
    assert e.value.param == "--out"


def test_score_command_matcher_and_rprec_pool(tmp_path):
    opts = S.SweepOptions(grid=["loss.lambda=1"], minutes=1, out=tmp_path, matcher="damsm:/fixed/last.pt")
    cell = tmp_path / "loss.lambda=1"
    argv = S.score_argv(cell, opts, ["fid", "rprec"], opts.matcher, "cpu", [])
    assert argv[3:6] == ["score", str(cell / "run" / "real_test"), str(cell / "samples")]
    assert argv[argv.index("--matcher") + 1] == "damsm:/fixed/last.pt"
    assert argv[argv.index("--preset") + 1] == "clean" and "--pairs" in argv
    assert "--matcher" not in S.score_argv(cell, opts, ["fid"], opts.matcher, "cpu", [])
    lstm, clipclip = C.build_config(None, []), C.build_config(None, ["text.encoder=clip", "loss.matching=clip"])
    assert S.own_matcher(lstm, cell / "run" / "last.pt") == f"damsm:{cell / 'run' / 'last.pt'}"
    assert S.own_matcher(clipclip, cell / "run" / "last.pt") is None
    rows = [{"real": f"/r/{i // 2}.jpg", "identity": f"p{i // 2}"} for i in range(104)]  # 52 images, 2 captions each
    assert S.rprec_problem(rows) is None
    assert "too few negatives" in S.rprec_problem(rows[:100])  # 98 eligible for each
    assert "fewer than the protocol's 10 folds" in S.rprec_problem(rows[:6])


def test_ci_is_passed_only_when_score_has_it(monkeypatch):
    import click

    from facemetrics.cli.main import cli

    said = []
    assert S.ci_arguments(None, said.append) == [] and not said
    score = cli.commands["score"]
    if not any("--ci" in p.opts for p in score.params):
        assert S.ci_arguments("", said.append) == [] and "no --ci option" in said[0]
    monkeypatch.setattr(score, "params", [p for p in score.params if "--ci" not in p.opts]
                        + [click.Option(["--ci"], is_flag=True)])
    assert S.ci_arguments("", said.append) == ["--ci"]
    monkeypatch.setattr(score, "params", [p for p in score.params if "--ci" not in p.opts]
                        + [click.Option(["--ci"], default=None)])
    assert S.ci_arguments("0.9", said.append) == ["--ci", "0.9"]
    with pytest.raises(FacemetricsError, match="takes a value"):
        S.ci_arguments("", said.append)


# ----------------------------------------------------------------------------- budget

def test_budget_counts_training_time_over_resumes(tmp_path):
    """train.budget_minutes is wall time summed over invocations (stored in the checkpoint): a resumed
    run gets what is left of it, whatever the machine's speed."""
    import torch

    from models.train import resume, train

    run = tmp_path / "run"
    cfg = tiny_config(**{"train.steps": 100000, "train.sample_every": 0})
    res = train(cfg, run, progress=False, stop_at=3)  # "interrupted"
    t1 = torch.load(run / "last.pt", weights_only=True)["train_seconds"]
    assert res["status"] == "stopped" and res["step"] == 3 and t1 == pytest.approx(res["train_seconds"], abs=0.5)
    spent = resume(run, {"train": {"budget_minutes": t1 / 2 / 60}}, progress=False)  # less than already used
    assert spent["status"] == "time limit" and spent["step"] == 3  # stops at once, no further step
    budget_s = spent["train_seconds"] + 2.0
    res = resume(run, {"train": {"budget_minutes": budget_s / 60}}, progress=False)
    assert res["status"] == "time limit" and res["step"] > 3
    assert budget_s <= res["train_seconds"] < budget_s + 10  # the rest of the budget (+ the last step), not a new one
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["train_seconds"] == pytest.approx(res["train_seconds"], abs=0.5)
    events = [json.loads(x).get("event") for x in (run / "log.jsonl").read_text().splitlines()]
    assert events.count("resume") == 2 and events[-1] == "time limit"


# ----------------------------------------------------------------------------- end to end

def _tiny_yaml(path, **over):
    cfg = tiny_config(**{"data.max_images": 160, "train.steps": 100000, "train.sample_every": 0,
                         "train.checkpoint_every": 0, **over})
    cfg["data"]["root"] = None  # given by --data
    path.write_text(C.to_yaml(cfg))
    return path


@pytest.fixture(scope="module")
def two_cells(tmp_path_factory):
    """A 2-cell sweep (loss.lambda=1,5) of 3 s budgets on 160 LFW images (40 held out, 127 captions)."""
    from models.__main__ import cli

    d = tmp_path_factory.mktemp("sweep")
    args = ["sweep", "--config", str(_tiny_yaml(d / "tiny.yaml")), "--data", str(require_data()),
            "--grid", "loss.lambda=1,5", "--minutes", "0.05", "--out", str(d / "out"), "--threads", "1"]
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    return d / "out", args, res.output


def test_sweep_runs_end_to_end_on_real_data(two_cells):
    out, _, output = two_cells
    man = json.loads((out / "sweep.json").read_text())
    assert man["format"] == "models.sweep/1" and man["spec"]["minutes"] == 0.05
    assert man["spec"]["grid"] == [{"key": "loss.lambda", "values": [1.0, 5.0], "raw": ["1", "5"]}]
    assert [c["name"] for c in man["cells"]] == ["loss.lambda=1", "loss.lambda=5"]
    fids = {}
    for c in man["cells"]:
        d = out / c["name"]
        assert c["status"] == "scored" and c["train_invocations"] == 1 and c["error"] is None
        assert c["train"]["status"] == "time limit" and c["train"]["step"] >= 1  # the budget stopped it
        assert c["train"]["train_seconds"] >= 3.0
        assert C.build_config(d / "config.yaml")["loss"]["lambda"] == c["overrides"]["loss.lambda"]
        rec = json.loads((d / "metrics.json").read_text())
        assert rec["label"] == c["name"] and set(rec["metrics"]) >= {"fid", "fsd", "fss", "rprec"}
        assert rec["metrics"]["rprec"]["details"]["n_negatives"] == 99
        assert c["score"]["matcher_source"] == "own" and c["score"]["matcher"] == f"damsm:{d / 'run' / 'last.pt'}"
        assert rec["fake"]["n"] == 127 == c["generate"]["n_images"]
        assert rec["real"]["n"] == len(list((d / "run" / "real_test").iterdir())) == 40
        assert (d / "grid.png").stat().st_size > 1000
        fids[c["name"]] = rec["metrics"]["fid"]["value"]
    ranked = sorted(fids, key=fids.get)
    md = (out / "report.md").read_text()
    assert md.index(f"| {ranked[0]} ") < md.index(f"| {ranked[1]} ") and "own** DAMSM matcher" in md
    assert "matcher differs" in md  # own matchers: the report says the column mixes matchers
    csv = (out / "report.csv").read_text().splitlines()
    assert csv[0].startswith("cell,rank,loss.lambda,train_status,step,gan_step,train_seconds,fid,fid_std")
    assert [line.split(",")[0] for line in csv[1:]] == ranked
    html = (out / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 2 and "<h2>Cells</h2>" in html
    assert "FID ↓" in output and '"scored": 2' in output


def test_rerun_does_not_retrain_finished_cells(two_cells):
    from models.__main__ import cli

    out, args, _ = two_cells
    files = [out / n / f for n in ("loss.lambda=1", "loss.lambda=5")
             for f in ("run/last.pt", "run/log.jsonl", "samples/pairs.jsonl", "metrics.json")]
    before = {f: f.stat().st_mtime_ns for f in files}
    res = CliRunner().invoke(cli, args)
    assert res.exit_code == 0, res.output
    assert {f: f.stat().st_mtime_ns for f in files} == before
    assert res.output.count("not rerun") == 6  # trained, scored, real-image R-precision scored, per cell
    for c in json.loads((out / "sweep.json").read_text())["cells"]:
        assert 0.0 <= c["real_rprec"]["value"] <= 1.0 and (out / c["name"] / "metrics_real.json").is_file()
    assert [c["train_invocations"] for c in json.loads((out / "sweep.json").read_text())["cells"]] == [1, 1]


def test_interrupted_cell_resumes_with_what_is_left_of_its_budget(tmp_path):
    """A cell with a checkpoint but no finished training (killed) continues with train --resume."""
    from models.train import train

    cfg_path = _tiny_yaml(tmp_path / "tiny.yaml", **{"data.test_fraction": 0.25})
    opts = S.SweepOptions(grid=["damsm.gamma1=4"], minutes=10, out=tmp_path / "out", config=str(cfg_path),
                          data=str(require_data()), threads=1, metrics=("fid", "rprec"), sort="fid", limit=8)
    cell = S.build_cells(S.parse_grid(opts.grid), S.base_config(opts))[0]
    first = train(cell.config, tmp_path / "out" / cell.name / "run", progress=False, stop_at=3)  # "killed" at step 3
    assert first["status"] == "stopped"
    budget_s = first["train_seconds"] + 3.0
    opts.minutes = budget_s / 60  # the sweep's budget leaves 3 s to the resumed training
    said: list[str] = []
    res = S.sweep(opts, say=said.append)
    assert res["scored"] == 1, said
    assert any("resuming the interrupted training" in m for m in said)
    c = json.loads((tmp_path / "out" / "sweep.json").read_text())["cells"][0]
    assert c["train_invocations"] == 1 and c["train"]["status"] == "time limit" and c["train"]["step"] > 3
    assert budget_s <= c["train"]["train_seconds"] < budget_s + 10
    events = [json.loads(x).get("event") for x in (tmp_path / "out" / cell.name / "run" / "log.jsonl")
              .read_text().splitlines()]
    assert events.count("start") == 1 and events.count("resume") == 1
    assert "10 folds" in c["score"]["skipped"]["rprec"]  # 8 images: too few for the protocol
    assert c["score"]["metrics"] == ["fid"] and "rprec left out" in (tmp_path / "out" / "report.md").read_text()


# ----------------------------------------------------------------------------- Face2Text v1.0

def test_v10_run_uses_the_present_celeba_images_and_holds_out_its_real_test(tmp_path):
    """data.dataset=face2text-v1.0: 177 captioned images; the run's log/checkpoint say so, and
    real_test/ (what the sweep scores against) is exactly the held-out CelebA images."""
    import torch

    from models.generate import generate
    from models.train import train

    run = tmp_path / "v10"
    cfg = tiny_config(**{"data.dataset": "face2text-v1.0", "data.max_images": 0, "data.test_fraction": 0.2,
                         "train.steps": 1, "damsm.steps": 1, "train.sample_every": 0})
    with pytest.warns(UserWarning, match="using the 177 present images"):
        train(cfg, run, progress=False)
    start = json.loads((run / "log.jsonl").read_text().splitlines()[0])
    assert start["data"]["dataset"] == "face2text-v1.0" and start["data"]["images_present"] == 177
    assert start["data"]["images_missing"] == 4076 - 177 and start["n_train"] + start["n_test"] == 177
    ck = torch.load(run / "last.pt", weights_only=True)
    assert ck["data_stats"] == start["data"]
    split = json.loads((run / "split.json").read_text())
    reals = sorted(p.name for p in (run / "real_test").iterdir())
    assert reals == sorted(f"{k}.jpg" for k in split["test"]) and len(reals) == 35
    assert all((run / "real_test" / n).resolve().parent.name == "89x109" for n in reals)
    assert not set(split["train"]) & set(split["test"])
    meta = generate(str(run / "last.pt"), "test", tmp_path / "samples", device="cpu", progress=False, limit=5)
    rows = [json.loads(x) for x in (tmp_path / "samples" / "pairs.jsonl").read_text().splitlines()]
    assert meta["n_images"] == 5 and {os.path.basename(r["real"]) for r in rows} <= set(reals)
