#!/usr/bin/env python
"""Write a Face2Text-v0.1-shaped ``clean.json`` of seeded *placeholder* captions for LFW images.

For speed checks on a machine that must not receive Face2Text (its terms forbid
redistribution): the LFW images travel, the captions are made up there, so
``python -m models sweep --data DATA`` runs unchanged. Each image gets 1-4 captions of
5-24 words drawn from a fixed vocabulary (``models.data`` synthetic words) with
``numpy.random.default_rng([seed, i])``. The captions say nothing true about the faces: a
model trained on them measures steps/s and the pipeline, not text-to-face quality.

Usage: python benchmarks/placeholder_captions.py DATA [--n 600] [--seed 0]
  DATA holds lfw/deepfunneled/; writes DATA/face2text/v0.1/clean.json (atomically) over the
  first N ``Name/Name_0001.jpg`` images in name order.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from models.data import _SYN_WORDS  # noqa: E402  (the one vocabulary of synthetic captions)


def placeholder_entries(images: list[str], seed: int) -> list[dict]:
    """v0.1 entries (``img_id``, ``image``, ``descriptions``) with seeded placeholder texts."""
    out, desc_id = [], 0
    for i, rel in enumerate(images):
        rng = np.random.default_rng([seed, i])
        descs = []
        for _ in range(int(rng.integers(1, 5))):
            words = rng.choice(_SYN_WORDS, size=int(rng.integers(5, 25)))
            descs.append({"desc_id": desc_id, "text": "a " + " ".join(words)})
            desc_id += 1
        out.append({"img_id": i + 1, "image": rel, "descriptions": descs})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", type=Path)
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    lfw = a.data / "lfw" / "deepfunneled"
    if not lfw.is_dir():
        ap.error(f"DATA: {lfw} is not a folder")
    images = sorted(f"{p.parent.name}/{p.name}" for p in lfw.glob("*/*_0001.jpg"))[: a.n]
    if len(images) < a.n:
        ap.error(f"--n {a.n}: only {len(images)} Name_0001.jpg images under {lfw}")
    dest = a.data / "face2text" / "v0.1" / "clean.json"
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(placeholder_entries(images, a.seed)))
    os.replace(tmp, dest)
    print(f"{dest}: placeholder captions for {len(images)} LFW images (seed {a.seed})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
