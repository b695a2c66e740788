"""Scoring in-memory images: the :class:`Metrics` accumulator and ``score`` on arrays/generators.

:class:`Metrics` is for training loops (the torchmetrics pattern)::

    m = facemetrics.Metrics("fid,kid", real="ref.npz", device="cuda")   # REAL read once (cached)
    for batch in loader_of_generated_uint8_images:
        m.update(batch)              # preprocess + network now; float64 FID sums, KID/IS rows kept
    record = m.compute()             # the record facemetrics.score returns
    m.reset()                        # next evaluation (REAL is kept)

Numbers equal :func:`facemetrics.score` on the same images (a folder of their
PNGs, the array, ...): every image goes through the same preprocessor, the
network sees the same batches of ``batch_size`` images however the updates are
split (a partial batch waits for the next update or for :meth:`Metrics.compute`),
FID comes from float64 sums Σx, Σxxᵀ, and the record is built by the same code
(:func:`facemetrics.pipeline.sides.inception_results`). Only FID, KID and IS are available
(face and text metrics need a pairs manifest naming files).

Under torchrun (or inside a script whose process group is initialised) each rank
``update``s with its own images; :meth:`Metrics.compute` sums the statistics with
``all_reduce`` and gathers KID/IS rows and pixel hashes in rank order, so every
rank gets the record a single process would get from rank 0's images followed
by rank 1's, and so on. Every rank must call ``compute`` (it is a collective).

:func:`stream_generated` is how the planner (:mod:`facemetrics.pipeline.planner`) runs a
:class:`~facemetrics.imaging.inputs.Generated` side of :func:`facemetrics.score`: each
rank generates its block and streams it through the accumulator used by :class:`Metrics`
(arrays and lists take the ordinary decode pass).
"""
from __future__ import annotations

import dataclasses
import warnings as _warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from facemetrics.pipeline.distributed import DistContext, session, shard_bounds, shared_error
from facemetrics.errors import DistributedError, FacemetricsError
from facemetrics.extractors.base import FeatureExtractor
from facemetrics.imaging.inputs import Generated, Images, PixelSource, as_images, is_path, pixel_digest, pixels_key, \
    record_kind, resolve_input
from facemetrics.stats import FeatureStats

#: metrics available for in-memory images
STREAM_METRICS = ("fid", "kid", "is")


class StreamSide:
    """One side accumulated from pushed batches of in-memory images (this rank's part).

    Keeps float64 n, Σx, Σxxᵀ of the ``pool`` output, the rows of the outputs
    named in ``keep`` (``"pool"`` for KID, ``"logits"`` for IS) and the
    :func:`~facemetrics.imaging.inputs.pixel_digest` of every image, in arrival order.
    Images are preprocessed in ``workers`` threads and passed to the network in
    batches of exactly ``batch_size`` (the last one at :meth:`flush`), as
    :func:`facemetrics.pipeline.features.extract` batches a folder.
    """

    def __init__(self, ex: FeatureExtractor, *, batch_size: int, device: str, keep: Sequence[str] = (),
                 workers: int | None = None) -> None:
        from facemetrics.pipeline.features import worker_count

        if batch_size < 1:
            raise FacemetricsError("batch size must be at least 1", "batch_size")
        self.ex, self.batch_size, self.device, self.keep = ex, int(batch_size), device, tuple(keep)
        self.workers = int(worker_count(workers))
        if self.workers < 1:
            raise FacemetricsError("workers must be at least 1", "workers")
        self._prep = ex.preprocessor()
        self._loaded = False
        self.reset()

    def reset(self) -> None:
        """Forget every image added so far."""
        self._stats: FeatureStats | None = None
        self._rows: dict[str, list[np.ndarray]] = {k: [] for k in self.keep}
        self._digests: list[str] = []
        self._pending: list[dict[str, np.ndarray]] = []

    @property
    def n_local(self) -> int:
        """Images added on this rank since the last :meth:`reset`."""
        return len(self._digests)

    def add(self, images: Images) -> None:
        """Hash and preprocess ``images``; run the network on every full batch."""
        def one(i: int) -> tuple[str, dict[str, np.ndarray]]:
            img = images.get(i)
            return pixel_digest(img), self._prep(img)

        if self.workers > 1 and len(images) > 1:
            with ThreadPoolExecutor(max_workers=min(self.workers, len(images))) as pool:
                done = list(pool.map(one, range(len(images))))
        else:
            done = [one(i) for i in range(len(images))]
        for digest, item in done:
            self._digests.append(digest)
            self._pending.append(item)
            if len(self._pending) >= self.batch_size:
                self.flush()

    def flush(self) -> None:
        """Run the network on the images still waiting for a full batch."""
        if not self._pending:
            return
        if not self._loaded:  # weights are loaded when first used
            self.ex.load(self.device)
            self._loaded = True
        items, self._pending = self._pending, []
        out = {k: np.asarray(v) for k, v in self.ex.forward(self.ex.collate(items)).items()}
        if "pool" not in out:
            raise FacemetricsError(f"extractor {self.ex.name} gave no 'pool' output")
        if self._stats is None:
            self._stats = FeatureStats.empty(out["pool"].shape[1])
        self._stats.update(out["pool"])
        for k in self.keep:
            self._rows[k].append(out[k])

    def _reduced_stats(self, ctx: DistContext, param: str) -> FeatureStats:
        local = self._stats
        if not ctx.active:
            assert local is not None
            return FeatureStats(local.n, local.sum.copy(), local.sum_outer.copy(), {})
        dims = ctx.gather_objects(None if local is None else local.dims, f"{param} feature dimensions")
        known = {d for d in dims if d is not None}
        if len(known) != 1:
            raise DistributedError(f"{ctx.label()}: ranks disagree on the feature dimensions of {param}: {dims}")
        d = known.pop()
        st = local if local is not None else FeatureStats.empty(d)
        flat = np.concatenate([[float(st.n)], st.sum, st.sum_outer.ravel()])
        tot = ctx.all_reduce_sum(flat, f"summing {param} statistics")
        return FeatureStats(int(round(tot[0])), tot[1:1 + d].copy(), tot[1 + d:].reshape(d, d).copy(), {})

    def _gathered(self, ctx: DistContext, key: str, param: str) -> np.ndarray | None:
        if key not in self.keep:
            return None
        local = np.concatenate(self._rows[key]) if self._rows[key] else None
        return ctx.gather_rows(local, f"gathering {param} {key}") if ctx.active else local

    def finish(self, ctx: DistContext, param: str, kind: str, label: str | None = None):
        """The whole side (all ranks) as :class:`~facemetrics.pipeline.sides.SideFeatures` (a collective under torchrun).

        ``label`` (the record's ``path``) defaults to ``"<stream: N images>"``.
        """
        from facemetrics.pipeline.sides import SideFeatures

        self.flush()
        digests = [d for part in ctx.gather_objects(self._digests, f"collecting {param} hashes") for d in part]
        label = label or f"<stream: {len(digests)} images>"
        if len(digests) < 2:
            raise shared_error(f"{param} {label}: fewer than 2 images ({len(digests)} given)", param)
        st = self._reduced_stats(ctx, param)
        if st.n != len(digests):
            raise DistributedError(f"{ctx.label()}: the summed statistics count {st.n} images but {len(digests)} "
                                   "were added; refusing to use partial data")
        key = pixels_key(digests)
        st.meta = {"fingerprint": self.ex.fingerprint(), "content_sha256": key, "source": label}
        return SideFeatures(label, kind, key, len(digests), st, self._gathered(ctx, "pool", param),
                            self._gathered(ctx, "logits", param), [])


def _keep(ex: FeatureExtractor, features: bool, logits: bool) -> list[str]:
    return (["pool"] if features else []) + (["logits"] if logits and "logits" in ex.outputs else [])


def stream_generated(gen: Generated, ex: FeatureExtractor, param: str, opts: dict, ctx: DistContext, *,
                      features: bool, logits: bool):
    """A :class:`Generated` side: this rank generates its block of ``gen.n`` and streams it."""
    from tqdm import tqdm

    acc = StreamSide(ex, batch_size=opts["batch_size"], device=opts["device"], keep=_keep(ex, features, logits),
                     workers=opts.get("workers"))
    a, b = shard_bounds(gen.n, ctx.rank, ctx.world)

    def work() -> None:
        bar = tqdm(total=b - a, desc=f"{param.lower()} {ex.name} (generating)", unit="img",
                   disable=not opts.get("progress"), leave=False)
        for imgs in gen.batches(b - a, param):
            acc.add(imgs)
            bar.update(imgs.n)
        acc.flush()
        bar.close()

    ctx.run_agreed(f"generating {param}", work)
    return acc.finish(ctx, param, "generator", gen.label)


def side_features(x: str | PixelSource | Generated, ex: FeatureExtractor, param: str, opts: dict,
                  ctx: DistContext, *, features: bool, logits: bool):
    """:class:`~facemetrics.pipeline.sides.SideFeatures` of a path, an in-memory source or a generator."""
    from facemetrics.pipeline.sides import load_side, side_features as inception_side
    from facemetrics.pipeline.side import extract_side

    if isinstance(x, Generated):
        return stream_generated(x, ex, param, opts, ctx, features=features, logits=logits)
    if isinstance(x, PixelSource):
        side = extract_side(x, [ex], ctx, param=param, desc=f"{param.lower()} {ex.name}", **opts)
        return dataclasses.replace(inception_side(side, ex, param, features=features, logits=logits),
                                   kind=record_kind(x))
    return load_side(x, ex, param, opts, ctx, features=features, logits=logits)


def check_stream_metrics(wanted: Sequence[str], what: str) -> None:
    """Refuse face/text metrics for in-memory images, saying what is supported."""
    other = [m for m in wanted if m not in STREAM_METRICS]
    if other:
        raise FacemetricsError(
            f"{', '.join(other)} need a pairs manifest naming each generated image's file, which {what} does not "
            f"have; in-memory images support {', '.join(STREAM_METRICS)} only. Save the images to a folder "
            "(with a pairs.jsonl) and score the folder for those metrics", "--metrics")


def build_inception_record(ctx: DistContext, inc: list[str], rl, fk, ex: FeatureExtractor, opts: Any,
                           notes: list[str]) -> dict[str, Any]:
    """The record of Inception metrics ``inc`` from REAL ``rl`` (or None) and FAKE ``fk`` (as ``score`` builds it).

    ``opts``: the :class:`~facemetrics.options.ScoreOptions` (preset, seed, KID/IS settings, label).
    """
    from facemetrics.pipeline.sides import inception_results
    from facemetrics.record import build_record, source_info

    fp = ex.fingerprint()
    from facemetrics.pipeline.sides import approximate_protocol

    protocol = {"preset": opts.preset, "extractor": fp.get("extractor"), "weights_sha256": fp.get("weights_sha256"),
                "dims": fk.stats.dims, "seed": opts.seed, "network": fp.get("network"), **approximate_protocol(fp)}
    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        results = ctx.on_main("computing FID/KID/IS", lambda: inception_results(inc, rl, fk, ex, opts))
    notes = list(dict.fromkeys([*notes, *(str(w.message) for w in caught)]))
    real_info = source_info(rl.path, rl.kind, rl.n, rl.content_sha256) if rl is not None else None
    fake_info = source_info(fk.path, fk.kind, fk.n, fk.content_sha256)
    failed = {"real": rl.failed if rl is not None else [], "fake": fk.failed}
    return ctx.on_main("building the record", lambda: build_record(
        real=real_info, fake=fake_info, protocol=protocol, metrics=results, warnings=notes, failed_images=failed,
        label=opts.label))


class Metrics:
    """FID/KID/IS of images pushed batch by batch, against a REAL side read once (see module docstring).

    ``metrics``: "fid", "kid", "is" or a comma list. ``real``: an image folder,
    .zip, statistics .npz (FID; with ``--features`` also KID), or in-memory images
    (see :mod:`facemetrics.imaging.inputs`); not needed for IS alone. It is extracted (or
    read from the feature cache) when the accumulator is created, on every rank.
    The other options are :func:`facemetrics.score`'s (:class:`~facemetrics.options.ScoreOptions`
    fields as keywords, or ``options=``); ``progress`` defaults to False here
    (training loops have their own).
    """

    def __init__(self, metrics: str | Sequence[str] = "fid", real: Any = None, *, options: Any = None,
                 **kwargs: Any) -> None:
        import facemetrics.options as O
        from facemetrics.imaging.resize import check_preset
        from facemetrics.metrics.registry import parse_metrics
        from facemetrics.pipeline.sides import check_device, load_inception_extractor

        if options is None:
            kwargs.setdefault("progress", False)  # training loops have their own
        if "device" in kwargs:
            kwargs["device"] = str(kwargs["device"])  # a torch.device too
        o = O.build(O.ScoreOptions, options, {**kwargs, "metrics": metrics if isinstance(metrics, str)
                                               else ",".join(metrics)})
        self.wanted = parse_metrics(o.metrics)
        check_stream_metrics(self.wanted, "the Metrics accumulator")
        check_preset(o.preset)
        self.device = check_device(o.device)
        self._opts = o
        opts = dict(batch_size=o.batch_size, workers=o.workers, device=self.device, cache=o.cache, strict=o.strict,
                    progress=o.progress, workers_kind=o.workers_kind)
        need_real = "fid" in self.wanted or "kid" in self.wanted
        if need_real and real is None:
            raise FacemetricsError("real is missing: FID and KID compare with a REAL side (an image folder, .zip, "
                                   "statistics .npz or uint8 images)", "real")
        with _warnings.catch_warnings(record=True) as caught, session(self.device) as ctx:
            _warnings.simplefilter("always")
            opts["progress"] = o.progress and ctx.is_main
            self._ex, self._fp = ctx.run_agreed("finding the feature extractor", lambda: load_inception_extractor(
                self.wanted, o.extractor, o.preset, o.inception_weights, o.precision, o.resize_on))
            rows = "kid" in self.wanted or ("fid" in self.wanted and bool(o.ci))  # FID's interval needs rows
            self._real = side_features(resolve_input(real, "REAL"), self._ex, "REAL", opts, ctx,
                                       features=rows, logits=False) if need_real else None
        self._notes = [str(w.message) for w in caught]
        self._fake = StreamSide(self._ex, batch_size=o.batch_size, device=self.device, workers=o.workers,
                                keep=_keep(self._ex, rows, "is" in self.wanted))

    @property
    def n(self) -> int:
        """Images added on this rank since creation or the last :meth:`reset`."""
        return self._fake.n_local

    def update(self, images: Any) -> None:
        """Add a batch: a uint8 array/tensor N×H×W×3 or N×3×H×W, or a list of PIL images / H×W×3 arrays."""
        self._fake.add(as_images(images, "images"))

    def compute(self) -> dict[str, Any]:
        """The record of every image added so far (all ranks under torchrun; a collective there).

        May be called again after more updates; the network first runs on any
        partial batch, so later updates start a new batch.
        """
        with session(self.device) as ctx:
            with _warnings.catch_warnings(record=True) as caught:
                _warnings.simplefilter("always")
                fk = self._fake.finish(ctx, "FAKE", "stream")
            return build_inception_record(ctx, self.wanted, self._real, fk, self._ex, self._opts,
                                          notes=self._notes + [str(w.message) for w in caught])

    def reset(self) -> None:
        """Forget the generated images (REAL is kept)."""
        self._fake.reset()
