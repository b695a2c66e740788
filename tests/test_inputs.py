"""In-memory inputs of ``score``: arrays, tensors, lists, generators (facemetrics.imaging.inputs).

The Inception test scores the same 12 LFW faces as a folder, a numpy N×H×W×3
array, a torch N×3×H×W tensor, a list of PIL images and a generator; the others
use the small deterministic ``toy`` extractor of tests/dist_worker.py.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import dist_worker  # noqa: F401  (registers the "toy" extractor)
import facemetrics
from facemetrics.api import compute_stats, score
from facemetrics.errors import FacemetricsError
from facemetrics.imaging.images import decode_rgb
from facemetrics.imaging.inputs import as_images, batch_layout, pixel_digest, pixels_key

REL = 1e-6
TOY = dict(extractor="toy", metrics="fid,kid,is", kid_subset_size=6, kid_subsets=20, is_splits=2, seed=3,
           progress=False)


def rel(a: float, b: float) -> float:
    return abs(a - b) / max(abs(b), 1e-30)


def decoded(folder: Path) -> list[np.ndarray]:
    return [decode_rgb(f.read_bytes()) for f in sorted(folder.iterdir())]


def generator_of(arr: np.ndarray, calls: list | None = None):
    """fn(batch_size) handing out ``arr`` in order (then wrapping around), logging its arguments."""
    pos = [0]

    def fn(bs: int) -> np.ndarray:
        if calls is not None:
            calls.append(bs)
        idx = (pos[0] + np.arange(bs)) % len(arr)
        pos[0] += bs
        return arr[idx]

    return fn


@pytest.fixture(scope="module")
def pixels(lfw_small) -> tuple[np.ndarray, np.ndarray]:
    """The decoded REAL and FAKE faces of ``lfw_small`` (12×250×250×3 uint8 each), in file order."""
    return np.stack(decoded(lfw_small[0])), np.stack(decoded(lfw_small[1]))


def same_numbers(a: dict, b: dict, metrics=("fid", "kid")) -> None:
    for m in metrics:
        assert rel(a["metrics"][m]["value"], b["metrics"][m]["value"]) < REL, m
        if b["metrics"][m]["std"] is not None:
            assert rel(a["metrics"][m]["std"], b["metrics"][m]["std"]) < REL, m
    assert a["protocol"] == b["protocol"] and a["real"] == b["real"]
    assert a["fake"]["n"] == b["fake"]["n"]


def test_inception_folder_array_tensor_list_generator_agree(lfw_small, pixels, tmp_path):
    """The issue's check with the real network: every input kind gives the folder's FID and KID (1e-6).

    REAL is a statistics file (extracted once) and FAKE 8 faces, so that little runs through Inception.
    """
    from conftest import link_folder

    real_dir, fake_all = lfw_small
    files = sorted(fake_all.iterdir())[:8]
    fake_dir = link_folder(tmp_path / "fake", [f.resolve() for f in files])
    st, feats, _ = compute_stats(str(real_dir), progress=False)
    ref = tmp_path / "ref.npz"
    st.save(ref, feats)
    kw = dict(metrics="fid,kid", kid_subset_size=6, kid_subsets=20, seed=1, progress=False, cache=False)
    folder = score(str(ref), str(fake_dir), **kw)
    fake = pixels[1][:8]
    pil = [Image.open(f) for f in files]  # opened lazily, converted like a decode
    inputs = [("array", fake), ("array", torch.from_numpy(fake).permute(0, 3, 1, 2).contiguous()),  # N×3×H×W
              ("images", pil), ("generator", facemetrics.Generated(generator_of(fake), n=8, batch_size=3))]
    hashes = set()
    for kind, x in inputs:
        rec = score(str(ref), x, **kw)
        same_numbers(rec, folder)
        assert rec["fake"]["kind"] == kind and rec["fake"]["n"] == 8
        hashes.add(rec["fake"]["content_sha256"])
    for im in pil:
        im.close()
    assert hashes == {pixels_key([pixel_digest(x) for x in fake])}
    assert folder["metrics"]["fid"]["value"] > 1.0  # two different sets: the comparison is not trivially 0 = 0
    # the accumulator, fed 7 uneven batches (1, 2, 1, 1, 1, 1, 1 images)
    m = facemetrics.Metrics("fid,kid", real=str(ref), kid_subset_size=6, kid_subsets=20, seed=1, cache=False)
    for part in np.split(np.arange(8), [1, 3, 4, 5, 6, 7]):
        m.update(torch.from_numpy(fake[part]))
    same_numbers(m.compute(), folder)


def test_toy_every_kind_equals_folder(lfw_small, pixels):
    real_dir, fake_dir = lfw_small
    folder = score(str(real_dir), str(fake_dir), cache=False, **TOY)
    fake = pixels[1]
    variants = [fake, torch.from_numpy(fake).permute(0, 3, 1, 2), list(fake), [Image.fromarray(x) for x in fake],
                facemetrics.Generated(generator_of(fake), n=12, batch_size=7)]
    for x in variants:
        rec = score(str(real_dir), x, cache=False, **TOY)
        same_numbers(rec, folder, ("fid", "kid", "is"))
    # REAL in memory too (and the record says so)
    both = score(pixels[0], fake, cache=False, **TOY)
    assert both["real"]["kind"] == "array" and both["real"]["n"] == 12
    assert rel(both["metrics"]["fid"]["value"], folder["metrics"]["fid"]["value"]) < REL
    # a different FAKE gives a different number: the comparison can fail
    other = score(str(real_dir), fake[::-1][:10], cache=False, **TOY)
    assert rel(other["metrics"]["fid"]["value"], folder["metrics"]["fid"]["value"]) > 1e-3


def test_content_hash_follows_the_pixels(pixels):
    fake = pixels[1]
    key = pixels_key([pixel_digest(x) for x in fake])
    assert pixels_key([pixel_digest(as_images(fake, "x").get(i)) for i in range(12)]) == key
    nchw = as_images(torch.from_numpy(fake).permute(0, 3, 1, 2), "x")
    assert pixels_key([pixel_digest(nchw.get(i)) for i in range(12)]) == key
    changed = fake.copy()
    changed[5, 100, 100, 1] ^= 1  # one channel of one pixel, off by one
    assert pixels_key([pixel_digest(x) for x in changed]) != key
    assert pixels_key([pixel_digest(x) for x in fake[::-1]]) != key  # order counts
    flat = np.ascontiguousarray(fake[0])
    assert pixel_digest(flat) != pixel_digest(flat.reshape(125, 500, 3))  # same bytes, other shape


def test_record_hash_kind_n_and_cache(lfw_small, pixels, monkeypatch):
    real_dir, _ = lfw_small
    fake = pixels[1]
    calls = []
    forward = dist_worker.ToyExtractor.forward
    monkeypatch.setattr(dist_worker.ToyExtractor, "forward", lambda self, b: calls.append(1) or forward(self, b))
    score(str(real_dir), fake, **TOY)  # REAL and FAKE extracted, then cached
    calls.clear()
    again = score(str(real_dir), list(fake), **TOY)  # same pixels as a list: the cache entry is found
    assert calls == []
    assert again["fake"]["kind"] == "images" and again["fake"]["n"] == 12
    changed = fake.copy()
    changed[0, 0, 0, 0] ^= 1
    moved = score(str(real_dir), changed, **TOY)
    assert calls and moved["fake"]["content_sha256"] != again["fake"]["content_sha256"]
    calls.clear()
    gen = score(str(real_dir), facemetrics.Generated(generator_of(fake), n=12), **TOY)
    assert calls  # generated images are never looked up in the cache
    assert gen["fake"]["content_sha256"] == again["fake"]["content_sha256"] and gen["fake"]["kind"] == "generator"


def test_generator_batches_and_truncation(lfw_small, pixels):
    calls: list[int] = []
    rec = score(str(lfw_small[0]), facemetrics.Generated(generator_of(pixels[1], calls), n=11, batch_size=4),
                cache=False, **TOY)
    assert calls == [4, 4, 4] and rec["fake"]["n"] == 11
    assert rec["fake"]["content_sha256"] == pixels_key([pixel_digest(x) for x in pixels[1][:11]])
    with pytest.raises(FacemetricsError, match="n must be a positive integer"):
        facemetrics.Generated(generator_of(pixels[1]), n=0)
    with pytest.raises(FacemetricsError, match="fn must be callable"):
        facemetrics.Generated(pixels[1], n=3)


@pytest.mark.parametrize("bad", [
    np.zeros((4, 8, 8, 3), np.float32),
    torch.zeros(4, 3, 8, 8),
    torch.zeros(4, 8, 8, 3, dtype=torch.int64),
    [np.zeros((8, 8, 3), np.uint8), np.zeros((8, 8, 3), np.float64)],
])
def test_non_uint8_refused_with_the_conversion(lfw_small, bad):
    with pytest.raises(FacemetricsError) as e:
        score(str(lfw_small[0]), bad, **TOY)
    msg = str(e.value)
    assert e.value.param.startswith("FAKE") and "must be uint8" in msg
    assert "((x + 1) * 127.5).round().clamp(0, 255).to(torch.uint8)" in msg


def test_non_uint8_from_a_generator_refused(lfw_small):
    gen = facemetrics.Generated(lambda bs: torch.rand(bs, 3, 8, 8) * 2 - 1, n=4, batch_size=2)
    with pytest.raises(FacemetricsError, match=r"FAKE \(batch 1 of the generator\): images must be uint8"):
        score(str(lfw_small[0]), gen, **TOY)


def test_layout_rule():
    assert batch_layout((5, 64, 48, 3), "x") == "nhwc"
    assert batch_layout((5, 3, 64, 48), "x") == "nchw"
    assert batch_layout((5, 3, 3, 7), "x") == "nchw"
    assert batch_layout((5, 7, 3, 3), "x") == "nhwc"
    with pytest.raises(FacemetricsError, match="ambiguous"):
        batch_layout((5, 3, 64, 3), "x")
    with pytest.raises(FacemetricsError, match="no colour axis"):
        batch_layout((5, 64, 64, 4), "x")
    with pytest.raises(FacemetricsError, match=r"add a batch axis"):
        batch_layout((64, 64, 3), "x")
    # the same images in both layouts read identically
    x = np.random.default_rng(0).integers(0, 256, (2, 5, 7, 3), dtype=np.uint8)
    a, b = as_images(x, "x"), as_images(np.ascontiguousarray(x.transpose(0, 3, 1, 2)), "x")
    assert all(np.array_equal(a.get(i), b.get(i)) and a.get(i).flags.c_contiguous for i in range(2))


def test_pil_images_convert_like_decoding(tmp_path):
    """A palette/RGBA/grayscale PIL image reads exactly as the same image decoded from a PNG file."""
    rng = np.random.default_rng(1)
    ims = [Image.fromarray(rng.integers(0, 256, (9, 11, 4), dtype=np.uint8), "RGBA"),
           Image.fromarray(rng.integers(0, 256, (9, 11), dtype=np.uint8), "L"),
           Image.fromarray(rng.integers(0, 256, (9, 11, 3), dtype=np.uint8)).convert("P")]
    got = as_images(ims, "x")
    for i, im in enumerate(ims):
        p = tmp_path / f"{i}.png"
        im.save(p)
        assert np.array_equal(got.get(i), decode_rgb(p.read_bytes()))


def test_face_and_text_metrics_refused_for_in_memory(lfw_small, pixels, tmp_path):
    pairs = tmp_path / "pairs.jsonl"
    pairs.write_text("")
    for metrics in ("fid,fsd", "rprec"):
        with pytest.raises(FacemetricsError) as e:
            score(str(lfw_small[0]), pixels[1], metrics=metrics, pairs=str(pairs), progress=False)
        assert "pairs manifest naming each generated image's file" in str(e.value)
        assert "in-memory FAKE" in str(e.value) and e.value.param == "--metrics"


def test_bad_in_memory_inputs(lfw_small):
    with pytest.raises(FacemetricsError, match="list of images is empty"):
        score(str(lfw_small[0]), [], **TOY)
    with pytest.raises(FacemetricsError, match=r"FAKE\[1\]: list items must be H×W×3"):
        score(str(lfw_small[0]), [np.zeros((8, 8, 3), np.uint8), np.zeros((3, 8, 8), np.uint8)], **TOY)
    with pytest.raises(FacemetricsError, match="fewer than 2"):
        score(str(lfw_small[0]), np.zeros((1, 8, 8, 3), np.uint8), **TOY)
    with pytest.raises(FacemetricsError, match="expected a path, a uint8 array"):
        score(str(lfw_small[0]), {"images": 1}, **TOY)
