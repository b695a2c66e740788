"""sha256 of files: the one chunked file hasher every content key, weights check and record uses."""
from __future__ import annotations

import hashlib
import os

#: bytes read at a time
CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike) -> str:
    """Hex sha256 of a file's bytes, read in 1 MiB chunks (no memo: see
    :func:`facemetrics.nets.weights.sha256_file` for the memoised form used for weight files)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()
