"""Face-domain Inception: network copy, label sources, training, resume, checkpoint, extractor.

Real data: LFW deep-funneled, Face2Text v0.1 captions, CelebA 89×109 (read from
``$FACEMETRICS_DATA``; nothing is copied). Sizes are reduced (80–128 px, a few
dozen images, 1–4 epochs) so the module stays fast on 2 CPU cores; the network
runs single-threaded here because the shared test machines are oversubscribed.
"""
from __future__ import annotations

import json
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from facemetrics.errors import FacemetricsError

LFW_SUB = "lfw/deepfunneled"


@pytest.fixture(scope="module", autouse=True)
def _one_thread_isolated_cache(tmp_path_factory):
    """Single-threaded torch and a private facemetrics cache (never the user's) for this module."""
    old_threads = torch.get_num_threads()
    old_env = {k: os.environ.get(k) for k in ("FACEMETRICS_CACHE", "FACEMETRICS_OFFLINE")}
    torch.set_num_threads(1)
    os.environ["FACEMETRICS_CACHE"] = str(tmp_path_factory.mktemp("fm-cache-ft"))
    os.environ["FACEMETRICS_OFFLINE"] = "1"
    yield
    torch.set_num_threads(old_threads)
    for k, v in old_env.items():
        if v is None:
            os.environ.pop(k, None)
        else:
            os.environ[k] = v


@pytest.fixture(scope="module")
def ft_data() -> Path:
    root = Path(os.environ.get("FACEMETRICS_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    if not (root / LFW_SUB).is_dir():
        pytest.fail(f"real test data not found at {root} (set FACEMETRICS_DATA)")
    return root


@pytest.fixture(scope="module")
def lfw(ft_data) -> Path:
    return ft_data / LFW_SUB


def _people(lfw: Path) -> list[str]:
    return sorted(p.name for p in lfw.iterdir() if p.is_dir())


def _link(dest: Path, files: list[Path]) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(files):
        (dest / f"{i:04d}_{f.name}").symlink_to(f)
    return dest


# =========================================================================== the network

def test_pool_features_equal_torchscript(lfw):
    """The nn.Module copy gives the TorchScript network's pool3 features (|Δ| ≤ 1e-5, absolute)."""
    from facemetrics.nets.face_inception import Preprocess, build_model
    from facemetrics.imaging.images import decode_rgb
    from facemetrics.nets.inception import default_fid_weights, load_fid_state, normalize, scripted_layers_state

    path = default_fid_weights()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scripted = torch.jit.load(str(path), map_location="cpu").eval()
    layers = scripted.net.layers if hasattr(scripted, "net") else scripted.layers
    model = build_model(7)
    load_fid_state(model.backbone, scripted_layers_state(path))
    model.eval()
    pre = Preprocess("clean", 299)
    files = [lfw / p / f"{p}_0001.jpg" for p in _people(lfw)[:3]]
    x = torch.stack([torch.from_numpy(pre.resize(decode_rgb(f.read_bytes()))).permute(2, 0, 1) for f in files])
    x = normalize(x)
    with torch.no_grad():
        ref = layers(x).reshape(len(files), 2048)
        ours, logits = model(x)
    assert ours.shape == (3, 2048) and logits.shape == (3, 7)
    assert float(ref.abs().max()) > 1.0  # real, non-trivial features
    assert float((ours - ref).abs().max()) <= 1e-5


def test_reduced_size_freeze_and_global_pool():
    from facemetrics.nets.inception import BLOCKS, InceptionFID

    torch.manual_seed(0)
    net = InceptionFID().eval()
    x = torch.randn(2, 3, 80, 80)
    with torch.no_grad():
        y = net(x)
        trunk = x
        for name in BLOCKS[:-1]:
            trunk = getattr(net, name)(trunk)
    assert y.shape == (2, 2048)
    torch.testing.assert_close(y, trunk.mean(dim=(2, 3)), rtol=1e-6, atol=1e-6)
    frozen = net.freeze_until("mixed_7")
    assert frozen == list(BLOCKS[: BLOCKS.index("mixed_7") + 1])
    net(x).sum().backward()
    assert net.mixed_7.conv.weight.grad is None and net.conv.beta.grad is None
    assert net.mixed_8.tower.conv.weight.grad is not None
    # batch-norm statistics are buffers, never parameters
    names = {n for n, _ in net.named_parameters()}
    assert "conv.mean" not in names and "conv.beta" in names
    with pytest.raises(ValueError, match="minimum"):
        net(torch.zeros(1, 3, 64, 64))
    net.freeze_until("none")
    assert all(p.requires_grad for p in net.parameters())


# =========================================================================== Face2Text rules

@pytest.mark.parametrize("caption, expected", [
    ("A young woman with long blonde hair, smiling broadly.",
     {"gender": {"female"}, "hair": {"blond"}, "smile": {"yes"}, "age": {"young"}}),
    ("An elderly man with grey hair, a grey beard and glasses. He is not smiling.",
     {"gender": {"male"}, "hair": {"grey"}, "smile": {"no"}, "glasses": {"yes"},
      "facial_hair": {"yes"}, "age": {"old"}}),
    ("Middle-aged bald gentleman, clean-shaven, serious expression, no glasses.",
     {"gender": {"male"}, "smile": {"no"}, "facial_hair": {"no"}, "age": {"middle"}}),
    ("She has dark-brown hair and brown eyes; in her late 40s.",
     {"gender": {"female"}, "hair": {"brown"}, "age": {"middle"}}),
    ("a black curly haired man in his 20's with a moustache, grinning",
     {"gender": {"male"}, "hair": {"black"}, "smile": {"yes"}, "facial_hair": {"yes"}, "age": {"young"}}),
    ("His hair is mostly white. A 65 year old man.",
     {"gender": {"male"}, "hair": {"grey"}, "age": {"old"}}),
    ("A man with brown eyes and red lips.", {"gender": {"male"}}),
    ("Old film star look, wearing sunglasses and a suit.", {"glasses": {"yes"}}),
])
def test_caption_votes(caption, expected):
    from facemetrics.finetune.labels import caption_votes

    assert caption_votes(caption) == expected


def test_attribute_majority_and_encoding():
    from facemetrics.finetune.labels import FACE2TEXT_GROUPS, attributes_from_captions, encode_attributes

    a = attributes_from_captions([
        "A smiling man with black hair.", "He is smiling, dark hair.", "A serious man with brown hair."])
    assert a == {"gender": "male", "hair": "black", "smile": "yes", "age": None,
                 "glasses": "no", "facial_hair": "no"}
    tie = attributes_from_captions(["a young man", "an old man"])
    assert tie["age"] is None
    t, m = encode_attributes(a)
    width = sum(len(g.outputs) for g in FACE2TEXT_GROUPS)
    assert len(t) == len(m) == width == 12
    # male=1, hair one-hot at black, smiling=1, glasses 0, facial hair 0, age unknown (masked)
    assert t == [1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0]
    assert m == [1, 1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0]


def test_face2text_label_counts_on_real_data(ft_data):
    """Counts of the keyword rules over Face2Text v0.1 (400 LFW images); pinned to catch rule drift."""
    from facemetrics.finetune.labels import attribute_counts, load_labels

    ls = load_labels(ft_data / LFW_SUB, f"face2text-attributes:{ft_data / 'face2text/v0.1/clean.json'}", 5)
    assert len(ls) == 400 and ls.kind == "multi" and len(ls.classes) == 12
    counts = attribute_counts(ls)
    assert counts["gender"] == {"male": 214, "not_male": 183, "unknown": 3}
    assert counts["hair"] == {"hair_black": 62, "hair_brown": 84, "hair_blond": 73, "hair_grey": 55,
                              "hair_red": 5, "unknown": 121}
    assert counts["smile"] == {"smiling": 180, "not_smiling": 47, "unknown": 173}
    assert counts["glasses"] == {"glasses": 56, "not_glasses": 344}
    assert counts["facial_hair"] == {"facial_hair": 48, "not_facial_hair": 352}
    assert counts["age"] == {"age_young": 67, "age_middle": 172, "age_old": 48, "unknown": 113}
    with pytest.raises(FacemetricsError, match=r"hair=hair_red \(5\)"):
        load_labels(ft_data / LFW_SUB, f"face2text-attributes:{ft_data / 'face2text/v0.1/clean.json'}", 6)


# =========================================================================== label sources: errors

def test_folders_and_csv_sources(tmp_path, lfw):
    from facemetrics.finetune.labels import load_labels

    people = ["Aaron_Peirsol", "Abdullah_Gul", "Abdullah_al-Attiyah"]  # 4, 19, 3 images in LFW
    root = tmp_path / "ids"
    for p in people:
        _link(root / p, sorted((lfw / p).iterdir()))
    ls = load_labels(root, "folders", 4)
    assert ls.classes == ["Aaron_Peirsol", "Abdullah_Gul"] and len(ls) == 4 + 19
    assert ls.notes == ["2 classes with >= 4 images; 1 folders dropped"]
    with pytest.raises(FacemetricsError, match="empty label set.*largest has 19") as e:
        load_labels(root, "folders", 20)
    assert e.value.param == "--min-per-class"
    imgs = sorted(p.relative_to(root).as_posix() for p in root.rglob("*.jpg"))
    csv_single = tmp_path / "single.csv"
    csv_single.write_text("image,label\n" + "".join(f"{n},{n.split('/')[0]}\n" for n in imgs))
    ls = load_labels(root, f"csv:{csv_single}", 3)
    assert ls.kind == "single" and ls.classes == sorted(people) and len(ls) == 26
    with pytest.raises(FacemetricsError, match=r"'Abdullah_al-Attiyah' \(3\)") as e:
        load_labels(root, f"csv:{csv_single}", 4)
    assert e.value.param == "--min-per-class"
    csv_multi = tmp_path / "multi.csv"
    csv_multi.write_text("image,labels\n" + "".join(
        f"{n},{'a;b' if i % 2 else 'b'}\n" for i, n in enumerate(imgs)))
    ls = load_labels(root, f"csv:{csv_multi}", 2)
    assert ls.kind == "multi" and ls.classes == ["a", "b"] and ls.targets[1] == [1.0, 1.0]
    assert ls.targets[0] == [0.0, 1.0] and ls.masks[0] == [1.0, 1.0]
    bad = tmp_path / "bad.csv"
    bad.write_text("file,class\nx.jpg,a\n")
    with pytest.raises(FacemetricsError, match="needs an 'image' column"):
        load_labels(root, f"csv:{bad}", 2)
    empty = tmp_path / "empty.csv"
    empty.write_text("image,label\n")
    with pytest.raises(FacemetricsError, match="empty label set"):
        load_labels(root, f"csv:{empty}", 2)
    missing = tmp_path / "missing.csv"
    missing.write_text("image,label\nnope/none.jpg,a\n")
    with pytest.raises(FacemetricsError, match="do not exist"):
        load_labels(root, f"csv:{missing}", 2)
    with pytest.raises(FacemetricsError, match="unknown label source"):
        load_labels(root, "identities", 2)
    with pytest.raises(FacemetricsError, match="captions not found"):
        load_labels(root, "face2text-attributes", 2)


def test_split_is_stratified_seeded_and_disjoint():
    from facemetrics.finetune.train import split
    from facemetrics.finetune.labels import LabelSet

    ls = LabelSet("single", ["a", "b", "c"], [f"{i}.jpg" for i in range(23)], [0] * 10 + [1] * 10 + [2] * 3)
    tr, va = split(ls, 0.2, seed=1)
    assert sorted(tr + va) == list(range(23)) and not set(tr) & set(va)
    per_class = [sum(ls.targets[i] == k for i in va) for k in range(3)]
    assert per_class == [2, 2, 1]
    assert split(ls, 0.2, seed=1) == (tr, va) and split(ls, 0.2, seed=2) != (tr, va)
    one = LabelSet("single", ["a", "b"], ["x", "y", "z"], [0, 0, 1])
    with pytest.raises(FacemetricsError, match="'b' has 1 image"):
        split(one, 0.2, 0)


def test_multilabel_accuracy_report_by_hand():
    from facemetrics.finetune.train import accuracy_report

    head = {"kind": "multi", "classes": ["male", "h_black", "h_brown", "h_grey"],
            "groups": [{"name": "gender", "kind": "binary", "outputs": ["male"]},
                       {"name": "hair", "kind": "categorical", "outputs": ["h_black", "h_brown", "h_grey"]}]}
    logits = torch.tensor([[2.0, 0.1, 0.5, -1.0],    # male ✓, hair brown ✓
                           [-1.0, 3.0, 0.0, 0.0],    # female ✗ (truth male), hair black ✗ (truth grey)
                           [-0.5, 0.0, 0.0, 1.0],    # female ✓, hair unknown
                           [0.3, 0.0, 2.0, 0.0]])    # gender unknown, hair brown ✓
    targets = torch.tensor([[1.0, 0, 1, 0], [1.0, 0, 0, 1], [0.0, 0, 0, 0], [0.0, 0, 1, 0]])
    masks = torch.tensor([[1.0, 1, 1, 1], [1.0, 1, 1, 1], [1.0, 0, 0, 0], [0.0, 1, 1, 1]])
    train_t = torch.tensor([[1.0, 0, 1, 0], [1.0, 0, 1, 0], [0.0, 1, 0, 0]])
    train_m = torch.ones(3, 4)
    r = accuracy_report(head, logits, targets, masks, train_t, train_m)
    assert r["per_group"]["gender"] == {"accuracy": 2 / 3, "chance": 2 / 3, "n": 3}  # majority: male
    assert r["per_group"]["hair"] == {"accuracy": 2 / 3, "chance": 2 / 3, "n": 3}  # majority: brown
    assert r["accuracy"] == pytest.approx(2 / 3) and r["chance"] == pytest.approx(2 / 3)


# =========================================================================== training on real LFW identities

#: The 20 largest LFW identities (all have ≥ 20 images), 10 images each (8 train / 2 validation), 128 px,
#: 3 epochs, trunk frozen up to mixed_9 (mixed_10 and the new head learn).
TRAIN_ARGS = ["--labels", "folders", "--min-per-class", "20", "--max-classes", "20", "--max-per-class", "10",
              "--val-split", "0.2", "--image-size", "128", "--epochs", "3", "--batch-size", "16",
              "--freeze-until", "mixed_9", "--lr", "0.001", "--backbone-lr-scale", "0.1", "--seed", "0",
              "--no-progress"]


@pytest.fixture(scope="module")
def trained(lfw, tmp_path_factory):
    """One short CPU fine-tuning through the CLI, shared by the tests below."""
    from click.testing import CliRunner

    from facemetrics.cli.finetune import finetune_inception

    out = tmp_path_factory.mktemp("ft") / "face-inception.pt"
    res = CliRunner().invoke(finetune_inception, ["--data", str(lfw), "--out", str(out), *TRAIN_ARGS])
    assert res.exit_code == 0, res.output
    return out


def test_validation_accuracy_well_above_chance(trained):
    ck = torch.load(trained, map_location="cpu", weights_only=True)
    v = ck["validation"]
    assert v["n"] == 40 and v["chance"] == pytest.approx(0.05) and v["uniform_chance"] == pytest.approx(0.05)
    print(f"validation accuracy {v['accuracy']:.3f} (chance {v['chance']:.3f}); history {ck['history']}")
    assert v["accuracy"] >= 0.2  # 4× chance (0.05: 2 validation images of each of 20 identities)


def test_checkpoint_metadata(trained, lfw):
    from facemetrics.nets.face_inception import sha256_file
    from facemetrics.nets.inception import default_fid_weights

    ck = torch.load(trained, map_location="cpu", weights_only=True)
    assert ck["format"] == "facemetrics.face-inception/1" and ck["complete"] and ck["epoch"] == 3
    assert ck["head"]["kind"] == "single" and len(ck["head"]["classes"]) == 20
    assert {"George_W_Bush", "Colin_Powell", "Tony_Blair", "Serena_Williams"} <= set(ck["head"]["classes"])
    assert ck["preprocess"] == {"preset": "clean", "image_size": 128, "input": "(x-128)/128",
                                "shift": 128.0, "scale": 128.0, "resizer": "facemetrics.imaging.resize:clean"}
    assert ck["base_weights"]["sha256"] == sha256_file(default_fid_weights())
    assert len(ck["data"]["content_sha256"]) == 64 and ck["data"]["n_images"] == 200
    assert (ck["data"]["n_train"], ck["data"]["n_val"]) == (160, 40)
    assert [h["epoch"] for h in ck["history"]] == [1, 2, 3]
    assert ck["config"]["seed"] == 0 and ck["frozen_blocks"][-1] == "mixed_9"
    # frozen blocks kept the pretrained weights, trained blocks moved
    from facemetrics.nets.inception import scripted_layers_state

    base = scripted_layers_state(default_fid_weights())
    assert torch.equal(ck["model"]["backbone.mixed_9.conv.weight"], base["mixed_9.conv.weight"])
    assert not torch.equal(ck["model"]["backbone.mixed_10.conv.weight"], base["mixed_10.conv.weight"])
    from PIL import Image

    with Image.open(trained.with_name("face-inception.curves.png")) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert Path(str(trained) + ".train-state").is_file()


def test_extractor_fingerprint_probabilities_and_registry(trained, tmp_path):
    from facemetrics.extractors import build_extractor
    from facemetrics.nets.face_inception import sha256_file

    ex = build_extractor("finetuned", checkpoint=str(trained))
    fp = ex.fingerprint()
    assert fp["weights_sha256"] == sha256_file(trained) and fp["image_size"] == 128 and fp["preset"] == "clean"
    stock = build_extractor("inception")
    assert ex.fingerprint_key() != stock.fingerprint_key()
    other = tmp_path / "other.pt"
    ck = torch.load(trained, map_location="cpu", weights_only=True)
    ck["model"]["head.bias"] = ck["model"]["head.bias"] + 1.0
    torch.save(ck, other)
    assert build_extractor("finetuned", checkpoint=str(other)).fingerprint_key() != ex.fingerprint_key()
    logits = np.random.default_rng(0).normal(size=(3, 20)) * 5
    p = ex.class_probabilities(logits)
    e = np.exp(logits)
    np.testing.assert_allclose(p, e / e.sum(1, keepdims=True), rtol=1e-12)
    with pytest.warns(UserWarning, match="fine-tuned with preset 'clean'"):
        build_extractor("finetuned", checkpoint=str(trained), preset="tf1").fingerprint()


def test_fid_kid_is_with_finetuned_extractor(trained, ft_data, lfw, tmp_path):
    """score --extractor: FID/KID(LFW A, LFW B) below FID/KID(LFW A, CelebA); domain IS from the head.

    With 100 images per set FID in 2048-d is dominated by its small-sample bias (914 vs 1040 here),
    so FID is checked for the order and KID (unbiased: −0.045 vs 0.234) for a clear separation.
    The large gap (FID 145 vs 470 at 500 per set after a 62-identity fine-tuning) is shown by
    benchmarks/finetune_lfw_run.py (benchmarks/RESULTS.md).
    """
    from facemetrics.api import score
    from facemetrics.extractors import build_extractor
    from facemetrics.nets.face_inception import sha256_file
    from facemetrics.pipeline.features import extract
    from facemetrics.imaging.images import scan
    from facemetrics.metrics.fid import frechet_distance
    from facemetrics.metrics.inception_score import inception_score_from_probs

    people = _people(lfw)
    rng = np.random.default_rng(0)
    pick = rng.choice(len(people), size=200, replace=False)
    firsts = [lfw / people[i] / f"{people[i]}_0001.jpg" for i in pick]
    a = _link(tmp_path / "a", firsts[:100])
    b = _link(tmp_path / "b", firsts[100:])
    c = _link(tmp_path / "c", sorted((ft_data / "celeba/89x109").iterdir())[:100])
    common = dict(extractor=str(trained), kid_subsets=20, kid_subset_size=100, is_splits=5,
                  progress=False, workers=1, cache=True)
    rec_ab = score(str(a), str(b), metrics="fid,kid,is", **common)
    rec_ac = score(str(a), str(c), metrics="fid,kid", **common)
    fid_ab, fid_ac = rec_ab["metrics"]["fid"]["value"], rec_ac["metrics"]["fid"]["value"]
    kid_ab, kid_ac = rec_ab["metrics"]["kid"]["value"], rec_ac["metrics"]["kid"]["value"]
    print(f"FID(LFW A, LFW B) = {fid_ab:.2f}, FID(LFW A, CelebA) = {fid_ac:.2f}; "
          f"KID {kid_ab:.5f} vs {kid_ac:.5f}; domain IS {rec_ab['metrics']['is']['value']:.4f}")
    assert rec_ab["protocol"]["weights_sha256"] == sha256_file(trained)
    assert fid_ab < fid_ac
    assert kid_ac > 0.05 and kid_ab < kid_ac / 4
    # the same numbers from the extractor directly (independent of api.score's plumbing)
    ex = build_extractor("finetuned", checkpoint=str(trained))
    fa = extract(scan(a), [ex], progress=False, workers=1).outputs["finetuned"]  # from the cache
    fb = extract(scan(b), [ex], progress=False, workers=1).outputs["finetuned"]
    mu_a, mu_b = fa["pool"].astype(np.float64).mean(0), fb["pool"].astype(np.float64).mean(0)
    ref = frechet_distance(mu_a, np.cov(fa["pool"].astype(np.float64), rowvar=False),
                           mu_b, np.cov(fb["pool"].astype(np.float64), rowvar=False))
    assert fid_ab == pytest.approx(ref, rel=1e-6)
    is_ref = inception_score_from_probs(ex.class_probabilities(fb["logits"]), splits=5, seed=0)
    assert rec_ab["metrics"]["is"]["value"] == pytest.approx(is_ref.value, rel=1e-9)
    assert 1.0 <= is_ref.value <= 20.0  # IS is bounded by the number of classes
    # the CLI: facemetrics score A B --extractor face-inception.pt --metrics is (features from the cache)
    from click.testing import CliRunner

    from facemetrics.cli.main import cli

    r = CliRunner().invoke(cli, ["score", str(a), str(b), "--extractor", str(trained), "--metrics", "is",
                                 "--is-splits", "5", "--json", "-", "-q", "--workers", "1"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["metrics"]["is"]["value"] == pytest.approx(is_ref.value, rel=1e-9)


# =========================================================================== resume

SMALL = ["--labels", "folders", "--min-per-class", "20", "--max-classes", "3", "--max-per-class", "4",
         "--val-split", "0.25", "--image-size", "80", "--batch-size", "3", "--freeze-until", "mixed_8",
         "--seed", "5", "--no-progress"]


def test_resume_is_bit_for_bit(lfw, tmp_path):
    from click.testing import CliRunner

    from facemetrics.finetune.train import FinetuneConfig, finetune
    from facemetrics.cli.finetune import finetune_inception

    run = CliRunner()
    straight = finetune(FinetuneConfig(data=str(lfw), out=str(tmp_path / "a.pt"), labels="folders", min_per_class=20,
                                       max_classes=3, max_per_class=4, val_split=0.25, image_size=80, batch_size=3,
                                       freeze_until="mixed_8", seed=5, progress=False, epochs=2), log=lambda m: None)
    out = tmp_path / "b.pt"
    r1 = run.invoke(finetune_inception, ["--data", str(lfw), "--out", str(out), "--epochs", "1", *SMALL])
    assert r1.exit_code == 0, r1.output
    r2 = run.invoke(finetune_inception, ["--data", str(lfw), "--out", str(out), "--epochs", "2", "--resume", *SMALL])
    assert r2.exit_code == 0, r2.output
    assert "resuming after epoch 1" in r2.output
    sa = torch.load(tmp_path / "a.pt.train-state", weights_only=True)
    sb = torch.load(str(out) + ".train-state", weights_only=True)
    assert sa["model"].keys() == sb["model"].keys()
    for k in sa["model"]:
        assert torch.equal(sa["model"][k], sb["model"][k]), k
    for s1, s2 in zip(sa["optimizer"]["state"].values(), sb["optimizer"]["state"].values()):
        assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert sa["orders"] == sb["orders"]
    strip = [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in sa["history"]]
    assert strip == [{k: v for k, v in h.items() if k not in ("seconds", "images_per_s")} for h in sb["history"]]
    assert [h["epoch"] for h in straight.history] == [1, 2]
    # resuming a finished run, or with changed options, is refused clearly
    r3 = run.invoke(finetune_inception, ["--data", str(lfw), "--out", str(out), "--epochs", "2", "--resume", *SMALL])
    assert r3.exit_code == 2 and "already completed 2 epochs" in r3.output
    changed = [x if x != "5" else "6" for x in SMALL]  # another seed
    r4 = run.invoke(finetune_inception, ["--data", str(lfw), "--out", str(out), "--epochs", "3", "--resume", *changed])
    assert r4.exit_code == 2 and "seed (was 5, now 6)" in r4.output
    r5 = run.invoke(finetune_inception, ["--data", str(lfw), "--out", str(tmp_path / "none.pt"), "--resume", *SMALL])
    assert r5.exit_code == 2 and "training state does not exist" in r5.output


# =========================================================================== multi-label head, bad inputs

def test_multilabel_run_and_is_refused(lfw, tmp_path):
    from facemetrics.extractors import build_extractor
    from facemetrics.finetune.train import FinetuneConfig, finetune

    people = ["Aaron_Peirsol", "Abdullah_Gul"]
    imgs = [f"{p}/{p}_{i:04d}.jpg" for p in people for i in range(1, 5)]
    csv = tmp_path / "attrs.csv"
    csv.write_text("image,labels\n" + "".join(
        f"{n},{'swimmer' if n.startswith('Aaron') else 'politician'}{';even' if i % 2 else ''}\n"
        for i, n in enumerate(imgs)))
    res = finetune(FinetuneConfig(data=str(lfw), out=str(tmp_path / "m.pt"), labels=f"csv:{csv}", min_per_class=2,
                                  val_split=0.25, image_size=80, batch_size=4, epochs=1, freeze_until="mixed_9",
                                  progress=False), log=lambda m: None)
    assert res.classes == ["even", "politician", "swimmer"] and (res.n_train, res.n_val) == (6, 2)
    assert set(res.validation["per_group"]) <= {"even", "politician", "swimmer"}
    ex = build_extractor("finetuned", checkpoint=str(tmp_path / "m.pt"))
    with pytest.raises(FacemetricsError, match="multi-label attribute head") as e:
        ex.class_probabilities(np.zeros((2, 3)))
    assert e.value.param == "--metrics"


def test_bad_checkpoints_are_clear_errors(tmp_path, trained):
    import torchvision

    from facemetrics.extractors import build_extractor

    def fingerprint(p):
        return build_extractor("finetuned", checkpoint=str(p)).fingerprint()

    with pytest.raises(FacemetricsError, match="does not exist"):
        build_extractor("finetuned", checkpoint=str(tmp_path / "nope.pt"))
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(FacemetricsError, match="corrupted or not a torch file"):
        fingerprint(garbage)
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(trained.read_bytes()[: 1 << 20])
    with pytest.raises(FacemetricsError, match="corrupted or not a torch file"):
        fingerprint(truncated)
    bare = tmp_path / "resnet.pt"
    torch.save(torchvision.models.resnet18(weights=None).state_dict(), bare)
    with pytest.raises(FacemetricsError, match="bare state dict"):
        fingerprint(bare)
    foreign = tmp_path / "foreign.pt"
    ck = torch.load(trained, map_location="cpu", weights_only=True)
    ck["model"] = torchvision.models.resnet18(weights=None, num_classes=5).state_dict()
    torch.save(ck, foreign)
    with pytest.raises(FacemetricsError, match="not the face-Inception architecture"):
        fingerprint(foreign)
    other_arch = tmp_path / "arch.pt"
    ck = torch.load(trained, map_location="cpu", weights_only=True)
    ck["arch"] = "resnet18"
    torch.save(ck, other_arch)
    with pytest.raises(FacemetricsError, match="architecture 'resnet18'"):
        fingerprint(other_arch)
    with pytest.raises(FacemetricsError, match="training-state file"):
        fingerprint(str(trained) + ".train-state")


def test_cli_bad_input_exit_code(lfw, tmp_path):
    from click.testing import CliRunner

    from facemetrics.cli.finetune import finetune_inception

    run = CliRunner()
    r = run.invoke(finetune_inception, ["--data", str(lfw), "--out", str(tmp_path / "x.pt"), "--min-per-class", "600",
                                        "--no-progress"])
    assert r.exit_code == 2 and "empty label set" in r.output and "--min-per-class" in r.output
    r = run.invoke(finetune_inception, ["--data", str(lfw), "--out", str(tmp_path / "x.pt"),
                                        "--labels", f"csv:{tmp_path / 'none.csv'}", "--no-progress"])
    assert r.exit_code == 2 and "label CSV does not exist" in r.output
    r = run.invoke(finetune_inception, ["--data", str(lfw), "--out", str(tmp_path / "x.pt"), "--val-split", "1.5",
                                        "--no-progress"])
    assert r.exit_code == 2 and "--val-split" in r.output
