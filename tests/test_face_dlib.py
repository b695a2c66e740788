"""The dlib face embedder: files, alignment, fallbacks, worker safety, fingerprint."""
from __future__ import annotations

import hashlib
import pickle
import subprocess
import sys
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context

import dlib  # a dependency of the face metrics (pip install dlib-bin)
import numpy as np
import pytest
from face_helpers import CELEBA, LFW_IMAGES, REPO, lfw_name, need
from PIL import Image

from facemetrics.errors import FacemetricsError
from facemetrics.extractors import build_extractor
from facemetrics.extractors import face_dlib as fd
from facemetrics.imaging.images import ImageSource, load_rgb


def _lfw(person, number=1):
    return load_rgb(ImageSource(need(LFW_IMAGES), "folder", ()), lfw_name(person, number))


def _embed(ex, imgs):
    prep = ex.preprocessor()
    items = [prep(im) for im in imgs]
    return items, ex.forward({k: np.stack([it[k] for it in items]) for k in items[0]})


@pytest.fixture(scope="module")
def ex():
    e = build_extractor("dlib")
    e.load()
    return e


def test_models_found_without_importing_package():
    code = (
        "import sys; from facemetrics.extractors.face_dlib import models_dir; p = models_dir(); "
        "assert 'face_recognition_models' not in sys.modules and 'pkg_resources' not in sys.modules; print(p)"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True)
    assert (fd.Path(out.stdout.strip()) / fd.DESCRIPTOR_FILE).is_file()


def test_models_env_override_and_error(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEMETRICS_DLIB_MODELS", str(tmp_path))
    real = fd.models_dir()  # falls through to the package, reporting nothing
    assert real != tmp_path
    monkeypatch.setattr(fd.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(FacemetricsError, match=r"FACEMETRICS_DLIB_MODELS=.*missing.*pip install face-recognition-models dlib-bin"):
        fd.models_dir()


def test_fingerprint_and_sha(ex):
    fp = ex.fingerprint()
    h = hashlib.sha256((ex.models / fd.DESCRIPTOR_FILE).read_bytes()).hexdigest()
    assert fp["weights_sha256"] == h == ex.weights_sha256()
    assert build_extractor("dlib", align="always").fingerprint_key() == ex.fingerprint_key()
    assert build_extractor("dlib", align="never").fingerprint_key() != ex.fingerprint_key()
    assert build_extractor("dlib", upsample=1).fingerprint_key() != ex.fingerprint_key()
    with pytest.raises(FacemetricsError, match="--face-align must be one of"):
        build_extractor("dlib", align="sometimes")


@pytest.mark.parametrize("hw,k", [((250, 250), 1), ((109, 89), 3), ((64, 64), 3), ((16, 16), 3), ((199, 500), 2),
                                  ((200, 900), 1), ((400, 400), 0), ((1024, 768), 0)])
def test_auto_upsample(hw, k):
    assert fd.auto_upsample(*hw) == k


def test_centred_resize_matches_pil_crop():
    img = load_rgb(ImageSource(need(CELEBA), "folder", ()), "000001.jpg")
    assert img.shape == (109, 89, 3)
    ref = np.asarray(Image.fromarray(img).crop((0, 10, 89, 99)).resize((150, 150), Image.BICUBIC))
    np.testing.assert_array_equal(fd.centred_resize(img), ref)
    wide = np.random.default_rng(0).integers(0, 256, (40, 151, 3), dtype=np.uint8)
    ref = np.asarray(Image.fromarray(wide).crop((55, 0, 95, 40)).resize((150, 150), Image.BICUBIC))
    np.testing.assert_array_equal(fd.centred_resize(wide), ref)


def test_chip_path_equals_dlib_own_alignment(ex):
    """Our chip + batch forward = dlib's compute_face_descriptor(img, shape) (its internal alignment)."""
    imgs = [_lfw("Aaron_Peirsol", 1), _lfw("Abdullah_Gul", 1), _lfw("Zico", 2)]
    items, out = _embed(ex, imgs)
    assert all(bool(it["detected"]) for it in items)
    assert out["embedding"].shape == (3, 128) and out["embedding"].dtype == np.float32
    det = dlib.get_frontal_face_detector()
    sp = dlib.shape_predictor(str(ex.models / fd.LANDMARKS_FILE))
    net = dlib.face_recognition_model_v1(str(ex.models / fd.DESCRIPTOR_FILE))
    for img, e in zip(imgs, out["embedding"]):
        rect = max(det(img, 1), key=lambda r: r.area())  # 250-px LFW: one upsampling
        ref = np.asarray(net.compute_face_descriptor(img, sp(img, rect)))
        np.testing.assert_allclose(e, ref, atol=1e-6)


def test_largest_face_is_used(ex):
    big, small = _lfw("Aaron_Peirsol", 1), _lfw("Abdullah_Gul", 1)
    canvas = np.full((300, 460, 3), 127, np.uint8)
    canvas[:, :300] = np.asarray(Image.fromarray(big).resize((300, 300), Image.BICUBIC))
    canvas[75:235, 300:460] = np.asarray(Image.fromarray(small).resize((160, 160), Image.BICUBIC))
    e1 = build_extractor("dlib", upsample=1)
    assert len(dlib.get_frontal_face_detector()(canvas, 1)) == 2  # both faces are found ...
    (item,), out = _embed(e1, [canvas])
    _, ref = _embed(e1, [big, small])
    d = np.linalg.norm(ref["embedding"] - out["embedding"][0], axis=1)
    assert bool(item["detected"]) and d[0] < 0.3 and d[1] > 0.6  # ... and the big one is embedded


def test_no_face_and_never_use_centred_resize(ex):
    noise = np.random.default_rng(1).integers(0, 256, (180, 240, 3), dtype=np.uint8)
    face = _lfw("Aaron_Peirsol", 1)
    (it,), _ = _embed(ex, [noise])
    assert not bool(it["detected"])
    np.testing.assert_array_equal(it["chip"], fd.centred_resize(noise))
    never = build_extractor("dlib", align="never")
    (it,), out = _embed(never, [face])
    assert not bool(it["detected"]) and out["detected"].tolist() == [False]
    np.testing.assert_array_equal(it["chip"], fd.centred_resize(face))


def test_lfw_detection_rate(ex):
    names = sorted(p.name for p in need(LFW_IMAGES).iterdir() if p.is_dir())[:40]
    prep = ex.preprocessor()
    found = sum(bool(prep(_lfw(n))["detected"]) for n in names)
    assert found >= 38, found


def _run_in_child(blob, img):
    prep = pickle.loads(blob)
    return prep(img)


def test_preprocessor_is_picklable_and_works_in_a_spawned_worker(ex):
    img = _lfw("Abdullah_Gul", 1)
    prep = ex.preprocessor()
    here = prep(img)
    blob = pickle.dumps(prep)
    with ProcessPoolExecutor(1, mp_context=get_context("spawn")) as pool:
        there = pool.submit(_run_in_child, blob, img).result(timeout=120)
    np.testing.assert_array_equal(here["chip"], there["chip"])
    assert bool(there["detected"])


def test_weights_option_rejected():
    with pytest.raises(FacemetricsError, match="applies to facenet only"):
        build_extractor("dlib", weights="x.dat")
