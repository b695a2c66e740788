"""Finding weight files.

Resolution order (first hit wins): explicit path > environment variable > user
cache dir > a copy packaged in another installed package > download from a public
URL (sha256-checked, written atomically into the user cache dir). Nothing here runs
at import time. When everything fails, :class:`WeightsNotFoundError` lists every
place that was tried and the command that fixes it.
"""
from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from dataclasses import dataclass, field
from pathlib import Path

from facemetrics.errors import FacemetricsError, WeightsNotFoundError


def cache_dir() -> Path:
    """The user cache folder: ``$FACEMETRICS_CACHE`` > ``$XDG_CACHE_HOME/facemetrics`` > ``~/.cache/facemetrics``."""
    env = os.environ.get("FACEMETRICS_CACHE")
    if env:
        return Path(env).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".cache"
    return base / "facemetrics"


def package_file(package: str, relative: str) -> Path | None:
    """Path of a file inside an installed package, found without importing it."""
    try:
        spec = importlib.util.find_spec(package)
    except (ImportError, ValueError):
        return None
    if spec is None:
        return None
    roots = list(spec.submodule_search_locations or [])
    if not roots and spec.origin:
        roots = [str(Path(spec.origin).parent)]
    for root in roots:
        p = Path(root) / relative
        if p.is_file():
            return p
    return None


_SHA_MEMO: dict[tuple, str] = {}


def sha256_file(path: str | os.PathLike) -> str:
    """sha256 of a file, memoised in-process and on disk by (path, size, mtime, ctime).

    The on-disk memo is ``<cache_dir>/sha256.json``; under ``--no-cache``
    (:func:`facemetrics.storage.cacheio.cache_enabled` False) it is neither read nor
    written, and a failed write is a :class:`~facemetrics.storage.cacheio.CacheWarning`.
    """
    from facemetrics.storage.cacheio import cache_enabled, try_cache_write

    p = Path(path).resolve()
    st = p.stat()
    key = (str(p), st.st_size, st.st_mtime_ns, st.st_ctime_ns)
    if key in _SHA_MEMO:
        return _SHA_MEMO[key]
    use_disk = cache_enabled()
    memo_path = cache_dir() / "sha256.json"
    disk: dict = {}
    if use_disk:
        try:
            disk = json.loads(memo_path.read_text())
        except (OSError, ValueError):
            pass
    skey = "|".join(map(str, key))
    digest = disk.get(skey)
    if digest is None:
        from facemetrics.storage.digest import file_sha256

        digest = file_sha256(p)
        disk[skey] = digest
        if use_disk:
            from facemetrics.storage.atomic import atomic_write_text

            try_cache_write(memo_path, cache_dir(), lambda: atomic_write_text(memo_path, json.dumps(disk)))
    _SHA_MEMO[key] = digest
    return digest


@dataclass(frozen=True)
class WeightsSpec:
    """Where one kind of weights may be found.

    ``packaged`` lists (package, relative path) copies shipped by other packages;
    ``urls`` are downloaded only when ``sha256`` is known, and checked against it.
    """

    name: str  # human name, e.g. "FID Inception (inception-2015-12-05)"
    filename: str  # file name in the user cache dir
    env_var: str
    packaged: tuple[tuple[str, str], ...] = ()
    urls: tuple[str, ...] = ()
    sha256: str | None = None
    fix_hint: str = ""
    extra_cache_names: tuple[str, ...] = field(default_factory=tuple)


def _download(url: str, dest: Path, sha256: str, timeout: float = 30.0) -> Path:
    import urllib.request

    from facemetrics.storage.atomic import atomic_open

    h = hashlib.sha256()
    with urllib.request.urlopen(url, timeout=timeout) as resp, atomic_open(dest, "wb") as f:
        for chunk in iter(lambda: resp.read(1 << 20), b""):
            h.update(chunk)
            f.write(chunk)
        if h.hexdigest() != sha256:
            raise ValueError(f"sha256 mismatch: got {h.hexdigest()}, expected {sha256}")
    return dest


def resolve_weights(spec: WeightsSpec, explicit: str | os.PathLike | None = None, *,
                    allow_download: bool = True, param: str | None = None) -> Path:
    """Find the weights file described by ``spec`` (see module docstring for the order)."""
    tried: list[str] = []
    if explicit:
        p = Path(explicit).expanduser()
        if p.is_file():
            return p
        raise FacemetricsError(f"{spec.name} weights file not found: {p}", param)
    env = os.environ.get(spec.env_var)
    if env:
        p = Path(env).expanduser()
        if p.is_file():
            return p
        tried.append(f"${spec.env_var} = {p} (no such file)")
    else:
        tried.append(f"${spec.env_var} (not set)")
    for name in (spec.filename, *spec.extra_cache_names):
        p = cache_dir() / name
        if p.is_file():
            return p
        tried.append(f"user cache {p} (absent)")
    for package, rel in spec.packaged:
        p = package_file(package, rel)
        if p is not None:
            return p
        tried.append(f"packaged copy {package}/{rel} (package not installed)")
    if allow_download and spec.sha256 and os.environ.get("FACEMETRICS_OFFLINE", "") in ("", "0"):
        for url in spec.urls:
            try:
                return _download(url, cache_dir() / spec.filename, spec.sha256)
            except Exception as e:  # network errors of every kind end up here
                tried.append(f"download {url} ({type(e).__name__}: {e})")
    elif spec.urls:
        tried.append("download (disabled: offline or no known sha256)")
    lines = "\n  - ".join(tried)
    hint = f"\nFix: {spec.fix_hint}" if spec.fix_hint else ""
    raise WeightsNotFoundError(f"no {spec.name} weights found. Tried:\n  - {lines}{hint}", param)
