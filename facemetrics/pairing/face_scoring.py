"""FSD / FSS for ``facemetrics score``: pairs in, face metrics out.

:func:`score_face` is the one call :func:`facemetrics.api.score` makes. It embeds
every generated image listed in the pairs and every distinct real image they
name (one extraction per side, cached like the Inception features: content key
of the images + the embedder's fingerprint), then computes
:func:`facemetrics.metrics.face.face_similarity` over the pairs.

Nothing is dropped silently:

* no pairs, or rows without a real image: :class:`FacemetricsError` (``--pairs``);
* a listed fake missing from FAKE: error naming it;
* unreadable images: with ``strict`` an error naming them, otherwise the pairs
  that use them are left out, counted (``pairs_dropped``) and named
  (``failed_images``) in every result's details, and a warning is returned;
* ``face_align="always"`` and an image without a detected face: error naming
  every such file;
* ``face_align="auto"``: images without a face use the centred resize; how many
  images of each side had a face is in ``details["faces_detected"]`` and a
  warning says how many did not.
"""
from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from facemetrics.pairing.captions import PairRecord, split_zip_member
from facemetrics.errors import FacemetricsError
from facemetrics.imaging.images import ImageSource
from facemetrics.options import DecodeOptions
from facemetrics.result import MetricResult

FACE_MODELS = ("dlib", "facenet")
_MAX_LISTED = 20


def _listing(items: Sequence[str]) -> str:
    shown = "\n  ".join(items[:_MAX_LISTED])
    more = f"\n  ... and {len(items) - _MAX_LISTED} more" if len(items) > _MAX_LISTED else ""
    return "\n  " + shown + more


def build_face_embedder(face_model: str = "dlib", face_align: str = "auto", weights: str | None = None):
    """The registered face embedder ``face_model`` (``dlib`` or ``facenet``)."""
    from facemetrics.extractors import build_extractor

    if face_model not in FACE_MODELS:
        raise FacemetricsError(
            f"--face-model must be one of {', '.join(FACE_MODELS)}, got {face_model!r}", "--face-model"
        )
    return build_extractor(face_model, align=face_align, weights=weights)


def real_sources(paths: Sequence[Path]) -> tuple[list[ImageSource], dict[Path, tuple[int, str]]]:
    """Group absolute real-image paths into image sources.

    Plain files form one folder source rooted at their common folder; ``<zip>/<member>``
    pseudo-paths one zip source per archive. Names are sorted, so the cache key does
    not depend on the order of the pairs. Returns the sources and, per path,
    ``(source index, name in that source)``.
    """
    files: list[Path] = []
    zips: dict[Path, list[tuple[Path, str]]] = {}
    for p in dict.fromkeys(paths):
        zm = None if p.is_file() else split_zip_member(p)
        if zm is None:
            files.append(p)
        else:
            zips.setdefault(zm[0], []).append((p, zm[1]))
    sources: list[ImageSource] = []
    where: dict[Path, tuple[int, str]] = {}
    if files:
        root = Path(os.path.commonpath([str(f.parent) for f in files]))
        files.sort(key=lambda f: f.relative_to(root).as_posix())  # order-free cache key
        names = [f.relative_to(root).as_posix() for f in files]
        for f, n in zip(files, names):
            where[f] = (len(sources), n)
        sources.append(ImageSource(root, "folder", tuple(names)))
    for zpath, members in zips.items():
        for p, m in members:
            where[p] = (len(sources), m)
        sources.append(ImageSource(zpath.resolve(), "zip", tuple(sorted({m for _, m in members}))))
    return sources, where


def _extract(source: ImageSource, embedder, decode: DecodeOptions, *, desc: str):
    """One pass of the shared pipeline (``facemetrics.pipeline.features.extract``): cached on disk by
    the images' content key and the embedder's fingerprint."""
    from facemetrics.pipeline.features import extract

    return extract(source, [embedder], decode, desc=desc)


def _only(extraction, extractor: str, keep: set[str]):
    """The rows (and failures) of ``extraction`` for the images in ``keep``, in its order."""
    from facemetrics.pipeline.features import Extraction

    idx = [i for i, n in enumerate(extraction.names) if n in keep]
    outs = {k: np.asarray(v)[idx] for k, v in extraction.outputs[extractor].items()}
    return Extraction([extraction.names[i] for i in idx], [tuple(f) for f in extraction.failed if f[0] in keep],
                      {extractor: outs}, extraction.content_key)


@dataclass
class FacePairs:
    """Row-aligned face embeddings of the usable pairs (row i of each: pair i) and their details."""

    fake: np.ndarray
    real: np.ndarray
    details: dict[str, Any]
    #: :func:`~facemetrics.pairing.captions.pair_key` of each row's pair
    keys: list[str] | None = None


def score_face(pairs: Sequence[PairRecord] | None, fake_source: ImageSource, **kw: Any,
               ) -> tuple[dict[str, MetricResult], list[str]]:
    """FSD (L2), FSD-L1 and FSS over ``pairs``: :func:`pair_faces`, then the registered specs.

    ``kw``: :func:`pair_faces`'s keywords, and :class:`~facemetrics.options.DecodeOptions` fields
    (batch_size, workers, device, cache, strict, progress, cache_root) instead of ``decode``.
    """
    from facemetrics.metrics import registry

    decode, rest = DecodeOptions.split(kw)
    fp, warnings = pair_faces(pairs, fake_source, decode=rest.pop("decode", decode), **rest)
    inputs = registry.MetricInputs(options=None, paired={"face": fp})
    return registry.compute_all(registry.resolve("fsd"), inputs), warnings


def _check_pairs(pairs: Sequence[PairRecord] | None, fake_source: ImageSource) -> None:
    """Every pair names a real image and a distinct image of FAKE."""
    if not pairs:
        raise FacemetricsError(
            "FSD/FSS compare each generated image with the real image of its caption: give that pairing "
            "with --pairs pairs.jsonl (columns fake, caption, real; matching by equal file stems is "
            "available explicitly via facemetrics.pairing.captions.pairs_from_stems)",
            "--pairs",
        )
    no_real = [f"line {p.line}: {p.fake}" if p.line else p.fake for p in pairs if p.real is None]
    if no_real:
        raise FacemetricsError(
            f"FSD/FSS need the real image of every generated image; {len(no_real)} pairs row(s) have no 'real':"
            + _listing(no_real),
            "--pairs",
        )
    fakes = [p.fake for p in pairs]
    dup = sorted(f for f, c in Counter(fakes).items() if c > 1)
    if dup:
        raise FacemetricsError(f"generated images listed more than once in the pairs: {_listing(dup)}", "--pairs")
    known = set(fake_source.names)
    absent = [f for f in fakes if f not in known]
    if absent:
        raise FacemetricsError(
            f"{len(absent)} generated image(s) named in the pairs are not images of FAKE {fake_source.root}:"
            + _listing(absent),
            "--pairs",
        )


@dataclass
class _Side:
    """One side's embeddings by key (fake: image name; real: (source index, name), -1 = real_extraction)."""

    emb: dict[Any, np.ndarray] = field(default_factory=dict)
    detected: dict[Any, bool] = field(default_factory=dict)
    path: dict[Any, str] = field(default_factory=dict)
    failed: list[tuple[str, str]] = field(default_factory=list)

    def take(self, src: ImageSource, extraction, embedder: str, si: int | None = None) -> None:
        out = extraction.outputs[embedder]
        for i, n in enumerate(extraction.names):
            k = n if si is None else (si, n)
            self.emb[k] = out["embedding"][i]
            self.detected[k] = bool(out["detected"][i])
            self.path[k] = src.path_of(n)
        self.failed.extend((src.path_of(n), r) for n, r in extraction.failed)


def _fake_side(pairs: Sequence[PairRecord], fake_source: ImageSource, embedder, face_model: str,
               decode: DecodeOptions, fake_extraction) -> _Side:
    fakes = {p.fake for p in pairs}
    if fake_extraction is not None:
        if embedder.name not in fake_extraction.outputs:
            raise ValueError(f"fake_extraction holds no {embedder.name} outputs")
        fx = _only(fake_extraction, embedder.name, fakes)
    else:
        fx = _extract(fake_source.with_names(sorted(fakes)), embedder, decode, desc=f"fake {face_model}")
    side = _Side()
    side.take(fake_source, fx, embedder.name)
    return side


def _real_side(pairs: Sequence[PairRecord], embedder, face_model: str, decode: DecodeOptions,
               real_extraction) -> tuple[_Side, dict[Path, tuple[int, str]]]:
    """The distinct real images' embeddings, and each real path's key."""
    side = _Side()
    where: dict[Path, tuple[int, str]] = {}
    rest = [p.real for p in pairs]
    if real_extraction is not None and real_extraction[0].kind == "folder":
        rsrc, rx = real_extraction
        if embedder.name not in rx.outputs:
            raise ValueError(f"real_extraction holds no {embedder.name} outputs")
        by_file = {os.path.realpath(rsrc.root / n): n for n in rsrc.names}
        hit = {p: by_file.get(os.path.realpath(p)) for p in dict.fromkeys(rest)}  # type: ignore[arg-type]
        used = {n for n in hit.values() if n is not None}
        side.take(rsrc, _only(rx, embedder.name, used), embedder.name, -1)
        where.update({p: (-1, n) for p, n in hit.items() if n is not None})
        rest = [p for p in rest if hit[p] is None]
    srcs, own = real_sources(rest) if rest else ([], {})  # type: ignore[arg-type]
    for si, src in enumerate(srcs):
        side.take(src, _extract(src, embedder, decode, desc=f"real {face_model}"), embedder.name, si)
    where.update(own)
    return side, where


def pair_faces(
    pairs: Sequence[PairRecord] | None,
    fake_source: ImageSource,
    *,
    face_model: str = "dlib",
    face_align: str = "auto",
    weights: str | None = None,
    decode: DecodeOptions = DecodeOptions(),
    fake_extraction=None,
    real_extraction=None,
) -> tuple[FacePairs, list[str]]:
    """Embed both images of every pair (see module doc); returns (:class:`FacePairs`, warnings).

    ``pairs[i].fake`` names an image of ``fake_source``; ``pairs[i].real`` the
    absolute path (or ``<zip>/<member>``) of its real image. ``decode``: how the images
    are decoded (batch size, workers, device, cache, strict, progress, cache root).
    ``fake_extraction`` (from :func:`facemetrics.api.score`'s single decode pass of FAKE, see
    ``planner.plan``) holds this embedder's outputs for FAKE's
    images; without it FAKE's paired images are extracted here. ``real_extraction``
    ``(source, extraction)``: an image folder already passed through this embedder (REAL in
    ``score``'s single pass); pairs whose real image is one of its files (same file after
    resolving links) take their embedding from it, the others are extracted here.
    """
    _check_pairs(pairs, fake_source)
    embedder = build_face_embedder(face_model, face_align, weights)
    fp = embedder.fingerprint()
    fake = _fake_side(pairs, fake_source, embedder, face_model, decode, fake_extraction)
    real, where = _real_side(pairs, embedder, face_model, decode, real_extraction)
    if face_align == "always":
        missing = [fake.path[k] for k, d in fake.detected.items() if not d]
        missing += [real.path[k] for k, d in real.detected.items() if not d]
        if missing:
            raise FacemetricsError(
                f"--face-align always: no face detected in {len(missing)} image(s):" + _listing(missing),
                "--face-align",
            )
    kept = [p for p in pairs if p.fake in fake.emb and where[p.real] in real.emb]  # type: ignore[index]
    if not kept:
        raise FacemetricsError("FSD/FSS: no pair has two readable images" + _listing(
            [f"{n}: {r}" for n, r in fake.failed + real.failed]), "--pairs")
    g_rows = [fake.emb[p.fake] for p in kept]
    r_rows = [real.emb[where[p.real]] for p in kept]  # type: ignore[index]
    warnings, details = _face_details(pairs, kept, fake_source, fake, real, where, face_align)
    details = {"embedder": face_model, "weights_sha256": fp.get("weights_sha256"),
               "dims": int(np.asarray(g_rows[0]).shape[-1]), "fingerprint": fp, **details}
    from facemetrics.pairing.captions import pair_key

    return FacePairs(np.stack(g_rows), np.stack(r_rows), details, [pair_key(p) for p in kept]), warnings


def _face_details(pairs: Sequence[PairRecord], kept: list[PairRecord], fake_source: ImageSource, fake: _Side,
                  real: _Side, where: dict, face_align: str) -> tuple[list[str], dict[str, Any]]:
    """The warnings and the counting part of the details of :func:`pair_faces`."""
    warnings: list[str] = []
    dropped = len(pairs) - len(kept)
    if dropped:
        warnings.append(
            f"FSD/FSS: {dropped} of {len(pairs)} pairs left out because an image was unreadable "
            f"({len(fake.failed)} fake, {len(real.failed)} real; named in the results' details)"
        )
    used_real = {where[p.real] for p in kept}
    used_fake = [p.fake for p in kept]
    detection_run = face_align != "never"
    n_fake_faces = sum(fake.detected[f] for f in used_fake) if detection_run else None
    n_real_faces = sum(real.detected[k] for k in used_real) if detection_run else None
    if detection_run and (n_fake_faces < len(used_fake) or n_real_faces < len(used_real)):
        warnings.append(
            f"FSD/FSS: no face detected in {len(used_fake) - n_fake_faces} of {len(used_fake)} generated and "
            f"{len(used_real) - n_real_faces} of {len(used_real)} real images; they were embedded from the "
            "centred resize (--face-align always makes this an error)"
        )
    unpaired = len(fake_source) - len(pairs)
    if unpaired > 0:
        warnings.append(
            f"FSD/FSS: {unpaired} image(s) of FAKE are not in the pairs manifest and were not used"
        )
    both = sum(fake.detected[p.fake] and real.detected[where[p.real]] for p in kept)
    return warnings, {
        "face_align": face_align,
        "faces_detected": {"fake": n_fake_faces, "real": n_real_faces},
        "images": {"fake": len(used_fake), "real": len(used_real)},
        "pairs_both_faces": both if detection_run else None,
        "pairs_total": len(pairs),
        "pairs_dropped": dropped,
        "fake_unpaired": max(unpaired, 0),
        "failed_images": {"fake": [list(f) for f in fake.failed], "real": [list(f) for f in real.failed]},
    }
