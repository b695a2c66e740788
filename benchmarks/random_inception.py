#!/usr/bin/env python
"""Write a TorchScript of the FID Inception *layout* with seeded random weights.

For speed checks on a machine that cannot receive the 87 MB FID weights file: the file
has the same ``.layers`` parameters (names, shapes) as the real one, so facemetrics loads
it through the same path (batch norm folded, channels-last, eager) and the timings are the
real network's; the features, and so FID/KID values, are not the protocol's.
Weights: ``torch.manual_seed(SEED)`` then :class:`facemetrics.nets.inception.InceptionFID`'s
own initialisation (Kaiming-normal convolutions, identity batch norm).

Usage: python benchmarks/random_inception.py DEST [--seed 0]
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def main() -> int:
    import torch

    from facemetrics.nets.inception import InceptionFID

    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("dest", type=Path)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    net = InceptionFID().eval()

    class _Layers(torch.nn.Module):
        def __init__(self, layers: torch.nn.Module) -> None:
            super().__init__()
            self.layers = layers

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.layers(x)

    tmp = a.dest.with_name(f".{a.dest.name}.{os.getpid()}.tmp")
    # traced, not scripted (the eager definition is not scriptable); a batch of 2 so that no
    # batch size is baked in as a constant
    with torch.no_grad():
        traced = torch.jit.trace(_Layers(net), torch.zeros(2, 3, 299, 299))
    traced.save(str(tmp))
    os.replace(tmp, a.dest)
    print(f"{a.dest}: FID Inception layout, seeded random weights (seed {a.seed}); FID values are not the protocol's")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
