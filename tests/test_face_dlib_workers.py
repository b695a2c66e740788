"""The dlib embedder in worker processes: the same embeddings, FSD and FSS as the single-process loop.

Real LFW faces (250×250, one ×2 upsampling) mixed with CelebA 89×109 images (three
upsamplings, other sizes: the decoded images do not stack) and one image without a
face (centred resize), through ``features.extract`` with 1, 2 and 3 workers (decoding in
threads, or in forked decode processes).
"""
from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from face_helpers import CELEBA, LFW_IMAGES, REPO, lfw_name, need

from facemetrics.extractors import build_extractor
from facemetrics.extractors import face_dlib as fd
from facemetrics.imaging.images import ImageSource
from facemetrics.pairing.captions import PairRecord
from facemetrics.pairing.face_scoring import score_face
from facemetrics.pipeline.features import extract

PEOPLE = ("Aaron_Peirsol", "Abdullah_Gul", "Adam_Sandler", "Zico", "Abel_Pacheco", "Adrien_Brody",
          "Al_Gore", "Alan_Greenspan", "Albert_Costa", "Alec_Baldwin", "Alejandro_Toledo")


@pytest.fixture(scope="module")
def mixed(tmp_path_factory):
    """A folder of links: 11 LFW faces, 4 CelebA images and one noise image (no face)."""
    from PIL import Image

    root = tmp_path_factory.mktemp("dlib-mixed")
    for p in PEOPLE:
        (root / f"{p}.jpg").symlink_to(need(LFW_IMAGES) / lfw_name(p, 1))
    for i in range(1, 5):
        (root / f"celeba_{i:06d}.jpg").symlink_to(need(CELEBA) / f"{i:06d}.jpg")
    noise = np.random.default_rng(3).integers(0, 256, (120, 160, 3), dtype=np.uint8)
    Image.fromarray(noise).save(root / "noise.png")
    return ImageSource(root.resolve(), "folder", tuple(sorted(x.name for x in root.iterdir())))


def _dlib(src: ImageSource, workers: int, align: str = "auto", batch_size: int = 5,
          workers_kind: str = "thread") -> dict[str, np.ndarray]:
    res = extract(src, [build_extractor("dlib", align=align)], workers=workers, batch_size=batch_size,
                  cache=False, progress=False, workers_kind=workers_kind)
    assert res.names == list(src.names) and not res.failed
    return res.outputs["dlib"]


def test_runner_follows_workers():
    ex = build_extractor("dlib")
    assert ex.process_runner(1) is None  # one worker: this process embeds, as before
    assert isinstance(ex.process_runner(2), fd.DlibProcessRunner)


@pytest.mark.parametrize("align", ["auto", "never"])
def test_same_embeddings_any_worker_count(mixed, align):
    ref = _dlib(mixed, 1, align)
    assert ref["embedding"].shape == (len(mixed.names), 128)
    if align == "auto":
        assert 12 <= int(ref["detected"].sum()) < len(mixed.names)  # faces found, and the noise image not
    for workers, batch, kind in ((2, 5, "thread"), (3, 32, "thread"), (2, 1, "thread"), (2, 7, "process")):
        out = _dlib(mixed, workers, align, batch, kind)
        assert out["embedding"].dtype == np.float32
        np.testing.assert_array_equal(out["embedding"], ref["embedding"])
        np.testing.assert_array_equal(out["detected"], ref["detected"])
    fd.shutdown_pool()


def test_one_pass_with_inception_beside(mixed):
    """dlib in its processes beside Inception in this one: both outputs equal their separate runs.

    Inception runs first, so the dlib pool is forked from a process whose torch threads have started."""
    alone = extract(mixed, [build_extractor("inception")], workers=2, batch_size=8, cache=False, progress=False)
    fd.shutdown_pool()
    both = extract(mixed, [build_extractor("inception"), build_extractor("dlib")], workers=2, batch_size=8,
                   cache=False, progress=False)
    np.testing.assert_array_equal(both.outputs["dlib"]["embedding"], _dlib(mixed, 1)["embedding"])
    np.testing.assert_array_equal(both.outputs["inception"]["pool"], alone.outputs["inception"]["pool"])


def test_same_fsd_fss_any_worker_count(tmp_path):
    """FSD/FSS of each person's second photo against the first: the same numbers with 1, 2 or 3 workers."""
    root = need(LFW_IMAGES).resolve()
    people = [p for p in PEOPLE if (root / lfw_name(p, 2)).is_file()]
    assert len(people) >= 6
    fakes = tuple(lfw_name(p, 2) for p in people)
    pairs = [PairRecord(f, real=root / lfw_name(p, 1)) for f, p in zip(fakes, people)]
    src = ImageSource(root, "folder", fakes)
    values = []
    for workers in (1, 2, 3):
        res, _ = score_face(pairs, src, workers=workers, batch_size=4, cache=False, progress=False)
        values.append({k: (r.value, r.std, r.n) for k, r in res.items()})
    assert values[0] == values[1] == values[2]
    assert set(values[0]) == {"fsd", "fsd_l1", "fss"}


def test_script_without_main_guard(mixed):
    """Worker processes need no re-import of the main program: code read from stdin, unguarded, works."""
    code = (
        "import numpy as np\n"
        "from facemetrics.extractors import build_extractor\n"
        "from facemetrics.imaging.images import ImageSource\n"
        "from facemetrics.pipeline.features import extract\nfrom pathlib import Path\n"
        f"src = ImageSource(Path({str(mixed.root)!r}), 'folder', {mixed.names[:4]!r})\n"
        "out = [extract(src, [build_extractor('dlib')], workers=w, cache=False, progress=False)"
        ".outputs['dlib']['embedding'] for w in (1, 2)]\n"
        "print(np.array_equal(out[0], out[1]))\n"
    )
    p = subprocess.run([sys.executable, "-"], input=code, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stderr[-2000:]
    assert p.stdout.strip() == "True"
