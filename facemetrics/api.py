"""Python API: :func:`score` and :func:`compute_stats`.

Both take paths and options and return plain data (a record dict, a
:class:`~facemetrics.stats.FeatureStats`); user mistakes raise
:class:`~facemetrics.errors.FacemetricsError`.
"""
from __future__ import annotations

import warnings as _warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.options import ScoreOptions, StatsOptions
from facemetrics.pipeline.sides import (  # noqa: F401  (the API's building blocks, re-exported)
    FOREIGN_STATS_FLAG, SideFeatures, build_feature_extractor, check_device, load_side, side_features)

if TYPE_CHECKING:  # pragma: no cover
    from facemetrics.imaging.images import ImageSource

def parse_metrics(metrics: str | Iterable[str]) -> list[str]:
    """Metric names from ``"fid,kid"`` (see :func:`facemetrics.metrics.registry.parse_metrics`)."""
    from facemetrics.metrics.registry import parse_metrics as parse

    return parse(metrics)


def score(real: Any, fake: Any, *, options: ScoreOptions | None = None, **kwargs: Any) -> dict[str, Any]:
    """Score the images in ``fake`` against ``real`` and return a record (see :mod:`facemetrics.record`).

    ``real`` may be an image folder, a .zip of images or a statistics .npz from
    :func:`compute_stats`; ``fake`` an image folder or .zip. Either side may also be
    in memory (:mod:`facemetrics.imaging.inputs`): a uint8 array/tensor N×H×W×3 or
    N×3×H×W, a list of PIL images or arrays, or :class:`facemetrics.Generated`
    (``Generated(fn, n)``: ``fn(batch_size)`` called until n images); they take the
    same plan and the same resizers as files. Options are the fields of
    :class:`facemetrics.options.ScoreOptions` (the CLI's flags: ``metrics="fid,kid"``,
    ``preset``, ``seed``, ``pairs``, ...), given as keywords or as ``options=``
    (keywords override it). Metric names are those of
    :mod:`facemetrics.metrics.registry`: fid, kid, is (Inception-type extractor),
    fsd, fss (face embedder, need ``pairs``), rprec, clipscore (matcher, need
    ``pairs`` with captions).

    The work is :func:`facemetrics.pipeline.planner.plan` (every check, nothing decoded),
    :func:`~facemetrics.pipeline.planner.run` (each image side decoded once for all the
    extractors it feeds) and :func:`~facemetrics.pipeline.planner.compute`. Under torchrun
    (``torchrun --nproc-per-node K -m facemetrics score ...`` or a script run that
    way) every rank extracts its block of each side, statistics are summed and
    per-image features gathered (see :mod:`facemetrics.pipeline.distributed`), and every rank
    returns the same record; only rank 0 shows progress.
    """
    import facemetrics.options as O
    from facemetrics.storage.cacheio import cache_disabled
    from facemetrics.pipeline.distributed import session
    from facemetrics.imaging.images import pixel_limit
    from facemetrics.metrics.registry import resolve
    from facemetrics.imaging.resize import check_preset
    from facemetrics.metrics.uncertainty import check_level

    from facemetrics.imaging.inputs import is_path, resolve_input

    opts = O.build(ScoreOptions, options, kwargs)
    specs = resolve(opts.metrics)
    check_preset(opts.preset)
    check_device(opts.device)
    check_level(opts.ci, opts.ci_draws)
    if opts.keep_rows and not str(opts.keep_rows).endswith(".npz"):
        raise FacemetricsError(f"--keep-rows must name an .npz file, got {opts.keep_rows}", "--keep-rows")
    if opts.real_stats_preset is not None and not (is_path(real) and Path(real).suffix.lower() == ".npz"):
        raise FacemetricsError(f"{FOREIGN_STATS_FLAG} describes a statistics .npz given as REAL; REAL {real} is "
                               f"not one: drop {FOREIGN_STATS_FLAG}", FOREIGN_STATS_FLAG)
    if opts.keep_rows and not (is_path(real) and is_path(fake)):
        raise FacemetricsError("--keep-rows is for image folders/zips (in-memory sides have no pairs to key "
                               "the rows by)", "--keep-rows")
    real, fake = resolve_input(real, "REAL"), resolve_input(fake, "FAKE")
    # --no-cache: nothing touches the cache folder
    with cache_disabled(not opts.cache), pixel_limit(opts.max_image_pixels), session(opts.device) as ctx:
        return _score(ctx, real, fake, specs, opts)


def _score(ctx, real: Any, fake: Any, specs: list, opts: ScoreOptions) -> dict[str, Any]:
    """plan → run → compute → record, with every Python warning raised on the way kept in the record."""
    from facemetrics.pipeline import planner
    from facemetrics.record import build_record

    with _warnings.catch_warnings(record=True) as caught:
        _warnings.simplefilter("always")
        plan = planner.plan(ctx, real, fake, specs, opts)
        outcome = planner.run(plan)
        results = planner.compute(plan, outcome)
    notes = outcome.notes + [str(w.message) for w in caught]

    def record() -> dict[str, Any]:
        rec = build_record(real=outcome.sources.get("real"), fake=outcome.sources.get("fake"),
                           protocol=plan.protocol, metrics=results, warnings=list(dict.fromkeys(notes)),
                           failed_images=outcome.failed, label=opts.label)
        if opts.keep_rows:  # per-sample values and features for `facemetrics compare`
            from facemetrics.report.compare import write_rows

            rec["rows"] = write_rows(opts.keep_rows, outcome.inputs, results)
        return rec

    # rank 0's record (its warnings and time stamp) is every rank's record
    return ctx.on_main("building the record", record)


def compute_stats(folder: str, *, options: StatsOptions | None = None, **kwargs: Any):
    """Reference statistics of an image folder/zip: returns (FeatureStats, features or None, failed).

    ``shard=(i, n)`` (1-based ``i``) computes the statistics of the i-th of n
    contiguous blocks of the sorted file list only, for batch systems; the
    statistics' ``meta["shard"]`` then records the block (index, count, total
    files, the block's file names and sha256s) so that
    :func:`facemetrics.pipeline.shards.merge_shards` can check and combine the blocks into
    exactly the single-pass statistics. Under torchrun the ranks share the work
    (of the whole folder or of the shard); ``features=False`` skips gathering the
    per-image features there (they are only needed for ``--features``).
    """
    from facemetrics.storage.cacheio import cache_disabled
    from facemetrics.pipeline.distributed import session
    from facemetrics.imaging.images import pixel_limit
    from facemetrics.imaging.resize import check_preset
    from facemetrics.pipeline.side import extract_side

    import facemetrics.options as O

    o = O.build(StatsOptions, options, kwargs)
    shard, features = o.shard, o.features
    check_preset(o.preset)
    check_device(o.device)
    if shard is not None and not 1 <= shard[0] <= shard[1]:
        raise FacemetricsError(f"shard {shard[0]}/{shard[1]} does not exist (shards are numbered 1..{shard[1]})",
                               "--shard")

    # --no-cache: nothing touches the cache folder
    with cache_disabled(not o.cache), pixel_limit(o.max_image_pixels), session(o.device) as ctx:
        ex, src, part = ctx.run_agreed("reading FOLDER", lambda: _stats_inputs(folder, o))
        opts = dict(batch_size=o.batch_size, workers=o.workers, device=ctx.device, cache=o.cache, strict=o.strict,
                    progress=o.progress and ctx.is_main, workers_kind=o.workers_kind)
        side = extract_side(part, [ex], ctx, param="FOLDER", desc=f"folder {ex.name}", **opts)
        if shard is None:
            sf = side_features(side, ex, "FOLDER", features=features, logits=False)
            st = sf.stats
        else:
            sf = _shard_features(side, ex, src, part, shard, features or not ctx.active)
            st = sf.stats
    st.meta["n_failed"] = len(sf.failed)
    return st, (sf.features if features else None), sf.failed


def _stats_inputs(folder: str, o: StatsOptions):
    """(extractor, the folder's source, the part of it this run reads: the shard or all)."""
    from facemetrics.imaging.images import scan
    from facemetrics.pipeline.distributed import shard_names

    ex = build_feature_extractor(o.extractor, o.preset, o.inception_weights, o.precision, o.resize_on)
    ex.fingerprint()  # finds the weights
    src = scan(folder, "FOLDER")
    part = src
    if o.shard is not None:
        i, n = o.shard
        part = src.with_names(shard_names(src.names, i - 1, n))
        if not part.names:
            raise FacemetricsError(f"shard {i}/{n} of {src.root} holds no image: the folder has {len(src)} "
                                   f"image file(s); use at most {len(src)} shards", "--shard")
    return ex, src, part


def _shard_features(side, ex, src, part, shard: tuple[int, int], rows: bool) -> SideFeatures:
    """A shard's statistics (``meta["shard"]`` records the block, see :func:`compute_stats`); ``rows``: keep
    the per-image features."""
    from facemetrics.pipeline.distributed import names_digest

    # a shard may hold 0 or 1 usable images: no covariance, but its sums still merge
    if side.n == 0:
        raise FacemetricsError(f"shard {shard[0]}/{shard[1]} of {src.root}: none of its {len(part)} "
                               "images could be read", "FOLDER")
    st = side.stats(ex.name, "pool", {"fingerprint": ex.fingerprint(), "content_sha256": side.content_key,
                                       "source": str(src.root)})
    feats = side.rows(ex.name, "pool") if rows else None
    sf = SideFeatures(str(src.root), src.kind, side.content_key, side.n, st, feats, None,
                      [list(f) for f in side.failed])
    st.meta["shard"] = {"index": shard[0], "count": shard[1], "n_files": len(src),
                        "names_sha256": names_digest(src.names), "kind": src.kind,
                        "names": list(part.names), "digests": list(side.digests),
                        "failed": [list(f) for f in side.failed]}
    return sf
