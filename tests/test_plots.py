"""Plots: training curves from JSONL logs and the generated-next-to-real sample grid."""
from __future__ import annotations

import io
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from conftest_text import DATA, pair
from facemetrics.cli.main import cli
from facemetrics.errors import FacemetricsError
from facemetrics.imaging.images import scan
from facemetrics.report.plots import GridItem, grid_from_pairs, plot_curves, read_training_log, sample_grid

LFW = DATA / "lfw" / "deepfunneled"
C0 = np.array([31, 119, 180])  # matplotlib's first line colour


def _log(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def _rows(offset=0.0):
    rows = []
    for step in range(0, 1000, 100):
        rows.append({"step": step, "losses": {"g": 1.0 / (step + 1)}})  # no metrics: skipped
        if step % 200 == 0:
            rows.append({"step": step, "losses": {}, "metrics": {"fid": 200 - step / 10 + offset, "rprec": step / 1e4}})
    return rows


def test_read_training_log_skips_lines_without_metrics(tmp_path):
    s = read_training_log(_log(tmp_path / "a" / "log.jsonl", _rows()))
    assert [p[0] for p in s["fid"]] == [0, 200, 400, 600, 800]
    assert s["fid"][1] == (200, 180.0) and set(s) == {"fid", "rprec"}


@pytest.mark.parametrize("line, pattern", [
    ("{not json", r"log.jsonl:2: not JSON"),
    ('{"metrics": {"fid": 1.0}}', r"log.jsonl:2: a line with metrics needs an integer \"step\""),
    ('{"step": 3, "metrics": {"fid": "high"}}', r"log.jsonl:2: metric 'fid' is not a number"),
    ("[1, 2]", r"log.jsonl:2: expected a JSON object"),
])
def test_bad_log_lines(tmp_path, line, pattern):
    p = tmp_path / "log.jsonl"
    p.write_text('{"step": 0, "metrics": {"fid": 3.0}}\n' + line + "\n")
    with pytest.raises(FacemetricsError, match=pattern):
        read_training_log(p)


def test_curves_png_size_and_content(tmp_path):
    a = _log(tmp_path / "run_a" / "log.jsonl", _rows())
    b = _log(tmp_path / "run_b" / "log.jsonl", _rows(offset=15))
    png = plot_curves([a, b], dpi=100)
    img = np.asarray(Image.open(io.BytesIO(png)).convert("RGB")).astype(int)
    assert img.shape == (300, 800, 3)  # two panels (fid, rprec) of 4x3 inches at 100 dpi
    assert img.std() > 10
    assert (np.abs(img - C0).sum(axis=2) < 30).sum() > 200  # the first run's line is drawn
    png3 = plot_curves([a], ["rprec"], dpi=50)
    assert Image.open(io.BytesIO(png3)).size == (200, 150)
    with pytest.raises(FacemetricsError, match=r"metric\(s\) kid not in the training log"):
        plot_curves([a], ["kid"])
    empty = _log(tmp_path / "e" / "log.jsonl", [{"step": 1, "losses": {"g": 1}}])
    with pytest.raises(FacemetricsError, match="no metric values"):
        plot_curves([empty])


def test_sample_grid_layout_and_pixels():
    red = np.zeros((50, 40, 3), np.uint8)
    red[..., 0] = 255
    blue = np.zeros((60, 60, 3), np.uint8)
    blue[..., 2] = 255
    items = [GridItem(red, blue, "a woman with long hair " * 8), GridItem(blue, None, "short"), GridItem(red, red, "x")]
    img = sample_grid(items, cell=64, cols=2, caption_lines=3, gap=8)
    arr = np.asarray(img).astype(int)
    from PIL import ImageFont

    f = ImageFont.load_default(size=11)
    line_h = sum(f.getmetrics()) + 1
    tile_h = (line_h + 2) + 64 + 3 * line_h
    assert img.size == (2 * (128 + 8) + 8, 2 * (tile_h + 8) + 8)
    y = 8 + line_h + 2 + 32  # middle row of the first tile's images
    assert tuple(arr[y, 8 + 32]) == (255, 0, 0)  # generated on the left
    assert tuple(arr[y, 8 + 64 + 32]) == (0, 0, 255)  # real on the right
    caption_band = arr[8 + line_h + 2 + 64: 8 + tile_h, 8: 8 + 128]
    assert (caption_band.sum(axis=2) < 200).sum() > 50  # caption text was drawn (dark pixels)
    with pytest.raises(FacemetricsError, match="no samples"):
        sample_grid([])


def test_grid_from_pairs_on_real_lfw(tmp_path):
    people = sorted(p for p in LFW.iterdir() if (p / f"{p.name}_0002.jpg").is_file())[:6]
    fake = tmp_path / "fake"
    fake.mkdir()
    pairs = []
    for k, person in enumerate(people):
        shutil.copy(person / f"{person.name}_0002.jpg", fake / f"{k}.jpg")
        pairs.append(pair(f"{k}.jpg", f"photo {k} of {person.name}", real=person / f"{person.name}_0001.jpg"))
    img = grid_from_pairs(pairs, scan(fake), n=4, seed=1, cell=96, cols=2)
    arr = np.asarray(img)
    assert img.size[0] == 2 * (192 + 8) + 8
    assert arr.std() > 20
    # the first tile's right half is an LFW photo, not the blank placeholder
    from PIL import ImageFont

    line_h = sum(ImageFont.load_default(size=11).getmetrics()) + 1
    tile = arr[8 + line_h + 2: 8 + line_h + 2 + 96, 8 + 96: 8 + 192]
    assert tile.std() > 20
    # a real image inside a zip, named "<zip>/<member>" as manifests with a zipped REAL do
    import zipfile

    zpath = tmp_path / "real.zip"
    with zipfile.ZipFile(zpath, "w") as zf:
        zf.write(people[0] / f"{people[0].name}_0001.jpg", f"{people[0].name}/a.jpg")
    zimg = grid_from_pairs([pair("0.jpg", "c", real=zpath / people[0].name / "a.jpg")], scan(fake), cell=96)
    plain = grid_from_pairs([pair("0.jpg", "c", real=people[0] / f"{people[0].name}_0001.jpg")], scan(fake), cell=96)
    assert np.array_equal(np.asarray(zimg), np.asarray(plain))
    with pytest.raises(FacemetricsError, match="cannot read real image"):
        grid_from_pairs([pair("0.jpg", "c", real=tmp_path / "nope.jpg")], scan(fake))


def test_report_html_embeds_curves(tmp_path):
    log = _log(tmp_path / "run_a" / "log.jsonl", _rows())
    recs = sorted((Path(__file__).parent / "data" / "records").glob("*.json"))
    out = tmp_path / "r.html"
    r = CliRunner().invoke(cli, ["report", *map(str, recs), "--format", "html", "--curves", str(log), "-o", str(out)])
    assert r.exit_code == 0, r.output
    page = out.read_text()
    assert page.count("data:image/png;base64,") == 1 and "Metrics during training" in page


def test_plot_curves_cli(tmp_path):
    log = _log(tmp_path / "run_a" / "log.jsonl", _rows())
    out = tmp_path / "c.png"
    r = CliRunner().invoke(cli, ["plot", "curves", str(log), "--metrics", "fid", "-o", str(out)])
    assert r.exit_code == 0, r.output
    assert Image.open(out).size == (400, 300)
    r = CliRunner().invoke(cli, ["plot", "curves", str(tmp_path / "nope.jsonl"), "-o", str(out)])
    assert r.exit_code == 2 and "cannot read training log" in r.output
