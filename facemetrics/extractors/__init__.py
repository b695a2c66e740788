"""Extractor registry.

Names map to ``"module:factory"`` strings so that listing or looking up an
extractor imports nothing heavy; :func:`build_extractor` imports the module when
an extractor is actually built. Third parties may call
:func:`register_extractor`.
"""
from __future__ import annotations

import importlib
from typing import Any

from facemetrics.errors import FacemetricsError
from facemetrics.extractors.base import FeatureExtractor

_REGISTRY: dict[str, str] = {
    "inception": "facemetrics.extractors.inception:InceptionExtractor",
    "dlib": "facemetrics.extractors.face_dlib:DlibFaceExtractor",
    "facenet": "facemetrics.extractors.facenet:FacenetExtractor",
    "finetuned": "facemetrics.extractors.finetuned:FinetunedInceptionExtractor",
}


def register_extractor(name: str, target: str) -> None:
    """Register ``target`` (``"package.module:callable"``) under ``name``."""
    _REGISTRY[name] = target


def available_extractors() -> list[str]:
    return sorted(_REGISTRY)


def build_extractor(name: str, **options: Any) -> FeatureExtractor:
    """Construct the extractor registered as ``name`` (weights are not loaded yet)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        raise FacemetricsError(
            f"unknown extractor {name!r}; available: {', '.join(available_extractors())}"
        ) from None
    module, _, attr = target.partition(":")
    factory = getattr(importlib.import_module(module), attr)
    return factory(**options)


__all__ = ["FeatureExtractor", "register_extractor", "available_extractors", "build_extractor"]
