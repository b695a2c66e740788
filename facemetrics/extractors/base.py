"""Feature extractor interface.

An extractor turns decoded RGB uint8 images into per-image feature arrays. It is
split in two so that one decode pass can feed several extractors and the CPU part
can run in worker processes:

* :meth:`FeatureExtractor.preprocessor` returns a *picklable* function
  ``img (H×W×3 uint8) -> dict[str, np.ndarray]`` (resize, alignment, ...). It must
  not hold network weights.
* :meth:`FeatureExtractor.forward` takes the preprocessed arrays of a batch, put
  together by :meth:`FeatureExtractor.collate` (stacked, by default), and returns ``dict[output_name, np.ndarray]`` with one row per image
  (e.g. ``{"pool": (B, 2048), "logits": (B, 1008)}``). Weights are loaded on the
  first call (or by :meth:`load`), never at import or construction.

:meth:`fingerprint` identifies everything that changes the numbers (network,
weights sha256, preprocessing); the feature cache is keyed by it.

An extractor whose Python calls hold the GIL (dlib) may also offer
:meth:`FeatureExtractor.process_runner`: a :class:`ProcessRunner` that runs its
preprocessing *and* forward in worker processes, so that it uses every core and
does not serialise the other extractors of the same decode pass. Its results
must equal those of :meth:`preprocessor` + :meth:`forward` exactly.
"""
from __future__ import annotations

import hashlib
import json
from abc import ABC, abstractmethod
from typing import Any, Callable, Protocol

import numpy as np

Preprocessor = Callable[[np.ndarray], dict]


class ProcessRunner(Protocol):
    """Preprocessing + forward of one extractor in worker processes (see module doc).

    The decode pass runs :meth:`preprocessor` on each decoded image (in its decode
    workers), hands lists of its results to :meth:`submit` in file order and calls
    the returned function, later, for that list's outputs (one row per item, the
    keys and values of :meth:`FeatureExtractor.forward`).
    """

    def preprocessor(self) -> Preprocessor:
        """A cheap picklable ``img -> dict`` run in the decode workers (its values need not stack)."""

    def submit(self, items: list[dict]) -> Callable[[], dict[str, np.ndarray]]:
        """Start work on ``items``; the returned function blocks until their outputs are ready."""


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

    def collate(self, items: list[dict]) -> dict:
        """One batch of :meth:`preprocessor` outputs for :meth:`forward`: each key's arrays stacked.

        An extractor whose preprocessed arrays differ in shape (e.g. images left at their
        size for a resize on the device) returns lists instead."""
        return {k: np.stack([it[k] for it in items]) for k in items[0]}

    def load(self, device: str = "cpu") -> None:  # pragma: no cover - default no-op
        """Load weights onto ``device`` (called once before the first forward)."""

    def process_runner(self, workers: int) -> ProcessRunner | None:
        """A :class:`ProcessRunner` over ``workers`` processes, or None: run in the decode pass's process."""
        return None

    def start(self, workers: int) -> None:
        """Begin, in the background, what the first batch will need (default: nothing).

        The planner calls this before it loads the other extractors' weights, so that worker
        processes load their models while this process is still importing and loading (work on
        one core, the others idle). It must not change any number: only when work happens.
        """

    def fingerprint_key(self) -> str:
        """sha256 of the canonical JSON of :meth:`fingerprint`."""
        blob = json.dumps(self.fingerprint(), sort_keys=True).encode()
        return hashlib.sha256(blob).hexdigest()
