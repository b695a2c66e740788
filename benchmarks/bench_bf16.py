#!/usr/bin/env python
"""The approximate bf16 path (``--precision bf16``) against the exact fp32 one on 2×N LFW images.

Both runs score the same REAL/FAKE folders (``_0001`` images of 2N different LFW people,
links in a temporary folder) with ``facemetrics score --metrics fid,kid``, each in a fresh
process with an empty feature cache, alternating the order over ``--rounds``. Written into
benchmarks/RESULTS.md between the ``bench_bf16`` markers: the FID and KID of each precision,
the deviation of bf16 from fp32 (absolute and relative), wall times and their ratio
(median, min–max over rounds), and whether the CPU has AVX512-BF16/AMX.

Usage: python benchmarks/bench_bf16.py [--n 1000] [--rounds 1] [--data ../shared/data] [--device cpu]
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

from benchmarks.bench_fid import make_sets  # noqa: E402

CHILD = r"""
import json, resource, sys, time, warnings
warnings.filterwarnings("ignore")
precision, a, b, device = sys.argv[1:5]
t = time.perf_counter()
import facemetrics
rec = facemetrics.score(a, b, metrics="fid,kid", device=device, precision=precision, progress=False)
print(json.dumps({"fid": rec["metrics"]["fid"]["value"], "kid": rec["metrics"]["kid"]["value"],
                  "exact": rec["protocol"].get("exact", True), "wall": time.perf_counter() - t,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def child(precision: str, a: Path, b: Path, device: str, cache: Path) -> dict:
    env = dict(os.environ, FACEMETRICS_CACHE=str(cache), PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-c", CHILD, precision, str(a), str(b), device], env=env,
                         capture_output=True, text=True, check=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def cpu_flags() -> str:
    try:
        flags = set(Path("/proc/cpuinfo").read_text().split())
    except OSError:
        return "unknown"
    have = [f for f in ("avx512_bf16", "amx_bf16") if f in flags]
    return ", ".join(have) or "none"


def write_results(section: str) -> None:
    from facemetrics.storage.atomic import atomic_write_text

    path = REPO / "benchmarks" / "RESULTS.md"
    text = path.read_text() if path.exists() else "# Benchmark results\n"
    start, end = "<!-- bench_bf16:start -->", "<!-- bench_bf16:end -->"
    block = f"{start}\n{section}\n{end}"
    if start in text:
        text = text[:text.index(start)] + block + text[text.index(end) + len(end):]
    else:
        text = text.rstrip() + "\n\n" + block + "\n"
    atomic_write_text(path, text)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FACEMETRICS_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--no-write", action="store_true", help="print only, leave RESULTS.md alone")
    args = ap.parse_args()
    runs: dict[str, list[dict]] = {"fp32": [], "bf16": []}
    with tempfile.TemporaryDirectory() as tmp:
        a, b = make_sets(args.data, args.n, Path(tmp))
        for r in range(args.rounds):
            for prec in (("fp32", "bf16") if r % 2 == 0 else ("bf16", "fp32")):
                cache = Path(tmp) / f"cache-{prec}-{r}"
                runs[prec].append(child(prec, a, b, args.device, cache))
                print(prec, runs[prec][-1], file=sys.stderr)
    f32, b16 = runs["fp32"][0], runs["bf16"][0]
    ratios = [x["wall"] / y["wall"] for x, y in zip(runs["bf16"], runs["fp32"])]
    med = {p: statistics.median(x["wall"] for x in v) for p, v in runs.items()}
    section = "\n".join([
        f"### bf16 approximate path vs fp32 (2×{args.n} LFW, {args.device})",
        "",
        f"`python benchmarks/bench_bf16.py --n {args.n} --rounds {args.rounds}`, "
        f"{time.strftime('%Y-%m-%d')}, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores, CPU bf16 support: {cpu_flags()}. Fresh process and empty cache per run.",
        "",
        "| precision | FID | KID | exact | wall s (median) | peak RSS MB |",
        "|---|---|---|---|---|---|",
        f"| fp32 | {f32['fid']:.6f} | {f32['kid']:.6e} | {f32['exact']} | {med['fp32']:.1f} | {f32['peak_rss_mb']:.0f} |",
        f"| bf16 | {b16['fid']:.6f} | {b16['kid']:.6e} | {b16['exact']} | {med['bf16']:.1f} | {b16['peak_rss_mb']:.0f} |",
        "",
        f"FID deviation bf16 − fp32: {b16['fid'] - f32['fid']:+.4f} "
        f"({(b16['fid'] - f32['fid']) / f32['fid']:+.3%} relative); KID deviation "
        f"{b16['kid'] - f32['kid']:+.3e}. Time ratio bf16/fp32: median {statistics.median(ratios):.2f} "
        f"(min {min(ratios):.2f}, max {max(ratios):.2f}) over {args.rounds} round(s).",
    ])
    print(section)
    if not args.no_write:
        write_results(section)


if __name__ == "__main__":
    main()
