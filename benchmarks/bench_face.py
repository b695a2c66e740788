"""Face embedder throughput: dlib embeddings per second, alignment on vs off.

Runs the real pipeline (``facemetrics.pipeline.features.extract``, cache off) on the same
LFW images for ``--face-align auto`` (detect + 5-point alignment) and ``never``
(centred resize only), plus the two stages alone (preprocessing per image, the
descriptor network per batch of chips), and prints medians over ``--repeats`` runs
as a markdown table. Pin the cores with ``taskset -c 0,1`` to measure "2 cores".

    python benchmarks/bench_face.py --data /path/to/shared/data --n 200 --repeats 3
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from facemetrics.extractors import build_extractor
from facemetrics.pipeline.features import extract
from facemetrics.imaging.images import ImageSource, load_rgb


def lfw_subset(data: Path, n: int, seed: int) -> ImageSource:
    root = data / "lfw" / "deepfunneled"
    people = sorted(p.name for p in root.iterdir() if p.is_dir())
    pick = np.random.default_rng(seed).choice(len(people), size=n, replace=False)
    names = sorted(f"{people[i]}/{people[i]}_0001.jpg" for i in pick)
    return ImageSource(root.resolve(), "folder", tuple(names))


def timed(fn, repeats: int) -> tuple[float, float]:
    """Median wall seconds and median CPU seconds (all threads of this process)."""
    wall, cpu = [], []
    for _ in range(repeats):
        t, c = time.perf_counter(), time.process_time()
        fn()
        wall.append(time.perf_counter() - t)
        cpu.append(time.process_time() - c)
    return statistics.median(wall), statistics.median(cpu)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FACEMETRICS_DATA", "../shared/data")))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    load_before = os.getloadavg()[0]
    src = lfw_subset(args.data, args.n, args.seed)
    imgs = [load_rgb(src, n) for n in src.names]
    rows = []
    for align in ("auto", "never"):
        ex = build_extractor("dlib", align=align)
        ex.load()
        prep = ex.preprocessor()
        prep(imgs[0])  # build the per-thread dlib objects outside the timing
        items = [prep(im) for im in imgs]
        detected = int(sum(bool(it["detected"]) for it in items))
        chips = {k: np.stack([it[k] for it in items]) for k in items[0]}
        t_prep = timed(lambda: [prep(im) for im in imgs], args.repeats)

        def fwd():
            for i in range(0, len(imgs), args.batch_size):
                ex.forward({k: v[i : i + args.batch_size] for k, v in chips.items()})

        t_fwd = timed(fwd, args.repeats)
        for workers in (1, 2):
            t_pipe = timed(
                lambda: extract(src, [ex], batch_size=args.batch_size, workers=workers, cache=False, progress=False),
                args.repeats,
            )
            rows.append((align, workers, t_pipe, t_prep, t_fwd, detected))
    n = len(imgs)
    print(f"{n} LFW deep-funneled 250×250 images (seed {args.seed}), batch {args.batch_size}, "
          f"median of {args.repeats}; {platform.machine()}, {len(os.sched_getaffinity(0))} cores usable, "
          f"1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after\n")
    print("Rates are images per wall-clock second (images per CPU-second of this process in brackets).\n")
    print("| --face-align | pipeline threads | pipeline | preprocessing alone | descriptor alone | faces found |")
    print("| --- | --- | --- | --- | --- | --- |")

    def rate(t):
        return f"{n / t[0]:.1f} ({n / t[1]:.1f})"

    for align, w, pipe, pre, fwd, det in rows:
        print(f"| {align} | {w} | {rate(pipe)} | {rate(pre)} | {rate(fwd)} | {det}/{n} |")


if __name__ == "__main__":
    main()
