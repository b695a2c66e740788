#!/usr/bin/env python
"""How the torch JPEG decoder's pixels compare with PIL's (the protocol's) on real faces.

For the first ``--n`` LFW ``Name_0001.jpg`` files (250×250) and CelebA 89×109 files:
``torch_input.decode_images(blobs, --device)`` (torchvision: libjpeg-turbo on the CPU, nvjpeg
on CUDA) against ``images.decode_rgb`` (``PIL.Image.open(...).convert("RGB")``). Prints the
max absolute difference, the fraction of identical pixel values, and how many images are
identical, per set.

Usage: python benchmarks/decode_torch_input.py [--n 200] [--device cpu] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def compare(blobs: list[bytes], device: str) -> tuple[int, float, int]:
    """(max |torch − PIL|, fraction of identical values, images identical) over ``blobs``."""
    import numpy as np

    from facemetrics.imaging import torch_input as ti
    from facemetrics.imaging.images import decode_rgb

    max_abs, same, total, images = 0, 0, 0, 0
    for data, t in zip(blobs, ti.decode_images(blobs, device)):
        d = np.abs(t.permute(1, 2, 0).cpu().numpy().astype(np.int16) - decode_rgb(data).astype(np.int16))
        max_abs = max(max_abs, int(d.max()))
        same, total, images = same + int((d == 0).sum()), total + d.size, images + int(d.max() == 0)
    return max_abs, same / total, images


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", default=os.environ.get("FACEMETRICS_DATA", str(REPO.parent / "shared" / "data")))
    args = ap.parse_args()
    data = Path(args.data)
    lfw = data / "lfw" / "deepfunneled"
    sets = {"lfw": [lfw / p / f"{p}_0001.jpg" for p in sorted(q.name for q in lfw.iterdir() if q.is_dir())],
            "celeba": sorted((data / "celeba" / "89x109").glob("*.jpg"))}
    print(f"device {args.device}")
    print("| set | images | max abs diff | identical values | identical images |")
    print("| --- | ---: | ---: | ---: | ---: |")
    for name, files in sets.items():
        if not files:
            print(f"| {name} | 0 | not under {data} | | |")
            continue
        blobs = [f.read_bytes() for f in files[:args.n]]
        max_abs, frac, same = compare(blobs, args.device)
        print(f"| {name} | {len(blobs)} | {max_abs} | {frac:.6f} | {same} |")


if __name__ == "__main__":
    main()
