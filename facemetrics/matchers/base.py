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
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any

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

    def token_counts(self, texts: list[str]) -> list[int] | None:
        """Number of tokens of each caption before truncation, or None if unknown."""
        return None

    def fingerprint_key(self) -> str:
        """sha256 of the canonical JSON of :meth:`fingerprint`."""
        blob = json.dumps(self.fingerprint(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()
