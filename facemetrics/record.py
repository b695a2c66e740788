"""The JSON record every result travels in (DESIGN.md §4).

Schema ``facemetrics.record/1``::

    {"schema", "facemetrics_version", "created" (UTC ISO 8601), "label",
     "real": {"path", "kind": "folder"|"zip"|"stats"|"foreign-stats", "n", "content_sha256"},
       (foreign-stats, a mu/sigma .npz of another tool: n and content_sha256 are null, plus
        "sha256" of the file, "protocol_asserted": true, "preset_asserted")
     "fake": {...same...},
     "protocol": {"preset", "extractor", "weights_sha256", "dims", "seed"},
     "metrics": {"<name>": {"value", "higher_is_better", "std", "n", "details",
                  "ci": null | {"lo", "hi", "level", "method", "draws", "seed", ...}}},
       (ci: see facemetrics.metrics.uncertainty; subsampling adds "fraction", "subsample", "of",
        "sides", "rescale", "scale"; a bootstrap adds "resampled", "statistic")
     "warnings": [str], "failed_images": {"real": [[name, reason]], "fake": [...]}}
"""
from __future__ import annotations

import datetime as _dt
import json
import math
from pathlib import Path
from typing import Any

from facemetrics.version import __version__
from facemetrics.result import MetricResult

RECORD_SCHEMA = "facemetrics.record/1"


def _clean(o: Any) -> Any:
    """JSON-safe copy: numpy scalars to Python, NaN/inf to None."""
    import numpy as np

    if isinstance(o, dict):
        return {str(k): _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    if isinstance(o, np.generic):
        o = o.item()
    if isinstance(o, float) and not math.isfinite(o):
        return None
    if isinstance(o, Path):
        return str(o)
    return o


def source_info(path: str | Path, kind: str, n: int, content_sha256: str | None) -> dict[str, Any]:
    return {"path": str(path), "kind": kind, "n": n, "content_sha256": content_sha256}


def build_record(*, real: dict[str, Any] | None, fake: dict[str, Any], protocol: dict[str, Any],
                 metrics: dict[str, MetricResult], warnings: list[str],
                 failed_images: dict[str, list], label: str | None = None) -> dict[str, Any]:
    return _clean({
        "schema": RECORD_SCHEMA,
        "facemetrics_version": __version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "label": label,
        "real": real,
        "fake": fake,
        "protocol": protocol,
        "metrics": {name: m.to_dict() for name, m in metrics.items()},
        "warnings": warnings,
        "failed_images": failed_images,
    })


def dumps(record: dict[str, Any]) -> str:
    return json.dumps(record, indent=2, sort_keys=False) + "\n"


def write_record(record: dict[str, Any], path: str | Path, param: str | None = "--json") -> None:
    """Write the record atomically.

    A failed write raises :class:`~facemetrics.errors.OutputWriteError` naming ``path``.
    """
    from facemetrics.storage.atomic import atomic_write_text, output_file

    with output_file(path, "the JSON record", param):
        atomic_write_text(path, dumps(record))


def format_interval(ci: dict[str, Any] | None, digits: int = 4) -> str:
    """``[lo, hi]`` of a metric's interval (empty without one), e.g. ``[12.31, 14.07]``."""
    if not ci or ci.get("lo") is None or ci.get("hi") is None:
        return ""
    return f"[{ci['lo']:.{digits}g}, {ci['hi']:.{digits}g}]"


def format_table(record: dict[str, Any]) -> str:
    """A readable text table of a record's metrics and protocol."""
    rows = []
    for name, m in record["metrics"].items():
        arrow = "↑" if m["higher_is_better"] else "↓"
        v = m["value"]
        val = "n/a" if v is None else f"{v:.6g}"
        std = "" if m.get("std") is None else f"± {m['std']:.4g}"
        n = "" if m.get("n") is None else f"n={m['n']}"
        rows.append((f"{name} {arrow}", val, format_interval(m.get("ci")), std, n))
    w = [max((len(r[i]) for r in rows), default=0) for i in range(5)]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r) if w[i]).rstrip() for r in rows]
    levels = sorted({m["ci"]["level"] for m in record["metrics"].values() if m.get("ci")})
    if levels:
        lines.append("[lo, hi]: " + "/".join(f"{100 * lv:g}%" for lv in levels) + " intervals (FID/KID: seeded "
                     "subsampling; per-sample metrics: percentile bootstrap; the record's \"ci\" has the protocol)")
    p = record["protocol"]
    sides = []
    for side in ("real", "fake"):
        s = record.get(side)
        if s:
            n = "unknown" if s.get("n") is None else s["n"]
            asserted = ", protocol asserted" if s.get("protocol_asserted") else ""
            sides.append(f"{side}: {s['path']} ({s['kind']}, n={n}{asserted})")
    proto = (f"preset={p.get('preset')} extractor={p.get('extractor')} "
             f"weights={str(p.get('weights_sha256'))[:12]} dims={p.get('dims')} seed={p.get('seed')}")
    return "\n".join(lines + ["", *sides, proto]) + "\n"
