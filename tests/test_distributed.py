"""Scale-out: torchrun (2 gloo processes) equals one process; --shard + merge-stats; failures.

The multi-process runs start real processes (``python -m torch.distributed.run``,
or two processes started by hand with torchrun's variables, for a rank that dies
without an agent to clean up) running the real CLI on real LFW images.
``tests/dist_worker.py`` registers a small deterministic extractor (``toy``, with
logits) so IS and the failure paths are checked without Inception's cost; the
Inception run compares FID/KID with a single-process run.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from conftest import REPO, lfw_first_images, link_folder
from facemetrics.cli.main import cli
from facemetrics.pipeline.distributed import shard_bounds, shard_names
from facemetrics.errors import FacemetricsError
from facemetrics.pipeline.shards import merge_shards, parse_shard
from facemetrics.stats import FeatureStats

import dist_worker  # noqa: F401  (registers the "toy" extractor in this process too)

WORKER = REPO / "tests" / "dist_worker.py"
REL = 1e-6  # the tolerance for FID/KID/IS across world sizes


def run_cli(*args):
    return CliRunner().invoke(cli, [str(a) for a in args])


def _env(cache: Path, **extra) -> dict:
    env = dict(os.environ, PYTHONPATH=str(REPO), FACEMETRICS_CACHE=str(cache), FACEMETRICS_OFFLINE="1",
               FACEMETRICS_DIST_TIMEOUT="60", PYTHONUNBUFFERED="1")
    env.update(extra)
    return env


def torchrun(args: list, cache: Path, *, worker: bool = False, **extra) -> subprocess.Popen:
    """2 gloo processes under torchrun's agent, on a free port."""
    target = [str(WORKER), "cli"] if worker else ["-m", "facemetrics"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           *target, *map(str, args)]
    return subprocess.Popen(cmd, env=_env(cache, **extra), cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bare_ranks(args: list, cache: Path, **extra) -> list[subprocess.Popen]:
    """2 processes with torchrun's variables but no agent (no one tears the survivors down)."""
    port = free_port()
    procs = []
    for r in range(2):
        env = _env(cache, RANK=str(r), LOCAL_RANK=str(r), WORLD_SIZE="2", LOCAL_WORLD_SIZE="2",
                   MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), **extra)
        procs.append(subprocess.Popen([sys.executable, str(WORKER), "cli", *map(str, args)], env=env, cwd=REPO,
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return procs


def finish(p: subprocess.Popen, timeout: float = 300) -> tuple[int, str, str]:
    try:
        out, err = p.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        p.kill()
        out, err = p.communicate()
        pytest.fail(f"process did not finish in {timeout} s:\n{err[-3000:]}")
    return p.returncode, out, err


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-300)


# --------------------------------------------------------------------------- data

@pytest.fixture(scope="module")
def faces(data_dir, tmp_path_factory) -> dict[str, Path]:
    """Real LFW faces: 5 real + 4 fake for Inception, 9 real + 7 (+1 unreadable) fake for the toy runs.

    Odd counts make the ranks' blocks (and the shards) of different sizes.
    """
    files = lfw_first_images(data_dir)
    base = tmp_path_factory.mktemp("dist")
    out = {"inc_real": link_folder(base / "inc_real", files[3000:3005]),
           "inc_fake": link_folder(base / "inc_fake", files[3100:3104]),
           "toy_real": link_folder(base / "toy_real", files[3200:3209]),
           "toy_fake": link_folder(base / "toy_fake", files[3300:3307])}
    (out["toy_fake"] / "00003_zz_unreadable.jpg").write_bytes(b"\xff\xd8\xff not a jpeg")
    strict = link_folder(base / "strict", files[3400:3405])
    (strict / "00005_broken.jpg").write_bytes(b"garbage")  # 6 files: rank 1 holds the last 3, one broken
    out["strict"] = strict
    return out


# --------------------------------------------------------------------------- pure parts

def test_shards_are_contiguous_disjoint_and_restore_order():
    for n in (0, 1, 5, 16, 17, 1000):
        names = [f"{i:05d}.png" for i in range(n)]
        for world in (1, 2, 3, 7, 16):
            parts = [shard_names(names, r, world) for r in range(world)]
            assert sum(parts, []) == names  # concatenation in rank order is file order
            sizes = [len(p) for p in parts]
            assert max(sizes) - min(sizes) <= 1
            assert [shard_bounds(n, r, world) for r in range(world)][0][0] == 0
    with pytest.raises(ValueError):
        shard_bounds(10, 3, 3)


@pytest.mark.parametrize("spec,msg", [("3", "expected I/N"), ("a/b", "expected I/N"), ("0/16", "numbered from 1"),
                                      ("17/16", "does not exist"), ("1/0", "at least 1"), ("-1/4", "does not exist"),
                                      ("", "expected I/N")])
def test_parse_shard_rejects(spec, msg):
    with pytest.raises(FacemetricsError) as e:
        parse_shard(spec)
    assert msg in str(e.value) and e.value.param == "--shard"


def test_parse_shard_accepts():
    assert parse_shard("3/16") == (3, 16) and parse_shard(" 1 / 1 ") == (1, 1)
    r = run_cli("stats", ".", "-o", "x.npz", "--shard", "0/4")
    assert r.exit_code == 2 and "numbered from 1" in r.output and "--shard" in r.output


# --------------------------------------------------------------------------- torchrun == one process

def test_torchrun_inception_fid_kid_equal_single_process(faces, tmp_path):
    """Real Inception, real faces: 2 gloo ranks give the single-process FID/KID to 1e-6 relative.

    The ranks use this process's thread count (torchrun would set OMP_NUM_THREADS=1,
    which alone moves float32 features by ~4e-7 relative and FID/KID by 1e-7..4e-7),
    so that the comparison isolates what the distribution itself does.
    """
    import torch

    from facemetrics.api import score

    out = tmp_path / "rec.json"
    proc = torchrun(["score", faces["inc_real"], faces["inc_fake"], "--metrics", "fid,kid", "--kid-subset-size", "4",
                     "--kid-subsets", "20", "--seed", "5", "--json", out, "-q"], tmp_path / "cache",
                    OMP_NUM_THREADS=str(torch.get_num_threads()))
    # the torchrun ranks compute everything in their own cache; this run fills the session cache for later tests
    single = score(str(faces["inc_real"]), str(faces["inc_fake"]), metrics="fid,kid", kid_subset_size=4,
                   kid_subsets=20, seed=5, progress=False)
    code, stdout, stderr = finish(proc)
    assert code == 0, stderr[-3000:]
    assert stdout.count("fid ↓") == 1  # rank 0 alone prints
    dist = json.loads(out.read_text())
    for m in ("fid", "kid"):
        a, b = dist["metrics"][m]["value"], single["metrics"][m]["value"]
        assert rel(a, b) < REL, (m, a, b)
    print(f"\nInception 2 ranks vs 1 process: FID rel {rel(dist['metrics']['fid']['value'], single['metrics']['fid']['value']):.2e}, "
          f"KID rel {rel(dist['metrics']['kid']['value'], single['metrics']['kid']['value']):.2e}")
    for side in ("real", "fake"):
        assert dist[side] == single[side]  # same n and content hash of the whole set
    assert dist["protocol"] == single["protocol"]
    # each rank cached its own block: entries for 2 blocks x 2 sides
    assert len(list((tmp_path / "cache" / "features").rglob("*.npz"))) == 4


def test_torchrun_toy_is_kid_fid_stats_and_shard_equal_single_process(faces, tmp_path):
    """Uneven blocks (9 and 7+1 files), an unreadable image, IS from logits, stats/--features/--shard under torchrun."""
    from facemetrics.api import compute_stats, score

    real, fake = faces["toy_real"], faces["toy_fake"]
    rec = tmp_path / "rec.json"
    st_out, sh_out = tmp_path / "st.npz", tmp_path / "sh.npz"
    commands = [
        ["score", real, fake, "--extractor", "toy", "--metrics", "fid,kid,is", "--kid-subset-size", "5",
         "--kid-subsets", "30", "--is-splits", "3", "--seed", "7", "--json", rec, "-q"],
        ["stats", real, "--extractor", "toy", "--features", "-o", st_out, "-q"],
        ["stats", real, "--extractor", "toy", "--features", "--shard", "2/3", "-o", sh_out, "-q"],
    ]
    cmdfile = tmp_path / "cmds.json"
    cmdfile.write_text(json.dumps([[str(a) for a in c] for c in commands]))
    proc = subprocess.Popen([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
                             str(WORKER), "multi", str(cmdfile)], env=_env(tmp_path / "cache"), cwd=REPO,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    single = score(str(real), str(fake), extractor="toy", metrics="fid,kid,is", kid_subset_size=5, kid_subsets=30,
                   is_splits=3, seed=7, progress=False, cache=False)
    s_st, s_feats, _ = compute_stats(str(real), extractor="toy", progress=False, cache=False)
    h_st, h_feats, _ = compute_stats(str(real), extractor="toy", progress=False, cache=False, shard=(2, 3))
    code, _, stderr = finish(proc)
    assert code == 0, stderr[-3000:]
    dist = json.loads(rec.read_text())
    for m in ("fid", "kid", "is"):
        assert rel(dist["metrics"][m]["value"], single["metrics"][m]["value"]) < REL, m
        assert rel(dist["metrics"][m]["std"] or 0.0, single["metrics"][m]["std"] or 0.0) < REL or m == "fid"
    assert dist["fake"] == single["fake"] and dist["real"] == single["real"]
    assert {k: [f[0] for f in v] for k, v in dist["failed_images"].items()} == \
        {k: [f[0] for f in v] for k, v in single["failed_images"].items()}
    assert [n for n, _ in dist["failed_images"]["fake"]] == ["00003_zz_unreadable.jpg"]
    for path, ref_st, ref_feats in ((st_out, s_st, s_feats), (sh_out, h_st, h_feats)):
        got, feats = FeatureStats.load(path)
        assert got.n == ref_st.n
        np.testing.assert_allclose(got.sum, ref_st.sum, rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(got.sum_outer, ref_st.sum_outer, rtol=1e-12, atol=1e-12)
        np.testing.assert_array_equal(feats, ref_feats)
        assert got.meta["content_sha256"] == ref_st.meta["content_sha256"]
    assert FeatureStats.load(sh_out)[0].meta["shard"] == h_st.meta["shard"]


# --------------------------------------------------------------------------- failures

def test_failures_give_clear_errors_and_no_record(faces, tmp_path):
    """--strict error on rank 1 only; a rank that dies (no agent); a rank that crashes. Never a record."""
    real, fake = faces["toy_real"], faces["toy_fake"]
    recs = {k: tmp_path / f"{k}.json" for k in ("strict", "die", "raise", "die_agent")}
    opts = ["--extractor", "toy", "--metrics", "fid", "-q", "--no-cache"]
    runs = {
        "strict": [torchrun(["score", real, faces["strict"], *opts, "--strict", "--json", recs["strict"]],
                            tmp_path / "c1", worker=True)],
        "die": bare_ranks(["score", real, fake, *opts, "--json", recs["die"]], tmp_path / "c2", FM_TEST_FAIL="die"),
        "raise": bare_ranks(["score", real, fake, *opts, "--json", recs["raise"]], tmp_path / "c3",
                            FM_TEST_FAIL="raise"),
        "die_agent": [torchrun(["score", real, fake, *opts, "--json", recs["die_agent"]], tmp_path / "c4",
                               worker=True, FM_TEST_FAIL="die")],
    }
    res = {k: [finish(p) for p in ps] for k, ps in runs.items()}

    code, out, err = res["strict"][0]
    assert code != 0
    assert "rank 1 (of 2)" in err and "00005_broken.jpg" in err and "--strict" in err, err[-3000:]
    assert err.count("unreadable image(s) (--strict)") == 1  # reported once (rank 0), not by every rank

    (c0, _, e0), (c1, _, _) = res["die"]
    assert c1 == 3
    assert c0 == 1 and "broke during" in e0 and "rank 0 of 2" in e0 and "Nothing was written" in e0, e0[-3000:]
    assert "Traceback" not in e0

    (c0, _, e0), (c1, _, e1) = res["raise"]
    assert c0 == 1 and "failed on another rank" in e0 and "rank 1" in e0 and "injected failure" in e0, e0[-3000:]
    assert c1 == 1 and "Traceback" in e1 and "RuntimeError: injected failure" in e1  # the crashed rank keeps it

    code, _, err = res["die_agent"][0]
    assert code != 0 and ("exitcode" in err.lower() or "ChildFailedError" in err), err[-3000:]

    for path in recs.values():
        assert not path.exists()
        assert not list(path.parent.glob(f".{path.name}*"))  # no half-written temporary either


# --------------------------------------------------------------------------- --shard and merge-stats

@pytest.fixture(scope="module")
def shard_files(faces, tmp_path_factory):
    """Inception statistics of 5 real faces: one pass, and shards 1..3/3 of 1, 2, 2 images (computed afresh)."""
    d = tmp_path_factory.mktemp("shards")
    folder = faces["inc_real"]
    r = run_cli("stats", folder, "--features", "-o", d / "full.npz", "-q")
    assert r.exit_code == 0, r.output
    parts = []
    for i in (1, 2, 3):
        p = d / f"part{i}.npz"
        r = run_cli("stats", folder, "--features", "--shard", f"{i}/3", "-o", p, "-q", "--no-cache")
        assert r.exit_code == 0, r.output
        assert f"shard={i}/3" in r.output
        parts.append(p)
    return d, parts


def test_shard_merge_equals_one_pass(shard_files, faces):
    d, parts = shard_files
    out = d / "merged.npz"
    r = run_cli("merge-stats", *reversed(parts), "-o", out)  # any order of arguments
    assert r.exit_code == 0, r.output
    full, full_f = FeatureStats.load(d / "full.npz")
    merged, merged_f = FeatureStats.load(out)
    assert merged.n == full.n == 5
    assert [FeatureStats.load(p)[0].n for p in parts] == [1, 2, 2]
    np.testing.assert_allclose(merged.sum, full.sum, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(merged.sum_outer, full.sum_outer, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(merged_f, full_f)  # features in file order
    assert merged.meta["content_sha256"] == full.meta["content_sha256"]
    assert merged.meta["fingerprint"] == full.meta["fingerprint"]
    err = max(np.abs(merged.sum_outer - full.sum_outer).max() / np.abs(full.sum_outer).max(),
              np.abs(merged.sum - full.sum).max() / np.abs(full.sum).max())
    print(f"\nshard+merge vs one pass: max relative difference of the sums {err:.1e}")
    # the merged file (its features) scores like the folder it summarises; a lone shard is refused as REAL.
    # (FID follows from the statistics checked above; it is not recomputed here: 2048-d eigh is slow on CI.)
    via = json.loads(run_cli("score", out, faces["inc_fake"], "--metrics", "kid", "--json", "-", "-q",
                             "--kid-subset-size", "4", "--kid-subsets", "5").stdout)
    direct = json.loads(run_cli("score", faces["inc_real"], faces["inc_fake"], "--metrics", "kid", "--json",
                                "-", "-q", "--kid-subset-size", "4", "--kid-subsets", "5").stdout)
    assert via["metrics"]["kid"]["value"] == direct["metrics"]["kid"]["value"]
    assert via["real"]["content_sha256"] == direct["real"]["content_sha256"]
    r = run_cli("score", parts[0], faces["inc_fake"], "-q")
    assert r.exit_code == 2 and "merge-stats" in r.output


def test_merge_refuses_mismatch_overlap_missing(shard_files, tmp_path):
    d, (p1, p2, p3) = shard_files

    def refused(*paths) -> str:
        r = run_cli("merge-stats", *paths, "-o", tmp_path / "out.npz")
        assert r.exit_code == 2, r.output
        assert not (tmp_path / "out.npz").exists()
        return r.output

    assert "missing 1 of 3 shards: 2/3" in refused(p1, p3)
    assert "overlapping shards" in refused(p1, p2, p3, p2)
    assert "not a shard" in refused(p1, p2, p3, d / "full.npz")
    # another protocol: the same shard re-labelled with another preset
    st, feats = FeatureStats.load(p2)
    st.meta["fingerprint"] = dict(st.meta["fingerprint"], preset="tf1")
    other = tmp_path / "part2_tf1.npz"
    st.save(other, feats)
    msg = refused(p1, other, p3)
    assert "another protocol" in msg and "preset" in msg
    # a shard of another split of the folder, or of another folder
    for key, value, msg in (("count", 4, "number of shards"), ("names_sha256", "0" * 64, "folder (file list)")):
        st, feats = FeatureStats.load(p3)
        st.meta["shard"][key] = value
        st.save(tmp_path / "odd.npz", feats)
        assert msg in refused(p1, p2, tmp_path / "odd.npz")
    with pytest.raises(FacemetricsError, match="no shard files"):
        merge_shards([])


# --------------------------------------------------------------------------- worker processes

def test_process_workers_equal_thread_workers(faces):
    """Decoding in worker processes gives the same preprocessed arrays as threads."""
    from facemetrics.extractors.base import FeatureExtractor
    from facemetrics.extractors.inception import InceptionExtractor
    from facemetrics.pipeline.features import extract
    from facemetrics.imaging.images import scan

    class Resized(FeatureExtractor):
        name = "resized"
        outputs = ("mean",)

        def preprocessor(self):
            return InceptionExtractor(preset="clean").preprocessor()

        def forward(self, batch):
            return {"mean": batch["image"].reshape(len(batch["image"]), -1, 3).mean(axis=1)}

        def fingerprint(self):
            return {"extractor": "resized"}

    src = scan(faces["toy_fake"])
    a = extract(src, [Resized()], cache=False, progress=False, workers=2, workers_kind="thread", batch_size=3)
    b = extract(src, [Resized()], cache=False, progress=False, workers=2, workers_kind="process", batch_size=3)
    assert a.names == b.names and [f[0] for f in a.failed] == [f[0] for f in b.failed] and len(a.names) == 7
    np.testing.assert_array_equal(a.outputs["resized"]["mean"], b.outputs["resized"]["mean"])
    r = run_cli("stats", faces["toy_fake"], "-o", "x.npz", "--workers-kind", "fork")
    assert r.exit_code == 2 and "--workers-kind" in r.output


# --------------------------------------------------------------------------- one decode pass (item 3)

def test_one_pass_feeds_inception_and_face_embedder(data_dir, tmp_path, monkeypatch):
    """score(fid, fsd, fss) decodes FAKE once for Inception and dlib together, and REAL once when its
    images are the pairs' real images; values equal score_face alone."""
    import facemetrics.imaging.images as images
    from facemetrics.api import score
    from facemetrics.pairing.captions import load_pairs
    from facemetrics.pairing.face_scoring import score_face

    root = data_dir / "lfw" / "deepfunneled"
    people = [p for p in sorted(x.name for x in root.iterdir()) if (root / p / f"{p}_0002.jpg").is_file()][40:44]
    real = link_folder(tmp_path / "real", [root / p / f"{p}_0001.jpg" for p in people])
    fake = tmp_path / "fake"
    fake.mkdir()
    rows = []
    for i, p in enumerate(people):
        (fake / f"g{i}.jpg").symlink_to(root / p / f"{p}_0002.jpg")
        rows.append(json.dumps({"fake": f"g{i}.jpg", "caption": f"photo {i}", "real": str(real / f"{i:05d}_{p}_0001.jpg")}))
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(rows) + "\n")

    decoded: list[str] = []
    orig = images.decode_rgb
    monkeypatch.setattr(images, "decode_rgb", lambda data: decoded.append(1) or orig(data))
    rec = score(str(real), str(fake), metrics="fid,fsd,fss", pairs=str(pairs), progress=False, cache=False)
    # FAKE once for both networks (4), REAL once for both (4): not 16 (one command per metric)
    assert len(decoded) == 8
    # REAL with an image no pair uses: Inception reads REAL (5), the face embedder only the pairs' 4
    extra = root / people[0] / f"{people[0]}_0002.jpg"
    (real / "extra.jpg").symlink_to(extra)
    decoded.clear()
    rec2 = score(str(real), str(fake), metrics="fid,fsd,fss", pairs=str(pairs), progress=False, cache=False)
    assert len(decoded) == 4 + 5 + 4
    monkeypatch.setattr(images, "decode_rgb", orig)
    alone, _ = score_face(load_pairs(str(pairs), fake.resolve(), real), images.scan(fake), progress=False,
                          cache=False)
    for m in ("fsd", "fss"):
        assert rec["metrics"][m]["value"] == pytest.approx(alone[m].value, rel=1e-12)
        assert rec2["metrics"][m]["value"] == pytest.approx(alone[m].value, rel=1e-12)
        assert rec["metrics"][m]["n"] == rec2["metrics"][m]["n"] == alone[m].n == 4


def _face2text_fake(data_dir: Path, tmp_path: Path, n: int) -> tuple[Path, Path, Path]:
    """``n`` LFW images with their first Face2Text v0.1 caption as a 'generated' folder + pairs."""
    root = data_dir / "lfw" / "deepfunneled"
    rows = json.loads((data_dir / "face2text" / "v0.1" / "clean.json").read_text())
    fake, real = tmp_path / "fake", tmp_path / "real"
    fake.mkdir()
    real.mkdir()
    lines = []
    for row in rows:
        rel = Path(row["image"]).with_suffix(".jpg")
        caps = [d["text"] for d in row["descriptions"] if d["text"].strip()]
        if not (root / rel).is_file() or not caps:
            continue
        k = len(lines)
        (fake / f"g{k:03d}.jpg").symlink_to(root / rel)
        (real / f"r{k:03d}.jpg").symlink_to(root / rel)
        lines.append(json.dumps({"fake": f"g{k:03d}.jpg", "caption": caps[0], "real": str(real / f"r{k:03d}.jpg"),
                                 "identity": rel.parts[0]}))
        if len(lines) == n:
            break
    assert len(lines) == n
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("\n".join(lines) + "\n")
    return real, fake, pairs


def test_one_pass_feeds_the_clip_matcher_too(data_dir, tmp_path, monkeypatch):
    """score(rprec, clipscore) reads FAKE once through the CLIP image tower (a tiny random CLIP
    on 110 Face2Text images); R-precision and CLIP score equal score_text reading FAKE itself;
    with fid + fsd as well, FAKE is still decoded once for Inception, dlib and CLIP."""
    import facemetrics.imaging.images as images
    from conftest_text import TINY_ARCH, save_tiny_weights
    from facemetrics.api import score
    from facemetrics.pairing.captions import load_pairs
    from facemetrics.pairing.text_scoring import score_text

    real, fake, pairs = _face2text_fake(data_dir, tmp_path, 110)
    spec = f"clip:{TINY_ARCH}:{save_tiny_weights(tmp_path / 'tiny.pt', seed=0)}"
    decoded: list[int] = []
    orig = images.decode_rgb
    monkeypatch.setattr(images, "decode_rgb", lambda data: decoded.append(1) or orig(data))
    rec = score(str(real), str(fake), metrics="rprec,clipscore", pairs=str(pairs), matcher=spec, progress=False,
                cache=False)
    assert len(decoded) == 110  # FAKE once, through the matcher's extractor (no other extractor runs)
    monkeypatch.setattr(images, "decode_rgb", orig)
    alone, _ = score_text(load_pairs(str(pairs), fake.resolve(), real), images.scan(fake),
                          metrics={"rprec", "clipscore"}, matcher_spec=spec, progress=False)
    for m in ("rprec", "clipscore"):
        assert rec["metrics"][m]["n"] == alone[m].n == 110
        assert rec["metrics"][m]["value"] == pytest.approx(alone[m].value, rel=1e-6, abs=1e-9)
    assert rec["metrics"]["rprec"]["details"]["matcher"] == alone["rprec"].details["matcher"]

    small = tmp_path / "small"
    small.mkdir()
    r6, f6, p6 = _face2text_fake(data_dir, small, 6)
    decoded.clear()
    monkeypatch.setattr(images, "decode_rgb", lambda data: decoded.append(1) or orig(data))
    rec = score(str(r6), str(f6), metrics="fid,fsd,clipscore", pairs=str(p6), matcher=spec, progress=False,
                cache=False)
    # FAKE once for Inception + dlib + CLIP (6), REAL once for Inception + dlib (6);
    # CLIP reading FAKE on its own would add 6
    assert len(decoded) == 12
    assert set(rec["metrics"]) >= {"fid", "fsd", "clipscore"}
