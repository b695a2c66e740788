"""Shared helpers for the text–image tests (imported by test modules; not a pytest conftest).

* a tiny open_clip architecture (``fm-tiny-clip``, 1.6 M parameters, random
  weights) registered from ``tests/data/open_clip/fm-tiny-clip.json``;
* :class:`KeyedMatcher`: a matcher whose image and caption embeddings are built
  from a key painted into the image / contained in the caption, so that it is
  perfect by construction (or random, with ``mode="random"``);
* :func:`pair`: a PairRecord (facemetrics.pairing.captions's when present).
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facemetrics.matchers.base import Matcher

TESTS = Path(__file__).resolve().parent
REPO = TESTS.parent
DATA = Path(os.environ.get("FACEMETRICS_DATA", REPO.parent / "shared" / "data"))
TINY_ARCH = "fm-tiny-clip"

try:  # the face-metrics helper's manifest record, once it is on main
    from facemetrics.pairing.captions import PairRecord  # type: ignore
except ImportError:  # same fields as the shared contract

    @dataclass(frozen=True)
    class PairRecord:  # type: ignore[no-redef]
        fake: str
        caption: str | None
        real: Path | None
        identity: str | None
        caption_id: str | None = None


def pair(fake, caption, real=None, identity=None, caption_id=None):
    return PairRecord(fake=fake, caption=caption, real=Path(real) if real is not None else None,
                      identity=identity, caption_id=caption_id)


def register_tiny_arch() -> str:
    import open_clip

    if TINY_ARCH not in open_clip.list_models():  # fm-tiny-clip and fm-tiny-clip-wide (another shape)
        open_clip.add_model_config(TESTS / "data" / "open_clip")
    return TINY_ARCH


def save_tiny_weights(path: Path, seed: int = 0) -> Path:
    """Save the state dict of a randomly initialised tiny CLIP (seeded) to ``path``."""
    import open_clip
    import torch

    register_tiny_arch()
    torch.manual_seed(seed)
    model = open_clip.create_model(TINY_ARCH)
    torch.save(model.state_dict(), path)
    return path


def key_image(key: int, size: int = 24) -> np.ndarray:
    """An RGB uint8 image carrying ``key`` (0..16,777,215) in its pixels."""
    rgb = [(key >> 16) & 255, (key >> 8) & 255, key & 255]
    return np.broadcast_to(np.array(rgb, np.uint8), (size, size, 3)).copy()


def _unit(seed_bytes: bytes, d: int) -> np.ndarray:
    rng = np.random.default_rng(int.from_bytes(hashlib.sha256(seed_bytes).digest()[:8], "little"))
    v = rng.standard_normal(d)
    return v / np.linalg.norm(v)


class KeyedMatcher(Matcher):
    """Image key = its top-left pixel; caption key = the integer after ``#``.

    ``mode="perfect"``: image and caption with the same key get the same random
    unit vector (cos 1), different keys nearly orthogonal vectors.
    ``mode="random"``: every image and every caption gets its own independent
    random vector (from ``salt``), so matches are chance.
    """

    name = "keyed"
    max_tokens = None

    def __init__(self, mode: str = "perfect", d: int = 256, salt: int = 0):
        self.mode, self.d, self.salt = mode, d, salt
        self.calls = 0

    @staticmethod
    def image_key(img: np.ndarray) -> int:
        r, g, b = (int(x) for x in img[0, 0])
        return (r << 16) | (g << 8) | b

    @staticmethod
    def text_key(text: str) -> int:
        return int(text.split("#")[1].split()[0])

    def encode_images(self, images):
        self.calls += 1
        tag = b"k" if self.mode == "perfect" else b"i"
        return np.stack([_unit(tag + str((self.salt, self.image_key(im))).encode(), self.d) for im in images])

    def encode_texts(self, texts):
        tag = b"k" if self.mode == "perfect" else b"t"
        return np.stack([_unit(tag + str((self.salt, self.text_key(t))).encode(), self.d) for t in texts])

    def fingerprint(self):
        return {"kind": "keyed", "mode": self.mode, "d": self.d, "salt": self.salt}
