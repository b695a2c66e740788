"""Face embedder throughput: dlib embeddings per second, alignment on vs off, one core vs every core.

Runs the real pipeline (``facemetrics.pipeline.features.extract``, cache off) on the same
LFW images for ``--face-align auto`` (detect + 5-point alignment) and ``never``
(centred resize only), plus the two stages alone (preprocessing per image, the
descriptor network per batch of chips), and prints medians over ``--repeats`` runs
as a markdown table. Pin the cores with ``taskset -c 0,1`` to measure "2 cores".

A second table compares a plain single-process dlib loop (decode, preprocess, descriptor
per batch, no pipeline: the single-core rate) with the pipeline at ``--workers`` 1 and
N (N > 1: dlib in N worker processes, :class:`facemetrics.extractors.face_dlib.DlibProcessRunner`);
every timed pipeline run starts its own worker pool, as one ``score`` command does, and
the embeddings are checked equal to the plain loop's bit for bit.

    python benchmarks/bench_face.py --data /path/to/shared/data --n 200 --repeats 3 [--workers 2]
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
from facemetrics.extractors import face_dlib as fd
from facemetrics.pipeline.features import default_workers, extract
from facemetrics.imaging.images import ImageSource, load_rgb


def lfw_subset(data: Path, n: int, seed: int) -> ImageSource:
    """``n`` LFW deep-funneled ``Name_0001.jpg`` images of different people, seeded draw."""
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


def plain_loop(src: ImageSource, batch_size: int) -> np.ndarray:
    """The single-core reference: decode, preprocess and embed in this thread, batch by batch."""
    ex = build_extractor("dlib")
    ex.load()
    prep = ex.preprocessor()
    out = []
    for i in range(0, len(src.names), batch_size):
        items = [prep(load_rgb(src, n)) for n in src.names[i : i + batch_size]]
        out.append(ex.forward({k: np.stack([it[k] for it in items]) for k in items[0]})["embedding"])
    return np.concatenate(out)


def cores_table(src: ImageSource, workers: int, batch_size: int, repeats: int) -> list[str]:
    """Markdown rows: plain loop vs pipeline at 1 and ``workers`` workers (alternating, fresh pool each run)."""
    ref = plain_loop(src, batch_size)  # warm-up (file cache, dlib objects of this thread) and the reference
    cases = {"plain single-process loop": None, "pipeline, --workers 1": 1, f"pipeline, --workers {workers}": workers}
    walls: dict[str, list[float]] = {c: [] for c in cases}
    for _ in range(repeats):  # alternate the cases so drift in machine load hits all of them
        for case, w in cases.items():
            fd.shutdown_pool()  # each run starts its own worker processes, as one command does
            t = time.perf_counter()
            if w is None:
                emb = plain_loop(src, batch_size)
            else:
                emb = extract(src, [build_extractor("dlib")], batch_size=batch_size, workers=w, cache=False,
                              progress=False).outputs["dlib"]["embedding"]
            walls[case].append(time.perf_counter() - t)
            if not np.array_equal(emb, ref):
                sys.exit(f"{case}: embeddings differ from the plain loop's")
    fd.shutdown_pool()
    base = walls["plain single-process loop"]
    n = len(src.names)
    rows = ["| dlib embedding (--face-align auto) | median wall s | images/s | vs plain loop (median; min–max over rounds) |",
            "| --- | --- | --- | --- |"]
    for case, ws in walls.items():
        ratios = [b / w for b, w in zip(base, ws)]
        rows.append(f"| {case} | {statistics.median(ws):.2f} | {n / statistics.median(ws):.1f} | "
                    f"{statistics.median(ratios):.2f}× ({min(ratios):.2f}–{max(ratios):.2f}) |")
    rows.append(f"\nEmbeddings of every run equal the plain loop's bit for bit ({n} images).")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FACEMETRICS_DATA", "../shared/data")))
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--batch-size", type=int, default=32)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=None, help="workers of the every-core case [default: the "
                    "pipeline's default, CPU count at most 8]")
    ap.add_argument("--only-cores", action="store_true", help="only the plain loop vs workers table")
    args = ap.parse_args()
    workers = args.workers or default_workers()

    load_before = os.getloadavg()[0]
    src = lfw_subset(args.data, args.n, args.seed)
    if args.only_cores:
        cores = cores_table(src, workers, args.batch_size, args.repeats)
        print(f"{args.n} LFW deep-funneled 250×250 images (seed {args.seed}), batch {args.batch_size}, "
              f"{args.repeats} alternating rounds; {platform.machine()}, {len(os.sched_getaffinity(0))} cores "
              f"usable, 1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after\n")
        print("\n".join(cores))
        return
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
        for w in sorted({1, workers}):
            t_pipe = timed(
                lambda: extract(src, [ex], batch_size=args.batch_size, workers=w, cache=False, progress=False),
                args.repeats,
            )
            rows.append((align, w, t_pipe, t_prep, t_fwd, detected))
    fd.shutdown_pool()
    cores = cores_table(src, workers, args.batch_size, args.repeats)
    n = len(imgs)
    print(f"{n} LFW deep-funneled 250×250 images (seed {args.seed}), batch {args.batch_size}, "
          f"median of {args.repeats}; {platform.machine()}, {len(os.sched_getaffinity(0))} cores usable, "
          f"1-min load average {load_before:.1f} before / {os.getloadavg()[0]:.1f} after\n")
    print("Rates are images per wall-clock second (images per CPU-second of this process in brackets; with "
          "more than one worker dlib runs in worker processes, whose CPU time is not counted).\n")
    print("| --face-align | pipeline workers | pipeline | preprocessing alone | descriptor alone | faces found |")
    print("| --- | --- | --- | --- | --- | --- |")

    def rate(t):
        return f"{n / t[0]:.1f} ({n / t[1]:.1f})"

    for align, w, pipe, pre, fwd, det in rows:
        pipe_rate = rate(pipe) if w == 1 else f"{n / pipe[0]:.1f} (–)"
        print(f"| {align} | {w} | {pipe_rate} | {rate(pre)} | {rate(fwd)} | {det}/{n} |")
    print()
    print("\n".join(cores))


if __name__ == "__main__":
    main()
