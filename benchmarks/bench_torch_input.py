#!/usr/bin/env python
"""Input throughput of the clean preset: PIL decode+resize vs the torch path (facemetrics.imaging.torch_input).

Measures images/s for turning encoded JPEG bytes into 299×299×3 float network input
(the files are read into memory first, so disk time is not counted):

  pil           ``resize.resize_clean(images.decode_rgb(b))`` per image: what the scoring
                pipeline does today, one image per worker call (batch size has no effect)
  torch         ``torch_input.clean_batch(batch, device, dtype)``: torchvision decode
                (nvjpeg on CUDA) and the matmul resize, batched
  torch-resize  the resize alone (``resize_decoded``) on images already decoded on the device
  torch-decode  the decode alone (``decode_images``)

It runs in this one process with torch's default intra-op threads (printed). The median of
``--rounds`` rounds is printed as a markdown table. On CUDA every timed call ends with
``torch.cuda.synchronize()``.

Usage: python benchmarks/bench_torch_input.py [--n 64] [--rounds 5] [--batch 1 32] [--device cpu]
       [--decode-device DEVICE] [--dtype float32] [--data ../shared/data] [--set lfw|celeba]
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path
from typing import Callable

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def load_blobs(data: Path, which: str, n: int) -> list[bytes]:
    """``n`` encoded images: LFW ``Name_0001.jpg`` (250×250) or CelebA 89×109, sorted by name."""
    if which == "lfw":
        root = data / "lfw" / "deepfunneled"
        files = [root / p / f"{p}_0001.jpg" for p in sorted(q.name for q in root.iterdir() if q.is_dir())]
    else:
        files = sorted((data / "celeba" / "89x109").glob("*.jpg"))
    if len(files) < n:
        raise SystemExit(f"only {len(files)} images under {data} for --set {which}")
    return [f.read_bytes() for f in files[:n]]


def rate(fn: Callable[[], object], n_images: int, rounds: int, sync: Callable[[], None]) -> float:
    """Median images/s of ``fn`` (which processes ``n_images``) over ``rounds`` timed rounds, after a warm-up."""
    fn()
    sync()
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t)
    return n_images / statistics.median(times)


def batches(items: list, size: int) -> list[list]:
    return [items[i:i + size] for i in range(0, len(items), size)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=64, help="images per round")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batch", type=int, nargs="+", default=[1, 32])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--decode-device", default=None, help="where to decode (default: --device); cpu with a "
                    "CUDA --device: libjpeg-turbo decode, GPU resize")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--data", default=os.environ.get("FACEMETRICS_DATA", str(REPO.parent / "shared" / "data")))
    ap.add_argument("--set", default="lfw", choices=("lfw", "celeba"))
    args = ap.parse_args()

    import numpy as np
    import torch

    from facemetrics.imaging import torch_input as ti
    from facemetrics.imaging.images import decode_rgb
    from facemetrics.imaging.resize import resize_clean

    dtype = getattr(torch, args.dtype)
    cuda = args.device.startswith("cuda")
    sync = torch.cuda.synchronize if cuda else (lambda: None)
    blobs = load_blobs(Path(args.data), args.set, args.n)

    def pil() -> None:
        np.stack([resize_clean(decode_rgb(b)) for b in blobs])

    rows = [("pil", "-", rate(pil, len(blobs), args.rounds, sync))]
    for bs in args.batch:
        groups = batches(blobs, bs)
        decode_dev = args.decode_device or args.device
        decoded = [[t.to(args.device) for t in ti.decode_images(g, decode_dev)] for g in groups]

        def full() -> None:
            for g in groups:
                ti.clean_batch(g, args.device, decode_device=decode_dev, dtype=dtype)

        def resize_only() -> None:
            for d in decoded:
                ti.resize_decoded(d, dtype=dtype)

        def decode_only() -> None:
            for g in groups:
                ti.decode_images(g, decode_dev)

        rows += [("torch", bs, rate(full, len(blobs), args.rounds, sync)),
                 ("torch-resize", bs, rate(resize_only, len(blobs), args.rounds, sync)),
                 ("torch-decode", bs, rate(decode_only, len(blobs), args.rounds, sync))]

    dev = torch.cuda.get_device_name(0) if cuda else platform.processor() or platform.machine()
    print(f"{args.set}, {len(blobs)} images, median of {args.rounds} rounds; device {args.device} ({dev}), "
          f"decode on {args.decode_device or args.device}; "
          f"resize dtype {args.dtype}; torch threads {torch.get_num_threads()}, os.cpu_count() {os.cpu_count()}; "
          f"torch {torch.__version__}")
    print()
    print("| path | batch | images/s |")
    print("| --- | ---: | ---: |")
    for name, bs, r in rows:
        print(f"| {name} | {bs} | {r:,.0f} |")


if __name__ == "__main__":
    main()
