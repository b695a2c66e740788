"""On-disk feature cache, keyed by image content and extractor fingerprint.

A cache entry is ``<cache_dir>/features/<content_key[:2]>/<content_key>-<fingerprint_key>.npz``
holding the per-image outputs of one extractor on one image source, the usable
image names in order, and the images that failed to decode. ``content_key``
(:func:`facemetrics.imaging.images.content_key`) changes whenever any file's name or bytes
change, and ``fingerprint_key`` whenever the network, its weights or the
preprocessing change, so a stale entry can never be hit.

Each entry also stores ``digest`` (:func:`entry_digest`): a sha256 over the
content key, the full fingerprint key and every array's name, dtype, shape and
bytes. An entry whose arrays were changed, or a valid entry copied under another
entry's name, no longer matches the digest of the keys it is read under: it is
ignored with a :class:`~facemetrics.storage.cacheio.CacheWarning` naming it, and the
features are recomputed (and the entry rewritten). The digest guards against
accidents (a stray copy, a script writing the wrong file, bit rot), not against
someone who recomputes it on purpose.

Entries are written atomically; a failed write (full disk, ...) is a warning, not
an error (:mod:`facemetrics.storage.cacheio`); under ``--no-cache`` nothing is read or
written.
"""
from __future__ import annotations

import hashlib
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from facemetrics.storage.atomic import atomic_save_npz
from facemetrics.storage.cacheio import CacheWarning, cache_enabled, try_cache_write
from facemetrics.nets.weights import cache_dir

#: version tag hashed into every entry digest
ENTRY_FORMAT = b"facemetrics.storage.cache-entry/2"


@dataclass
class CachedFeatures:
    names: list[str]
    failed: list[tuple[str, str]]
    outputs: dict[str, np.ndarray]


def entry_digest(content_key: str, fingerprint_key: str, arrays: Mapping[str, np.ndarray]) -> str:
    """sha256 of ``ENTRY_FORMAT``, both keys and, by sorted name, each array's name, dtype, shape and C-order bytes.

    Fields are NUL-separated; the dtype is numpy's ``dtype.str`` (byte order
    included, e.g. ``<f4``, ``<U12``), the shape a JSON list.
    """
    h = hashlib.sha256(ENTRY_FORMAT)
    h.update(b"\0" + content_key.encode() + b"\0" + fingerprint_key.encode())
    for name in sorted(arrays):
        a = np.asarray(arrays[name])
        h.update(b"\0" + json.dumps([name, a.dtype.str, list(a.shape)]).encode() + b"\0")
        h.update(np.ascontiguousarray(a).tobytes())
    return h.hexdigest()


class FeatureCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()

    def index_path(self, source_root: Path) -> Path:
        """Per-source file-digest index (the size/mtime/ctime fast path)."""
        h = hashlib.sha256(str(source_root).encode()).hexdigest()[:24]
        return self.root / "index" / f"{h}.json"

    def entry_path(self, content_key: str, fingerprint_key: str) -> Path:
        return self.root / "features" / content_key[:2] / f"{content_key}-{fingerprint_key[:32]}.npz"

    def _reject(self, path: Path, why: str) -> None:
        warnings.warn(CacheWarning(f"feature cache entry {path} {why}; ignoring it and recomputing the features "
                                   "(the entry will be rewritten)"), stacklevel=3)

    def get(self, content_key: str, fingerprint_key: str) -> CachedFeatures | None:
        """The entry stored under the two keys, or None (absent, unreadable, or not matching its digest)."""
        if not cache_enabled():
            return None
        path = self.entry_path(content_key, fingerprint_key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except Exception as e:  # a corrupt or foreign file: ignore, it will be rewritten
            self._reject(path, f"is unreadable ({type(e).__name__}: {e})")
            return None
        stored = arrays.pop("digest", None)
        if stored is None:
            self._reject(path, "has no digest (written by an older facemetrics or by another program)")
            return None
        if str(stored) != entry_digest(content_key, fingerprint_key, arrays):
            self._reject(path, "does not match its digest (its arrays were changed, or it is a copy of another "
                               "entry)")
            return None
        try:
            names = [str(n) for n in arrays["names"]]
            failed = [tuple(x) for x in json.loads(str(arrays["failed"]))]
        except (KeyError, ValueError, TypeError) as e:
            self._reject(path, f"is malformed ({type(e).__name__}: {e})")
            return None
        outputs = {k[4:]: v for k, v in arrays.items() if k.startswith("out_")}
        return CachedFeatures(names, failed, outputs)  # type: ignore[arg-type]

    def put(self, content_key: str, fingerprint_key: str, entry: CachedFeatures) -> bool:
        """Write the entry atomically with its digest; False (after a warning) when the write failed."""
        arrays: dict[str, np.ndarray] = {f"out_{k}": np.asarray(v) for k, v in entry.outputs.items()}
        arrays["names"] = np.array(entry.names, dtype=str)
        arrays["failed"] = np.array(json.dumps([list(f) for f in entry.failed]))
        digest = np.array(entry_digest(content_key, fingerprint_key, arrays))
        path = self.entry_path(content_key, fingerprint_key)
        return try_cache_write(path, self.root, lambda: atomic_save_npz(path, digest=digest, **arrays))
