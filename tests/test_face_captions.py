"""Pairs manifests: formats, path resolution, and every kind of bad row named."""
from __future__ import annotations

import json
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from facemetrics.pairing.captions import (
    PairRecord,
    load_pairs,
    pairs_from_stems,
    split_zip_member,
    write_pairs,
)
from facemetrics.errors import FacemetricsError


def _img(path: Path, value: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.full((8, 8, 3), value, np.uint8)).save(path)
    return path


@pytest.fixture()
def roots(tmp_path):
    fake, real = tmp_path / "fake", tmp_path / "real"
    for i in range(3):
        _img(fake / f"g{i}.png", i)
        _img(real / "P" / f"P_{i:04d}.jpg", i)
    return fake, real


def _jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_jsonl_relative_and_absolute(roots, tmp_path):
    fake, real = roots
    m = _jsonl(tmp_path / "pairs.jsonl", [
        {"fake": "g0.png", "caption": "a man", "real": "P/P_0000.jpg", "identity": "P", "caption_id": 7},
        {"fake": str(fake / "g1.png"), "caption": "a woman", "real": str(real / "P" / "P_0001.jpg")},
        {"fake": "./g2.png"},
    ])
    recs = load_pairs(m, fake, real)
    assert recs[0] == PairRecord("g0.png", "a man", (real / "P" / "P_0000.jpg").resolve(), "P", "7", line=1)
    assert recs[1].fake == "g1.png" and recs[1].real == (real / "P" / "P_0001.jpg").resolve()
    assert recs[2].fake == "g2.png" and recs[2].real is None and recs[2].caption is None
    assert all(r.real is None or r.real.is_absolute() for r in recs)


def test_csv_and_roundtrip(roots, tmp_path):
    fake, real = roots
    recs = [PairRecord("g0.png", "a, quoted \"caption\"", (real / "P/P_0000.jpg").resolve(), "P", None),
            PairRecord("g1.png", None, (real / "P/P_0001.jpg").resolve(), None, "x1")]
    for ext in ("csv", "jsonl"):
        out = tmp_path / f"out.{ext}"
        write_pairs(out, recs, real_root=real)
        back = load_pairs(out, fake, real)
        assert [(r.fake, r.caption, r.real, r.identity, r.caption_id) for r in back] == [
            (r.fake, r.caption, r.real, r.identity, r.caption_id) for r in recs]
    assert "P/P_0000.jpg" in (tmp_path / "out.csv").read_text()  # written relative to REAL


@pytest.mark.parametrize(
    "rows,pattern",
    [
        ([{"fake": "g0.png"}, {"fake": "g0.png"}], r"duplicated 'fake'.*'g0.png' \(lines 1 and 2\)"),
        ([{"fake": "g0.png"}, {"fake": "./g0.png"}], r"duplicated 'fake'"),
        ([{"fake": "nope.png", "real": "P/P_0000.jpg"}], r"line 1: fake 'nope.png' not in"),
        ([{"fake": "g0.png", "real": "P/P_0009.jpg"}], r"line 1: real .*P_0009.jpg' does not exist"),
        ([{"fake": "g0.png", "img": "x"}], r"unknown column\(s\) 'img'"),
        ([{"caption": "x"}], r":1: 'fake' .* missing or empty"),
        ([{"fake": "../g0.png"}], r"leaves its root"),
        ([{"fake": "g0.png", "caption": ["a"]}], r"'caption' must be a string"),
    ],
)
def test_bad_rows_are_named(roots, tmp_path, rows, pattern):
    fake, real = roots
    m = _jsonl(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(FacemetricsError, match=pattern) as ei:
        load_pairs(m, fake, real)
    assert ei.value.param == "--pairs"


def test_all_missing_files_listed(roots, tmp_path):
    fake, real = roots
    m = _jsonl(tmp_path / "p.jsonl", [{"fake": f"x{i}.png", "real": "P/P_0000.jpg"} for i in range(14)])
    with pytest.raises(FacemetricsError, match=r"14 file\(s\).*and 4 more"):
        load_pairs(m, fake, real)


def test_file_level_errors(roots, tmp_path):
    fake, real = roots
    with pytest.raises(FacemetricsError, match="does not exist"):
        load_pairs(tmp_path / "none.jsonl", fake, real)
    (tmp_path / "p.txt").write_text("x")
    with pytest.raises(FacemetricsError, match=".jsonl, .ndjson or .csv"):
        load_pairs(tmp_path / "p.txt", fake, real)
    (tmp_path / "p.jsonl").write_text("{not json}\n")
    with pytest.raises(FacemetricsError, match=r"p.jsonl:1: not a JSON object"):
        load_pairs(tmp_path / "p.jsonl", fake, real)
    (tmp_path / "e.jsonl").write_text("\n\n")
    with pytest.raises(FacemetricsError, match="no rows"):
        load_pairs(tmp_path / "e.jsonl", fake, real)
    (tmp_path / "r.jsonl").write_text(json.dumps({"fake": "g0.png", "real": "P/P_0000.jpg"}) + "\n")
    with pytest.raises(FacemetricsError, match="relative but no REAL folder"):
        load_pairs(tmp_path / "r.jsonl", fake, None)
    (tmp_path / "c.csv").write_text("fake,real\ng0.png,P/P_0000.jpg,extra\n")
    with pytest.raises(FacemetricsError, match="more cells than header"):
        load_pairs(tmp_path / "c.csv", fake, real)


def test_zip_roots(roots, tmp_path):
    fake, real = roots
    fz, rz = tmp_path / "fake.zip", tmp_path / "real.zip"
    with zipfile.ZipFile(fz, "w") as z:
        z.write(fake / "g0.png", "g0.png")
    with zipfile.ZipFile(rz, "w") as z:
        z.write(real / "P/P_0000.jpg", "P/P_0000.jpg")
    m = _jsonl(tmp_path / "p.jsonl", [{"fake": "g0.png", "real": "P/P_0000.jpg"}])
    (rec,) = load_pairs(m, fz, rz)
    assert split_zip_member(rec.real) == (rz.resolve(), "P/P_0000.jpg")
    m2 = _jsonl(tmp_path / "p2.jsonl", [{"fake": "g1.png", "real": "P/P_0001.jpg"}])
    with pytest.raises(FacemetricsError, match=r"fake 'g1.png' not in.*real .*P_0001.jpg' does not exist"):
        load_pairs(m2, fz, rz)


def test_pairs_from_stems(tmp_path):
    fake, real = tmp_path / "f", tmp_path / "r"
    _img(fake / "a" / "Ann_0001.png")
    _img(fake / "Bob_0001.png")
    _img(real / "Ann" / "Ann_0001.jpg")
    _img(real / "Bob" / "Bob_0001.jpg")
    _img(real / "Cid" / "Cid_0001.jpg")
    recs = pairs_from_stems(fake, real)
    assert [(r.fake, r.real.relative_to(real.resolve()).as_posix()) for r in recs] == [
        ("Bob_0001.png", "Bob/Bob_0001.jpg"), ("a/Ann_0001.png", "Ann/Ann_0001.jpg")]
    _img(fake / "Dan_0001.png")
    with pytest.raises(FacemetricsError, match=r"1 generated image\(s\) have no real.*Dan_0001.png"):
        pairs_from_stems(fake, real)
    _img(real / "x" / "Dan_0001.png")
    _img(real / "y" / "Dan_0001.jpg")
    with pytest.raises(FacemetricsError, match="REAL has several images with the same stem"):
        pairs_from_stems(fake, real)


# ---- links: containment judged on the paths as given (normalised, never resolved)

@pytest.fixture()
def linked(data_dir, tmp_path):
    """FAKE and REAL folders of symlinks to LFW files, each also reachable through a folder link."""
    from conftest import lfw_first_images, link_folder

    files = lfw_first_images(data_dir)[:3]
    fake, real = link_folder(tmp_path / "fake", files), link_folder(tmp_path / "real", files)
    (tmp_path / "fake_link").symlink_to(fake, target_is_directory=True)
    (tmp_path / "real_link").symlink_to(real, target_is_directory=True)
    names = sorted(p.name for p in fake.iterdir())
    assert all((fake / n).is_symlink() for n in names)
    return fake, real, tmp_path / "fake_link", tmp_path / "real_link", names


def test_symlinked_images_inside_fake_and_real(linked, tmp_path):
    fake, real, _, _, names = linked
    m = _jsonl(tmp_path / "p.jsonl", [
        {"fake": str(fake / names[0]), "real": names[0]},              # absolute symlink fake, relative real
        {"fake": names[1], "real": str(real / names[1])},              # absolute symlink real inside REAL
        {"fake": str(fake / "sub" / ".." / names[2]), "real": f"./{names[2]}"},
    ])
    recs = load_pairs(m, fake, real)
    assert [r.fake for r in recs] == names
    # real kept as given (the user's symlink, not the LFW file it points at)
    assert [r.real for r in recs] == [real / n for n in names]
    assert all(r.real.is_symlink() for r in recs)


def test_roots_given_through_a_symlink(linked, tmp_path):
    fake, real, fake_link, real_link, names = linked
    through_link = _jsonl(tmp_path / "a.jsonl", [{"fake": str(fake_link / n), "real": str(real_link / n)}
                                                 for n in names])
    through_real = _jsonl(tmp_path / "b.jsonl", [{"fake": str(fake / n), "real": n} for n in names])
    # the root as the user gave it, and as images.scan returns it (resolved)
    for root in (fake_link, fake_link.resolve()):
        for m in (through_link, through_real):
            recs = load_pairs(m, root, real_link)
            assert [r.fake for r in recs] == names, (root, m)
    recs = load_pairs(through_link, fake_link, real_link)
    assert [r.real for r in recs] == [real_link / n for n in names]
    write_pairs(tmp_path / "out.jsonl", recs, real_root=real_link)  # real written relative to REAL
    assert [json.loads(line)["real"] for line in (tmp_path / "out.jsonl").read_text().splitlines()] == names


def test_escaping_links_folder_still_refused(linked, tmp_path):
    fake, real, fake_link, _, names = linked
    outside = _img(tmp_path / "x.jpg")
    cases = [
        ({"fake": str(fake / ".." / "x.jpg")}, r"'fake' .*x.jpg is not inside the FAKE folder"),
        ({"fake": str(fake_link / ".." / "x.jpg")}, r"is not inside the FAKE folder"),
        ({"fake": str(outside)}, r"is not inside the FAKE folder"),
        ({"fake": "../x.jpg"}, r"'fake' '../x.jpg' leaves its root"),
        ({"fake": names[0], "real": "../x.jpg"}, r"'real' '../x.jpg' leaves its root"),
        ({"fake": names[0], "real": f"{names[0]}/../../x.jpg"}, r"leaves its root"),
    ]
    for row, pattern in cases:
        with pytest.raises(FacemetricsError, match=pattern):
            load_pairs(_jsonl(tmp_path / "p.jsonl", [row]), fake, real)


def test_score_fsd_on_symlinked_folders(linked, tmp_path):
    """End to end: roots given through links, manifest naming the symlinked files by absolute path."""
    from click.testing import CliRunner

    from facemetrics.cli.main import cli

    fake, real, fake_link, real_link, names = linked
    m = _jsonl(tmp_path / "p.jsonl", [{"fake": str(fake_link / n), "real": str(real_link / n)} for n in names])
    r = CliRunner().invoke(cli, ["score", str(real_link), str(fake_link), "--metrics", "fsd", "--pairs", str(m),
                                 "--json", "-", "-q"])
    assert r.exit_code == 0, r.output
    rec = json.loads(r.stdout)
    assert rec["metrics"]["fsd"]["n"] == 3 and rec["metrics"]["fsd"]["value"] == pytest.approx(0.0, abs=1e-6)
