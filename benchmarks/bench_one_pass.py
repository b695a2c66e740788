#!/usr/bin/env python
"""One command for several metrics vs one command per metric (issue: one decode pass for all metrics).

For a metric list M, runs

  one pass:    facemetrics score REAL FAKE --metrics M
  per metric:  facemetrics score REAL FAKE --metrics m     for each m in M

each command in a fresh process with an empty feature cache (``--cache none``:
``--no-cache`` instead), and reports wall time, peak RSS, and how many images
were decoded (``facemetrics.imaging.images.decode_rgb`` calls, counted in the child), and
checks that every metric's value is the same either way.

  python benchmarks/bench_one_pass.py REAL FAKE --metrics fid,kid,is,fsd,fss --pairs pairs.jsonl \
      [--repeats 3] [--device cuda] [-- extra score options]

With fid,kid only both modes already share the Inception pass inside one command;
the face embedder (fsd/fss) and the matcher's image tower (rprec/clipscore) join the
same pass (``facemetrics.pipeline.planner.plan``).
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]

CHILD = r"""
import atexit, json, resource, sys
import facemetrics.imaging.images as im
count = [0]
orig = im.decode_rgb
def counting(data):
    count[0] += 1
    return orig(data)
im.decode_rgb = counting
def report():
    sys.stderr.write("\nBENCH " + json.dumps({"decodes": count[0],
                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}) + "\n")
atexit.register(report)
from facemetrics.cli.main import main
sys.argv = ["facemetrics", *sys.argv[1:]]
main()
"""


def run(args: list[str], cache_mode: str) -> dict:
    with tempfile.TemporaryDirectory(prefix="fm-bench-") as tmp:
        out = Path(tmp) / "rec.json"
        extra = ["--no-cache"] if cache_mode == "none" else []
        env = dict(os.environ, PYTHONPATH=str(REPO), FACEMETRICS_CACHE=str(Path(tmp) / "cache"))
        t = time.perf_counter()
        p = subprocess.run([sys.executable, "-c", CHILD, "score", *args, *extra, "-q", "--json", str(out)],
                           env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        if p.returncode != 0:
            sys.exit(f"command failed ({p.returncode}): score {' '.join(args)}\n{p.stderr[-3000:]}")
        bench = json.loads([ln for ln in p.stderr.splitlines() if ln.startswith("BENCH ")][-1][6:])
        rec = json.loads(out.read_text())
    return {"wall": wall, **bench, "metrics": {k: v["value"] for k, v in rec["metrics"].items()}}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("real")
    ap.add_argument("fake")
    ap.add_argument("--metrics", default="fid,kid")
    ap.add_argument("--pairs", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cache", choices=["fresh", "none"], default="fresh",
                    help="fresh: an empty cache per command (written, never read); none: --no-cache")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []  # more `score` options, after --
    a = ap.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    a.extra = extra
    metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
    common = [a.real, a.fake, "--device", a.device, *(["--pairs", a.pairs] if a.pairs else []), *a.extra]
    rows: dict[str, list[dict]] = {"one command": [], "one command per metric": []}
    for _ in range(a.repeats):  # alternate the modes so drift in machine load hits both
        rows["one command"].append(run([*common, "--metrics", ",".join(metrics)], a.cache))
        per = [run([*common, "--metrics", m], a.cache) for m in metrics]
        rows["one command per metric"].append({
            "wall": sum(r["wall"] for r in per), "decodes": sum(r["decodes"] for r in per),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in per),
            "metrics": {k: v for r in per for k, v in r["metrics"].items()}})
    one, sep = rows["one command"][-1]["metrics"], rows["one command per metric"][-1]["metrics"]
    worst = max(abs(one[m] - sep[m]) / max(abs(sep[m]), 1e-300) for m in metrics)
    print(f"metrics {','.join(metrics)} on {a.real} vs {a.fake}, device {a.device}, {a.repeats} repeat(s), "
          f"cache {a.cache}\n")
    print("| mode | wall s (median) | images decoded | peak RSS MB |")
    print("| --- | --- | --- | --- |")
    for mode, rs in rows.items():
        print(f"| {mode} | {statistics.median(r['wall'] for r in rs):.1f} | {rs[-1]['decodes']} | "
              f"{max(r['peak_rss_mb'] for r in rs):.0f} |")
    print(f"\nvalues: {json.dumps(one)}; largest relative difference between the modes {worst:.1e}")
    if worst > 1e-9:
        sys.exit("the two modes disagree")


if __name__ == "__main__":
    main()
