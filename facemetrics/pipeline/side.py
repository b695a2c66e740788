"""One side (REAL, FAKE or a stats folder) extracted once for all its extractors, on one or many ranks.

:func:`extract_side` is the single decode pass of a side: every requested
extractor (Inception, face embedder, CLIP image tower, ...) is fed from the same
decoded images. Under torchrun each rank extracts its contiguous block of the
file list (:func:`facemetrics.pipeline.distributed.shard_names`); the :class:`Side` it
returns then gives

* :meth:`Side.stats`: float64 sufficient statistics of one output, summed over
  the ranks with ``all_reduce``;
* :meth:`Side.rows`: per-image rows of one output, gathered in file order (only
  when a metric needs them whole: KID, IS, paired metrics);
* :meth:`Side.extraction`: a whole-side :class:`~facemetrics.pipeline.features.Extraction`
  of one extractor (names, failures, rows in file order), for metric families
  that take features from the shared pass.

Cache: each rank's block is extracted as its own image source, so the feature
cache holds one entry per block (content of the block's files + extractor
fingerprint): a re-run with the same number of processes (or the matching
``--shard I/N`` job) reuses them, a rank that finished before another one died
does not redo its work, and no entry ever mixes files of different blocks. The
side's ``content_key`` is nevertheless that of all its files (assembled from the
per-file digests of every rank), equal to a single-process run's.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np

from facemetrics.pipeline.distributed import SINGLE, DistContext, names_digest, shard_names
from facemetrics.errors import DistributedError, FacemetricsError
from facemetrics.extractors.base import FeatureExtractor
from facemetrics.pipeline.features import Extraction, extract
from facemetrics.imaging.images import ImageSource, key_from_digests


@dataclass
class Side:
    source: ImageSource
    #: usable images of the whole side, file order (the same on every rank)
    names: list[str]
    #: unreadable images of the whole side, file order
    failed: list[tuple[str, str]]
    #: this rank's own extraction (a block of the side's files)
    local: Extraction
    #: content key of all the side's files (equal to a single-process run's)
    content_key: str
    #: per-file sha256 in ``source.names`` order (a zip: one, of the archive)
    digests: list[str]
    ctx: DistContext = SINGLE
    _rows: dict[tuple[str, str], np.ndarray] = field(default_factory=dict, repr=False)

    @property
    def n(self) -> int:
        return len(self.names)

    def local_rows(self, extractor: str, output: str) -> np.ndarray | None:
        return self.local.outputs.get(extractor, {}).get(output)

    def rows(self, extractor: str, output: str) -> np.ndarray | None:
        """Rows of ``output`` for every usable image of the side, in file order (gathered under torchrun)."""
        key = (extractor, output)
        if key not in self._rows:
            local = self.local_rows(extractor, output)
            if not self.ctx.active:
                if local is None:
                    return None
                self._rows[key] = local
            else:
                have = self.ctx.gather_objects(local is not None or not self.local.names,
                                               f"{extractor}/{output} availability")
                if not all(have):
                    return None
                rows = self.ctx.gather_rows(local, f"gathering {extractor}/{output}")
                if len(rows) != self.n:
                    raise DistributedError(f"{self.ctx.label()}: gathered {len(rows)} rows of {extractor}/{output} "
                                           f"for {self.n} images; refusing to use partial data")
                self._rows[key] = rows
        return self._rows[key]

    def stats(self, extractor: str, output: str = "pool", meta: dict[str, Any] | None = None):
        """Float64 n, Σx, Σxxᵀ of ``output`` over the whole side (``all_reduce`` over the ranks)."""
        from facemetrics.stats import FeatureStats

        local = self.local_rows(extractor, output)
        if not self.ctx.active:
            if local is None:
                raise FacemetricsError(f"extractor {extractor} gave no {output!r} output")
            return FeatureStats.from_features(local, meta)
        dims = self.ctx.gather_objects(None if local is None else int(local.shape[1]), f"{output} dimensions")
        known = {d for d in dims if d is not None}
        if len(known) != 1:
            raise DistributedError(f"{self.ctx.label()}: ranks disagree on the dimensions of {extractor}/{output}: "
                                   f"{dims}")
        d = known.pop()
        st = FeatureStats.from_features(local, meta) if local is not None and len(local) else \
            FeatureStats.empty(d, meta)
        flat = np.concatenate([[float(st.n)], st.sum, st.sum_outer.ravel()])
        tot = self.ctx.all_reduce_sum(flat, f"summing {extractor}/{output} statistics")
        n = int(round(tot[0]))
        if n != self.n:
            raise DistributedError(f"{self.ctx.label()}: the summed statistics count {n} images but the ranks "
                                   f"reported {self.n} usable ones; refusing to use partial data")
        return FeatureStats(n, tot[1:1 + d].copy(), tot[1 + d:].reshape(d, d).copy(), dict(meta or {}))

    def extraction(self, extractor: str) -> Extraction:
        """The whole side's :class:`Extraction` for one extractor (rows gathered in file order)."""
        outs = self.local.outputs.get(extractor, {})
        names_out = self.ctx.gather_objects(sorted(outs), f"{extractor} outputs") if self.ctx.active else [sorted(outs)]
        keys = next((k for k in names_out if k), [])
        full = {k: self.rows(extractor, k) for k in keys}
        return Extraction(list(self.names), list(self.failed), {extractor: {k: v for k, v in full.items()
                                                                            if v is not None}},
                          self.content_key, {}, list(self.digests))


def _empty_extraction(source: ImageSource, extractors: Sequence[FeatureExtractor]) -> Extraction:
    return Extraction([], [], {ex.name: {} for ex in extractors}, key_from_digests(source.kind, [], [""]
                                                                                    if source.kind == "zip" else []))


def extract_side(source: ImageSource, extractors: Sequence[FeatureExtractor], ctx: DistContext = SINGLE, *,
                 param: str = "images", **opts: Any) -> Side:
    """One decode pass of ``source`` for all ``extractors``; under torchrun each rank does its block.

    ``opts`` go to :func:`facemetrics.pipeline.features.extract` (batch_size, workers,
    device, cache, strict, progress, desc, cache_root, workers_kind). One rank's
    failure (e.g. an unreadable image under ``strict``) stops every rank with
    an error naming it.
    """
    if not ctx.active:
        res = extract(source, list(extractors), **opts)
        return Side(source, list(res.names), list(res.failed), res, res.content_key, list(res.digests), ctx)

    ctx.check_same(f"the images of {param} ({source.root})",
                   (len(source.names), names_digest(source.names)[:16]), param)
    ctx.check_same("the feature extractors", [ex.fingerprint_key()[:16] for ex in extractors])
    mine = shard_names(source.names, ctx.rank, ctx.world)
    sub = source.with_names(mine)
    local_opts = dict(opts)
    if local_opts.get("desc"):
        local_opts["desc"] = f"{local_opts['desc']} [{ctx.rank}/{ctx.world}]"

    def work() -> Extraction:
        return extract(sub, list(extractors), **local_opts) if mine else _empty_extraction(sub, extractors)

    local = ctx.run_agreed(f"extracting {param}", work)
    parts = ctx.gather_objects((len(mine), local.names, local.failed, local.digests), f"collecting {param} results")
    names: list[str] = []
    failed: list[tuple[str, str]] = []
    digests: list[str] = []
    for r, (n_files, nm, fl, dg) in enumerate(parts):
        names.extend(nm)
        failed.extend(tuple(f) for f in fl)
        if source.kind == "zip":
            if n_files and digests and dg[:1] != digests[:1]:
                raise FacemetricsError(f"the ranks read different archives for {param} ({source.root})", param)
            if n_files and not digests:
                digests = list(dg[:1])
        else:
            if len(dg) != n_files:
                raise DistributedError(f"rank {r} reported {len(dg)} file digests for {n_files} files")
            digests.extend(dg)
    if len(names) + len(failed) != len(source.names):
        raise DistributedError(f"{ctx.label()}: ranks reported {len(names)} usable and {len(failed)} unreadable "
                               f"images for {len(source.names)} files of {param}; refusing to use partial data")
    key = key_from_digests(source.kind, source.names, digests if source.kind != "zip" or digests else [""])
    return Side(source, names, failed, local, key, digests, ctx)
