"""A matcher's image tower as a feature extractor, for ``score``'s single decode pass.

``facemetrics score`` decodes FAKE once for every extractor it needs (see
``facemetrics.pipeline.planner.plan``). A matcher whose image path splits into
a picklable preprocessing and a batched network step
(:meth:`~facemetrics.matchers.base.Matcher.image_preprocessor`,
:meth:`~facemetrics.matchers.base.Matcher.encode_preprocessed`) joins that pass through
:class:`MatcherImageExtractor`; the embeddings equal ``matcher.encode_images``.
"""
from __future__ import annotations

from typing import Any, Callable

import numpy as np

from facemetrics.extractors.base import FeatureExtractor
from facemetrics.matchers.base import Matcher


class MatcherImageExtractor(FeatureExtractor):
    """A matcher's image tower as a :class:`facemetrics.extractors.base.FeatureExtractor`
    (output ``embedding``), so R-precision / CLIP score read FAKE in the same decode pass as
    Inception and the face embedder. Its features equal :meth:`Matcher.encode_images`; the
    fingerprint (hence the feature-cache key) is the matcher's."""

    name = "matcher"
    outputs = ("embedding",)

    def __init__(self, matcher: Matcher, prep: Callable[[np.ndarray], np.ndarray]) -> None:
        self.matcher = matcher
        self._prep = prep

    def preprocessor(self) -> Callable[[np.ndarray], dict]:
        return _PrepDict(self._prep)

    def forward(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        return {"embedding": np.asarray(self.matcher.encode_preprocessed(batch["image"]), dtype=np.float32)}

    def load(self, device: str = "cpu") -> None:
        self.matcher.load(device)

    def fingerprint(self) -> dict[str, Any]:
        return {"extractor": "matcher-image", "matcher": self.matcher.fingerprint()}


class _PrepDict:
    """Picklable ``img -> {"image": prep(img)}``."""

    def __init__(self, prep: Callable[[np.ndarray], np.ndarray]) -> None:
        self.prep = prep

    def __call__(self, img: np.ndarray) -> dict:
        return {"image": self.prep(img)}


def image_extractor(matcher: Matcher) -> MatcherImageExtractor | None:
    """The shared-pass extractor of ``matcher``, or None when its image path does not split."""
    fn = getattr(matcher, "image_preprocessor", None)
    prep = fn() if callable(fn) else None
    return None if prep is None else MatcherImageExtractor(matcher, prep)
