"""Feature extractor interface.

An extractor turns decoded RGB uint8 images into per-image feature arrays. It is
split in two so that one decode pass can feed several extractors and the CPU part
can run in worker processes:

* :meth:`FeatureExtractor.preprocessor` returns a *picklable* function
  ``img (H×W×3 uint8) -> dict[str, np.ndarray]`` (resize, alignment, ...). It must
  not hold network weights.
* :meth:`FeatureExtractor.forward` takes the stacked preprocessed arrays of a
  batch and returns ``dict[output_name, np.ndarray]`` with one row per image
  (e.g. ``{"pool": (B, 2048), "logits": (B, 1008)}``). Weights are loaded on the
  first call (or by :meth:`load`), never at import or construction.

:meth:`fingerprint` identifies everything that changes the numbers (network,
weights sha256, preprocessing); the feature cache is keyed by it.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, Callable

import numpy as np

Preprocessor = Callable[[np.ndarray], dict]


class FeatureExtractor(ABC):
    #: registry name, e.g. "inception", "dlib", "clip"
    name: str = ""
    #: names of the arrays :meth:`forward` returns
    outputs: tuple[str, ...] = ()

    @abstractmethod
    def preprocessor(self) -> Preprocessor:
        """A picklable ``img -> dict[str, np.ndarray]`` run on every decoded image."""

    @abstractmethod
    def forward(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Features of one batch of preprocessed arrays (one row per image)."""

    @abstractmethod
    def fingerprint(self) -> dict[str, Any]:
        """JSON-able description of everything that determines the features."""

    def load(self, device: str = "cpu") -> None:  # pragma: no cover - default no-op
        """Load weights onto ``device`` (called once before the first forward)."""

    def fingerprint_key(self) -> str:
        """sha256 of the canonical JSON of :meth:`fingerprint`."""
        blob = json.dumps(self.fingerprint(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()
