"""On-disk feature cache, keyed by image content and extractor fingerprint.

A cache entry is ``<cache_dir>/features/<content_key[:2]>/<content_key>-<fingerprint_key>.npz``
holding the per-image outputs of one extractor on one image source, the usable
image names in order, and the images that failed to decode. ``content_key``
(:func:`facemetrics.images.content_key`) changes whenever any file's name or bytes
change, and ``fingerprint_key`` whenever the network, its weights or the
preprocessing change, so a stale entry can never be hit. Entries are written
atomically; a corrupt entry is ignored and rewritten.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from facemetrics.atomic import atomic_save_npz
from facemetrics.weights import cache_dir


@dataclass
class CachedFeatures:
    names: list[str]
    failed: list[tuple[str, str]]
    outputs: dict[str, np.ndarray]


class FeatureCache:
    def __init__(self, root: Path | None = None) -> None:
        self.root = Path(root) if root is not None else cache_dir()

    def index_path(self, source_root: Path) -> Path:
        """Per-source file-digest index (the size/mtime/ctime fast path)."""
        h = hashlib.sha256(str(source_root).encode()).hexdigest()[:24]
        return self.root / "index" / f"{h}.json"

    def entry_path(self, content_key: str, fingerprint_key: str) -> Path:
        return self.root / "features" / content_key[:2] / f"{content_key}-{fingerprint_key[:32]}.npz"

    def get(self, content_key: str, fingerprint_key: str) -> CachedFeatures | None:
        path = self.entry_path(content_key, fingerprint_key)
        if not path.is_file():
            return None
        try:
            with np.load(path, allow_pickle=False) as z:
                names = [str(n) for n in z["names"]]
                failed = [tuple(x) for x in json.loads(str(z["failed"]))]
                outputs = {k[4:]: z[k] for k in z.files if k.startswith("out_")}
        except Exception:  # a corrupt or foreign file: ignore, it will be rewritten
            return None
        return CachedFeatures(names, failed, outputs)  # type: ignore[arg-type]

    def put(self, content_key: str, fingerprint_key: str, entry: CachedFeatures) -> None:
        arrays = {f"out_{k}": v for k, v in entry.outputs.items()}
        atomic_save_npz(
            self.entry_path(content_key, fingerprint_key),
            names=np.array(entry.names, dtype=str),
            failed=np.array(json.dumps([list(f) for f in entry.failed])),
            **arrays,
        )
