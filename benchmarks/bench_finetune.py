"""Benchmark: Inception fine-tuning throughput (training images per second) on CPU.

Measures one optimiser step (forward, loss, backward, Adam) of the face Inception on
real LFW images (decoded and resized beforehand, so only the network is timed),
at 299 px (the FID protocol) and at the test size (128 px), with the whole trunk
trainable ("none") and with the trunk frozen up to mixed_9 (the test setting).
Reports the median over the timed steps after one warm-up step, and separately
the decode + resize rate of the data pipeline.

    FACEMETRICS_DATA=/path/to/shared/data python benchmarks/bench_finetune.py --threads 2

Prints a markdown table (paste into benchmarks/RESULTS.md).
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=3, help="timed steps per setting (after 1 warm-up)")
    ap.add_argument("--sizes", default="299,128")
    ap.add_argument("--freeze", default="none,mixed_9")
    args = ap.parse_args()

    import torch

    from facemetrics.nets.face_inception import Preprocess, build_model
    from facemetrics.imaging.images import decode_rgb
    from facemetrics.nets.inception import default_fid_weights, load_fid_state, normalize, scripted_layers_state

    torch.set_num_threads(args.threads)
    data = Path(os.environ.get("FACEMETRICS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    root = data / "lfw" / "deepfunneled"
    people = sorted(p for p in root.iterdir() if p.is_dir() and len(list(p.iterdir())) >= 20)
    files = [sorted(p.iterdir())[0] for p in people][: args.batch_size]
    labels = torch.arange(len(files)) % 5
    state = scripted_layers_state(default_fid_weights())
    print(f"# torch {torch.__version__}, {args.threads} threads, {platform.processor() or platform.machine()}, "
          f"load average {os.getloadavg()[0]:.1f}, batch {args.batch_size}", flush=True)
    rows = []
    for size in [int(s) for s in args.sizes.split(",")]:
        pre = Preprocess("clean", size)
        raw = [decode_rgb(f.read_bytes()) for f in files]
        t0 = time.perf_counter()
        imgs = [pre.resize(r) for r in raw]
        resize_rate = len(imgs) / (time.perf_counter() - t0)
        x = normalize(torch.stack([torch.from_numpy(i).permute(2, 0, 1) for i in imgs]))
        for freeze in args.freeze.split(","):
            torch.manual_seed(0)
            model = build_model(5, 0.2)
            load_fid_state(model.backbone, state)
            model.backbone.freeze_until(freeze)
            model.train()
            opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-4)
            times = []
            for step in range(args.steps + 1):
                t = time.perf_counter()
                _, logits = model(x)
                loss = torch.nn.functional.cross_entropy(logits, labels)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                if step:
                    times.append(time.perf_counter() - t)
            med = statistics.median(times)
            rows.append((size, freeze, len(files) / med, min(times), max(times), resize_rate))
            print(f"| {size} | {freeze} | {len(files) / med:.2f} | {min(times):.2f}–{max(times):.2f} "
                  f"| {resize_rate:.0f} |", flush=True)
    print("\n| image size | frozen up to | train images/s (median) | step seconds (min–max) | "
          "resize (clean) images/s |\n| --- | --- | --- | --- | --- |")
    for size, freeze, rate, lo, hi, rr in rows:
        print(f"| {size} | {freeze} | {rate:.2f} | {lo:.2f}–{hi:.2f} | {rr:.0f} |")


if __name__ == "__main__":
    main()
