"""Sharded statistics for batch systems: ``stats --shard I/N`` and ``merge-stats``.

A job array without a process group runs ``facemetrics stats FOLDER --shard I/N
-o partI.npz`` for I = 1..N (1-based, like most batch systems' array indices);
shard I holds the I-th contiguous block of the sorted file list (the same block
rank I-1 of an N-process torchrun handles, see
:func:`facemetrics.pipeline.distributed.shard_bounds`). Each shard file is an ordinary
statistics .npz whose ``meta["shard"]`` records: ``index`` (I), ``count`` (N),
``n_files`` (files in the whole folder), ``names_sha256`` (of the whole sorted
file list), ``kind`` (folder/zip), ``names`` and ``digests`` (the block's files
and their sha256; a zip: the archive's), ``failed`` (unreadable ones), besides
the extractor ``fingerprint`` every statistics file carries.

:func:`merge_shards` refuses, with a message naming the files: non-shard files,
different protocols (extractor fingerprint: network, weights sha256, preset,
layer), different folders or splits (``n_files``, ``names_sha256``, ``count``),
the same shard twice or files claimed by two shards (overlap), and missing
shards (named by index). Otherwise it sums n, Σx, Σxxᵀ in shard order and
concatenates per-image features (when every shard has them) in file order; the
result equals a single ``facemetrics stats FOLDER`` pass (same n, sums equal up
to float64 summation order, the same ``content_sha256``).
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.protocol import protocol_differences
from facemetrics.stats import FeatureStats

_SPEC = re.compile(r"^\s*(-?\d+)\s*/\s*(-?\d+)\s*$")


def parse_shard(spec: str, param: str = "--shard") -> tuple[int, int]:
    """Parse ``"I/N"`` (1 ≤ I ≤ N) into (I, N); anything else is a :class:`FacemetricsError`."""
    m = _SPEC.match(spec or "")
    if not m:
        raise FacemetricsError(f"expected I/N with whole numbers 1 <= I <= N (e.g. 3/16), got {spec!r}", param)
    i, n = int(m.group(1)), int(m.group(2))
    if n < 1:
        raise FacemetricsError(f"the number of shards must be at least 1, got {spec!r}", param)
    if i == 0:
        raise FacemetricsError(f"shards are numbered from 1: use 1/{n} .. {n}/{n}, got {spec!r}", param)
    if not 1 <= i <= n:
        raise FacemetricsError(f"shard {i} does not exist: shards are 1/{n} .. {n}/{n}, got {spec!r}", param)
    return i, n


@dataclass
class ShardFile:
    path: Path
    stats: FeatureStats
    features: np.ndarray | None

    @property
    def info(self) -> dict:
        return self.stats.meta["shard"]

    @property
    def index(self) -> int:
        return int(self.info["index"])

    @property
    def usable_names(self) -> list[str]:
        bad = {f[0] for f in self.info.get("failed", [])}
        return [n for n in self.info["names"] if n not in bad]


def load_shard(path: str | Path, param: str = "SHARDS") -> ShardFile:
    st, feats = FeatureStats.load(path, param)
    info = st.meta.get("shard")
    if not isinstance(info, dict) or not {"index", "count", "n_files", "names_sha256", "names"} <= set(info):
        raise FacemetricsError(f"{path} is not a shard (make shards with `facemetrics stats FOLDER --shard I/N`)",
                               param)
    return ShardFile(Path(path), st, feats)


def _protocol(sf: ShardFile) -> dict:
    return sf.stats.meta.get("fingerprint", {})


def merge_shards(paths: Sequence[str | Path], param: str = "SHARDS") -> tuple[FeatureStats, np.ndarray | None]:
    """Check and combine shard files into the statistics of the whole folder (see module docstring)."""
    if not paths:
        raise FacemetricsError("no shard files given", param)
    shards = [load_shard(p, param) for p in paths]
    ref = shards[0]
    _check_one_protocol(shards, param)
    _check_one_split(shards, param)
    ordered = _in_order(shards, param)
    total = ordered[0].stats
    for sf in ordered[1:]:
        total = total.merge(sf.stats)
    feats = _merged_features(ordered, param)
    failed = [f for sf in ordered for f in sf.info.get("failed", [])]
    meta = {k: v for k, v in ref.stats.meta.items() if k not in ("shard", "content_sha256", "n_failed")}
    meta.update(content_sha256=_content_key(ordered, param), n_failed=len(failed),
                merged_from={"count": int(ref.info["count"]), "files": [str(sf.path) for sf in ordered]})
    total.meta = meta
    return total, feats


def _check_one_protocol(shards: list[ShardFile], param: str) -> None:
    ref = shards[0]
    for sf in shards[1:]:
        a, b = _protocol(ref), _protocol(sf)
        differ = protocol_differences(a, b)
        if differ:
            diffs = "; ".join(f"{k}: {a.get(k)!r} vs {b.get(k)!r}" for k in differ)
            raise FacemetricsError(f"{sf.path} was made with another protocol than {ref.path} ({diffs})", param)
        if sf.stats.dims != ref.stats.dims:
            raise FacemetricsError(f"{sf.path} has {sf.stats.dims}-d statistics, {ref.path} {ref.stats.dims}-d",
                                   param)


def _check_one_split(shards: list[ShardFile], param: str) -> None:
    ref = shards[0]
    for key, what in (("names_sha256", "folder (file list)"), ("n_files", "folder size"), ("kind", "source kind"),
                      ("count", "number of shards")):
        for sf in shards[1:]:
            if sf.info.get(key) != ref.info.get(key):
                raise FacemetricsError(
                    f"{sf.path} and {ref.path} come from a different {what}: {key} {sf.info.get(key)!r} vs "
                    f"{ref.info.get(key)!r} (shard {sf.index}/{sf.info['count']} vs {ref.index}/{ref.info['count']})",
                    param)


def _in_order(shards: list[ShardFile], param: str) -> list[ShardFile]:
    """Shards 1..N, checked for overlap, completeness and the folder's file list."""
    from facemetrics.pipeline.distributed import names_digest

    ref = shards[0]
    count = int(ref.info["count"])
    by_index: dict[int, ShardFile] = {}
    for sf in shards:
        other = by_index.get(sf.index)
        if other is not None:
            raise FacemetricsError(f"overlapping shards: {other.path} and {sf.path} both hold shard "
                                   f"{sf.index}/{count}", param)
        by_index[sf.index] = sf
    seen: dict[str, Path] = {}
    for sf in shards:
        for n in sf.info["names"]:
            if n in seen:
                raise FacemetricsError(f"overlapping shards: {seen[n]} and {sf.path} both hold {n!r}", param)
            seen[n] = sf.path
    missing = [i for i in range(1, count + 1) if i not in by_index]
    if missing:
        listed = ", ".join(f"{i}/{count}" for i in missing[:20]) + (" ..." if len(missing) > 20 else "")
        raise FacemetricsError(f"missing {len(missing)} of {count} shards: {listed} (run `facemetrics stats "
                               f"{ref.stats.meta.get('source', 'FOLDER')} --shard I/{count}` for each)", param)
    ordered = [by_index[i] for i in range(1, count + 1)]
    names = [n for sf in ordered for n in sf.info["names"]]
    if len(names) != int(ref.info["n_files"]) or names_digest(names) != ref.info["names_sha256"]:
        raise FacemetricsError(f"the shards' files ({len(names)}) are not the folder's {ref.info['n_files']} files "
                               "in order; were the shards made with another version?", param)
    return ordered


def _merged_features(ordered: list[ShardFile], param: str) -> np.ndarray | None:
    """The shards' per-image features in file order (None when no shard has them)."""
    have = [sf.features is not None for sf in ordered]
    if not any(have):
        return None
    if not all(have):
        lacking = ", ".join(str(sf.path) for sf in ordered if sf.features is None)
        raise FacemetricsError(f"some shards carry per-image features and these do not: {lacking} "
                               "(re-run them with --features, or make all without)", param)
    for sf in ordered:
        if len(sf.features) != sf.stats.n:  # type: ignore[arg-type]
            raise FacemetricsError(f"{sf.path}: {len(sf.features)} feature rows for n={sf.stats.n}", param)
    return np.concatenate([sf.features for sf in ordered])  # type: ignore[misc]


def _content_key(ordered: list[ShardFile], param: str) -> str | None:
    """The whole folder's content key from the shards' digests (None when they lack some)."""
    from facemetrics.imaging.images import key_from_digests

    kind = ordered[0].info.get("kind", "folder")
    names = [n for sf in ordered for n in sf.info["names"]]
    if kind == "zip":
        archive = {tuple(sf.info.get("digests", [])) for sf in ordered}
        if len(archive) != 1:
            raise FacemetricsError("the shards were made from different versions of the archive", param)
        digests = list(archive.pop())
    else:
        digests = [d for sf in ordered for d in sf.info.get("digests", [])]
    return key_from_digests(kind, names, digests) if len(digests) == (1 if kind == "zip" else len(names)) else None
