"""Matchers: text–image embedders for R-precision and CLIP score.

:func:`build_matcher` turns a ``--matcher`` spec into a :class:`Matcher`:

* ``clip:ARCH:TAG``   open_clip architecture with a pretrained tag (downloads
  through open_clip's cache), e.g. ``clip:ViT-B-32:openai`` (the default);
* ``clip:ARCH:PATH``  open_clip architecture with a local weights file;
* ``clip:PATH``       a local folder in open_clip's hub layout
  (``open_clip_config.json`` + weights);
* ``damsm:CHECKPOINT`` the DAMSM image/text encoders of a reference-generator
  checkpoint, loaded by ``models.matcher.load_matcher(checkpoint, device)``.

Nothing heavy is imported until a matcher is built.
"""
from __future__ import annotations

import importlib
import inspect
import os
from pathlib import Path

from facemetrics.errors import FacemetricsError
from facemetrics.matchers.base import Matcher

#: the matcher used when none is named: OpenAI's CLIP ViT-B/32 (CLIP R-precision, CLIP score)
DEFAULT_MATCHER = "clip:ViT-B-32:openai"

_WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors", ".ckpt", ".npz")
_PARAM = "--matcher"


def _looks_like_path(s: str) -> bool:
    return "/" in s or os.sep in s or s.startswith(".") or s.lower().endswith(_WEIGHT_SUFFIXES)


def _build_clip(rest: str, spec: str, device: str, batch_size: int, cache_dir: str | None) -> Matcher:
    from facemetrics.matchers.clip import ClipMatcher

    if not rest:
        raise FacemetricsError(f"empty CLIP matcher spec {spec!r}; use clip:ARCH:TAG, clip:ARCH:PATH or clip:FOLDER", _PARAM)
    kw = dict(device=device, batch_size=batch_size, cache_dir=cache_dir, spec=spec)
    p = Path(rest).expanduser()
    if p.is_dir():
        if not (p / "open_clip_config.json").is_file():
            raise FacemetricsError(
                f"{p} is a folder without open_clip_config.json; clip:FOLDER needs open_clip's hub layout "
                f"(open_clip_config.json + weights); for a bare weights file use clip:ARCH:PATH",
                _PARAM,
            )
        return ClipMatcher(local_dir=p, **kw)
    if p.is_file():
        raise FacemetricsError(
            f"{spec!r}: a weights file needs its architecture: clip:ARCH:{rest} (e.g. ARCH = ViT-B-32-quickgelu "
            f"for OpenAI's ViT-B/32 file)",
            _PARAM,
        )

    import open_clip

    arch, sep, weights = rest.partition(":")
    models = open_clip.list_models()
    if arch not in models:
        if _looks_like_path(rest):
            raise FacemetricsError(f"{spec!r}: no such file or folder: {rest}", _PARAM)
        raise FacemetricsError(
            f"{spec!r}: unknown open_clip architecture {arch!r} (e.g. ViT-B-32, ViT-B-16, ViT-L-14, RN50; "
            f"{len(models)} known, see open_clip.list_models())",
            _PARAM,
        )
    tags = open_clip.list_pretrained_tags_by_model(arch)
    if not sep or not weights:
        raise FacemetricsError(
            f"{spec!r} names no weights: use clip:{arch}:TAG (tags: {', '.join(tags) or 'none'}) "
            f"or clip:{arch}:/path/to/weights",
            _PARAM,
        )
    wp = Path(weights).expanduser()
    if wp.is_file():
        return ClipMatcher(arch, weights_file=wp, **kw)
    if open_clip.get_pretrained_cfg(arch, weights):
        return ClipMatcher(arch, tag=weights, **kw)
    if _looks_like_path(weights):
        raise FacemetricsError(f"{spec!r}: CLIP weights file not found: {weights}", _PARAM)
    raise FacemetricsError(
        f"{spec!r}: {weights!r} is neither a pretrained tag of {arch} (tags: {', '.join(tags) or 'none'}) "
        f"nor an existing file",
        _PARAM,
    )


def _build_damsm(checkpoint: str, spec: str, device: str) -> Matcher:
    if not checkpoint:
        raise FacemetricsError(f"{spec!r}: name the checkpoint: damsm:/path/to/checkpoint", _PARAM)
    path = Path(checkpoint).expanduser()
    if not path.exists():
        raise FacemetricsError(f"{spec!r}: DAMSM checkpoint not found: {path}", _PARAM)
    try:
        mod = importlib.import_module("models.matcher")
    except ImportError as e:
        raise FacemetricsError(
            f"{spec!r}: DAMSM matchers come from the reference generator's package (models.matcher), "
            f"which could not be imported ({e}); run from a facemetrics checkout that includes models/",
            _PARAM,
        ) from None
    load = getattr(mod, "load_matcher", None)
    if load is None:
        raise FacemetricsError(f"{spec!r}: models.matcher has no load_matcher(checkpoint, device)", _PARAM)
    kwargs = {}
    try:
        if "kind" in inspect.signature(load).parameters:
            kwargs["kind"] = "damsm"  # the checkpoint's DAMSM encoders, not another matcher it may hold
    except (TypeError, ValueError):
        pass
    try:
        matcher = load(str(path), device, **kwargs)
    except FacemetricsError:
        raise
    except (KeyError, ValueError, OSError, RuntimeError) as e:
        raise FacemetricsError(
            f"{spec!r}: could not load DAMSM encoders from {path}: {type(e).__name__}: {e}", _PARAM
        ) from None
    if matcher is None:
        raise FacemetricsError(f"{spec!r}: checkpoint {path} holds no DAMSM image/text encoders", _PARAM)
    if isinstance(matcher, Matcher):
        return matcher
    missing = [a for a in ("encode_images", "encode_texts", "fingerprint") if not callable(getattr(matcher, a, None))]
    if missing:
        raise TypeError(f"models.matcher.load_matcher returned {type(matcher).__name__} without {', '.join(missing)}")
    return _Adapted(matcher)


class _Adapted(Matcher):
    """A duck-typed matcher (encode_images, encode_texts, fingerprint, max_tokens) behind the Matcher interface."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.name = getattr(inner, "name", "damsm")
        self.max_tokens = getattr(inner, "max_tokens", None)

    def encode_images(self, images):
        return self.inner.encode_images(images)

    def encode_texts(self, texts):
        return self.inner.encode_texts(texts)

    def fingerprint(self):
        return self.inner.fingerprint()

    def load(self, device: str = "cpu") -> None:
        if callable(getattr(self.inner, "load", None)):
            self.inner.load(device)

    def token_counts(self, texts):
        fn = getattr(self.inner, "token_counts", None)
        return fn(texts) if callable(fn) else None

    def image_preprocessor(self):
        fn = getattr(self.inner, "image_preprocessor", None)
        return fn() if callable(fn) else None

    def encode_preprocessed(self, batch):
        return self.inner.encode_preprocessed(batch)


def build_matcher(spec: str, device: str = "cpu", *, batch_size: int = 32, cache_dir: str | None = None) -> Matcher:
    """The matcher named by ``spec`` (see the module docstring). Weights load on first use."""
    spec = (spec or "").strip()
    kind, sep, rest = spec.partition(":")
    kind = kind.lower()
    if kind == "clip" and sep:
        return _build_clip(rest, spec, device, batch_size, cache_dir)
    if kind == "damsm" and sep:
        return _build_damsm(rest, spec, device)
    raise FacemetricsError(
        f"unknown matcher {spec!r}; use clip:ARCH:TAG (e.g. {DEFAULT_MATCHER}), clip:ARCH:PATH, clip:FOLDER "
        f"or damsm:CHECKPOINT",
        _PARAM,
    )


__all__ = ["Matcher", "build_matcher", "DEFAULT_MATCHER"]
