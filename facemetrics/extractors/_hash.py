"""sha256 of weight files, memoised by (path, size, mtime).

Interim helper for the face embedders; ``facemetrics.weights.sha256_file`` does
the same job once it lands and should replace this.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

_MEMO: dict[tuple[str, int, int], str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    p = Path(path)
    st = p.stat()
    key = (str(p.resolve()), st.st_size, st.st_mtime_ns)
    hit = _MEMO.get(key)
    if hit is None:
        h = hashlib.sha256()
        with open(p, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
        hit = _MEMO[key] = h.hexdigest()
    return hit
