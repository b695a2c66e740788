"""The face-domain Inception: model (FID trunk + new head), preprocessing, checkpoint file.

Checkpoint format ``facemetrics.face-inception/1`` (a ``torch.save`` dict loadable
with ``weights_only=True``)::

    {"format": "facemetrics.face-inception/1",
     "arch": "inception-v3-tf2015-fid",
     "model": state_dict of FaceInception (backbone.* = the 2048-d trunk, head.* = Linear(2048, K)),
     "head": {"kind": "single"|"multi", "classes": [K names], "groups": [{"name","kind","outputs"}]},
     "preprocess": {"preset": "clean", "image_size": 299, "input": "(x-128)/128",
                    "shift": 128.0, "scale": 128.0, "resizer": "facemetrics.imaging.resize:clean"},
     "base_weights": {"file": "default_1.pt", "sha256": "..."},
     "data": {"root", "labels", "content_sha256", "n_images", "n_train", "n_val", ...},
     "validation": {"epoch", "accuracy", "chance", "loss", "per_group"},
     "history": [{"epoch", "train_loss", "train_acc", "val_loss", "val_acc", "seconds", "images_per_s"}],
     "config": {...training options...}, "epoch": int, "complete": bool,
     "facemetrics_version": str, "created": UTC ISO time}

A ``single`` head is a K-way softmax (cross-entropy); a ``multi`` head is K
independent sigmoids (masked binary cross-entropy) grouped as described in
:mod:`facemetrics.finetune.labels`.
"""
from __future__ import annotations

import os
from typing import Callable

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.storage.torchfile import load_torch_dict
from facemetrics.nets.weights import sha256_file  # noqa: F401  (re-exported for finetune/extractor)

FORMAT = "facemetrics.face-inception/1"
TRAIN_STATE_FORMAT = "facemetrics.face-inception-train-state/1"


# --------------------------------------------------------------------------- preprocessing

def get_resizer(preset: str, size: int) -> tuple[Callable[[np.ndarray], np.ndarray], str]:
    """``(resize, name)``: the core preset's resizer (:func:`facemetrics.imaging.resize.get_resizer`) at ``size``."""
    from facemetrics.imaging.resize import get_resizer as core_get_resizer

    return core_get_resizer(preset, size), f"facemetrics.imaging.resize:{preset}"


def normalisation(preset: str) -> tuple[float, float]:
    """``(shift, scale)`` of the preset: the network input is ``(x - shift) / scale``."""
    from facemetrics.imaging.resize import PRESET_NORMALISATION, check_preset

    return PRESET_NORMALISATION[check_preset(preset)]


class Preprocess:
    """Picklable resizer: ``resize(img H×W×3 uint8) -> size×size×3 float32 in [0, 255]``."""

    def __init__(self, preset: str, size: int) -> None:
        self.preset, self.size = preset, int(size)
        self._fn: Callable | None = None

    def __getstate__(self) -> dict:
        return {"preset": self.preset, "size": self.size}

    def __setstate__(self, state: dict) -> None:
        self.preset, self.size, self._fn = state["preset"], state["size"], None

    def resize(self, img: np.ndarray) -> np.ndarray:
        if self._fn is None:
            self._fn = get_resizer(self.preset, self.size)[0]
        out = np.asarray(self._fn(img), dtype=np.float32)
        if out.shape != (self.size, self.size, 3):
            raise ValueError(f"resizer returned shape {out.shape}, expected {(self.size, self.size, 3)}")
        return out


# --------------------------------------------------------------------------- model

def build_model(n_outputs: int, dropout: float = 0.0):
    """``FaceInception``: the FID trunk (random init) plus ``Dropout → Linear(2048, n_outputs)``."""
    import torch
    from torch import nn

    from facemetrics.nets.inception import POOL_DIM, InceptionFID

    class FaceInception(nn.Module):
        """``forward(x_normalised) -> (pool (N, 2048), logits (N, K))``."""

        def __init__(self) -> None:
            super().__init__()
            self.backbone = InceptionFID()
            self.dropout = nn.Dropout(dropout)
            self.head = nn.Linear(POOL_DIM, n_outputs)

        def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
            pool = self.backbone(x)
            return pool, self.head(self.dropout(pool))

    return FaceInception()


# --------------------------------------------------------------------------- checkpoint I/O

def load_checkpoint(path: str | os.PathLike, param: str | None = "--extractor") -> dict:
    """Read and validate a face-Inception checkpoint (see the module docstring).

    Raises :class:`FacemetricsError` for a missing or corrupted file, a file of
    another kind or format, and a network of another architecture (state-dict
    keys or shapes that do not match ``FaceInception``).
    """
    import torch

    from facemetrics.nets.inception import ARCH

    ck = load_torch_dict(path, "checkpoint", param)
    fmt = ck.get("format")
    if fmt != FORMAT:
        hint = ""
        if fmt == TRAIN_STATE_FORMAT:
            hint = " (this is a training-state file; pass the checkpoint written by --out)"
        elif fmt is None and ck and all(isinstance(v, torch.Tensor) for v in ck.values()):
            hint = " (it looks like a bare state dict)"
        raise FacemetricsError(
            f"{path} is not a facemetrics face-Inception checkpoint: format {fmt!r}, expected {FORMAT!r}{hint}",
            param,
        )
    if ck.get("arch") != ARCH:
        raise FacemetricsError(
            f"{path} holds architecture {ck.get('arch')!r}; this version reads {ARCH!r}", param
        )
    for key in ("model", "head", "preprocess"):
        if key not in ck:
            raise FacemetricsError(f"{path} lacks the {key!r} entry; the file is incomplete", param)
    head = ck["head"]
    classes = head.get("classes") or []
    if head.get("kind") not in ("single", "multi") or not classes:
        raise FacemetricsError(f"{path}: head has no classes or an unknown kind {head.get('kind')!r}", param)
    check_state_dict(ck["model"], len(classes), str(path), param)
    return ck


def check_state_dict(state: dict, n_outputs: int, where: str, param: str | None) -> None:
    """Refuse a state dict that does not fit ``FaceInception`` with ``n_outputs`` outputs."""
    model = build_model(n_outputs)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    bad = sorted(k for k in set(own) & set(state) if tuple(own[k].shape) != tuple(state[k].shape))
    if missing or unexpected or bad:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if bad:
            parts.append(f"{len(bad)} with other shapes (e.g. {bad[:3]})")
        raise FacemetricsError(
            f"{where}: the network is not the face-Inception architecture: " + "; ".join(parts), param
        )
