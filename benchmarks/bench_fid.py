#!/usr/bin/env python
"""facemetrics vs clean-fid on the same 2×N LFW images, side by side in one run.

Each measurement runs in a fresh subprocess (wall time and peak RSS of that process),
alternating clean-fid and facemetrics for ``--repeats`` rounds; medians and the per-round
ratios are written into benchmarks/RESULTS.md between the ``bench_fid`` markers.

Cases:
  cleanfid      clean-fid 0.1.35 ``fid.compute_fid(mode="clean")`` with its defaults
                (num_workers=12, batch_size=32) on CPU
  fm_cold       ``facemetrics score`` with an empty feature cache
  fm_real_warm  ``facemetrics score`` with the real folder's features cached (fake cold)
  frechet       the Fréchet step alone at 2048-d: eigh form vs ``scipy.linalg.sqrtm``

Usage: python benchmarks/bench_fid.py [--n 500] [--repeats 3] [--data ../shared/data] [--device cpu]
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CHILD = r"""
import json, os, resource, sys, time, warnings
warnings.filterwarnings("ignore")
case, a, b, device = sys.argv[1:5]
t = time.perf_counter()
if case == "cleanfid":
    import torch
    from cleanfid import fid
    value = fid.compute_fid(a, b, mode="clean", device=torch.device(device), verbose=False)
else:
    import facemetrics
    value = facemetrics.score(a, b, metrics="fid", device=device, progress=False)["metrics"]["fid"]["value"]
wall = time.perf_counter() - t
print(json.dumps({"value": value, "wall": wall,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(case: str, a: Path, b: Path, device: str, cache: Path) -> dict:
    env = dict(os.environ, FACEMETRICS_CACHE=str(cache), PYTHONPATH=str(REPO))
    t = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", CHILD, case, str(a), str(b), device], env=env,
                         capture_output=True, text=True, check=True).stdout
    r = json.loads(out.strip().splitlines()[-1])
    r["process_wall"] = time.perf_counter() - t
    return r


def make_sets(data: Path, n: int, tmp: Path) -> tuple[Path, Path]:
    root = data / "lfw" / "deepfunneled"
    people = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = [root / p / f"{p}_0001.jpg" for p in people]
    sets = []
    for name, chunk in (("real", files[:n]), ("fake", files[n:2 * n])):
        d = tmp / name
        d.mkdir()
        for i, f in enumerate(chunk):
            (d / f"{i:05d}.jpg").symlink_to(f)
        sets.append(d)
    return sets[0], sets[1]


def ensure_cleanfid_weights() -> None:
    target = Path(tempfile.gettempdir()) / "inception-2015-12-05.pt"
    if target.exists():
        return
    from facemetrics.extractors.inception import write_layers_torchscript

    write_layers_torchscript(target)


def frechet_bench(real_feats, repeats: int) -> dict:
    import warnings

    import numpy as np
    import scipy.linalg

    from facemetrics.metrics.fid import frechet_distance

    h = len(real_feats) // 2
    s1 = np.cov(real_feats[:h], rowvar=False)
    s2 = np.cov(real_feats[h:], rowvar=False)
    mu1, mu2 = real_feats[:h].mean(0), real_feats[h:].mean(0)
    ours, ref = [], []
    for _ in range(repeats):
        t = time.perf_counter()
        v_ours = frechet_distance(mu1, s1, mu2, s2)
        ours.append(time.perf_counter() - t)
        t = time.perf_counter()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            cm = np.real(scipy.linalg.sqrtm(s1 @ s2))
        v_ref = float(((mu1 - mu2) ** 2).sum() + np.trace(s1) + np.trace(s2) - 2 * np.trace(cm))
        ref.append(time.perf_counter() - t)
    return {"ours_s": statistics.median(ours), "sqrtm_s": statistics.median(ref), "value_ours": v_ours,
            "value_sqrtm": v_ref, "ratios": [r / o for r, o in zip(ref, ours)]}


def write_results(section: str) -> None:
    path = REPO / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = "<!-- bench_fid:start -->", "<!-- bench_fid:end -->"
    block = f"{start}\n{section}\n{end}"
    if start in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    from facemetrics.storage.atomic import atomic_write_text

    atomic_write_text(path, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--data", default=os.environ.get("FACEMETRICS_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-write", action="store_true", help="print only, do not update RESULTS.md")
    args = ap.parse_args()
    ensure_cleanfid_weights()
    rows: dict[str, list[dict]] = {"cleanfid": [], "fm_cold": [], "fm_real_warm": []}
    with tempfile.TemporaryDirectory() as tmpd:
        tmp = Path(tmpd)
        a, b = make_sets(Path(args.data), args.n, tmp)
        for r in range(args.repeats):
            rows["cleanfid"].append(child("cleanfid", a, b, args.device, tmp / f"c{r}"))
            rows["fm_cold"].append(child("fm", a, b, args.device, tmp / f"cold{r}"))
            warm = tmp / f"warm{r}"
            env = dict(os.environ, FACEMETRICS_CACHE=str(warm), PYTHONPATH=str(REPO))
            subprocess.run([sys.executable, "-m", "facemetrics", "stats", str(a), "-o", str(tmp / "s.npz"), "-q",
                            "--device", args.device], env=env, check=True, capture_output=True)
            rows["fm_real_warm"].append(child("fm", a, b, args.device, warm))
            print(f"round {r}: " + ", ".join(f"{k} {v[-1]['wall']:.1f}s" for k, v in rows.items()), file=sys.stderr)
        os.environ["FACEMETRICS_CACHE"] = str(tmp / "cold0")
        from facemetrics.extractors.inception import InceptionExtractor
        from facemetrics.pipeline.features import extract
        from facemetrics.imaging.images import scan

        feats = extract(scan(a), [InceptionExtractor()], progress=False).outputs["inception"]["pool"]
        fr = frechet_bench(feats.astype("float64"), args.repeats)

    med = {k: statistics.median(x["wall"] for x in v) for k, v in rows.items()}
    rss = {k: statistics.median(x["peak_rss_mb"] for x in v) for k, v in rows.items()}
    ratio = {k: [c["wall"] / f["wall"] for c, f in zip(rows["cleanfid"], rows[k])] for k in ("fm_cold", "fm_real_warm")}
    fid_cf, fid_fm = rows["cleanfid"][0]["value"], rows["fm_cold"][0]["value"]
    import torch

    section = f"""## FID end to end: facemetrics vs clean-fid (`benchmarks/bench_fid.py`)

Measured {time.strftime('%Y-%m-%d')} on {platform.machine()}, {os.cpu_count()} CPUs, torch {torch.__version__},
device {args.device}; 2×{args.n} LFW faces (`Name_0001.jpg`, disjoint identities), {args.repeats} alternating
rounds, each case in a fresh process. Wall = the scoring call; ratio = clean-fid / facemetrics per round.

| case | median wall (s) | speed-up vs clean-fid (median of rounds; min–max) | median peak RSS (MB) |
| --- | --- | --- | --- |
| clean-fid `compute_fid(mode="clean")` (defaults: 12 workers, batch 32) | {med['cleanfid']:.1f} | 1.00 | {rss['cleanfid']:.0f} |
| facemetrics, cold cache | {med['fm_cold']:.1f} | {statistics.median(ratio['fm_cold']):.2f}× ({min(ratio['fm_cold']):.2f}–{max(ratio['fm_cold']):.2f}) | {rss['fm_cold']:.0f} |
| facemetrics, real folder's features cached | {med['fm_real_warm']:.1f} | {statistics.median(ratio['fm_real_warm']):.2f}× ({min(ratio['fm_real_warm']):.2f}–{max(ratio['fm_real_warm']):.2f}) | {rss['fm_real_warm']:.0f} |

Peak RSS is the scoring process's own (clean-fid's decode worker processes are not included).
The machine was shared with other jobs during the run: quote the ratios, not the seconds.

FID: clean-fid {fid_cf:.6f}, facemetrics {fid_fm:.6f} (relative difference {abs(fid_cf - fid_fm) / fid_cf:.2e}).

Fréchet step alone at 2048-d (covariances of the real features' two halves): eigh form
{fr['ours_s']:.2f} s vs `scipy.linalg.sqrtm` {fr['sqrtm_s']:.2f} s, median ratio
{statistics.median(fr['ratios']):.1f}× (values {fr['value_ours']:.6f} vs {fr['value_sqrtm']:.6f}).
"""
    print(section)
    if not args.no_write:
        write_results(section)


if __name__ == "__main__":
    main()
