"""Seeded random facenet-pytorch-shaped state dicts and inputs (test helper).

The same generator produced ``tests/data/facenet_reference_embeddings.npy`` with
facenet-pytorch 2.6.0's own ``InceptionResnetV1`` (outside this repository), so
our network's output on it is compared with the reference implementation's.
"""
from __future__ import annotations

import numpy as np


def random_state_dict(keys: list[tuple[str, list[int], str]], seed: int = 0) -> dict:
    """Tensors with the given keys/shapes, scaled so activations stay finite."""
    import torch

    g = torch.Generator().manual_seed(seed)
    sd = {}
    for k, shape, dtype in keys:
        if k.endswith("num_batches_tracked"):
            sd[k] = torch.tensor(0, dtype=torch.long)
        elif k.endswith("running_var"):
            sd[k] = torch.rand(shape, generator=g) * 0.5 + 0.75
        elif k.endswith("running_mean"):
            sd[k] = torch.randn(shape, generator=g) * 0.1
        elif (k.endswith("bn.weight")) or k == "last_bn.weight":
            sd[k] = 1.0 + 0.1 * torch.randn(shape, generator=g)
        elif len(shape) >= 2:
            fan_in = int(np.prod(shape[1:]))
            sd[k] = torch.randn(shape, generator=g) * (1.0 / fan_in) ** 0.5
        else:
            sd[k] = torch.randn(shape, generator=g) * 0.01
    return sd


def reference_input(n: int = 2, seed: int = 123) -> np.ndarray:
    """``n`` seeded uint8 160×160×3 images."""
    return np.random.default_rng(seed).integers(0, 256, (n, 160, 160, 3), dtype=np.uint8)


def read_key_table(path) -> list[tuple[str, list[int], str]]:
    rows = []
    with open(path) as f:
        lines = f.read().splitlines()
    for line in lines:
        if line.startswith("#") or not line.strip():
            continue
        k, s, d = line.split("\t")
        rows.append((k, [] if s == "scalar" else [int(x) for x in s.split("x")], d))
    return rows
