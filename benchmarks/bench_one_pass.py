#!/usr/bin/env python
"""One command for several metrics vs one command per metric (issue: one decode pass for all metrics).

For a metric list M, runs

  one pass:    facemetrics score REAL FAKE --metrics M
  per metric:  facemetrics score REAL FAKE --metrics m     for each m in M

each command in a fresh process with an empty feature cache (``--cache none``:
``--no-cache`` instead), and reports wall time, peak RSS, and how many images
were decoded (``facemetrics.imaging.images.decode_rgb`` calls, counted in the child), and
checks that every metric's value is the same either way. A second table says where
the time goes, summed over each mode's commands: start-up (process launch to the first
extraction: interpreter, imports, planning), each extraction
(``facemetrics.pipeline.features.extract`` calls, by extractor set; weights are loaded
inside them) and the rest (metric maths, record, exit).

  python benchmarks/bench_one_pass.py REAL FAKE --metrics fid,kid,is,fsd,fss --pairs pairs.jsonl \
      [--repeats 3] [--device cuda] [--repo CHECKOUT] [-- extra score options]
  python benchmarks/bench_one_pass.py --lfw 20 --metrics fid,kid,is,fsd,fss [--repeats 3]

``--lfw N`` builds the sets from LFW itself (``--data``): REAL = the ``_0001`` image of the
first N people (by name) with a second photo, FAKE = their ``_0002`` image, the pairs manifest
mapping each FAKE to its REAL, so REAL's images are the pairs' real images (REAL is then
decoded once for Inception and the face embedder); ``--kid-subset-size`` defaults to N there.
``--repo`` runs another checkout's facemetrics in the children (e.g. the commit before a change).

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
import atexit, json, resource, sys, time
T0 = time.time()
import facemetrics.imaging.images as im
import facemetrics.pipeline.features as features
count = [0]
orig = im.decode_rgb
def counting(data):
    count[0] += 1
    return orig(data)
im.decode_rgb = counting
calls = []
orig_extract = features.extract
def timed_extract(source, extractors, *args, **kw):  # bound before pipeline.side imports it
    t = time.time()
    try:
        return orig_extract(source, extractors, *args, **kw)
    finally:
        calls.append(["+".join(ex.name for ex in extractors), len(source.names), t, time.time()])
features.extract = timed_extract
def report():
    sys.stderr.write("\nBENCH " + json.dumps({"decodes": count[0], "t0": T0, "t_exit": time.time(),
                     "extracts": calls,
                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}) + "\n")
atexit.register(report)
from facemetrics.cli.main import main
sys.argv = ["facemetrics", *sys.argv[1:]]
main()
"""


def run(args: list[str], cache_mode: str, repo: Path = REPO) -> dict:
    """One ``facemetrics score`` in a fresh process (``repo``'s code): wall, decodes, RSS, phases, values."""
    with tempfile.TemporaryDirectory(prefix="fm-bench-") as tmp:
        out = Path(tmp) / "rec.json"
        extra = ["--no-cache"] if cache_mode == "none" else []
        env = dict(os.environ, PYTHONPATH=str(repo), FACEMETRICS_CACHE=str(Path(tmp) / "cache"))
        launch, t = time.time(), time.perf_counter()
        p = subprocess.run([sys.executable, "-c", CHILD, "score", *args, *extra, "-q", "--json", str(out)],
                           env=env, capture_output=True, text=True)
        wall = time.perf_counter() - t
        end = launch + wall
        if p.returncode != 0:
            sys.exit(f"command failed ({p.returncode}): score {' '.join(args)}\n{p.stderr[-3000:]}")
        bench = json.loads([ln for ln in p.stderr.splitlines() if ln.startswith("BENCH ")][-1][6:])
        rec = json.loads(out.read_text())
    phases: dict[str, float] = {}
    calls = bench.pop("extracts")
    first = min((c[2] for c in calls), default=end)
    last = max((c[3] for c in calls), default=end)
    phases["start-up (launch to first extraction)"] = first - launch
    for name, n, t_start, t_end in calls:
        key = f"extraction: {name}"
        phases[key] = phases.get(key, 0.0) + (t_end - t_start)
    phases["after the last extraction (metrics, record, exit)"] = end - last
    return {"wall": wall, **bench, "phases": phases, "calls": [(c[0], c[1]) for c in calls],
            "metrics": {k: v["value"] for k, v in rec["metrics"].items()}}


def lfw_sets(data: Path, n: int, tmp: Path) -> tuple[Path, Path, Path]:
    """REAL (``_0001``), FAKE (``_0002``) folders of links and the pairs manifest, first ``n`` people
    (by name) of LFW with a second photo."""
    root = (data / "lfw" / "deepfunneled").resolve()
    people = [p.name for p in sorted(root.iterdir()) if p.is_dir() and (p / f"{p.name}_0002.jpg").is_file()][:n]
    if len(people) < n:
        sys.exit(f"--lfw {n}: only {len(people)} LFW people have a second photo")
    real, fake = tmp / "real", tmp / "fake"
    real.mkdir()
    fake.mkdir()
    rows = []
    for p in people:
        (real / f"{p}.jpg").symlink_to(root / p / f"{p}_0001.jpg")
        (fake / f"{p}.jpg").symlink_to(root / p / f"{p}_0002.jpg")
        rows.append(json.dumps({"fake": f"{p}.jpg", "real": str(real / f"{p}.jpg")}))
    pairs = tmp / "pairs.jsonl"
    pairs.write_text("\n".join(rows) + "\n")
    return real, fake, pairs


def _add(total: dict[str, float], part: dict[str, float]) -> None:
    for k, v in part.items():
        total[k] = total.get(k, 0.0) + v


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("real", nargs="?")
    ap.add_argument("fake", nargs="?")
    ap.add_argument("--metrics", default="fid,kid")
    ap.add_argument("--pairs", default=None)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--cache", choices=["fresh", "none"], default="fresh",
                    help="fresh: an empty cache per command (written, never read); none: --no-cache")
    ap.add_argument("--lfw", type=int, default=None, metavar="N", help="build REAL, FAKE and pairs from LFW")
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("FACEMETRICS_DATA", str(REPO.parent / "shared" / "data"))))
    ap.add_argument("--repo", type=Path, default=REPO, help="checkout whose facemetrics the commands run")
    argv = sys.argv[1:]
    extra = argv[argv.index("--") + 1:] if "--" in argv else []  # more `score` options, after --
    a = ap.parse_args(argv[: argv.index("--")] if "--" in argv else argv)
    a.extra = extra
    with tempfile.TemporaryDirectory(prefix="fm-onepass-") as tmpd:
        if a.lfw:
            a.real, a.fake, a.pairs = (str(x) for x in lfw_sets(a.data, a.lfw, Path(tmpd)))
            if "--kid-subset-size" not in a.extra:
                a.extra = [*a.extra, "--kid-subset-size", str(a.lfw)]
        elif not (a.real and a.fake):
            ap.error("give REAL and FAKE, or --lfw N")
        a.note = ""
        if "is" in a.metrics.split(",") and "--inception-weights" not in a.extra:
            # IS needs a logits head, which the offline FID layers lack: the tests' stock-shaped stand-in
            sys.path.insert(0, str(REPO / "tests"))
            from reference_tools import write_stock_like_inception

            path, _ = write_stock_like_inception(Path(tmpd) / "inception-with-head.pt")
            a.extra = [*a.extra, "--inception-weights", str(path)]
            a.note = (" Inception: the packaged FID layers with a seeded random logits head "
                      "(tests/reference_tools.write_stock_like_inception), as the full file is not available "
                      "offline: IS values are not the protocol's, its cost is.")
        bench(a)


def bench(a: argparse.Namespace) -> None:
    """Both modes, ``a.repeats`` alternating rounds; prints the tables."""
    metrics = [m.strip() for m in a.metrics.split(",") if m.strip()]
    common = [a.real, a.fake, "--device", a.device, *(["--pairs", a.pairs] if a.pairs else []), *a.extra]
    rows: dict[str, list[dict]] = {"one command": [], "one command per metric": []}
    load_before = os.getloadavg()[0]
    for _ in range(a.repeats):  # alternate the modes so drift in machine load hits both
        rows["one command"].append(run([*common, "--metrics", ",".join(metrics)], a.cache, a.repo))
        per = [run([*common, "--metrics", m], a.cache, a.repo) for m in metrics]
        phases: dict[str, float] = {}
        for r in per:
            _add(phases, r["phases"])
        rows["one command per metric"].append({
            "wall": sum(r["wall"] for r in per), "decodes": sum(r["decodes"] for r in per),
            "peak_rss_mb": max(r["peak_rss_mb"] for r in per), "phases": phases,
            "metrics": {k: v for r in per for k, v in r["metrics"].items()}})
    one, sep = rows["one command"][-1]["metrics"], rows["one command per metric"][-1]["metrics"]
    worst = max(abs(one[m] - sep[m]) / max(abs(sep[m]), 1e-300) for m in one if m in sep)
    ratios = [o["wall"] / p["wall"] for o, p in zip(rows["one command"], rows["one command per metric"])]
    print(f"metrics {','.join(metrics)} on {a.real} vs {a.fake}, device {a.device}, {a.repeats} repeat(s), "
          f"cache {a.cache}, code of {a.repo}; {len(os.sched_getaffinity(0))} usable cores, 1-min load average "
          f"{load_before:.1f} before / {os.getloadavg()[0]:.1f} after.{getattr(a, 'note', '')}\n")
    print("| mode | wall s (median) | images decoded | peak RSS MB |")
    print("| --- | --- | --- | --- |")
    for mode, rs in rows.items():
        print(f"| {mode} | {statistics.median(r['wall'] for r in rs):.1f} | {rs[-1]['decodes']} | "
              f"{max(r['peak_rss_mb'] for r in rs):.0f} |")
    print(f"\none command / per-metric commands, wall: median {statistics.median(ratios):.2f} "
          f"(min {min(ratios):.2f}, max {max(ratios):.2f} over rounds)\n")
    keys = list(dict.fromkeys(k for rs in rows.values() for r in rs for k in r["phases"]))
    print("| where the time goes (s, median over rounds, summed over a mode's commands) | "
          + " | ".join(rows) + " |")
    print("| --- |" + " --- |" * len(rows))
    for k in keys:
        cells = [f"{statistics.median(r['phases'].get(k, 0.0) for r in rs):.1f}" for rs in rows.values()]
        print(f"| {k} | " + " | ".join(cells) + " |")
    print(f"\nvalues: {json.dumps(one)}; largest relative difference between the modes {worst:.1e}")
    if worst > 1e-9:
        sys.exit("the two modes disagree")


if __name__ == "__main__":
    main()
