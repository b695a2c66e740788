"""Text–image matcher interface (for R-precision and CLIP score).

A matcher embeds generated images and captions into one space in which the
cosine of an image and a caption says how well they match. Implementations:
:class:`facemetrics.matchers.clip.ClipMatcher` (open_clip models) and the DAMSM
encoders of the reference generator (``models.matcher.load_matcher``).

Contract:

* :meth:`Matcher.encode_images` takes decoded RGB ``uint8`` arrays (H×W×3, any
  size; the matcher applies its own preprocessing) and returns a float array of
  shape ``(n, d)``, one row per image, in input order.
* :meth:`Matcher.encode_texts` takes caption strings and returns ``(n, d)``.
* Embeddings need not be normalised: the metrics use cosines.
* :meth:`Matcher.fingerprint` is a JSON-able dict naming everything that
  determines the embeddings (architecture, weights sha256, preprocessing); it
  travels into every result so that numbers from different matchers are never
  compared as if they were the same protocol.
* :attr:`Matcher.max_tokens` is the caption length limit in tokens (start and end
  tokens included), or ``None`` when the matcher has none; longer captions are
  truncated by the matcher and :meth:`token_counts` lets callers warn about it.
* Weights are loaded when first needed (or by :meth:`load`), never at import.
* Optionally (:meth:`Matcher.image_preprocessor`, :meth:`Matcher.encode_preprocessed`)
  the image path splits into a picklable per-image preprocessing and a batched network
  step, so that :class:`MatcherImageExtractor` can run it inside the shared decode pass.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np


class Matcher(ABC):
    #: short kind name, e.g. "clip", "damsm"
    name: str = ""
    #: caption length limit in tokens (start/end tokens included), None if unlimited
    max_tokens: int | None = None

    @abstractmethod
    def encode_images(self, images: list[np.ndarray]) -> np.ndarray:
        """Embeddings ``(n, d)`` of RGB uint8 images (H×W×3 each)."""

    @abstractmethod
    def encode_texts(self, texts: list[str]) -> np.ndarray:
        """Embeddings ``(n, d)`` of caption strings."""

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """JSON-able description of everything that determines the embeddings."""

    def load(self, device: str = "cpu") -> None:  # pragma: no cover - default no-op
        """Load weights onto ``device`` (idempotent)."""

    def image_preprocessor(self) -> Callable[[np.ndarray], np.ndarray] | None:
        """A picklable ``img (H×W×3 uint8) -> float32 array`` of one fixed shape, holding no
        weights, such that ``encode_preprocessed(stack(prep(img) ...))`` equals
        :meth:`encode_images`; ``None`` when the matcher cannot split its image path (then
        callers decode images for it on their own). Lets the matcher's image tower join
        ``facemetrics score``'s single decode pass (:class:`MatcherImageExtractor`)."""
        return None

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        """Embeddings ``(n, d)`` of a stack of :meth:`image_preprocessor` outputs."""
        raise NotImplementedError(f"{type(self).__name__} has no split image path")

    def token_counts(self, texts: list[str]) -> list[int] | None:
        """Number of tokens of each caption before truncation, or None if unknown."""
        return None

    def fingerprint_key(self) -> str:
        """sha256 of the canonical JSON of :meth:`fingerprint`."""
        blob = json.dumps(self.fingerprint(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()

