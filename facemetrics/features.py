"""One decode pass over an image source feeding every requested extractor.

``extract`` reads each image once, runs every extractor's preprocessor on the
decoded array in a pool of worker threads (PIL decoding and resizing release the
GIL, so decoding overlaps the network), batches the results per extractor and
runs the networks in the calling thread. Per-extractor results are cached on disk
(:mod:`facemetrics.cache`); an extractor whose entry is cached is not run, and
when all are cached no image is decoded at all.
"""
from __future__ import annotations

import collections
import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from facemetrics.cache import CachedFeatures, FeatureCache
from facemetrics.errors import FacemetricsError
from facemetrics.extractors.base import FeatureExtractor
from facemetrics.images import DECODE_ERRORS, ImageSource, content_key, load_rgb


@dataclass
class Extraction:
    """Features of one source: rows of every output align with ``names``."""

    names: list[str]
    failed: list[tuple[str, str]]
    outputs: dict[str, dict[str, np.ndarray]]
    content_key: str
    from_cache: dict[str, bool] = field(default_factory=dict)


def _decode_and_prep(source: ImageSource, name: str, preps: list) -> tuple[str, list | None, str | None]:
    try:
        img = load_rgb(source, name)
    except DECODE_ERRORS as e:
        return name, None, f"{type(e).__name__}: {e}"
    return name, [p(img) for p in preps], None


def _strict_error(source: ImageSource, failed: list[tuple[str, str]]) -> FacemetricsError:
    listing = "\n  ".join(f"{source.path_of(n)}: {r}" for n, r in failed[:20])
    more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
    return FacemetricsError(f"{len(failed)} unreadable image(s) (--strict):\n  {listing}{more}", "--strict")


def default_workers() -> int:
    return max(1, min(8, os.cpu_count() or 1))


def _run(source: ImageSource, extractors: Sequence[FeatureExtractor], batch_size: int, workers: int,
         progress: bool, desc: str | None) -> tuple[list[str], list[tuple[str, str]], list[dict[str, np.ndarray]]]:
    from tqdm import tqdm

    preps = [ex.preprocessor() for ex in extractors]
    names: list[str] = []
    failed: list[tuple[str, str]] = []
    pending: list[list[dict[str, np.ndarray]]] = [[] for _ in extractors]
    collected: list[dict[str, list[np.ndarray]]] = [collections.defaultdict(list) for _ in extractors]

    def flush(i: int) -> None:
        items = pending[i]
        if not items:
            return
        batch = {k: np.stack([it[k] for it in items]) for k in items[0]}
        for k, v in extractors[i].forward(batch).items():
            collected[i][k].append(np.asarray(v))
        pending[i] = []

    window = max(2 * batch_size, 4 * workers)
    bar = tqdm(total=len(source), desc=desc, unit="img", file=sys.stderr, disable=not progress, leave=False)
    with ThreadPoolExecutor(max_workers=workers) as pool:
        it = iter(source.names)
        inflight: collections.deque = collections.deque()
        for name in it:
            inflight.append(pool.submit(_decode_and_prep, source, name, preps))
            if len(inflight) >= window:
                break
        while inflight:
            name, results, err = inflight.popleft().result()
            nxt = next(it, None)
            if nxt is not None:
                inflight.append(pool.submit(_decode_and_prep, source, nxt, preps))
            bar.update(1)
            if results is None:
                failed.append((name, err or "unreadable"))
                continue
            names.append(name)
            for i, r in enumerate(results):
                pending[i].append(r)
                if len(pending[i]) >= batch_size:
                    flush(i)
        for i in range(len(extractors)):
            flush(i)
    bar.close()
    outs = [{k: np.concatenate(v) for k, v in c.items()} for c in collected]
    return names, failed, outs


def extract(source: ImageSource, extractors: Sequence[FeatureExtractor], *, batch_size: int = 32,
            workers: int | None = None, device: str = "cpu", cache: bool = True, strict: bool = False,
            progress: bool = True, desc: str | None = None, cache_root=None) -> Extraction:
    """Features of every image of ``source`` for each extractor (see module docstring).

    Undecodable files are listed in ``Extraction.failed`` with the reason; with
    ``strict=True`` they raise :class:`FacemetricsError` naming them instead.
    """
    if batch_size < 1:
        raise FacemetricsError("batch size must be at least 1", "--batch-size")
    workers = default_workers() if workers is None else workers
    if workers < 1:
        raise FacemetricsError("workers must be at least 1", "--workers")
    fc = FeatureCache(cache_root)
    ckey = content_key(source, fc.index_path(source.root) if cache else None)
    fps = [ex.fingerprint_key() for ex in extractors]
    hits: dict[int, CachedFeatures] = {}
    if cache:
        for i, fp in enumerate(fps):
            entry = fc.get(ckey, fp)
            if entry is not None:
                hits[i] = entry
    todo = [i for i in range(len(extractors)) if i not in hits]
    outputs: dict[str, dict[str, np.ndarray]] = {}
    names: list[str] | None = None
    failed: list[tuple[str, str]] = []
    if todo:
        for i in todo:
            extractors[i].load(device)
        run_names, failed, outs = _run(source, [extractors[i] for i in todo], batch_size, workers, progress, desc)
        if strict and failed:
            raise _strict_error(source, failed)
        names = run_names
        for i, out in zip(todo, outs):
            outputs[extractors[i].name] = out
            if cache and names:
                fc.put(ckey, fps[i], CachedFeatures(names, failed, out))
    for i, entry in hits.items():
        if names is None:
            names, failed = entry.names, entry.failed
        outputs[extractors[i].name] = entry.outputs
    if strict and failed:
        raise _strict_error(source, failed)
    return Extraction(names or [], list(failed), outputs, ckey,
                      {ex.name: (i in hits) for i, ex in enumerate(extractors)})
