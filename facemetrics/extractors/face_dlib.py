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
"""
from __future__ import annotations

import importlib.util
import os
import threading
from pathlib import Path
from typing import Any

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
        net = _cached("descriptor", str(self.models / DESCRIPTOR_FILE))
        chips = [np.ascontiguousarray(c, dtype=np.uint8) for c in batch["chip"]]
        if not chips:
            return {"embedding": np.zeros((0, self.dims), np.float32), "detected": np.zeros(0, bool)}
        desc = net.compute_face_descriptor(chips)
        emb = np.asarray([np.asarray(d) for d in desc], dtype=np.float32).reshape(len(chips), self.dims)
        return {"embedding": emb, "detected": np.asarray(batch["detected"], dtype=bool).reshape(-1)}

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
