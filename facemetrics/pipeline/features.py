"""One decode pass over an image source feeding every requested extractor.

``extract`` reads each image once, runs every extractor's preprocessor on the
decoded array in a pool of workers (threads by default: PIL decoding and
resizing release the GIL, so decoding overlaps the network; or processes,
``workers_kind="process"``, for fast GPUs where one process cannot decode fast
enough: forked like torch's DataLoader workers, they get the file names and send
back the preprocessed arrays), batches the results per extractor and runs the
networks in the calling thread. An extractor with a
:meth:`~facemetrics.extractors.base.FeatureExtractor.process_runner` for ``workers``
(dlib, whose calls hold the GIL) instead gets its batches handed to its worker
processes; on a GPU they are collected at the end, so dlib runs beside the other networks.
On a CPU device, decoding and the networks take turns (a batch decoded on every core, then
each extractor on every core: dlib's processes, then the network's threads) instead of
competing for the same cores; see :func:`take_turns`.
Per-extractor results are cached on disk (:mod:`facemetrics.storage.cache`); an extractor whose entry is cached is not run, and
when all are cached no image is decoded at all. In-memory images
(:class:`facemetrics.imaging.inputs.PixelSource`) skip decoding, not preprocessing: their
H×W×3 uint8 arrays reach the same preprocessors, and their content key hashes
the pixels instead of file bytes.
"""
from __future__ import annotations

import collections
import itertools
import os
import re
import sys
from concurrent.futures import Executor, ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Iterator, Sequence

import numpy as np

from facemetrics.storage.cache import CachedFeatures, FeatureCache
from facemetrics.errors import FacemetricsError
from facemetrics.extractors.base import FeatureExtractor
from facemetrics.imaging.images import (DECODE_ERRORS, ImageSource, decode_settings_key, file_digests, key_from_digests,
                                load_rgb)
from facemetrics.imaging.inputs import PixelSource
from facemetrics.options import DecodeOptions

#: how decode/preprocess workers run
WORKER_KINDS = ("thread", "process")


@dataclass
class Extraction:
    """Features of one source: rows of every output align with ``names``."""

    names: list[str]
    failed: list[tuple[str, str]]
    outputs: dict[str, dict[str, np.ndarray]]
    content_key: str
    from_cache: dict[str, bool] = field(default_factory=dict)
    #: sha256 of every file in source order (a zip: of the archive), see images.file_digests
    digests: list[str] = field(default_factory=list)


def _decode_and_prep(source: ImageSource, name: str, preps: list) -> tuple[str, list | None, str | None]:
    try:  # in-memory images (facemetrics.imaging.inputs) skip decoding: the same H×W×3 uint8 array reaches `preps`
        img = source.image(name) if isinstance(source, PixelSource) else load_rgb(source, name)
    except DECODE_ERRORS as e:
        # PIL names the in-memory buffer with its address; drop it so records are reproducible
        return name, None, re.sub(r" at 0x[0-9a-fA-F]+", "", f"{type(e).__name__}: {e}")
    return name, [p(img) for p in preps], None


def _strict_error(source: ImageSource, failed: list[tuple[str, str]]) -> FacemetricsError:
    listing = "\n  ".join(f"{source.path_of(n)}: {r}" for n, r in failed[:20])
    more = f"\n  ... and {len(failed) - 20} more" if len(failed) > 20 else ""
    return FacemetricsError(f"{len(failed)} unreadable image(s) (--strict):\n  {listing}{more}", "--strict")


def default_workers() -> int:
    """CPU count, at most 8, divided among the processes of a torchrun node (LOCAL_WORLD_SIZE)."""
    try:
        local = max(1, int(os.environ.get("LOCAL_WORLD_SIZE") or 1))
    except ValueError:
        local = 1
    return max(1, min(8, (os.cpu_count() or 1) // local))


def worker_count(workers: int | None) -> int:
    """``workers`` as given (``--workers``), or :func:`default_workers` when it is None."""
    return default_workers() if workers is None else workers


# Worker processes receive the source and the preprocessors once (initializer),
# then only file names; results come back pickled.
_PROC_STATE: tuple[ImageSource, list] | None = None


def _proc_init(source: ImageSource, preps: list) -> None:
    global _PROC_STATE
    os.environ["OMP_NUM_THREADS"] = "1"  # a preprocessor that imports torch stays single-threaded
    if "torch" in sys.modules:  # inherited through fork: one intra-op thread per worker, as in DataLoader
        sys.modules["torch"].set_num_threads(1)
    _PROC_STATE = (source, preps)


def _proc_task(name: str) -> tuple[str, list | None, str | None]:
    assert _PROC_STATE is not None
    return _decode_and_prep(_PROC_STATE[0], name, _PROC_STATE[1])


def _make_pool(kind: str, workers: int, source: ImageSource, preps: list) -> tuple[Executor, object]:
    """(executor, submit(name) -> future) for ``kind`` in :data:`WORKER_KINDS`."""
    if kind == "thread":
        pool: Executor = ThreadPoolExecutor(max_workers=workers)
        return pool, lambda name: pool.submit(_decode_and_prep, source, name, preps)
    if kind == "process":
        import multiprocessing

        # fork, as torch's DataLoader does on Linux: no re-import of the main program, fast start. The
        # children only decode and resize (no CUDA); _proc_init keeps any torch use in them single-threaded.
        methods = multiprocessing.get_all_start_methods()
        method = "fork" if "fork" in methods else "spawn"
        if method == "spawn":
            main = sys.modules.get("__main__")
            main_file = getattr(main, "__file__", None)
            if getattr(main, "__spec__", None) is None and main_file and not os.path.isfile(main_file):
                raise FacemetricsError(  # spawned workers re-import the main program, which must be a file
                    f"worker processes cannot start from a program read from {main_file}; run it from a file "
                    "or module, or use thread workers", "--workers-kind")
        fresh = source.with_names(source.names)  # no open zip handles travel
        pool = ProcessPoolExecutor(max_workers=workers, mp_context=multiprocessing.get_context(method),
                                   initializer=_proc_init, initargs=(fresh, preps))
        return pool, lambda name: pool.submit(_proc_task, name)
    raise FacemetricsError(f"unknown worker kind {kind!r}; choose {' or '.join(WORKER_KINDS)}", "--workers-kind")


def take_turns(device: str) -> bool:
    """Whether decoding and the networks take turns instead of overlapping.

    On a CPU the decode workers and the network's intra-op threads share the same cores:
    overlapping them only makes both compete (and thrash caches), so a batch is decoded
    with every core, then the network runs with every core, and so on. On a GPU the
    network runs elsewhere and decoding overlaps it. ``$FACEMETRICS_OVERLAP=1`` forces
    overlap, ``=0`` turns. The features are the same either way; only the schedule differs.
    """
    env = os.environ.get("FACEMETRICS_OVERLAP", "").strip()
    if env in ("0", "1"):
        return env == "0"
    return str(device).split(":")[0] == "cpu"


def _decoded(names: Sequence[str], submit: Any, window: int, turn: int) -> Iterator[tuple[str, list | None, str | None]]:
    """``(name, preprocessed arrays | None, error | None)`` of every name, in order.

    ``turn == 0``: overlap: keep ``window`` names in flight while the caller consumes.
    ``turn > 0``: take turns: submit ``turn`` names, wait for all of them, then yield them
    (the caller runs its network while nothing is being decoded), and only then submit the
    next ``turn``.
    """
    it = iter(names)
    if turn > 0:
        while True:
            chunk = [submit(n) for n in itertools.islice(it, turn)]
            if not chunk:
                return
            done = [f.result() for f in chunk]
            yield from done
    inflight: collections.deque = collections.deque(submit(n) for n in itertools.islice(it, window))
    while inflight:
        out = inflight.popleft().result()
        nxt = next(it, None)
        if nxt is not None:
            inflight.append(submit(nxt))
        yield out


def _run(source: ImageSource, extractors: Sequence[FeatureExtractor], batch_size: int, workers: int,
         progress: bool, desc: str | None, workers_kind: str = "thread", turns: bool = False,
         ) -> tuple[list[str], list[tuple[str, str]], list[dict[str, np.ndarray]]]:
    from tqdm import tqdm

    runners = [ex.process_runner(workers) for ex in extractors]
    preps = [ex.preprocessor() if r is None else r.preprocessor() for ex, r in zip(extractors, runners)]
    names: list[str] = []
    failed: list[tuple[str, str]] = []
    pending: list[list[dict[str, np.ndarray]]] = [[] for _ in extractors]
    collected: list[dict[str, list[np.ndarray]]] = [collections.defaultdict(list) for _ in extractors]
    handed: list[list] = [[] for _ in extractors]  # per runner: its batches' result functions, in order

    def flush(i: int) -> None:
        items = pending[i]
        if not items:
            return
        if runners[i] is not None:
            result = runners[i].submit(items)
            if turns:  # its processes take their turn now, on every core, not beside the network's threads
                for k, v in result().items():
                    collected[i][k].append(np.asarray(v))
            else:
                handed[i].append(result)
        else:
            for k, v in extractors[i].forward(extractors[i].collate(items)).items():
                collected[i][k].append(np.asarray(v))
        pending[i] = []

    window = max(2 * batch_size, 4 * workers)
    bar = tqdm(total=len(source), desc=desc, unit="img", file=sys.stderr, disable=not progress, leave=False)
    pool, submit = _make_pool(workers_kind, workers, source, preps)
    with pool:
        for name, results, err in _decoded(source.names, submit, window, batch_size if turns else 0):
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
        for i, results_of in enumerate(handed):
            for result in results_of:
                for k, v in result().items():
                    collected[i][k].append(np.asarray(v))
    bar.close()
    outs = [{k: np.concatenate(v) for k, v in c.items()} for c in collected]
    return names, failed, outs


def extract(source: ImageSource, extractors: Sequence[FeatureExtractor], options: DecodeOptions | None = None, *,
            desc: str | None = None, **decode: Any) -> Extraction:
    """Features of every image of ``source`` for each extractor (see module docstring).

    ``options`` (or its fields as keywords, ``decode``: batch_size, workers, device,
    cache, strict, progress, cache_root, workers_kind) say how the pass runs.
    Undecodable files are listed in ``Extraction.failed`` with the reason; with
    ``strict=True`` they raise :class:`FacemetricsError` naming them instead.
    ``workers_kind`` is "thread" (default) or "process" (see module docstring).
    """
    o = options if options is not None else DecodeOptions(**decode)
    batch_size, device, cache, strict, progress = o.batch_size, o.device, o.cache, o.strict, o.progress
    if batch_size < 1:
        raise FacemetricsError("batch size must be at least 1", "--batch-size")
    workers = worker_count(o.workers)
    if workers < 1:
        raise FacemetricsError("workers must be at least 1", "--workers")
    if o.workers_kind not in WORKER_KINDS:
        raise FacemetricsError(f"unknown worker kind {o.workers_kind!r}; choose {' or '.join(WORKER_KINDS)}",
                               "--workers-kind")
    fc = FeatureCache(o.cache_root)
    if isinstance(source, PixelSource):  # hashes of the pixels (facemetrics.imaging.inputs.pixel_digest)
        digests = source.digests()
    else:
        digests = file_digests(source, fc.index_path(source.root) if cache else None)
    ckey = key_from_digests(source.kind, source.names, digests)
    fps = [decode_settings_key(ex.fingerprint_key()) for ex in extractors]  # + a non-default pixel limit
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
        run_names, failed, outs = _run(source, [extractors[i] for i in todo], batch_size, workers, progress, desc,
                                       o.workers_kind, take_turns(device))
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
                      {ex.name: (i in hits) for i, ex in enumerate(extractors)}, digests)
