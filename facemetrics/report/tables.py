"""Comparison tables of many records (``facemetrics report``).

Pure functions: records (JSON dicts, schema ``facemetrics.record/1``) → a
:class:`ReportTable` (pandas DataFrames) → markdown / CSV / HTML strings.

* One row per record (run/model), labelled by the record's ``label`` or, when
  it has none, by its file (the parent folder for files named ``metrics.json``).
* One column per metric, headed with ↑ (higher is better) or ↓; cells show
  ``value [lo, hi]`` where the record has an interval (``score --ci``), else
  ``value ± std`` where it has a std; a metric a record lacks is a blank cell.
  The intervals' protocol (level, method, draws, seed) is listed with the column's.
* With comparisons (``facemetrics compare --json`` results), a cell of run B gets
  ``*`` when B differs significantly from A on that metric (p < 1 − level of the
  comparison), and a note under the table says from which run, with the p-value.
* A column never mixes protocols silently. For each metric the protocol is the
  set of fields that change its numbers: the record's preset, extractor,
  extractor weights sha256 and dims (Inception-type metrics), the real image set
  and sample counts, and the protocol entries of the metric's details (matcher,
  face embedder, negatives, folds, splits, subsets, ...). Records whose fields
  differ within a column (by :mod:`facemetrics.protocol`'s rule) are refused with a
  message saying which fields differ for which rows, unless ``force`` is given, in
  which case the differences are listed under the table.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from facemetrics.errors import FacemetricsError
from facemetrics.protocol import comparable

SCHEMA = "facemetrics.record/1"

#: display name, higher_is_better, decimals; known metrics first, in this order
METRIC_INFO: dict[str, tuple[str, bool, int]] = {
    "fid": ("FID", False, 2),
    "kid": ("KID", False, 5),
    "is": ("IS", True, 3),
    "fsd": ("FSD", False, 4),
    "fsd_l1": ("FSD-L1", False, 4),
    "fss": ("FSS", True, 4),
    "rprec": ("R-precision", True, 4),
    "clipscore": ("CLIP score", True, 2),
    "fid_inf": ("FID∞", False, 2),
    "is_inf": ("IS∞", True, 3),
    "precision": ("Precision", True, 4),
    "recall": ("Recall", True, 4),
    "density": ("Density", True, 4),
    "coverage": ("Coverage", True, 4),
    "precision_face": ("Precision (face)", True, 4),
    "recall_face": ("Recall (face)", True, 4),
    "density_face": ("Density (face)", True, 4),
    "coverage_face": ("Coverage (face)", True, 4),
    "fd_face": ("FD (face)", False, 4),
    "kid_face": ("KID (face)", False, 5),
    "vendi_face": ("Vendi (face)", True, 2),
}
#: metrics that do not depend on the record's Inception protocol (preset, extractor, dims)
_NO_RECORD_PROTOCOL = {"fsd", "fsd_l1", "fss", "rprec", "clipscore", "precision_face", "recall_face", "density_face",
                       "coverage_face", "fd_face", "kid_face", "vendi_face"}
#: metrics that do not use the real image set
_NO_REAL = {"is", "rprec", "clipscore"}
#: metric details that are protocol (change the numbers), compared within a column
DETAIL_PROTOCOL_KEYS = (
    "preset", "extractor", "weights_sha256", "dims", "logits",
    "matcher", "embedder", "face_model", "face_align", "norm",
    "n_negatives", "folds", "splits", "subsets", "subset_size", "kernel", "k", "features",
)


@dataclass
class LoadedRecord:
    path: str
    record: dict[str, Any]


@dataclass
class ReportTable:
    """A comparison table: ``values``/``stds`` (float, NaN = missing) indexed by run label,
    ``display`` (strings), column metadata and notes."""

    values: Any  # pandas.DataFrame
    stds: Any  # pandas.DataFrame
    display: Any  # pandas.DataFrame of strings, columns = headers
    metrics: list[str]
    headers: dict[str, str]
    protocols: dict[str, str]  # metric -> shared protocol summary
    notes: list[str] = field(default_factory=list)  # differences accepted with force
    #: significant differences of the comparisons given (``*`` in the cells)
    significance: list[str] = field(default_factory=list)
    #: per metric, per run label: the run's interval
    cis: dict[str, dict[str, dict[str, Any]]] = field(default_factory=dict)


# --------------------------------------------------------------------------- loading

def parse_record(obj: Any, where: str) -> dict[str, Any]:
    """Check one record's shape; raise FacemetricsError naming ``where``."""
    if not isinstance(obj, dict):
        raise FacemetricsError(f"{where}: not a facemetrics record (a JSON object was expected)", "RECORDS")
    schema = obj.get("schema")
    if schema is None:
        raise FacemetricsError(f"{where}: not a facemetrics record (no \"schema\" field)", "RECORDS")
    if schema != SCHEMA:
        if isinstance(schema, str) and schema.startswith("facemetrics.record/"):
            raise FacemetricsError(
                f"{where}: record schema {schema!r} is not one this facemetrics reads ({SCHEMA}); "
                f"use the facemetrics version that wrote it, or re-score", "RECORDS")
        raise FacemetricsError(f"{where}: unknown schema {schema!r} (expected {SCHEMA})", "RECORDS")
    metrics = obj.get("metrics") or {}
    if not isinstance(metrics, dict):
        raise FacemetricsError(f"{where}: \"metrics\" must be an object", "RECORDS")
    for name, m in metrics.items():
        if m is None:
            continue
        if not isinstance(m, dict):
            raise FacemetricsError(f"{where}: metric {name!r} must be an object with a \"value\"", "RECORDS")
        for k in ("value", "std"):
            v = m.get(k)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float))):
                raise FacemetricsError(f"{where}: metric {name!r} has a non-numeric {k} {v!r}", "RECORDS")
    return obj


def _read_json(f: Path) -> Any:
    try:
        return json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as e:
        raise FacemetricsError(f"cannot read record {f}: {e}", "RECORDS") from None
    except json.JSONDecodeError as e:
        raise FacemetricsError(f"{f}: not JSON ({e.msg}, line {e.lineno})", "RECORDS") from None


def _looks_like_record(obj: Any) -> bool:
    return isinstance(obj, dict) and str(obj.get("schema", "")).startswith("facemetrics.record/")


def load_records(paths: list[str | Path]) -> list[LoadedRecord]:
    """Read record files. A folder stands for every record below it: the ``*.json`` files
    whose ``schema`` is a ``facemetrics.record/...`` (other JSON files, e.g. run configs,
    are passed over); a file named explicitly must be a record."""
    found: list[tuple[Path, Any]] = []
    for p in map(Path, paths):
        if p.is_dir():
            inside = [(f, obj) for f in sorted(p.rglob("*.json")) if _looks_like_record(obj := _read_json(f))]
            if not inside:
                raise FacemetricsError(f"no facemetrics records (*.json) under {p}", "RECORDS")
            found.extend(inside)
        elif p.is_file():
            found.append((p, _read_json(p)))
        else:
            raise FacemetricsError(f"record file does not exist: {p}", "RECORDS")
    if not found:
        raise FacemetricsError("no records given", "RECORDS")
    out = []
    seen: set[Path] = set()
    for f, obj in found:
        if f.resolve() in seen:  # the same file named twice (overlapping globs): one row
            continue
        seen.add(f.resolve())
        out.append(LoadedRecord(str(f), parse_record(obj, str(f))))
    return out


# --------------------------------------------------------------------------- protocol

def _short_sha(s: Any) -> Any:
    return s[:12] if isinstance(s, str) and len(s) == 64 else s


def _describe(value: Any) -> str:
    """Readable form of a protocol value (matcher fingerprints summarised)."""
    if isinstance(value, dict):
        if "kind" in value and ("arch" in value or "weights_sha256" in value):
            parts = [str(value.get("kind")), str(value.get("arch") or "")]
            if value.get("pretrained_tag"):
                parts.append(str(value["pretrained_tag"]))
            if value.get("weights_sha256"):
                parts.append(f"weights {_short_sha(value['weights_sha256'])}")
            return " ".join(p for p in parts if p)
        return json.dumps(value, sort_keys=True)
    return str(_short_sha(value))


def metric_protocol(rec: dict[str, Any], metric: str) -> dict[str, str]:
    """Protocol fields of ``metric`` in record ``rec`` (display name -> canonical string)."""
    m = (rec.get("metrics") or {}).get(metric) or {}
    det = m.get("details") or {}
    proto = rec.get("protocol") or {}
    out: dict[str, Any] = {}
    if metric not in _NO_RECORD_PROTOCOL:
        for k in ("preset", "extractor", "weights_sha256", "dims"):
            if proto.get(k) is not None:
                out[k] = proto[k]
    for k in DETAIL_PROTOCOL_KEYS:
        if det.get(k) is not None:
            if k in out and out[k] != det[k]:  # the record and the metric disagree: compare both
                out[f"{k} ({metric} details)"] = det[k]
            else:
                out[k] = det[k]
    real, fake = rec.get("real") or {}, rec.get("fake") or {}
    if metric not in _NO_REAL:
        if real.get("content_sha256"):
            out["real set"] = real["content_sha256"]
        if real.get("n") is not None:
            out["real n"] = real["n"]
    if m.get("n") is not None:
        out["n used"] = m["n"]
    elif fake.get("n") is not None:
        out["fake n"] = fake["n"]
    if m.get("higher_is_better") is not None:
        out["direction"] = "higher is better" if m["higher_is_better"] else "lower is better"
    return {k: json.dumps(v, sort_keys=True) for k, v in out.items()}


def _protocol_check(metric: str, header: str, rows: list[tuple[str, dict[str, Any]]]) -> tuple[str, list[str]]:
    """Shared-protocol summary of a column, and the differences (empty when none)."""
    protos = [(label, metric_protocol(rec, metric)) for label, rec in rows]
    keys = list(dict.fromkeys(k for _, p in protos for k in p))
    shared, diffs = [], []
    for k in keys:
        groups: dict[str, tuple[str, list[str]]] = {}  # compared value -> (first value as written, labels)
        for label, p in protos:
            v = p.get(k, "null")
            groups.setdefault(json.dumps(comparable(k, json.loads(v))), (v, []))[1].append(label)
        if len(groups) == 1:
            v = next(iter(groups.values()))[0]
            if v != "null" and k != "direction":  # the header's arrow already says it
                shared.append(f"{k} {_describe(json.loads(v))}")
        else:
            parts = [f"{_describe(json.loads(v)) if v != 'null' else '(none)'}: {', '.join(labels)}"
                     for v, labels in groups.values()]
            diffs.append(f"{k} differs ({'; '.join(parts)})")
    return ", ".join(shared), diffs


# --------------------------------------------------------------------------- table

def _label_of(lr: LoadedRecord) -> str:
    label = lr.record.get("label")
    if label:
        return str(label)
    p = Path(lr.path)
    return p.parent.name if p.name == "metrics.json" and p.parent.name else p.stem


def _metric_order(names: set[str]) -> list[str]:
    known = [m for m in METRIC_INFO if m in names]
    return known + sorted(names - set(known))


def _fmt(value: float, std: float, decimals: int, ci: dict[str, Any] | None = None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    s = f"{value:.{decimals}f}"
    if ci and ci.get("lo") is not None and ci.get("hi") is not None:
        s += f" [{ci['lo']:.{decimals}f}, {ci['hi']:.{decimals}f}]"
    elif std is not None and not (isinstance(std, float) and math.isnan(std)):
        s += f" ± {std:.{decimals}f}"
    return s


def _ci_protocol(rows: list[tuple[str, dict[str, Any]]], metric: str) -> str:
    """The intervals' protocol of a column (level, method, draws, seed), each distinct one once."""
    seen = []
    for _, rec in rows:
        ci = rec["metrics"][metric].get("ci")
        if ci:
            d = f"{100 * ci['level']:g}% intervals, {ci['method']}, {ci['draws']} draws, seed {ci['seed']}"
            if d not in seen:
                seen.append(d)
    return "; ".join(seen)


def _significance(comparisons: list[dict[str, Any]], labels: list[str]) -> tuple[dict[tuple[str, str], str], list[str]]:
    """``{(run label, metric): "*"}`` and notes for the significant differences of ``comparisons``."""
    marks: dict[tuple[str, str], str] = {}
    notes: list[str] = []
    for c in comparisons:
        la, lb = c["a"].get("label") or c["a"]["path"], c["b"].get("label") or c["b"]["path"]
        if lb not in labels:
            continue
        for metric, m in c["metrics"].items():
            if m.get("significant"):
                marks[(lb, metric)] = "*"
                notes.append(f"{lb} vs {la}, {metric}: B - A = {m['diff']:+.4g} [{m['ci']['lo']:.4g}, "
                             f"{m['ci']['hi']:.4g}], p = {m['p_value']:.3g} ({m['better']} better)")
    return marks, notes


def _decimals(metric: str) -> int:
    return METRIC_INFO.get(metric, ("", True, 4))[2]


def _refuse_mixed_exactness(records: list[LoadedRecord]) -> None:
    """Approximate numbers (``"exact": false`` in the protocol, e.g. ``--precision bf16``) never share a
    table with exact ones, not even with ``--force``: their difference is the approximation's."""
    approx = [r.path for r in records if (r.record.get("protocol") or {}).get("exact") is False]
    if approx and len(approx) < len(records):
        raise FacemetricsError(
            f"refusing to compare approximate records ({', '.join(approx)}: \"exact\": false, e.g. --precision "
            "bf16) with exact ones; re-score them with --precision fp32 or report the two groups separately",
            "RECORDS")


def build_table(records: list[LoadedRecord], *, sort: str | None = None, force: bool = False,
                metrics: list[str] | None = None, comparisons: list[dict[str, Any]] | None = None) -> ReportTable:
    """The comparison table of ``records`` (see the module docstring for the rules)."""
    import pandas as pd

    if not records:
        raise FacemetricsError("no records given", "RECORDS")
    _refuse_mixed_exactness(records)
    labels = _run_labels(records)
    order = _column_order(records, metrics)
    values = pd.DataFrame(index=pd.Index(labels, name="run"), columns=order, dtype=float)
    stds = values.copy()
    cis: dict[tuple[str, str], dict[str, Any]] = {}
    headers, protocols, notes, refusals = {}, {}, [], []
    for metric in order:
        rows = [(lb, r.record) for lb, r in zip(labels, records) if (r.record.get("metrics") or {}).get(metric)]
        headers[metric] = _header(metric, rows)
        _fill_column(metric, rows, values, stds, cis)
        shared, diffs = _protocol_check(metric, headers[metric], rows)
        protocols[metric] = ", ".join(p for p in (shared, _ci_protocol(rows, metric)) if p)
        if diffs:
            (notes if force else refusals).append(f"{headers[metric]}: " + "; ".join(diffs))
    if refusals:
        raise FacemetricsError(
            "refusing to put numbers from different protocols in one column:\n  " + "\n  ".join(refusals)
            + "\n(re-score with one protocol, report the groups separately, or pass --force to tabulate anyway)",
            "RECORDS")
    if sort is not None:
        key = _resolve_metric(sort, order, headers)
        up = headers[key].endswith("↑")
        ranked = values[key].sort_values(ascending=not up, na_position="last", kind="stable")
        values, stds = values.loc[ranked.index], stds.loc[ranked.index]
    marks, significance = _significance(comparisons or [], labels)
    display = pd.DataFrame(index=values.index, columns=[headers[m] for m in order], dtype=object)
    for m in order:
        display[headers[m]] = [_fmt(v, s, _decimals(m), cis.get((lb, m))) + marks.get((lb, m), "")
                               for lb, v, s in zip(values.index, values[m], stds[m])]
    by_metric: dict[str, dict[str, dict[str, Any]]] = {}
    for (lb, m), ci in cis.items():
        by_metric.setdefault(m, {})[lb] = ci
    return ReportTable(values, stds, display, order, headers, protocols, notes, significance, by_metric)


def _run_labels(records: list[LoadedRecord]) -> list[str]:
    """Each record's row label; a label two records share is followed by the record's path."""
    labels = [_label_of(r) for r in records]
    counts: dict[str, int] = {}
    for lb in labels:
        counts[lb] = counts.get(lb, 0) + 1
    return [f"{lb} ({r.path})" if counts[lb] > 1 else lb for lb, r in zip(labels, records)]


def _column_order(records: list[LoadedRecord], metrics: list[str] | None) -> list[str]:
    """The table's metric columns: ``metrics`` (``--metrics``, each present in some record) or every
    metric present, in the canonical order."""
    present = {name for r in records for name, m in (r.record.get("metrics") or {}).items() if m is not None}
    if not metrics:
        return _metric_order(present)
    unknown = [m for m in metrics if m not in present]
    if unknown:
        raise FacemetricsError(f"no record has metric(s) {', '.join(unknown)} "
                               f"(present: {', '.join(_metric_order(present)) or 'none'})", "--metrics")
    return list(dict.fromkeys(metrics))


def _header(metric: str, rows: list[tuple[str, dict]]) -> str:
    """Column header: the metric's display name and its direction (from the records when they agree)."""
    hib = {m.get("higher_is_better") for _, rec in rows
           if (m := rec["metrics"][metric]).get("higher_is_better") is not None}
    up = hib.pop() if len(hib) == 1 else METRIC_INFO.get(metric, ("", True, 4))[1]
    name = METRIC_INFO.get(metric, (metric, True, 4))[0]
    return f"{name} {'↑' if up else '↓'}"


def _fill_column(metric: str, rows: list[tuple[str, dict]], values, stds, cis: dict) -> None:
    """Write ``metric``'s value, std and interval of every row into the frames (NaN when missing)."""
    for lb, rec in rows:
        m = rec["metrics"][metric]
        values.loc[lb, metric] = m.get("value") if m.get("value") is not None else math.nan
        stds.loc[lb, metric] = m.get("std") if m.get("std") is not None else math.nan
        if m.get("ci"):
            cis[(lb, metric)] = m["ci"]


def _resolve_metric(name: str, order: list[str], headers: dict[str, str]) -> str:
    low = name.strip().lower()
    for m in order:
        if low in (m, headers[m][:-2].lower()):
            return m
    raise FacemetricsError(f"cannot sort by {name!r}: the table's metrics are {', '.join(order) or 'none'}",
                           "--sort")


# --------------------------------------------------------------------------- output

def _md_escape(s: str) -> str:
    return s.replace("|", "\\|")


def to_markdown(table: ReportTable) -> str:
    """A GitHub-flavoured markdown table, then the shared protocol of each column and any notes."""
    df = table.display
    head = ["run", *df.columns]
    rows = [[str(idx), *(str(v) for v in row)] for idx, row in zip(df.index, df.itertuples(index=False))]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    lines = ["| " + " | ".join(_md_escape(h).ljust(w) for h, w in zip(head, widths)) + " |",
             "| " + " | ".join(["-" * widths[0]] + [("-" * (w - 1)) + ":" for w in widths[1:]]) + " |"]
    for r in rows:
        lines.append("| " + " | ".join([_md_escape(r[0]).ljust(widths[0])]
                                       + [_md_escape(c).rjust(w) for c, w in zip(r[1:], widths[1:])]) + " |")
    out = "\n".join(lines) + "\n"
    proto = [f"- {table.headers[m]}: {table.protocols[m]}" for m in table.metrics if table.protocols.get(m)]
    if proto:
        out += "\nProtocol (shared by every row of the column):\n\n" + "\n".join(proto) + "\n"
    if table.notes:
        out += "\nProtocols differ (tabulated with --force):\n\n" + "\n".join(f"- {n}" for n in table.notes) + "\n"
    if table.significance:
        out += ("\nSignificant differences (*, `facemetrics compare`):\n\n"
                + "\n".join(f"- {n}" for n in table.significance) + "\n")
    return out


def to_csv(table: ReportTable) -> str:
    """Numbers at full precision: ``run``, then ``<metric>`` and ``<metric>_std`` per metric (and
    ``<metric>_lo``/``<metric>_hi`` where some run has an interval)."""
    import pandas as pd

    cols = {}
    for m in table.metrics:
        cols[m] = table.values[m]
        cols[f"{m}_std"] = table.stds[m]
        if table.cis.get(m):
            cols[f"{m}_lo"] = [table.cis[m].get(lb, {}).get("lo") for lb in table.values.index]
            cols[f"{m}_hi"] = [table.cis[m].get(lb, {}).get("hi") for lb in table.values.index]
    df = pd.DataFrame(cols, index=table.values.index)
    return df.to_csv(index=True, lineterminator="\n")


_HTML_STYLE = """body{font-family:system-ui,sans-serif;margin:2em;color:#222}
table{border-collapse:collapse}th,td{border:1px solid #ccc;padding:.3em .7em}
td{text-align:right;font-variant-numeric:tabular-nums}th{background:#f3f3f3}
tbody th{text-align:left}img{max-width:100%;border:1px solid #ddd;margin:.5em 0}"""


def to_html(table: ReportTable, *, title: str = "facemetrics report",
            images: list[tuple[str, bytes]] | None = None) -> str:
    """A standalone HTML page: the table, the protocol notes and optional PNG figures (embedded)."""
    import base64
    import html

    parts = [f"<!DOCTYPE html>\n<html><head><meta charset=\"utf-8\"><title>{html.escape(title)}</title>",
             f"<style>{_HTML_STYLE}</style></head><body>", f"<h1>{html.escape(title)}</h1>",
             table.display.to_html(escape=True, na_rep="", border=0)]
    proto = [f"<li>{html.escape(table.headers[m])}: {html.escape(table.protocols[m])}</li>"
             for m in table.metrics if table.protocols.get(m)]
    if proto:
        parts.append("<h2>Protocol</h2><ul>" + "".join(proto) + "</ul>")
    if table.notes:
        parts.append("<h2>Protocols differ (tabulated with --force)</h2><ul>"
                     + "".join(f"<li>{html.escape(n)}</li>" for n in table.notes) + "</ul>")
    if table.significance:
        parts.append("<h2>Significant differences (*)</h2><ul>"
                     + "".join(f"<li>{html.escape(n)}</li>" for n in table.significance) + "</ul>")
    for caption, png in images or []:
        b64 = base64.b64encode(png).decode()
        parts.append(f"<h2>{html.escape(caption)}</h2><img alt=\"{html.escape(caption)}\" "
                     f"src=\"data:image/png;base64,{b64}\">")
    parts.append("</body></html>\n")
    return "\n".join(parts)


def render(table: ReportTable, fmt: str, **kw) -> str:
    if fmt == "markdown":
        return to_markdown(table)
    if fmt == "csv":
        return to_csv(table)
    if fmt == "html":
        return to_html(table, **kw)
    raise FacemetricsError(f"unknown report format {fmt!r} (markdown, csv, html)", "--format")
