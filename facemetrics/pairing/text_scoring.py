"""Text–image metrics of generated images: R-precision and CLIP score.

:func:`score_text` is the single entry point ``facemetrics.api.score`` calls
when ``rprec`` or ``clipscore`` is requested. It reads the generated images the
pairs manifest names, embeds them and their captions with one matcher, and
returns the metric results and the warnings to put in the record.

The caption pool for R-precision is the set of distinct (caption, real image,
identity) triples of the manifest, in first-appearance order; each generated
image's positive is its own row's triple, and its negatives are drawn from the
triples of other real images and other identities (see
:mod:`facemetrics.metrics.rprecision`). Rows without a real image can only have
their own caption excluded (plus their identity when given): a warning says so.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Iterable, Sequence

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.options import DecodeOptions
from facemetrics.result import MetricResult

if TYPE_CHECKING:  # pragma: no cover
    from facemetrics.pairing.captions import PairRecord
    from facemetrics.imaging.images import ImageSource
    from facemetrics.matchers.base import Matcher

def _short(text: str, n: int = 60) -> str:
    text = " ".join(text.split())
    return text if len(text) <= n else text[: n - 1] + "…"


def validate_pairs(pairs: list["PairRecord"], fake_source: "ImageSource", where: str = "pairs manifest") -> None:
    """Refuse rows without a caption, with an empty caption or naming a missing image."""
    if not pairs:
        raise FacemetricsError(f"the {where} has no rows", "--pairs")
    names = set(fake_source.names)
    for i, p in enumerate(pairs, start=1):
        line = getattr(p, "line", None)
        at = f"{where} line {line}" if line else f"{where} row {i}"
        if p.caption is None:
            raise FacemetricsError(
                f"{at} (fake {p.fake!r}) has no caption; R-precision and CLIP score need the "
                f"caption that produced each image (field \"caption\")",
                "--pairs",
            )
        if not isinstance(p.caption, str) or not p.caption.strip():
            raise FacemetricsError(f"{at} (fake {p.fake!r}) has an empty caption", "--pairs")
        if p.fake not in names:
            raise FacemetricsError(f"{at}: generated image {p.fake!r} is not in {fake_source.root}", "--pairs")


def _caption_pool(pairs: list["PairRecord"]) -> tuple[list[str], list[Any], list[Any], np.ndarray, int]:
    """Distinct (caption, real, identity) triples; per-row pool index; rows lacking a real image."""
    index: dict[tuple, int] = {}
    texts: list[str] = []
    image_ids: list[Any] = []
    identities: list[Any] = []
    t_idx = np.empty(len(pairs), dtype=np.int64)
    no_real = 0
    for i, p in enumerate(pairs):
        if p.real is None:
            no_real += 1
            img_key: Any = ("caption", p.caption)
        else:
            img_key = ("real", str(p.real))
        key = (p.caption, img_key, p.identity)
        j = index.get(key)
        if j is None:
            j = index[key] = len(texts)
            texts.append(p.caption)
            image_ids.append(img_key)
            identities.append(p.identity if p.identity not in ("", None) else None)
        t_idx[i] = j
    return texts, image_ids, identities, t_idx, no_real


def _batches(seq: list, size: int) -> Iterable[list]:
    for a in range(0, len(seq), size):
        yield seq[a : a + size]


def build_image_extractor(matcher_spec: str | None, *, device: str = "cpu", batch_size: int = 32):
    """The matcher's image tower as a feature extractor for ``score``'s single decode pass
    (:class:`facemetrics.matchers.extractor.MatcherImageExtractor`, with ``.matcher``), or
    None when that matcher cannot split its image path (it then reads FAKE itself)."""
    from facemetrics.matchers import DEFAULT_MATCHER, build_matcher
    from facemetrics.matchers.extractor import image_extractor

    return image_extractor(build_matcher(matcher_spec or DEFAULT_MATCHER, device, batch_size=batch_size))


def _rows_from_extraction(pairs: list["PairRecord"], extraction, name: str):
    """Embeddings of the pairs' images from a whole-FAKE extraction: (kept row indices, rows, failures)."""
    where = {n: i for i, n in enumerate(extraction.names)}
    reasons = dict(extraction.failed)
    emb = np.asarray(extraction.outputs[name]["embedding"])
    kept, rows, failed = [], [], []
    for i, p in enumerate(pairs):
        j = where.get(p.fake)
        if j is None:
            failed.append((p.fake, reasons.get(p.fake, "not decoded")))
        else:
            kept.append(i)
            rows.append(j)
    return kept, emb[np.asarray(rows, dtype=np.int64)] if rows else emb[:0], failed


def _embed_by_decoding(pairs: list["PairRecord"], fake_source: "ImageSource", matcher: "Matcher", batch_size: int,
                       strict: bool, progress: bool) -> tuple[list[int], np.ndarray, list[tuple[str, str]]]:
    """Decode and embed the pairs' images in batches (never all in memory): (kept rows, embeddings, failures)."""
    from tqdm import tqdm

    from facemetrics.imaging.images import DECODE_ERRORS, load_rgb

    kept: list[int] = []
    failed: list[tuple[str, str]] = []
    chunks: list[np.ndarray] = []
    bar = tqdm(total=len(pairs), desc="matcher images", unit="img", disable=not progress, leave=False)
    for rows in _batches(list(range(len(pairs))), batch_size):
        imgs, ok = [], []
        for i in rows:
            try:
                imgs.append(load_rgb(fake_source, pairs[i].fake))
                ok.append(i)
            except DECODE_ERRORS as e:
                if strict:
                    raise FacemetricsError(
                        f"cannot decode generated image {fake_source.path_of(pairs[i].fake)}: {e}", "FAKE"
                    ) from None
                failed.append((pairs[i].fake, f"{type(e).__name__}: {e}"))
        if imgs:
            chunks.append(np.asarray(matcher.encode_images(imgs)))
            kept.extend(ok)
        bar.update(len(rows))
    bar.close()
    return kept, (np.concatenate(chunks, 0) if chunks else np.zeros((0, 0), np.float32)), failed


@dataclass
class TextPairs:
    """The matcher's view of the usable pairs: what R-precision and CLIP score compute on.

    ``image_emb`` (N, d): one row per generated image; ``caption_emb`` (M, d): the caption
    pool (distinct (caption, real image, identity) triples); ``true_index`` (N,): each
    image's own pool row; ``image_ids``/``identities`` (M,): what each pool caption describes.
    """

    image_emb: np.ndarray
    caption_emb: np.ndarray
    true_index: np.ndarray
    image_ids: list[Any]
    identities: list[Any]
    n_negatives: int
    folds: int
    details: dict[str, Any]
    #: :func:`~facemetrics.pairing.captions.pair_key` of each generated image's pair
    keys: list[str] | None = None


def score_text(pairs: list["PairRecord"], fake_source: "ImageSource", *, metrics: set[str] | frozenset[str],
               seed: int = 0, **kw: Any) -> tuple[dict[str, MetricResult], list[str]]:
    """Compute the requested text metrics (``rprec``, ``clipscore``): :func:`pair_texts`, then their specs.

    ``kw``: :func:`pair_texts`'s keywords, and :class:`~facemetrics.options.DecodeOptions` fields
    (batch_size, device, strict, progress) instead of ``decode``.
    """
    from types import SimpleNamespace

    from facemetrics.metrics import registry

    wanted = [m for m in ("rprec", "clipscore") if m in set(metrics)]
    if not wanted:
        return {}, []
    decode, rest = DecodeOptions.split(kw)
    tp, warnings = pair_texts(pairs, fake_source, wanted=wanted, decode=rest.pop("decode", decode), **rest)
    inputs = registry.MetricInputs(options=SimpleNamespace(seed=seed), paired={"matcher": tp})
    return registry.compute_all(registry.resolve(wanted), inputs), warnings


def _image_embeddings(pairs: list["PairRecord"], fake_source: "ImageSource", matcher: "Matcher",
                      decode: DecodeOptions, fake_extraction) -> tuple[list[int], np.ndarray, list[tuple[str, str]]]:
    """(kept pair indices, their image embeddings, failures): from ``fake_extraction`` or by decoding."""
    if fake_extraction is None:
        return _embed_by_decoding(pairs, fake_source, matcher, decode.batch_size, decode.strict, decode.progress)
    from facemetrics.matchers.extractor import MatcherImageExtractor

    if MatcherImageExtractor.name not in fake_extraction.outputs:
        raise ValueError("fake_extraction holds no matcher embeddings")
    return _rows_from_extraction(pairs, fake_extraction, MatcherImageExtractor.name)


def _long_captions(matcher: "Matcher", texts: list[str], t_idx: np.ndarray, use: list["PairRecord"],
                   kept: list[int], pairs_name: str) -> tuple[int, str | None]:
    """How many pool captions exceed the matcher's token limit, and the warning saying so (None: none do)."""
    counts = matcher.token_counts(texts)
    if counts is None or not matcher.max_tokens:
        return 0, None
    long = [j for j, c in enumerate(counts) if c > matcher.max_tokens]
    if not long:
        return 0, None
    worst = max(long, key=lambda j: counts[j])
    first = int(np.nonzero(t_idx == worst)[0][0])
    line = getattr(use[first], "line", None)
    at = f"line {line}" if line else f"row {kept[first] + 1}"
    return len(long), (f"{len(long)} of {len(texts)} captions exceed the matcher's {matcher.max_tokens} tokens and "
                       f"were truncated (longest: {counts[worst]} tokens, {pairs_name} {at}: \"{_short(texts[worst])}\")")


def pair_texts(
    pairs: list["PairRecord"],
    fake_source: "ImageSource",
    *,
    wanted: Sequence[str] = ("rprec", "clipscore"),
    matcher_spec: str | None = None,
    decode: DecodeOptions = DecodeOptions(),
    n_negatives: int = 99,
    folds: int = 10,
    matcher: "Matcher | None" = None,
    pairs_name: str = "pairs manifest",
    fake_extraction=None,
) -> tuple[TextPairs, list[str]]:
    """Embed the generated images the pairs name and their caption pool with one matcher.

    ``pairs`` are the manifest rows (one per generated image; ``fake`` relative
    to ``fake_source``). ``matcher_spec`` (default ``clip:ViT-B-32:openai``) is
    built with :func:`facemetrics.matchers.build_matcher` unless ``matcher`` is
    given. ``decode``: batch size, device, strict, progress (the other fields are unused).
    Undecodable generated images are dropped with a warning (an error
    with ``strict``). ``fake_extraction`` (``score``'s single decode pass of FAKE with a
    :class:`~facemetrics.matchers.extractor.MatcherImageExtractor` of ``matcher``) supplies
    the image embeddings instead of decoding the images here. ``wanted`` names the metrics
    the warnings speak of (and whether R-precision's no-real-image warning applies).
    Returns ``(TextPairs, warnings)``.
    """
    from facemetrics.matchers import DEFAULT_MATCHER, build_matcher

    wanted = set(wanted)
    validate_pairs(pairs, fake_source, pairs_name)
    warnings: list[str] = []
    if matcher is None:
        matcher = build_matcher(matcher_spec or DEFAULT_MATCHER, decode.device, batch_size=decode.batch_size)
    matcher.load(decode.device)
    kept, img_emb, failed = _image_embeddings(pairs, fake_source, matcher, decode, fake_extraction)
    if failed:
        warnings.append(
            f"{len(failed)} generated image(s) could not be decoded and were left out of "
            f"{', '.join(sorted(wanted))} (first: {failed[0][0]}: {failed[0][1]})"
        )
    if not kept:
        raise FacemetricsError("none of the generated images named in the pairs manifest could be decoded", "FAKE")
    use = [pairs[i] for i in kept]

    texts, image_ids, identities, t_idx, no_real = _caption_pool(use)
    cap_emb = np.asarray(matcher.encode_texts(texts))
    fp = matcher.fingerprint()
    n_long, long_warning = _long_captions(matcher, texts, t_idx, use, kept, pairs_name)
    if long_warning:
        warnings.append(long_warning)
    if "rprec" in wanted and no_real:
        warnings.append(
            f"{no_real} pairs row(s) name no real image: their R-precision negatives exclude only the same "
            f"caption text (and the same identity when given)"
        )
    details = {"matcher": fp, "truncated_captions": n_long}
    from facemetrics.pairing.captions import pair_key

    return TextPairs(img_emb, cap_emb, t_idx, image_ids, identities, n_negatives, folds, details,
                     [pair_key(p) for p in use]), warnings
