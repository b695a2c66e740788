"""CLIP score against direct computations; text scoring end to end on real LFW images + Face2Text captions."""
from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from conftest_text import DATA, TINY_ARCH, KeyedMatcher, key_image, pair, register_tiny_arch, save_tiny_weights
from facemetrics.errors import FacemetricsError
from facemetrics.imaging.images import scan
from facemetrics.metrics.clipscore import clip_score
from facemetrics.pairing.text_scoring import score_text

F2T = DATA / "face2text" / "v0.1" / "clean.json"
LFW = DATA / "lfw" / "deepfunneled"


def test_clip_score_matches_direct_computation():
    import torch

    rng = np.random.default_rng(0)
    a = rng.standard_normal((500, 24))
    b = 0.3 * a + rng.standard_normal((500, 24))
    res = clip_score(a, b)
    cos = torch.nn.functional.cosine_similarity(torch.from_numpy(a), torch.from_numpy(b), dim=1)
    per = 100 * torch.clamp(cos, min=0)
    assert res.value == pytest.approx(float(per.mean()), abs=1e-10)
    assert res.std == pytest.approx(float(per.std(unbiased=False)), abs=1e-10)
    assert res.n == 500 and res.higher_is_better
    assert 0 < res.details["n_clamped_to_zero"] < 500
    # the per-image clamp differs from torchmetrics' clamp of the mean when some cosines are negative
    assert res.value > max(100 * float(cos.mean()), 0)


def test_clip_score_edge_cases():
    assert clip_score(np.eye(3), np.eye(3)).value == pytest.approx(100.0)
    assert clip_score(np.eye(3), -np.eye(3)).value == 0.0
    with pytest.raises(ValueError):
        clip_score(np.eye(3), np.eye(4))


# --------------------------------------------------------------------------- end to end

def _write_keyed(folder, keys):
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    for k in keys:
        Image.fromarray(key_image(k)).save(folder / f"{k:04d}.png")
    return scan(folder)


def test_perfect_matcher_end_to_end_gives_one(tmp_path):
    keys = list(range(1, 131))
    src = _write_keyed(tmp_path / "fake", keys)
    pairs = [pair(f"{k:04d}.png", f"caption #{k} of a face", real=f"/real/{k}.jpg", identity=f"p{k}") for k in keys]
    res, warns = score_text(pairs, src, metrics={"rprec", "clipscore", "fid"}, matcher=KeyedMatcher("perfect"),
                            seed=3, batch_size=16, progress=False)
    assert set(res) == {"rprec", "clipscore"} and warns == []
    assert res["rprec"].value == 1.0 and res["rprec"].n == 130
    assert res["rprec"].details["seed"] == 3 and res["rprec"].details["matcher"]["kind"] == "keyed"
    assert res["clipscore"].value == pytest.approx(100.0)


def test_random_matcher_end_to_end_is_chance(tmp_path):
    from scipy import stats

    keys = list(range(1, 601))
    src = _write_keyed(tmp_path / "fake", keys)
    pairs = [pair(f"{k:04d}.png", f"#{k}", real=f"/r/{k}.jpg") for k in keys]
    res, _ = score_text(pairs, src, metrics={"rprec"}, matcher=KeyedMatcher("random", d=32), progress=False)
    lo, hi = stats.binom.interval(0.999, 600, 0.01)
    assert lo <= res["rprec"].details["hits"] <= hi


def test_caption_pool_excludes_same_real_image(tmp_path):
    """Captions of the same real image are never negatives, even when they would tie with the positive;
    generated images sharing a caption share one pool entry."""
    from PIL import Image

    keys = list(range(1, 121))
    src_dir = tmp_path / "fake"
    _write_keyed(src_dir, keys)
    Image.fromarray(key_image(1)).save(src_dir / "extra.png")  # a second sample whose embedding is key 1's
    Image.fromarray(key_image(2)).save(src_dir / "again.png")
    src = scan(src_dir)
    base = [pair(f"{k:04d}.png", f"#{k}", real=f"/r/{k}.jpg") for k in keys]
    # "#1 second description" embeds exactly like "#1": a tie (a miss) whenever it is drawn as a negative
    same_real = base + [pair("extra.png", "#1 second description", real="/r/1.jpg"),
                        pair("again.png", "#2", real="/r/2.jpg")]
    res, _ = score_text(same_real, src, metrics={"rprec"}, matcher=KeyedMatcher("perfect"), progress=False)
    assert res["rprec"].details["caption_pool"] == 121 and res["rprec"].n == 122
    assert res["rprec"].value == 1.0
    # control: attributed to another real image, the tying caption becomes eligible and costs hits
    other_real = base + [pair("extra.png", "#1 second description", real="/r/999.jpg"),
                         pair("again.png", "#2", real="/r/2.jpg")]
    res, _ = score_text(other_real, src, metrics={"rprec"}, matcher=KeyedMatcher("perfect"), progress=False)
    assert res["rprec"].details["hits"] < 122


def test_bad_pairs_are_clear_errors(tmp_path):
    src = _write_keyed(tmp_path / "fake", [1, 2])
    km = KeyedMatcher()
    with pytest.raises(FacemetricsError, match=r"row 2 \(fake '0002.png'\) has no caption"):
        score_text([pair("0001.png", "#1"), pair("0002.png", None)], src, metrics={"clipscore"}, matcher=km)
    with pytest.raises(FacemetricsError, match=r"row 1 \(fake '0001.png'\) has an empty caption") as e:
        score_text([pair("0001.png", "  "), pair("0002.png", "#2")], src, metrics={"rprec"}, matcher=km)
    assert e.value.param == "--pairs"
    with pytest.raises(FacemetricsError, match=r"row 2: generated image 'nope.png' is not in"):
        score_text([pair("0001.png", "#1"), pair("nope.png", "#2")], src, metrics={"rprec"}, matcher=km)
    with pytest.raises(FacemetricsError, match="no rows"):
        score_text([], src, metrics={"rprec"}, matcher=km)
    assert score_text([], src, metrics={"fid"}, matcher=km) == ({}, [])  # nothing to do: no checks


def test_undecodable_image_is_dropped_with_a_warning(tmp_path):
    keys = list(range(1, 121))
    src_dir = tmp_path / "fake"
    _write_keyed(src_dir, keys)
    (src_dir / "0007.png").write_bytes(b"not a png")
    src = scan(src_dir)
    pairs = [pair(f"{k:04d}.png", f"#{k}", real=f"/r/{k}.jpg") for k in keys]
    res, warns = score_text(pairs, src, metrics={"clipscore"}, matcher=KeyedMatcher(), progress=False)
    assert res["clipscore"].n == 119 and any("0007.png" in w for w in warns)
    with pytest.raises(FacemetricsError, match="cannot decode generated image"):
        score_text(pairs, src, metrics={"clipscore"}, matcher=KeyedMatcher(), progress=False, strict=True)


@pytest.fixture(scope="module")
def lfw_face2text(tmp_path_factory):
    """12 real LFW images (as the 'generated' folder) with their Face2Text v0.1 captions."""
    if not F2T.is_file():
        pytest.fail(f"Face2Text v0.1 not found at {F2T}; set FACEMETRICS_DATA")
    entries = json.loads(F2T.read_text())[:12]
    fake = tmp_path_factory.mktemp("lfw")
    pairs = []
    for e in entries:
        rel = e["image"].replace(".bmp", ".jpg")
        (fake / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(LFW / rel, fake / rel)
        pairs.append(pair(rel, e["descriptions"][0]["text"], real=LFW / rel, identity=rel.split("/")[0]))
    long = " ".join(["a smiling man with short dark hair and a long thin nose"] * 9)
    pairs[3] = pair(pairs[3].fake, long, real=pairs[3].real, identity=pairs[3].identity)
    return scan(fake), pairs


def test_tiny_clip_on_real_images_matches_open_clip_directly(lfw_face2text, tmp_path):
    import open_clip
    import torch
    from PIL import Image

    src, pairs = lfw_face2text
    weights = save_tiny_weights(tmp_path / "tiny.pt", seed=0)
    res, warns = score_text(pairs, src, metrics={"clipscore", "rprec"}, matcher_spec=f"clip:{TINY_ARCH}:{weights}",
                            n_negatives=9, folds=3, seed=0, batch_size=5, progress=False)
    # the 9x-repeated caption is longer than 77 tokens: a warning, and it is counted
    assert any("exceed the matcher's 77 tokens" in w and "row 4" in w for w in warns), warns
    assert res["clipscore"].details["truncated_captions"] == 1
    assert len(res["clipscore"].details["matcher"]["weights_sha256"]) == 64

    # direct: open_clip's own transform and tokenizer, cosine, per-image clamp, mean
    register_tiny_arch()
    torch.manual_seed(0)
    model, _, pre = open_clip.create_model_and_transforms(TINY_ARCH)
    model.eval()
    tok = open_clip.get_tokenizer(TINY_ARCH)
    with torch.no_grad():
        x = torch.stack([pre(Image.open(src.root / p.fake).convert("RGB")) for p in pairs])
        ie = model.encode_image(x)
        te = model.encode_text(tok([p.caption for p in pairs]))
    per = 100 * torch.clamp(torch.nn.functional.cosine_similarity(ie, te, dim=1), min=0)
    assert res["clipscore"].value == pytest.approx(float(per.mean()), abs=1e-3)
    assert res["clipscore"].n == 12
    assert res["rprec"].n == 12 and res["rprec"].details["n_negatives"] == 9
    with pytest.raises(FacemetricsError, match="short by 88"):  # 12 captions cannot give 99 negatives
        score_text(pairs, src, metrics={"rprec"}, matcher_spec=f"clip:{TINY_ARCH}:{weights}", progress=False)


def test_score_cli_with_pairs_and_a_local_clip_folder(lfw_face2text, tmp_path):
    """`facemetrics score --metrics clipscore,rprec --pairs ... --matcher clip:FOLDER` through api.score."""
    import facemetrics.pairing.captions  # noqa: F401 - pairs manifests are read by facemetrics.pairing.captions
    from click.testing import CliRunner

    from facemetrics.cli.main import cli

    src, pairs = lfw_face2text
    hub = tmp_path / "hub"
    hub.mkdir()
    cfg = json.loads((Path(__file__).parent / "data" / "open_clip" / f"{TINY_ARCH}.json").read_text())
    (hub / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg}))
    save_tiny_weights(hub / "open_clip_pytorch_model.bin", seed=0)
    manifest = tmp_path / "pairs.jsonl"
    manifest.write_text("".join(json.dumps({"fake": p.fake, "caption": p.caption, "real": str(p.real),
                                            "identity": p.identity}) + "\n" for p in pairs))
    out = tmp_path / "rec.json"
    args = ["score", str(LFW), str(src.root), "--pairs", str(manifest), "--matcher", f"clip:{hub}", "-q"]
    r = CliRunner().invoke(cli, args + ["--metrics", "clipscore", "--json", str(out)])
    assert r.exit_code == 0, r.output
    rec = json.loads(out.read_text())
    assert rec["metrics"]["clipscore"]["n"] == 12
    assert any("exceed the matcher's 77 tokens" in w for w in rec["warnings"])
    r = CliRunner().invoke(cli, args + ["--metrics", "rprec"])
    assert r.exit_code == 2 and "short by 88" in r.output
    manifest.write_text(json.dumps({"fake": pairs[0].fake, "caption": ""}) + "\n")
    r = CliRunner().invoke(cli, args + ["--metrics", "clipscore"])
    assert r.exit_code == 2 and "empty caption" in r.output
