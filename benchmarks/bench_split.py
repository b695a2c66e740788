#!/usr/bin/env python
"""Where a cold ``facemetrics.score(metrics="fid")`` run's time goes, against the network alone.

On 2×N fresh LFW faces (``bench_peers.draw_sets``: 2N different people, seeded), CPU, cache
off. Each round runs, each in a fresh process and in rotated order:

  network   the FID Inception (batch norm folded, channels-last, the extractor's own
            ``forward``) on preprocessed batches of 32 of the same images: images/s alone
  turns     ``facemetrics.score(REAL, FAKE, metrics="fid", cache=False)`` with the CPU
            schedule (decoding and the network take turns: ``FACEMETRICS_OVERLAP=0``)
  overlap   the same with decoding overlapping the network (``FACEMETRICS_OVERLAP=1``)
  cli       the command a user runs, ``python -m facemetrics score REAL FAKE --metrics fid
            --device cpu --no-cache -q --json F`` (CPU schedule; process time only, no split)

For the two score runs it prints the call's and the process's images/s as a fraction of
the network-alone rate of the same round (the issue's "end to end ≥ 90% of the network"),
and the split of the process's wall time, measured by wrapping the functions that do each
part: start-up (interpreter and imports before the call), weights (load + fold), weights
hash (sha256 of the weights file), file hashes (sha256 of every image, the content key),
network (``InceptionExtractor.forward``), Fréchet (``metrics.fid.frechet_distance``) and
the rest (decode wait, statistics, the record). Medians over ``--rounds``; min–max of the
ratios. The FID of every run is printed and must be identical between schedules.

    python benchmarks/bench_split.py [--n 300] [--rounds 3] [--seed 1] [--data ../shared/data]
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
sys.path.insert(0, str(REPO / "benchmarks"))

CHILD = r"""
import json, os, sys, time, warnings
t_start = time.time()
warnings.filterwarnings("ignore")
mode, a, b = sys.argv[1:4]
spent = {}

def timed(owner, attr, key):
    fn = getattr(owner, attr)
    def wrapper(*args, **kw):
        t = time.perf_counter()
        try:
            return fn(*args, **kw)
        finally:
            spent[key] = spent.get(key, 0.0) + time.perf_counter() - t
    setattr(owner, attr, wrapper)

import numpy as np
import torch
from facemetrics.extractors import inception as inc
from facemetrics.pipeline import features
from facemetrics.metrics import fid as fidm
if mode == "network":
    from facemetrics.imaging.images import load_rgb, scan
    src = scan(b)
    ex = inc.InceptionExtractor()
    ex.load("cpu")
    prep = ex.preprocessor()
    imgs = np.stack([prep(load_rgb(src, n))["image"] for n in src.names])
    ex.forward({"image": imgs[:32]})  # warm-up
    t = time.perf_counter()
    for i in range(0, len(imgs), 32):
        ex.forward({"image": imgs[i:i + 32]})
    dt = time.perf_counter() - t
    print("SPLIT " + json.dumps({"rate": len(imgs) / dt}))
    raise SystemExit
import facemetrics
timed(inc.InceptionExtractor, "forward", "network")
timed(inc.InceptionExtractor, "load", "weights")
timed(inc, "sha256_file", "weights_hash")
timed(features, "file_digests", "file_hashes")
timed(fidm, "frechet_distance", "frechet")
t = time.perf_counter()
startup = time.time() - float(os.environ["SPLIT_T0"])
rec = facemetrics.score(a, b, metrics="fid", device="cpu", cache=False, progress=False)
call = time.perf_counter() - t
print("SPLIT " + json.dumps({"fid": rec["metrics"]["fid"]["value"], "call": call, "startup": startup,
                             "spent": spent, "t_end": time.time()}))
"""

PARTS = ("startup", "weights", "weights_hash", "file_hashes", "network", "frechet")


def run_cli(a: Path, b: Path) -> dict:
    """The ``score`` command in a fresh process: its FID (from the record) and wall time."""
    with tempfile.TemporaryDirectory(prefix="fm-split-cli-") as tmp:
        rec = Path(tmp) / "rec.json"
        env = dict(os.environ, PYTHONPATH=str(REPO), FACEMETRICS_CACHE=str(Path(tmp) / "cache"))
        t0 = time.time()
        out = subprocess.run([sys.executable, "-m", "facemetrics", "score", str(a), str(b), "--metrics", "fid",
                              "--device", "cpu", "--no-cache", "-q", "--json", str(rec)], env=env,
                             capture_output=True, text=True, check=False)
        wall = time.time() - t0
        if out.returncode:
            sys.exit(f"cli failed:\n{out.stderr[-3000:]}")
        return {"fid": json.loads(rec.read_text())["metrics"]["fid"]["value"], "process": wall}


def run_child(mode: str, a: Path, b: Path) -> dict:
    if mode == "cli":
        return run_cli(a, b)
    env = dict(os.environ, PYTHONPATH=str(REPO), SPLIT_T0=repr(time.time()))
    if mode in ("turns", "overlap"):
        env["FACEMETRICS_OVERLAP"] = "0" if mode == "turns" else "1"
    t0 = time.time()
    out = subprocess.run([sys.executable, "-c", CHILD, mode, str(a), str(b)], env=env, capture_output=True,
                         text=True, check=False)
    wall = time.time() - t0
    lines = [x for x in out.stdout.splitlines() if x.startswith("SPLIT ")]
    if out.returncode or not lines:
        sys.exit(f"{mode} failed:\n{out.stderr[-3000:]}")
    res = json.loads(lines[-1][6:])
    res["process"] = wall
    return res


def fmt_range(xs: list[float]) -> str:
    return f"{statistics.median(xs):.0%} ({min(xs):.0%}–{max(xs):.0%})"


def main() -> int:
    from bench_peers import draw_sets

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=300)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FACEMETRICS_DATA", REPO.parent / "shared" / "data")))
    a = ap.parse_args()
    modes = ["network", "turns", "overlap", "cli"]
    rows: dict[str, list[dict]] = {m: [] for m in modes}
    with tempfile.TemporaryDirectory() as tmp:
        real, fake = draw_sets(a.data, a.n, a.seed, Path(tmp))
        for r in range(a.rounds):
            order = modes[r % len(modes):] + modes[:r % len(modes)]
            for m in order:
                rows[m].append(run_child(m, real, fake))
                print(f"round {r + 1} {m}: " + json.dumps({k: v for k, v in rows[m][-1].items() if k != "spent"}),
                      file=sys.stderr, flush=True)
    n = 2 * a.n
    net = [x["rate"] for x in rows["network"]]
    load = os.getloadavg()[0]
    print(f"2×{a.n} LFW faces (seed {a.seed}), cpu, {os.cpu_count()} cores, {a.rounds} rounds, "
          f"load average {load:.2f} at the end; network alone {statistics.median(net):.2f} img/s "
          f"(median; min–max {min(net):.2f}–{max(net):.2f})\n")
    print("| schedule | call s | img/s (call) | of network (call) | of network (process) | FID |")
    print("| --- | ---: | ---: | ---: | ---: | ---: |")
    for m in ("turns", "overlap", "cli"):
        of_proc = [n / x["process"] / r for x, r in zip(rows[m], net)]
        fids = ", ".join(f"{f:.6f}" for f in sorted({round(x["fid"], 6) for x in rows[m]}))
        if m == "cli":  # the command: process only
            print(f"| {m} (`score` command) | – | – | – | {fmt_range(of_proc)} | {fids} |")
            continue
        call = [x["call"] for x in rows[m]]
        of_call = [n / x["call"] / r for x, r in zip(rows[m], net)]
        print(f"| {m} | {statistics.median(call):.1f} | {n / statistics.median(call):.2f} | {fmt_range(of_call)} | "
              f"{fmt_range(of_proc)} | {fids} |")
    print("\n| schedule | process s | " + " | ".join(PARTS) + " | decode wait + rest |")
    print("| --- | ---: |" + " ---: |" * (len(PARTS) + 1))
    for m in ("turns", "overlap"):
        med = {p: statistics.median([(x["startup"] if p == "startup" else x["spent"].get(p, 0.0)) for x in rows[m]])
               for p in PARTS}
        proc = statistics.median([x["process"] for x in rows[m]])
        rest = proc - sum(med.values())
        print(f"| {m} | {proc:.1f} | " + " | ".join(f"{med[p]:.2f}" for p in PARTS) + f" | {rest:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
