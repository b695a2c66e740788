"""dlib's ResNet face descriptor (128-d) as a feature extractor.

Files: ``dlib_face_recognition_resnet_model_v1.dat`` (the descriptor network) and
``shape_predictor_5_face_landmarks.dat`` (5-point landmarks) from the PyPI package
``face-recognition-models``; the HOG frontal face detector is built into ``dlib``
(PyPI ``dlib-bin``). The .dat files are located without importing
``face_recognition_models`` (its ``__init__`` needs ``pkg_resources``).

Preprocessing (runs per image, possibly in worker processes):

* ``align="auto"`` / ``"always"``: run the HOG detector (see :func:`auto_upsample`
  for how often the image is upsampled first); if it finds faces, keep
  the **largest** box (by area; ties: the first, i.e. highest-scoring), fit the
  5-point landmarks in it and cut the aligned chip with
  ``dlib.get_face_chip(img, shape, size=150, padding=0.25)`` (rotated upright,
  scaled, bilinear) - exactly the chip dlib's own ``compute_face_descriptor(img,
  shape)`` uses. ``detected = True``.
* no face found (``auto``/``always``) or ``align="never"``: the **centred resize**:
  the centred square crop of side ``s = min(H, W)`` starting at row
  ``(H - s) // 2`` and column ``(W - s) // 2``, resized to 150×150 with PIL
  bicubic on the uint8 image. ``detected = False``.
  ``always`` does not change the chip: the caller turns any ``detected = False``
  into an error naming the file (see :mod:`facemetrics.pairing.face_scoring`), so
  ``auto`` and ``always`` share cached embeddings.

Forward: ``face_recognition_model_v1.compute_face_descriptor(list_of_chips)``
(no jitter), giving one 128-d vector per image (output ``"embedding"``, float32);
``"detected"`` (bool) travels beside it. Two descriptors of the same person are
closer than 0.6 in Euclidean distance by dlib's convention.

dlib objects cannot be pickled, and one detector shared by two threads returns
wrong boxes (measured: 3-10 of 80 LFW images differ), so the detector, the shape
predictor and the network are built lazily, once per thread of each process.

Every core: dlib's Python calls (detector, landmarks, descriptor) keep the GIL, so
threads run them one at a time (measured: two threads take as long as one doing
both halves). With more than one worker (``--workers``, default
:func:`facemetrics.pipeline.features.default_workers`) the decode pass therefore
hands the decoded images to :class:`DlibProcessRunner`: a pool of that many
processes, kept for the life of the calling process, each loading the three dlib
models once and then running the same preprocessing and descriptor code as above
on chunks of :data:`CHUNK` images. On Linux the pool is forked, as torch's
DataLoader workers are, and before the decode pass starts its threads; the
children run only dlib, numpy and PIL (never torch, CUDA or OpenMP), so torch's
threads in the parent do not matter to them, and they need no re-import of the
main program: a script without an ``if __name__ == "__main__"`` guard works.
Elsewhere they are spawned (when the main program is a file or a module). Nothing about the numbers changes (dlib's CPU descriptor
does not depend on how the chips are batched; tested equal bit for bit), and the
calling process stays free for Inception and the other extractors of the pass.
"""
from __future__ import annotations

import atexit
import collections
import importlib.util
import math
import os
import sys
import threading
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.extractors.base import FeatureExtractor

CHIP_SIZE = 150
CHIP_PADDING = 0.25
DESCRIPTOR_FILE = "dlib_face_recognition_resnet_model_v1.dat"
LANDMARKS_FILE = "shape_predictor_5_face_landmarks.dat"
ALIGN_MODES = ("auto", "always", "never")
#: HOG detection upsamples an image until its shorter side is at least this ...
MIN_DETECT_SIDE = 400
#: ... but at most this many times (each doubles both sides)
MAX_UPSAMPLE = 3
#: images per task of a worker process (at most; a batch is split among the workers first)
CHUNK = 8
#: tasks waiting or running per worker process before :meth:`DlibProcessRunner.submit` waits for the oldest
INFLIGHT_PER_WORKER = 4

# dlib objects, one set per thread of each process: they cannot be pickled, and
# sharing one detector between threads gives wrong detections (its scanner is mutable).
_LOCAL = threading.local()


def models_dir() -> Path:
    """Folder of face-recognition-models' .dat files, found without importing it.

    Raises :class:`FacemetricsError` with the install command when it is absent.
    """
    env = os.environ.get("FACEMETRICS_DLIB_MODELS")
    tried = []
    if env:
        p = Path(env)
        if (p / DESCRIPTOR_FILE).is_file() and (p / LANDMARKS_FILE).is_file():
            return p
        tried.append(f"$FACEMETRICS_DLIB_MODELS={env} (missing {DESCRIPTOR_FILE} or {LANDMARKS_FILE})")
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            p = Path(loc) / "models"
            if (p / DESCRIPTOR_FILE).is_file() and (p / LANDMARKS_FILE).is_file():
                return p
            tried.append(f"{p} (package face_recognition_models, files missing)")
    else:
        tried.append("package face_recognition_models (not installed)")
    raise FacemetricsError(
        "dlib face models not found; tried: " + "; ".join(tried)
        + ". Fix: pip install face-recognition-models dlib-bin",
        "--face-model",
    )


def _import_dlib():
    try:
        import dlib
    except ImportError:
        raise FacemetricsError(
            "the dlib face embedder needs the dlib package. Fix: pip install dlib-bin face-recognition-models",
            "--face-model",
        ) from None
    return dlib


def _cached(kind: str, path: str):
    cache = getattr(_LOCAL, "objects", None)
    if cache is None or getattr(_LOCAL, "pid", None) != os.getpid():
        cache = _LOCAL.objects = {}
        _LOCAL.pid = os.getpid()
    key = (kind, path)
    obj = cache.get(key)
    if obj is None:
        dlib = _import_dlib()
        if kind == "detector":
            obj = dlib.get_frontal_face_detector()
        elif kind == "landmarks":
            obj = dlib.shape_predictor(path)
        elif kind == "descriptor":
            obj = dlib.face_recognition_model_v1(path)
        else:  # pragma: no cover - programming error
            raise ValueError(kind)
        cache[key] = obj
    return obj


def auto_upsample(height: int, width: int) -> int:
    """Times the HOG detector upsamples (×2 each) an image before detecting.

    The smallest k >= 0 with ``min(H, W) * 2**k >= MIN_DETECT_SIDE`` (400), at most
    ``MAX_UPSAMPLE`` (3). A 250-px LFW image is upsampled once, as in dlib's own
    face-recognition example (``detector(img, 1)``); dlib's HOG detector finds faces
    down to about 80×80 px, so a face filling a 64-px generated image is found too
    (3 doublings), and large images are not blown up. On LFW folds 1-2, one
    upsampling gave 97.33% verification accuracy against 97.17% without.
    """
    k, side = 0, min(height, width)
    while side * (2**k) < MIN_DETECT_SIDE and k < MAX_UPSAMPLE:
        k += 1
    return k


def centred_resize(img: np.ndarray, size: int = CHIP_SIZE) -> np.ndarray:
    """Centred square crop (side ``min(H, W)``, offset ``(H-s)//2, (W-s)//2``) then
    PIL bicubic resize of the uint8 image to ``size``×``size``."""
    from PIL import Image

    h, w = img.shape[:2]
    s = min(h, w)
    top, left = (h - s) // 2, (w - s) // 2
    crop = np.ascontiguousarray(img[top : top + s, left : left + s])
    if s == size:
        return crop.copy()
    return np.asarray(Image.fromarray(crop).resize((size, size), Image.BICUBIC), dtype=np.uint8)


class DlibFacePreprocessor:
    """Picklable ``img -> {"chip": uint8 150×150×3, "detected": bool}`` (see module doc)."""

    def __init__(self, models: str, align: str = "auto", upsample: int | None = None) -> None:
        self.models = models
        self.align = align
        self.upsample = upsample

    def detect(self, img: np.ndarray):
        """The largest detected face box, or None."""
        det = _cached("detector", "")
        k = auto_upsample(*img.shape[:2]) if self.upsample is None else self.upsample
        rects = det(img, k)
        if len(rects) == 0:
            return None
        # largest by area; max() keeps the first (highest-scoring) among equals
        return max(rects, key=lambda r: r.width() * r.height())

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        img = np.ascontiguousarray(img, dtype=np.uint8)
        if self.align != "never":
            rect = self.detect(img)
            if rect is not None:
                dlib = _import_dlib()
                sp = _cached("landmarks", str(Path(self.models) / LANDMARKS_FILE))
                shape = sp(img, rect)
                chip = dlib.get_face_chip(img, shape, size=CHIP_SIZE, padding=CHIP_PADDING)
                return {"chip": np.asarray(chip, dtype=np.uint8), "detected": np.bool_(True)}
        return {"chip": centred_resize(img), "detected": np.bool_(False)}


def descriptors(models: str, chips: Sequence[np.ndarray]) -> np.ndarray:
    """(N, 128) float32 descriptors of 150×150 uint8 chips: one ``compute_face_descriptor(list)`` call
    (no jitter) with this thread's network loaded from ``models``."""
    chips = [np.ascontiguousarray(c, dtype=np.uint8) for c in chips]
    if not chips:
        return np.zeros((0, DlibFaceExtractor.dims), np.float32)
    net = _cached("descriptor", str(Path(models) / DESCRIPTOR_FILE))
    desc = net.compute_face_descriptor(chips)
    return np.asarray([np.asarray(d) for d in desc], dtype=np.float32).reshape(len(chips), DlibFaceExtractor.dims)


# ---------------------------------------------------------------- worker processes
def _start_method() -> str | None:
    """How worker processes start: fork on Linux (see module doc), spawn elsewhere; None when spawned
    processes could not start (they re-import the main program, which must then be a file or module)."""
    if sys.platform.startswith("linux"):
        return "fork"
    main = sys.modules.get("__main__")
    main_file = getattr(main, "__file__", None)
    if getattr(main, "__spec__", None) is None and main_file and not os.path.isfile(main_file):
        return None
    return "spawn"


def _worker_init(models: str) -> None:
    """Load the three dlib models once per worker process (before its first task)."""
    _cached("detector", "")
    _cached("landmarks", str(Path(models) / LANDMARKS_FILE))
    _cached("descriptor", str(Path(models) / DESCRIPTOR_FILE))


def _worker_embed(models: str, align: str, upsample: int | None,
                  images: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, detected) of decoded images: :class:`DlibFacePreprocessor` then :func:`descriptors`,
    exactly what the single-process path runs."""
    prep = DlibFacePreprocessor(models, align, upsample)
    items = [prep(img) for img in images]
    detected = np.asarray([bool(it["detected"]) for it in items], dtype=bool)
    return descriptors(models, [it["chip"] for it in items]), detected


def _as_uint8(img: np.ndarray) -> dict[str, np.ndarray]:
    """The decode workers' part when dlib runs in worker processes: the image itself."""
    return {"image": np.ascontiguousarray(img, dtype=np.uint8)}


_POOL_LOCK = threading.Lock()
#: the one pool of this process: ((workers, models folder), executor), started on first use
_POOL: tuple[tuple[int, str], ProcessPoolExecutor] | None = None


def _pool(workers: int, models: str) -> ProcessPoolExecutor:
    """This process's pool of ``workers`` dlib processes, started now if it is not running (then reused).

    All processes start here, at once (a first task makes the executor launch them),
    so that a forked pool is forked before the decode pass starts its threads.
    """
    global _POOL
    with _POOL_LOCK:
        key = (workers, models)
        if _POOL is not None and _POOL[0] != key:
            _POOL[1].shutdown(wait=True)
            _POOL = None
        if _POOL is None:
            import multiprocessing

            method = _start_method() or "spawn"
            ex = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                                     initializer=_worker_init, initargs=(models,))
            for _ in range(workers):  # fork: all start on the first submit; spawn: one per submit
                ex.submit(_noop)
            _POOL = (key, ex)
        return _POOL[1]


def _noop() -> None:
    """A first task, to start the worker processes."""


def shutdown_pool() -> None:
    """Stop this process's dlib worker processes (they start again on the next use)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None:
            _POOL[1].shutdown(wait=True)
            _POOL = None


atexit.register(shutdown_pool)


def _drop_broken_pool(executor: ProcessPoolExecutor) -> None:
    """Forget a pool whose worker died, so that the next use starts a new one."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is not None and _POOL[1] is executor:
            _POOL = None
    executor.shutdown(wait=False)


class DlibProcessRunner:
    """The dlib embedder in this process's pool of worker processes (see module doc).

    :meth:`submit` splits a list of decoded images into ``min(CHUNK, ceil(n / workers))``-image
    tasks and returns at once; at most ``INFLIGHT_PER_WORKER`` tasks per worker are
    outstanding (it then waits for the oldest), so memory stays bounded on any number
    of images.
    """

    def __init__(self, models: str, align: str, upsample: int | None, workers: int) -> None:
        self.models, self.align, self.upsample, self.workers = models, align, upsample, workers
        self._inflight: collections.deque[Future] = collections.deque()
        _pool(workers, models)  # start the processes now, before the decode pass's threads

    def preprocessor(self) -> Callable[[np.ndarray], dict[str, np.ndarray]]:
        """What the decode workers run: the decoded image itself, contiguous uint8 (detection is here)."""
        return _as_uint8

    def submit(self, items: list[dict]) -> Callable[[], dict[str, np.ndarray]]:
        """Hand ``items`` (from :meth:`preprocessor`) to the workers; the returned function gives their
        ``embedding`` (N, 128) float32 and ``detected`` (N,) rows in order, waiting for them."""
        images = [it["image"] for it in items]
        executor = _pool(self.workers, self.models)
        size = max(1, min(CHUNK, math.ceil(len(images) / self.workers)))
        futures: list[Future] = []
        for i in range(0, len(images), size):
            while len(self._inflight) >= INFLIGHT_PER_WORKER * self.workers:
                self._wait(self._inflight.popleft(), executor)
            fut = executor.submit(_worker_embed, self.models, self.align, self.upsample, images[i : i + size])
            futures.append(fut)
            self._inflight.append(fut)

        def result() -> dict[str, np.ndarray]:
            parts = [self._wait(f, executor) for f in futures]
            if not parts:
                return {"embedding": np.zeros((0, DlibFaceExtractor.dims), np.float32),
                        "detected": np.zeros(0, bool)}
            return {"embedding": np.concatenate([p[0] for p in parts]),
                    "detected": np.concatenate([p[1] for p in parts])}

        return result

    @staticmethod
    def _wait(fut: Future, executor: ProcessPoolExecutor) -> tuple[np.ndarray, np.ndarray]:
        """A task's result; a dead worker becomes a :class:`FacemetricsError` (and a new pool next time)."""
        try:
            return fut.result()
        except BrokenProcessPool as e:
            _drop_broken_pool(executor)
            raise FacemetricsError(f"a dlib worker process died ({e}); run again, or with --workers 1 to embed "
                                   "in this process", "--workers") from e


class DlibFaceExtractor(FeatureExtractor):
    """dlib ResNet face descriptor; outputs ``embedding`` (N, 128) and ``detected`` (N,)."""

    name = "dlib"
    outputs = ("embedding", "detected")
    dims = 128

    def __init__(self, align: str = "auto", upsample: int | None = None, weights: str | None = None) -> None:
        if align not in ALIGN_MODES:
            raise FacemetricsError(
                f"--face-align must be one of {', '.join(ALIGN_MODES)}, got {align!r}", "--face-align"
            )
        if weights is not None:
            raise FacemetricsError(
                "the dlib embedder takes its files from face-recognition-models "
                "(or $FACEMETRICS_DLIB_MODELS); --face-weights applies to facenet only",
                "--face-weights",
            )
        self.align = align
        self.upsample = None if upsample is None else int(upsample)
        self._models: Path | None = None
        self._sha: dict[str, str] = {}

    @property
    def models(self) -> Path:
        if self._models is None:
            self._models = models_dir()
        return self._models

    def weights_sha256(self) -> str:
        return self._file_sha(DESCRIPTOR_FILE)

    def _file_sha(self, fname: str) -> str:
        if fname not in self._sha:
            from facemetrics.nets.weights import sha256_file

            self._sha[fname] = sha256_file(self.models / fname)
        return self._sha[fname]

    def preprocessor(self) -> DlibFacePreprocessor:
        return DlibFacePreprocessor(str(self.models), self.align, self.upsample)

    def load(self, device: str = "cpu") -> None:
        _cached("descriptor", str(self.models / DESCRIPTOR_FILE))

    def forward(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        emb = descriptors(str(self.models), batch["chip"])
        return {"embedding": emb, "detected": np.asarray(batch["detected"], dtype=bool).reshape(-1)}

    def process_runner(self, workers: int) -> DlibProcessRunner | None:
        """Preprocessing + descriptor in ``workers`` processes (started now, see :func:`_pool`); None for one
        worker (this process embeds), or where spawned processes cannot start (not on Linux, with a main
        program that is not a file, e.g. read from stdin)."""
        if workers < 2 or _start_method() is None:
            return None
        return DlibProcessRunner(str(self.models), self.align, self.upsample, workers)

    def start(self, workers: int) -> None:
        """Fork the worker pool now (:func:`_pool`): each loads the three models while the caller goes on;
        the decode pass's :meth:`process_runner` then finds it running."""
        self.process_runner(workers)

    def fingerprint(self) -> dict[str, Any]:
        dlib = _import_dlib()
        return {
            "extractor": "dlib",
            "network": "dlib_face_recognition_resnet_model_v1",
            "weights_sha256": self.weights_sha256(),
            "landmarks_sha256": self._file_sha(LANDMARKS_FILE),
            "detector": "dlib.get_frontal_face_detector",
            "upsample": self.upsample if self.upsample is not None else f"auto(>={MIN_DETECT_SIDE},max{MAX_UPSAMPLE})",
            # auto and always give identical chips; only never skips detection
            "alignment": "never" if self.align == "never" else "largest-face-5pt",
            "chip": [CHIP_SIZE, CHIP_PADDING],
            "fallback": "centre-square-crop+PIL-bicubic",
            "dlib_version": getattr(dlib, "__version__", "unknown"),
        }
