"""`report`: tables of real records, golden markdown/CSV, protocol refusal, bad input, CLI."""
from __future__ import annotations

import copy
import csv
import io
import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from facemetrics.cli.main import cli
from facemetrics.errors import FacemetricsError
from facemetrics.report.tables import LoadedRecord, build_table, load_records, to_csv, to_html, to_markdown

DATA = Path(__file__).resolve().parent / "data"
RECORDS = sorted((DATA / "records").glob("*.json"))  # celeba, oracle, same-person: made by make_records.py
GOLDEN = DATA / "golden"


def _loaded():
    return load_records(RECORDS)


def _variant(tmp_path, name, edit):
    """A copy of the 'celeba' record changed by ``edit`` and written to tmp_path/name.json."""
    rec = json.loads((DATA / "records" / "celeba.json").read_text())
    edit(rec)
    p = tmp_path / f"{name}.json"
    p.write_text(json.dumps(rec))
    return p


def test_records_are_real_and_complete():
    assert [p.stem for p in RECORDS] == ["celeba", "oracle", "same-person"]
    for lr in _loaded():
        assert lr.record["schema"] == "facemetrics.record/1"
        assert {"fid", "rprec", "clipscore"} <= set(lr.record["metrics"])


def test_markdown_matches_golden():
    assert to_markdown(build_table(_loaded())) == (GOLDEN / "report.md").read_text()


def test_csv_matches_golden_and_the_records():
    text = to_csv(build_table(_loaded(), sort="fid"))
    assert text == (GOLDEN / "report_by_fid.csv").read_text()
    rows = list(csv.DictReader(io.StringIO(text)))
    by_label = {lr.record["label"]: lr.record for lr in _loaded()}
    assert [r["run"] for r in rows] == sorted(by_label, key=lambda k: by_label[k]["metrics"]["fid"]["value"])
    for r in rows:
        rec = by_label[r["run"]]
        for m in ("fid", "kid", "rprec", "clipscore"):
            entry = rec["metrics"].get(m)
            if entry is None:
                assert r[m] == "" and r[f"{m}_std"] == ""  # missing metric: blank, not a crash
            else:
                assert float(r[m]) == entry["value"]  # full precision round trip
                assert (r[f"{m}_std"] == "") == (entry["std"] is None)


def test_headers_arrows_and_cells():
    t = build_table(_loaded())
    assert list(t.display.columns) == ["FID ↓", "KID ↓", "R-precision ↑", "CLIP score ↑"]
    oracle = t.display.loc["oracle"]
    rec = json.loads((DATA / "records" / "oracle.json").read_text())["metrics"]
    assert oracle["KID ↓"] == f"{rec['kid']['value']:.5f} ± {rec['kid']['std']:.5f}"
    assert oracle["FID ↓"] == f"{rec['fid']['value']:.2f}"  # FID has no std
    assert t.display.loc["celeba", "KID ↓"] == ""
    assert "preset clean" in t.protocols["fid"] and "real n 100" in t.protocols["fid"]
    assert "matcher clip fm-tiny-clip weights" in t.protocols["rprec"] and "n_negatives 99" in t.protocols["rprec"]


def test_sorting_best_first_and_missing_last():
    loaded = _loaded()
    fid = build_table(loaded, sort="fid").values["fid"].tolist()
    assert fid == sorted(fid)
    clip = build_table(loaded, sort="CLIP score").values["clipscore"].tolist()
    assert clip == sorted(clip, reverse=True)
    kid = build_table(loaded, sort="kid").values["kid"]
    assert math.isnan(kid.iloc[-1]) and kid.index[-1] == "celeba"
    with pytest.raises(FacemetricsError, match="cannot sort by 'fsd'") as e:
        build_table(loaded, sort="fsd")
    assert e.value.param == "--sort"


@pytest.mark.parametrize("edit, expected", [
    (lambda r: r["protocol"].update(preset="tf1"), r"FID ↓: preset differs \(clean: oracle, same-person; tf1: x\)"),
    (lambda r: r["protocol"].update(weights_sha256="0" * 64), r"FID ↓: weights_sha256 differs"),
    (lambda r: r["real"].update(n=90), r"FID ↓: real n differs \(100: oracle, same-person; 90: x\)"),
    (lambda r: r["metrics"]["rprec"]["details"].update(n_negatives=49), r"R-precision ↑: n_negatives differs"),
    (lambda r: r["metrics"]["clipscore"]["details"]["matcher"].update(weights_sha256="f" * 64),
     r"CLIP score ↑: matcher differs \(clip fm-tiny-clip weights [0-9a-f]{12}: oracle, same-person; "
     r"clip fm-tiny-clip weights ffffffffffff: x\)"),
    (lambda r: r["metrics"]["rprec"].update(n=50), r"R-precision ↑: n used differs \(100: oracle, same-person; 50: x\)"),
])
def test_mixed_protocols_are_refused_unless_forced(tmp_path, edit, expected):
    def relabel(r):
        edit(r)
        r["label"] = "x"

    files = [DATA / "records" / "oracle.json", DATA / "records" / "same-person.json", _variant(tmp_path, "x", relabel)]
    with pytest.raises(FacemetricsError, match=expected) as e:
        build_table(load_records(files))
    assert "--force" in str(e.value)
    t = build_table(load_records(files), force=True)
    assert any(__import__("re").search(expected, n) for n in t.notes)
    assert "Protocols differ (tabulated with --force)" in to_markdown(t)


def test_seed_and_image_content_may_differ(tmp_path):
    """Seeds and the generated images are not protocol: runs differ in them by design."""
    def edit(r):
        r["protocol"]["seed"] = 7
        r["metrics"]["rprec"]["details"]["seed"] = 7
        r["fake"]["content_sha256"] = "e" * 64
        r["label"] = "reseeded"

    t = build_table(load_records(RECORDS + [_variant(tmp_path, "reseeded", edit)]))
    assert "reseeded" in t.values.index and not t.notes


def test_bad_records(tmp_path):
    def write(name, obj):
        p = tmp_path / name
        p.write_text(obj if isinstance(obj, str) else json.dumps(obj))
        return p

    good = json.loads(RECORDS[0].read_text())
    cases = [
        (write("v2.json", {**good, "schema": "facemetrics.record/2"}),
         r"v2.json: record schema 'facemetrics.record/2' is not one this facemetrics reads"),
        (write("other.json", {**good, "schema": "something/1"}), r"other.json: unknown schema 'something/1'"),
        (write("noschema.json", {"metrics": {}}), r"noschema.json: not a facemetrics record \(no \"schema\""),
        (write("list.json", [1, 2]), r"list.json: not a facemetrics record"),
        (write("broken.json", '{"schema": '), r"broken.json: not JSON .*line 1"),
        (write("str.json", {**good, "metrics": {"fid": {"value": "12.5"}}}), r"str.json: metric 'fid' has a non-numeric"),
        (tmp_path / "missing.json", r"record file does not exist: .*missing.json"),
    ]
    for path, pattern in cases:
        with pytest.raises(FacemetricsError, match=pattern) as e:
            load_records([path])
        assert e.value.param == "RECORDS"


def test_missing_values_and_metrics_are_blank(tmp_path):
    def edit(r):
        r["label"] = "partial"
        r["metrics"]["fid"]["value"] = None  # e.g. NaN written as null
        del r["metrics"]["clipscore"]
        r["metrics"]["rprec"]["std"] = None

    t = build_table(load_records(RECORDS + [_variant(tmp_path, "partial", edit)]))
    row = t.display.loc["partial"]
    assert row["FID ↓"] == "" and row["CLIP score ↑"] == "" and "±" not in row["R-precision ↑"]
    md = to_markdown(t)
    assert "| partial " in md


def test_labels_from_paths_and_duplicates(tmp_path):
    rec = json.loads(RECORDS[1].read_text())
    rec["label"] = None
    for run in ("run_a", "run_b"):
        (tmp_path / run).mkdir()
        (tmp_path / run / "metrics.json").write_text(json.dumps(rec))
    (tmp_path / "run_a" / "config.json").write_text(json.dumps({"lr": 2e-4}))  # not a record: passed over
    t = build_table(load_records([tmp_path]))  # a folder: every record below it
    assert list(t.values.index) == ["run_a", "run_b"]
    assert list(build_table(load_records([DATA / "records"])).values.index) == ["celeba", "oracle", "same-person"]
    with pytest.raises(FacemetricsError, match="no facemetrics records"):
        load_records([DATA / "golden"])
    assert len(build_table(load_records([RECORDS[1], RECORDS[1]])).values) == 1  # same file twice: one row
    twin = tmp_path / "twin.json"
    twin.write_text(RECORDS[1].read_text())
    t = build_table(load_records([RECORDS[1], twin]))  # same label, different files: told apart by path
    assert list(t.values.index) == [f"oracle ({RECORDS[1]})", f"oracle ({twin})"]


def test_html_has_table_protocol_and_figures():
    from facemetrics.report.plots import png_bytes, sample_grid, GridItem
    import numpy as np

    png = png_bytes(sample_grid([GridItem(np.zeros((8, 8, 3), np.uint8), None, "a caption")]))
    page = to_html(build_table(_loaded()), title="runs <1>", images=[("grid", png)])
    assert page.startswith("<!DOCTYPE html>") and "runs &lt;1&gt;" in page
    assert "<th>FID ↓</th>" in page and "Protocol" in page
    import base64

    b64 = page.split('src="data:image/png;base64,')[1].split('"')[0]
    assert base64.b64decode(b64) == png


# --------------------------------------------------------------------------- CLI

def test_cli_markdown_stdout_and_csv_file(tmp_path):
    r = CliRunner().invoke(cli, ["report", *map(str, RECORDS)])
    assert r.exit_code == 0, r.output
    assert r.stdout == (GOLDEN / "report.md").read_text()
    out = tmp_path / "t.csv"
    r = CliRunner().invoke(cli, ["report", *map(str, RECORDS), "--format", "csv", "--sort", "fid", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert out.read_text() == (GOLDEN / "report_by_fid.csv").read_text()
    assert list(tmp_path.iterdir()) == [out]  # atomic write left no temporary file


def test_cli_errors_are_usage_errors(tmp_path):
    bad = tmp_path / "v9.json"
    bad.write_text(json.dumps({"schema": "facemetrics.record/9", "metrics": {}}))
    r = CliRunner().invoke(cli, ["report", str(bad)])
    assert r.exit_code == 2 and "facemetrics.record/9" in r.output
    r = CliRunner().invoke(cli, ["report", *map(str, RECORDS), "--curves", str(bad)])
    assert r.exit_code == 2 and "--format html" in r.output
    r = CliRunner().invoke(cli, ["report", *map(str, RECORDS), "--metrics", "fid,fsd"])
    assert r.exit_code == 2 and "no record has metric(s) fsd" in r.output


def test_cli_force(tmp_path):
    v = _variant(tmp_path, "x", lambda r: (r["protocol"].update(preset="tf1"), r.update(label="x")))
    r = CliRunner().invoke(cli, ["report", str(RECORDS[1]), str(v)])
    assert r.exit_code == 2 and "preset differs" in r.output
    r = CliRunner().invoke(cli, ["report", str(RECORDS[1]), str(v), "--force", "--metrics", "fid"])
    assert r.exit_code == 0 and "preset differs" in r.stdout and "warning: protocols differ" in r.stderr
    assert "R-precision" not in r.stdout
