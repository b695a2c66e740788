"""Paired comparison of two scoring runs (``facemetrics compare RUN_A.json RUN_B.json``).

A paired test needs what a record does not hold: the per-sample values (per pair, image or
caption) and the Inception features. ``score --keep-rows FILE.npz`` writes them next to the
record (:func:`write_rows`) and the record names the file (``"rows": {"path", "sha256"}``).

For each metric both runs have, B − A with an interval at ``level`` and a two-sided p-value:

* per-sample metrics (fsd, fsd_l1, fss, clipscore, rprec): paired over the pairs the runs share
  (aligned by :func:`~facemetrics.pairing.captions.pair_key`: caption and real file name; both
  runs must have the same pairs), percentile bootstrap of the mean difference and a sign-flip
  permutation test (:func:`facemetrics.metrics.uncertainty.paired_bootstrap`);
* fid, kid: joint subsampling with one REAL draw shared by both runs
  (:func:`facemetrics.metrics.uncertainty.paired_subsample`); both runs must have scored the
  same REAL (same content sha256) and kept its features.

Metrics without per-sample values or features (is, fid_inf, is_inf) are listed as not compared.
The runs must share the record protocol (preset, extractor, weights, dims, seed) and, per
metric, the protocol entries of its details; otherwise a :class:`FacemetricsError` names the
key that differs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np

from facemetrics.errors import FacemetricsError

ROWS_SCHEMA = "facemetrics.rows/1"
COMPARE_SCHEMA = "facemetrics.compare/1"
PER_SAMPLE = ("fsd", "fsd_l1", "fss", "clipscore", "rprec")
TWO_SAMPLE = ("fid", "kid")
#: detail keys that describe the data rather than the protocol (allowed to differ between runs)
DATA_KEYS = {"n_real", "n_fake", "faces_detected", "pairs_dropped", "hits", "fold_values", "sizes", "values", "slope",
             "rms", "real_sizes", "n_clamped_to_zero", "images", "pairs_both_faces", "fake_unpaired",
             "failed_images", "truncated_captions"}


# --------------------------------------------------------------------------- rows file

def write_rows(path: str | Path, inputs: Any, results: dict[str, Any]) -> dict[str, str]:
    """Write the per-sample values of ``results`` and the Inception pool features of ``inputs`` to ``path``
    (atomically); returns the record's ``"rows"`` entry ``{"path", "sha256", "schema"}``."""
    from facemetrics.storage.atomic import atomic_save_npz, output_file

    arrays: dict[str, np.ndarray] = {"schema": np.array(ROWS_SCHEMA)}
    for side in ("real", "fake"):
        rows = inputs.rows.get((side, "inception", "pool"))
        if rows is not None:
            arrays[f"features_{side}"] = np.asarray(rows, dtype=np.float32)
    keys = {"face": getattr(inputs.paired.get("face"), "keys", None),
            "matcher": getattr(inputs.paired.get("matcher"), "keys", None)}
    for name, res in results.items():
        if res.samples is None:
            continue
        arrays[f"samples_{name}"] = np.asarray(res.samples, dtype=np.float64)
        k = keys["face"] if name in ("fsd", "fsd_l1", "fss") else keys["matcher"]
        if k is not None:
            arrays[f"keys_{name}"] = np.array(k, dtype=str)
        if name == "rprec":
            arrays["folds_rprec"] = np.array(int(res.details["folds"]))
    if not str(path).endswith(".npz"):
        raise FacemetricsError(f"--keep-rows must name an .npz file, got {path}", "--keep-rows")
    with output_file(path, "the per-sample rows", "--keep-rows"):
        atomic_save_npz(path, **arrays)
    digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
    return {"path": str(Path(path).resolve()), "sha256": digest, "schema": ROWS_SCHEMA}


def _read_json(path: Path, param: str) -> dict[str, Any]:
    try:
        rec = json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise FacemetricsError(f"record not found: {path}", param) from None
    except (OSError, ValueError) as e:
        raise FacemetricsError(f"cannot read record {path}: {e}", param) from None
    if not isinstance(rec, dict) or rec.get("schema") != "facemetrics.record/1":
        raise FacemetricsError(f"{path} is not a facemetrics record (from `facemetrics score --json`)", param)
    return rec


def load_rows(rec: dict[str, Any], record_path: Path, param: str) -> dict[str, np.ndarray]:
    """The rows file a record names (its path as written, else beside the record), checked by sha256."""
    info = rec.get("rows")
    if not info:
        raise FacemetricsError(f"{record_path} names no per-sample rows: re-score with --keep-rows FILE.npz "
                               "to compare runs", param)
    candidates = [Path(info["path"]), Path(record_path).parent / Path(info["path"]).name]
    path = next((c for c in candidates if c.is_file()), None)
    if path is None:
        raise FacemetricsError(f"the rows file of {record_path} is missing (looked for "
                               f"{', '.join(map(str, candidates))})", param)
    if hashlib.sha256(path.read_bytes()).hexdigest() != info.get("sha256"):
        raise FacemetricsError(f"{path} is not the rows file {record_path} was written with (sha256 differs)", param)
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


# --------------------------------------------------------------------------- checks

def _differ(what: str, a: Any, b: Any) -> FacemetricsError:
    return FacemetricsError(f"the runs differ in {what}: A has {json.dumps(a, default=str)}, "
                            f"B has {json.dumps(b, default=str)}; a paired comparison needs one protocol", "RUN_B")


def check_same_protocol(a: dict[str, Any], b: dict[str, Any], metrics: list[str]) -> None:
    """Refuse two records whose protocol differs, naming the first differing key."""
    pa, pb = a.get("protocol") or {}, b.get("protocol") or {}
    for k in sorted(set(pa) | set(pb)):
        if pa.get(k) != pb.get(k):
            raise _differ(f"protocol.{k}", pa.get(k), pb.get(k))
    for name in metrics:
        da, db = a["metrics"][name].get("details") or {}, b["metrics"][name].get("details") or {}
        for k in sorted((set(da) | set(db)) - DATA_KEYS):
            if da.get(k) != db.get(k):
                raise _differ(f"metrics.{name}.details.{k}", da.get(k), db.get(k))


def _aligned(ra: dict[str, np.ndarray], rb: dict[str, np.ndarray], name: str) -> tuple[np.ndarray, np.ndarray]:
    """Per-sample values of ``name`` in both runs, aligned pair by pair (same pairs required)."""
    va, vb = ra.get(f"samples_{name}"), rb.get(f"samples_{name}")
    ka, kb = ra.get(f"keys_{name}"), rb.get(f"keys_{name}")
    if ka is None or kb is None:
        if len(va) != len(vb):
            raise _differ(f"the number of {name} samples", len(va), len(vb))
        return va, vb
    if sorted(ka.tolist()) != sorted(kb.tolist()):
        only_a = sorted(set(ka.tolist()) - set(kb.tolist()))
        only_b = sorted(set(kb.tolist()) - set(ka.tolist()))
        raise FacemetricsError(
            f"the runs scored different captions/pairs for {name}: {len(only_a)} only in A, {len(only_b)} only in B "
            f"(e.g. {(only_a or only_b)[0].replace(chr(31), ' | ') if (only_a or only_b) else 'repeated pairs'}); "
            "score both runs with the same pairs manifest", "RUN_B")
    oa, ob = np.argsort(ka, kind="stable"), np.argsort(kb, kind="stable")
    return va[oa], vb[ob]


# --------------------------------------------------------------------------- compare

def _two_sample(name: str, a: dict, b: dict, ra: dict, rb: dict, cfg: Any) -> dict[str, Any]:
    from facemetrics.metrics.fid import frechet_distance, gaussian_of_rows
    from facemetrics.metrics.uncertainty import paired_subsample

    for rec, rows, run in ((a, ra, "RUN_A"), (b, rb, "RUN_B")):
        if "features_real" not in rows or "features_fake" not in rows:
            raise FacemetricsError(f"{name}: {run}'s rows file holds no per-image REAL and FAKE features (REAL given "
                                   "as a statistics file without features?)", run)
    if (a.get("real") or {}).get("content_sha256") != (b.get("real") or {}).get("content_sha256") or \
            not np.array_equal(ra["features_real"], rb["features_real"]):
        raise _differ("REAL (content sha256 / features)", (a.get("real") or {}).get("content_sha256"),
                      (b.get("real") or {}).get("content_sha256"))
    real, fa, fb = ra["features_real"], ra["features_fake"], rb["features_fake"]
    if name == "fid":
        def stat(fake):
            return lambda r, f: frechet_distance(*gaussian_of_rows(real[r]), *gaussian_of_rows(fake[f]))
    else:
        from facemetrics.metrics.kid import kid

        det = a["metrics"]["kid"]["details"]

        def stat(fake):
            return lambda r, f: kid(real[r], fake[f], subsets=det["subsets"], subset_size=det["subset_size"],
                                    seed=det["seed"]).value
    return paired_subsample(a["metrics"][name]["value"], b["metrics"][name]["value"], stat(fa), stat(fb),
                            len(real), len(fa), len(fb), cfg)


def compare_records(path_a: str | Path, path_b: str | Path, *, level: float = 0.95, draws: int | None = None,
                    seed: int = 0) -> dict[str, Any]:
    """The paired comparison of two records (module docstring) as a JSON-safe dict."""
    from facemetrics.metrics.uncertainty import CISettings, check_level, fold_mean, paired_bootstrap
    from facemetrics.record import _clean

    check_level(level, draws)
    if level == 0:
        raise FacemetricsError("--level must be in (0, 1)", "--level")
    a, b = _read_json(Path(path_a), "RUN_A"), _read_json(Path(path_b), "RUN_B")
    common = [m for m in a.get("metrics", {}) if m in b.get("metrics", {})]
    if not common:
        raise FacemetricsError("the two records share no metric", "RUN_B")
    check_same_protocol(a, b, common)
    ra, rb = load_rows(a, Path(path_a), "RUN_A"), load_rows(b, Path(path_b), "RUN_B")
    cfg = CISettings(level, draws, seed)
    out: dict[str, Any] = {}
    skipped: dict[str, str] = {}
    for name in common:
        ma, mb = a["metrics"][name], b["metrics"][name]
        if name in TWO_SAMPLE:
            res = _two_sample(name, a, b, ra, rb, cfg)
        elif f"samples_{name}" in ra and f"samples_{name}" in rb:
            va, vb = _aligned(ra, rb, name)
            if name == "rprec":
                folds = int(ra.get("folds_rprec", 10))
                res = paired_bootstrap(va, vb, cfg, fold_mean(folds), f"mean of the {folds} fold hit rates",
                                       what=name)
            else:
                res = paired_bootstrap(va, vb, cfg, what=name)
        else:
            skipped[name] = "no per-sample values or features to pair"
            continue
        hib = bool(ma["higher_is_better"])
        sig = res["p_value"] < 1 - level
        better = None if not sig else ("B" if (res["diff"] > 0) == hib else "A")
        out[name] = {"a": ma["value"], "b": mb["value"], "higher_is_better": hib, **res,
                     "significant": sig, "better": better}
    return _clean({"schema": COMPARE_SCHEMA, "a": {"path": str(path_a), "label": a.get("label")},
                   "b": {"path": str(path_b), "label": b.get("label")}, "level": level, "seed": seed,
                   "alpha": 1 - level, "metrics": out, "not_compared": skipped})


def format_compare(res: dict[str, Any]) -> str:
    """A text table of a comparison: metric, A, B, B − A [lo, hi], p, which run is better (* = p < α)."""
    from facemetrics.record import format_interval

    rows = [("metric", "A", "B", "B - A", f"{100 * res['level']:g}% CI", "p", "")]
    for name, m in res["metrics"].items():
        arrow = "↑" if m["higher_is_better"] else "↓"
        mark = f"* {m['better']} better" if m["significant"] else ""
        rows.append((f"{name} {arrow}", f"{m['a']:.6g}", f"{m['b']:.6g}", f"{m['diff']:+.4g}",
                     format_interval(m["ci"]), f"{m['p_value']:.3g}", mark))
    w = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w[i]) for i, c in enumerate(r)).rstrip() for r in rows]
    la, lb = res["a"]["label"] or res["a"]["path"], res["b"]["label"] or res["b"]["path"]
    lines += ["", f"A: {la}", f"B: {lb}", f"* p < {res['alpha']:.3g} (two-sided); seed {res['seed']}"]
    lines += [f"not compared: {k} ({v})" for k, v in res["not_compared"].items()]
    return "\n".join(lines) + "\n"
