#!/usr/bin/env python
"""facemetrics against the other FID tools on the same 2×N LFW images, in one run.

Tools (each run offline, on weights rebuilt from the packaged TorchScript by
``tests/reference_tools.py``, the same helpers the tests use):

  fm-clean, fm-tf1, fm-pytorch-fid
                  ``facemetrics.score(metrics="fid", preset=...)``, feature cache off, default workers
  clean-fid       clean-fid 0.1.35 ``fid.compute_fid(mode="clean")`` with its defaults
                  (num_workers=12, batch_size=32)
  clean-fid-cores the same with num_workers = the usable cores
  torch-fidelity  torch-fidelity 0.4.0 ``calculate_metrics(fid=True, cuda=False, cache=False)``, its
                  defaults otherwise (batch 64, ``min(4, 2·CPUs)`` loader workers)
  pytorch-fid     pytorch-fid 0.3.0 ``calculate_fid_given_paths`` with its command line's defaults
                  (batch 50, dims 2048, ``min(cores, 8)`` loader workers)
  torchmetrics    torchmetrics 1.9.0 ``FrechetInceptionDistance(feature=2048, antialias=False)``, images
                  decoded with PIL (as the tests do) and fed in batches of 50; its decoding is timed too

Every measurement is a fresh process (one subprocess per tool per round); the order of
the tools is rotated from round to round. Reported per tool: FID and its relative
difference to facemetrics with the matching preset (clean-fid: clean; torch-fidelity and
torchmetrics: tf1; pytorch-fid: pytorch-fid), medians over the rounds of the process wall
time (interpreter start, imports, weights, scoring) and of the scoring call alone,
images/s (2N / scoring call), peak RSS, and the facemetrics/tool time ratios (median and
min–max over rounds, each round's facemetrics run against the same round's tool run).

Peak memory: ``ru_maxrss`` of the child from ``os.wait4`` (Linux: the largest of the
child and its reaped descendants, not their sum); and the peak of the summed PSS of the
child's whole process tree (decode workers included), sampled every 0.2 s from /proc.

    python benchmarks/bench_peers.py [--n 500] [--rounds 3] [--seed 0] [--data ../shared/data]
        [--out benchmarks/results/peers.md] [--tools fm-clean,clean-fid,...]
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
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "tests"))  # reference_tools: the tests' offline weights for the other tools

#: tool -> the facemetrics case with the matching preset
MATCH = {"clean-fid": "fm-clean", "clean-fid-cores": "fm-clean", "torch-fidelity": "fm-tf1",
         "pytorch-fid": "fm-pytorch-fid", "torchmetrics": "fm-tf1"}
FM = ("fm-clean", "fm-tf1", "fm-pytorch-fid")
TOOLS = (*FM, *MATCH)

CHILD = r"""
import json, os, sys, time, warnings
t0 = time.perf_counter()
warnings.filterwarnings("ignore")
tool, a, b = sys.argv[1:4]
cores = len(os.sched_getaffinity(0))
import torch
if tool.startswith("fm-"):
    import facemetrics
    t = time.perf_counter()
    rec = facemetrics.score(a, b, metrics="fid", preset=tool[3:], device="cpu", cache=False, progress=False)
    value = rec["metrics"]["fid"]["value"]
elif tool in ("clean-fid", "clean-fid-cores"):
    from cleanfid import fid
    kw = {} if tool == "clean-fid" else {"num_workers": cores}
    t = time.perf_counter()
    value = fid.compute_fid(a, b, mode="clean", device=torch.device("cpu"), verbose=False, **kw)
elif tool == "torch-fidelity":
    import torch_fidelity
    t = time.perf_counter()
    value = torch_fidelity.calculate_metrics(input1=a, input2=b, fid=True, cuda=False, cache=False,
                                             verbose=False)["frechet_inception_distance"]
elif tool == "pytorch-fid":
    from pytorch_fid.fid_score import calculate_fid_given_paths
    t = time.perf_counter()
    value = calculate_fid_given_paths([a, b], batch_size=50, device="cpu", dims=2048, num_workers=min(cores, 8))
elif tool == "torchmetrics":
    import numpy as np
    from PIL import Image
    from torchmetrics.image.fid import FrechetInceptionDistance
    t = time.perf_counter()
    metric = FrechetInceptionDistance(feature=2048, antialias=False, normalize=False)
    for folder, real in ((a, True), (b, False)):
        files = sorted(os.path.join(folder, f) for f in os.listdir(folder))
        for i in range(0, len(files), 50):
            imgs = np.stack([np.asarray(Image.open(f).convert("RGB")) for f in files[i:i + 50]])
            metric.update(torch.from_numpy(imgs).permute(0, 3, 1, 2), real=real)
    value = metric.compute().item()
else:
    raise SystemExit(f"unknown tool {tool}")
call = time.perf_counter() - t
print("PEERS " + json.dumps({"value": float(value), "call": call, "before_call": t - t0}))
"""


def draw_sets(data: Path, n: int, seed: int, tmp: Path) -> tuple[Path, Path]:
    """Two folders of links to ``n`` LFW ``Name_0001.jpg`` faces each, 2n different people (seeded draw)."""
    root = (data / "lfw" / "deepfunneled").resolve()
    people = sorted(p.name for p in root.iterdir() if p.is_dir())
    if 2 * n > len(people):
        sys.exit(f"--n {n}: LFW has {len(people)} people, at most {len(people) // 2} per side")
    pick = np.random.default_rng(seed).choice(len(people), size=2 * n, replace=False)
    sets = []
    for side, idx in (("real", pick[:n]), ("fake", pick[n:])):
        d = tmp / side
        d.mkdir()
        for i in idx:
            (d / f"{people[i]}_0001.jpg").symlink_to(root / people[i] / f"{people[i]}_0001.jpg")
        sets.append(d)
    return sets[0], sets[1]


def _parents() -> dict[int, int]:
    """pid -> parent pid of every process (from /proc/*/stat)."""
    out = {}
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                with open(f"/proc/{entry.name}/stat", "rb") as f:
                    stat = f.read()
            except OSError:
                continue
            out[int(entry.name)] = int(stat[stat.rindex(b")") + 2:].split()[1])
    return out


def _tree_pss_kb(root: int) -> int:
    """Summed PSS (kB) of ``root`` and all its descendants now."""
    parents = _parents()
    tree, grew = {root}, True
    while grew:
        more = {p for p, pp in parents.items() if pp in tree} - tree
        grew = bool(more)
        tree |= more
    total = 0
    for pid in tree:
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                total += next(int(ln.split()[1]) for ln in f if ln.startswith("Pss:"))
        except (OSError, StopIteration, ValueError):
            continue
    return total


@dataclass
class Run:
    tool: str
    value: float
    process_wall: float
    call: float
    maxrss_mb: float
    tree_pss_mb: float


@dataclass
class Sampler:
    """Peak summed PSS of a process tree, sampled in a thread until stopped."""

    pid: int
    interval: float = 0.2
    peak_kb: int = 0
    _stop: threading.Event = field(default_factory=threading.Event)

    def __post_init__(self) -> None:
        self._thread = threading.Thread(target=self._loop, daemon=True)
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak_kb = max(self.peak_kb, _tree_pss_kb(self.pid))

    def stop(self) -> int:
        self._stop.set()
        self._thread.join()
        return self.peak_kb


def run_tool(tool: str, a: Path, b: Path, env: dict[str, str], tmp: Path) -> Run:
    """One fresh process scoring ``tool`` on (a, b); wall from the parent, rusage from ``os.wait4``."""
    out_path, err_path = tmp / f"{tool}.out", tmp / f"{tool}.err"
    with open(out_path, "w") as out, open(err_path, "w") as err:
        t = time.perf_counter()
        p = subprocess.Popen([sys.executable, "-c", CHILD, tool, str(a), str(b)], env=env, stdout=out, stderr=err)
        sampler = Sampler(p.pid)
        _, status, usage = os.wait4(p.pid, 0)
        wall = time.perf_counter() - t
        peak_pss = sampler.stop()
    p.returncode = os.waitstatus_to_exitcode(status)  # reaped here: Popen must not wait again
    lines = [ln for ln in out_path.read_text().splitlines() if ln.startswith("PEERS ")]
    if p.returncode != 0 or not lines:
        sys.exit(f"{tool} failed (exit {p.returncode}):\n{err_path.read_text()[-3000:]}")
    r = json.loads(lines[-1][6:])
    return Run(tool, r["value"], wall, r["call"], usage.ru_maxrss / 1024, peak_pss / 1024)


def offline_env(tmp: Path) -> dict[str, str]:
    """Environment of the children: the tools' weights built here, nothing downloaded, caches in ``tmp``."""
    from reference_tools import ensure_cleanfid_inception, write_reference_weights

    ensure_cleanfid_inception()  # clean-fid reads /tmp/inception-2015-12-05.pt
    torch_home = tmp / "torch-home"
    write_reference_weights(torch_home)  # pytorch-fid's and torch-fidelity's hub files
    return dict(os.environ, PYTHONPATH=str(REPO), TORCH_HOME=str(torch_home), FACEMETRICS_OFFLINE="1",
                FACEMETRICS_CACHE=str(tmp / "fm-cache"), HF_HUB_OFFLINE="1")


def _ratio_cell(xs: list[float]) -> str:
    return f"{statistics.median(xs):.2f} ({min(xs):.2f}–{max(xs):.2f})"


def table(runs: dict[str, list[Run]], n: int) -> list[str]:
    """Markdown rows of the results (see module doc)."""
    rows = ["| tool | FID | rel. diff vs facemetrics (preset) | process wall s | scoring call s | images/s | "
            "peak RSS MB (wait4) | peak tree PSS MB | facemetrics / tool time, process (min–max) | "
            "facemetrics / tool time, call (min–max) |",
            "| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for tool, rs in runs.items():
        med = lambda attr: statistics.median(getattr(r, attr) for r in rs)  # noqa: E731
        value = rs[0].value
        if tool in MATCH and MATCH[tool] in runs:
            fm = runs[MATCH[tool]]
            ref = fm[0].value
            diff = f"{abs(value - ref) / abs(ref):.2e} ({MATCH[tool][3:]})"
            proc = _ratio_cell([f.process_wall / r.process_wall for f, r in zip(fm, rs)])
            call = _ratio_cell([f.call / r.call for f, r in zip(fm, rs)])
        else:
            diff, proc, call = "–", "–", "–"
        rows.append(f"| {tool} | {value:.6f} | {diff} | {med('process_wall'):.1f} | {med('call'):.1f} | "
                    f"{2 * n / med('call'):.1f} | {med('maxrss_mb'):.0f} | {med('tree_pss_mb'):.0f} | {proc} | {call} |")
    return rows


def versions() -> str:
    from importlib.metadata import PackageNotFoundError, version

    out = []
    for pkg in ("torch", "clean-fid", "torch-fidelity", "pytorch-fid", "torchmetrics"):
        try:
            out.append(f"{pkg} {version(pkg)}")
        except PackageNotFoundError:
            out.append(f"{pkg} (not installed)")
    return ", ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500, help="images per side")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--data", type=Path,
                    default=Path(os.environ.get("FACEMETRICS_DATA", str(REPO.parent / "shared" / "data"))))
    ap.add_argument("--out", type=Path, default=REPO / "benchmarks" / "results" / "peers.md")
    ap.add_argument("--tools", default=",".join(TOOLS), help=f"comma-separated subset of {','.join(TOOLS)}")
    args = ap.parse_args()
    tools = [t.strip() for t in args.tools.split(",") if t.strip()]
    unknown = sorted(set(tools) - set(TOOLS))
    if unknown:
        sys.exit(f"unknown tools {unknown}; choose from {', '.join(TOOLS)}")
    load_before = os.getloadavg()
    started = time.strftime("%Y-%m-%d %H:%M")
    runs: dict[str, list[Run]] = {t: [] for t in tools}
    with tempfile.TemporaryDirectory(prefix="fm-peers-") as tmpd:
        tmp = Path(tmpd)
        a, b = draw_sets(args.data, args.n, args.seed, tmp)
        env = offline_env(tmp)
        for r in range(args.rounds):
            order = tools[r % len(tools):] + tools[: r % len(tools)]  # rotate: each tool takes every position
            for tool in order:
                runs[tool].append(run_tool(tool, a, b, env, tmp))
                x = runs[tool][-1]
                print(f"round {r + 1}/{args.rounds} {tool}: FID {x.value:.6f}, {x.process_wall:.1f} s process, "
                      f"{x.call:.1f} s call", file=sys.stderr, flush=True)
    load_after = os.getloadavg()
    spread = {t: max(x.value for x in rs) - min(x.value for x in rs) for t, rs in runs.items()}
    lines = [
        "## facemetrics vs other FID tools (`benchmarks/bench_peers.py`)", "",
        f"Run {started} on {platform.machine()}, {len(os.sched_getaffinity(0))} usable cores "
        f"({os.cpu_count()} CPUs), CPU only; {versions()}. 2×{args.n} LFW deep-funneled 250×250 faces "
        f"(`Name_0001.jpg` of {2 * args.n} different people, seed {args.seed}), {args.rounds} round(s), each tool a "
        f"fresh process per round, order rotated between rounds. 1/5/15-min load average "
        f"{'/'.join(f'{x:.1f}' for x in load_before)} before, {'/'.join(f'{x:.1f}' for x in load_after)} after.",
        "",
        *table(runs, args.n),
        "",
        "Columns: FID of the first round (largest spread of a tool's FID over the rounds: "
        f"{max(spread.values()):.1e}); relative difference to facemetrics with the matching preset; medians "
        "over rounds of the process wall time (start-up, imports, weights, scoring) and of the scoring call "
        "alone; images/s = both sides' images / scoring call; peak RSS = `ru_maxrss` from `os.wait4` (the "
        "largest single process of the child's tree); peak tree PSS = summed proportional set size of the child "
        "and its worker processes, sampled every 0.2 s; facemetrics / tool = the matching facemetrics run's "
        "time over the tool's, per round (below 1: facemetrics is faster).",
    ]
    text = "\n".join(lines) + "\n"
    args.out.parent.mkdir(parents=True, exist_ok=True)
    from facemetrics.storage.atomic import atomic_write_text

    atomic_write_text(args.out, text)
    print(text)


if __name__ == "__main__":
    main()
