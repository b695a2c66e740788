#!/usr/bin/env python
"""FID of two LFW sets through the PIL input path vs the torch input path (facemetrics.imaging.torch_input).

Two disjoint sets of ``--n`` LFW faces (``Name_0001.jpg`` of the first 2n people, sorted by name,
as tests/conftest.py's ``lfw_200_pair``). For each set the Inception pool3 features come from
the same network (``InceptionExtractor.forward``) on:

  pil    ``resize.resize_clean(images.decode_rgb(b))``: the protocol (what ``score`` does);
  torch  ``torch_input.clean_batch(b, device, dtype=--dtype)``: torchvision decode (nvjpeg on
         CUDA) and the matmul resize.

It prints both FIDs, their difference, and the largest differences of network input and features.

Usage: python benchmarks/fid_torch_input.py [--n 100] [--device cpu] [--dtype float32] [--data ../shared/data]
"""
from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def lfw_sets(data: Path, n: int) -> tuple[list[bytes], list[bytes]]:
    root = data / "lfw" / "deepfunneled"
    people = sorted(p.name for p in root.iterdir() if p.is_dir())
    files = [root / p / f"{p}_0001.jpg" for p in people[:2 * n]]
    blobs = [f.read_bytes() for f in files]
    return blobs[:n], blobs[n:]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100)
    ap.add_argument("--batch", type=int, default=25)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--dtype", default="float32", choices=("float32", "float64"))
    ap.add_argument("--data", default=os.environ.get("FACEMETRICS_DATA", str(REPO.parent / "shared" / "data")))
    args = ap.parse_args()

    import numpy as np
    import torch

    from facemetrics.imaging import torch_input as ti
    from facemetrics.extractors.inception import InceptionExtractor
    from facemetrics.imaging.images import decode_rgb
    from facemetrics.metrics.fid import fid_from_stats
    from facemetrics.imaging.resize import resize_clean
    from facemetrics.stats import FeatureStats

    ex = InceptionExtractor()
    ex.load(args.device)
    dtype = getattr(torch, args.dtype)
    max_in = 0.0

    def features(blobs: list[bytes]) -> tuple[np.ndarray, np.ndarray]:
        nonlocal max_in
        pil, tor = [], []
        for i in range(0, len(blobs), args.batch):
            part = blobs[i:i + args.batch]
            a = np.stack([resize_clean(decode_rgb(b)) for b in part])
            got = ti.clean_batch(part, args.device, dtype=dtype)
            assert got.ok == list(range(len(part))), got.failed
            b = got.images.permute(0, 2, 3, 1).contiguous().cpu().numpy()
            max_in = max(max_in, float(np.abs(a - b).max()))
            pil.append(ex.forward({"image": a})["pool"])
            tor.append(ex.forward({"image": b})["pool"])
        return np.concatenate(pil), np.concatenate(tor)

    sets = lfw_sets(Path(args.data), args.n)
    (pa, ta), (pb, tb) = (features(s) for s in sets)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # n < 2048: rank-deficient covariance, same for both paths
        fid_pil = fid_from_stats(FeatureStats.from_features(pa), FeatureStats.from_features(pb)).value
        fid_torch = fid_from_stats(FeatureStats.from_features(ta), FeatureStats.from_features(tb)).value
    max_feat = float(max(np.abs(pa - ta).max(), np.abs(pb - tb).max()))
    print(f"2×{args.n} LFW, device {args.device}, resize dtype {args.dtype}")
    print(f"max |network input difference| ([0, 255] units): {max_in:.3g}")
    print(f"max |pool3 feature difference|: {max_feat:.3g} (max |feature| {float(np.abs(pa).max()):.3g})")
    print(f"FID pil   {fid_pil:.6f}")
    print(f"FID torch {fid_torch:.6f}")
    print(f"difference {fid_torch - fid_pil:+.3g} (relative {(fid_torch - fid_pil) / fid_pil:+.2g})")


if __name__ == "__main__":
    main()
