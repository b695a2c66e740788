"""`facemetrics compare`: paired differences of two runs (issue 13, item 3), on synthetic features."""
from __future__ import annotations

import json
from types import SimpleNamespace

import numpy as np
import pytest
from click.testing import CliRunner

from facemetrics.errors import FacemetricsError
from facemetrics.metrics.registry import MetricInputs, compute_all, resolve
from facemetrics.record import build_record, dumps
from facemetrics.report.compare import compare_records, write_rows
from facemetrics.stats import FeatureStats


class _Ex:
    def fingerprint(self):
        return {"extractor": "toy"}


def _run(tmp_path, name, real, fake, real_emb, fake_emb, keys, *, preset="clean"):
    from facemetrics.pairing.face_scoring import FacePairs

    opts = SimpleNamespace(preset=preset, seed=0, kid_subsets=3, kid_subset_size=50, ci=0.9, ci_draws=20)
    inp = MetricInputs(options=opts, extractors={"inception": _Ex()})
    for side, x in (("real", real), ("fake", fake)):
        inp.stats[(side, "inception", "pool")] = FeatureStats.from_features(x)
        inp.rows[(side, "inception", "pool")] = x
    details = {"embedder": "toy", "weights_sha256": None, "face_align": "never", "faces_detected": None,
               "pairs_dropped": 0}
    inp.paired["face"] = FacePairs(fake_emb, real_emb, details, keys)
    results = compute_all(resolve("fid,kid,fss"), inp)
    rec = build_record(real={"path": "r", "kind": "folder", "n": len(real), "content_sha256": "ab" * 32},
                       fake={"path": name, "kind": "folder", "n": len(fake), "content_sha256": name},
                       protocol={"preset": preset, "extractor": "toy", "weights_sha256": None, "dims": 8, "seed": 0},
                       metrics=results, warnings=[], failed_images={"real": [], "fake": []}, label=name)
    rec["rows"] = write_rows(tmp_path / f"{name}.rows.npz", inp, results)
    path = tmp_path / f"{name}.json"
    path.write_text(dumps(rec))
    return path


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("cmp")
    rng = np.random.default_rng(0)
    real = rng.standard_normal((200, 8))
    fa, fb = rng.standard_normal((200, 8)) + 0.4, rng.standard_normal((200, 8)) + 0.05
    emb = rng.standard_normal((120, 16))
    ea, eb = emb + rng.standard_normal((120, 16)), emb + 0.5 * rng.standard_normal((120, 16))
    keys = [f"caption {i}\x1freal_{i}.jpg" for i in range(120)]
    order = rng.permutation(120)  # B lists its pairs in another order: compare aligns them by key
    a = _run(tmp, "a", real, fa, emb, ea, keys)
    b = _run(tmp, "b", real, fb, emb[order], eb[order], [keys[i] for i in order])
    a2 = _run(tmp, "a2", real, fa, emb, ea, keys)
    return tmp, a, b, a2, (real, fa, fb, emb, ea, eb, keys)


def test_better_run_found_with_paired_values(runs):
    _, a, b, _, _ = runs
    res = compare_records(a, b, level=0.95, draws=60, seed=1)
    fid, fss = res["metrics"]["fid"], res["metrics"]["fss"]
    ra, rb = json.loads(a.read_text()), json.loads(b.read_text())
    assert fid["diff"] == pytest.approx(rb["metrics"]["fid"]["value"] - ra["metrics"]["fid"]["value"])
    assert fid["diff"] < 0 and fid["ci"]["hi"] < 0 and fid["significant"] and fid["better"] == "B"
    assert fid["p_value"] == pytest.approx(1 / 61)  # no draw reaches the difference: the smallest p
    assert fss["diff"] == pytest.approx(rb["metrics"]["fss"]["value"] - ra["metrics"]["fss"]["value"])
    assert fss["ci"]["lo"] > 0 and fss["p_value"] == pytest.approx(1 / 61) and fss["better"] == "B" and fss["n"] == 120
    assert res["metrics"]["kid"]["better"] == "B"
    assert compare_records(a, b, level=0.95, draws=60, seed=1) == res  # seeded


def test_identical_runs_are_not_different(runs):
    _, a, _, a2, _ = runs
    res = compare_records(a, a2, draws=30)
    for m in res["metrics"].values():
        assert m["diff"] == 0 and m["p_value"] == 1.0 and not m["significant"] and m["better"] is None


def test_sign_flip_test_holds_its_level():
    from facemetrics.metrics.uncertainty import sign_flip_p

    ps = [sign_flip_p(np.random.default_rng(s).normal(size=40), lambda x, axis=-1: x.mean(axis=axis), 199, s)
          for s in range(200)]
    assert 0.01 <= np.mean(np.array(ps) < 0.05) <= 0.10


def test_mismatches_name_the_key(runs):
    tmp, a, b, _, (real, fa, fb, emb, ea, eb, keys) = runs
    c = _run(tmp, "c", real, fb, emb, eb, keys, preset="tf1")
    with pytest.raises(FacemetricsError, match=r"protocol\.preset"):
        compare_records(a, c)
    d = _run(tmp, "d", real, fb, emb, eb, [k + "x" for k in keys])
    with pytest.raises(FacemetricsError, match="different captions/pairs"):
        compare_records(a, d)
    rec = json.loads(a.read_text())
    rec.pop("rows")
    (tmp / "norows.json").write_text(dumps(rec))
    with pytest.raises(FacemetricsError, match="--keep-rows"):
        compare_records(tmp / "norows.json", b)


def test_cli_table_json_and_usage_error(runs, tmp_path):
    from facemetrics.cli.main import cli

    tmp, a, b, _, _ = runs
    r = CliRunner().invoke(cli, ["compare", str(a), str(b), "--draws", "30", "--json", str(tmp_path / "c.json")])
    assert r.exit_code == 0, r.output
    assert "fid ↓" in r.stdout and "B better" in r.stdout and "95% CI" in r.stdout
    assert json.loads((tmp_path / "c.json").read_text())["schema"] == "facemetrics.compare/1"
    c = tmp / "c.json"
    bad = CliRunner().invoke(cli, ["compare", str(a), str(c)])
    assert bad.exit_code == 2 and "protocol.preset" in bad.output


def test_report_shows_intervals_and_marks_significant_differences(runs, tmp_path):
    from facemetrics.cli.main import cli

    tmp, a, b, _, _ = runs
    cmp_path = tmp_path / "cmp.json"
    assert CliRunner().invoke(cli, ["compare", str(a), str(b), "--draws", "30", "--json", str(cmp_path)]).exit_code == 0
    r = CliRunner().invoke(cli, ["report", str(a), str(b), "--compare", str(cmp_path)])
    assert r.exit_code == 0, r.output
    rb = json.loads(b.read_text())["metrics"]["fid"]
    b_row = next(line for line in r.stdout.splitlines() if line.startswith("| b "))
    assert f"{rb['value']:.2f} [{rb['ci']['lo']:.2f}, {rb['ci']['hi']:.2f}]*" in b_row
    assert "*" not in next(line for line in r.stdout.splitlines() if line.startswith("| a "))
    assert "Significant differences" in r.stdout and "b vs a, fid" in r.stdout and "90% intervals" in r.stdout
    csv = CliRunner().invoke(cli, ["report", str(a), str(b), "--format", "csv"])
    assert "fid_lo" in csv.stdout.splitlines()[0]


def test_plot_fid_inf(tmp_path):
    from facemetrics.cli.main import cli
    from facemetrics.metrics.extrapolated import fid_infinity

    rng = np.random.default_rng(0)
    res = fid_infinity(rng.standard_normal((100, 8)) + 0.3, real=rng.standard_normal((100, 8)), seed=0)
    rec = build_record(real=None, fake={"path": "f", "kind": "folder", "n": 100, "content_sha256": None},
                       protocol={"preset": "clean", "seed": 0}, metrics={"fid_inf": res}, warnings=[],
                       failed_images={"real": [], "fake": []})
    (tmp_path / "r.json").write_text(dumps(rec))
    out = tmp_path / "fit.png"
    r = CliRunner().invoke(cli, ["plot", "fid-inf", str(tmp_path / "r.json"), "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    bad = CliRunner().invoke(cli, ["plot", "fid-inf", str(tmp_path / "r.json"), "--metrics", "is_inf", "-o", str(out)])
    assert bad.exit_code == 2 and "is_inf" in bad.output
