"""Image–text matcher of a run, for R-precision (``facemetrics --matcher damsm:CHECKPOINT``).

``load_matcher(checkpoint_path, device="cpu", kind=None)`` returns an object with

* ``encode_images(list of H×W×3 uint8) -> (n, d) float32``,
* ``encode_texts(list of str) -> (n, d) float32``,
* ``fingerprint() -> dict`` (what determines the embeddings),
* ``max_tokens: int`` (the text encoder's caption limit; longer captions are truncated
  with a warning naming how many).

Kinds: ``damsm`` = the checkpoint's DAMSM encoders (global image code from its image
encoder on the image resized (bilinear) to the generator's resolution, and the text
encoder's sentence feature: BiLSTM or CLIP text); ``clip`` = its CLIP model (image
embedding and text embedding; random weights unless the run loaded a pretrained file).
``kind=None`` picks the run's own matching loss. Scores are cosines of the two rows.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.nets.weights import sha256_file


class Matcher:
    def __init__(self, system, kind: str, identity: dict[str, Any], batch_size: int = 64) -> None:
        if kind == "damsm" and system.image_encoder is None:
            raise FacemetricsError(
                f"this checkpoint ({identity.get('variant')}) has no DAMSM encoders (it uses CLIP text and "
                "CLIP matching); use its CLIP matcher (kind='clip')", "--matcher")
        if kind == "clip" and system.clip_model is None:
            raise FacemetricsError(
                f"this checkpoint ({identity.get('variant')}) has no CLIP model; use kind='damsm'", "--matcher")
        if kind not in ("damsm", "clip"):
            raise FacemetricsError(f"matcher kind must be damsm or clip, got {kind!r}", "--matcher")
        self.system = system
        self.kind = kind
        self.identity = identity
        self.batch_size = batch_size
        self.coder_key = system.text_key if kind == "damsm" else "clip"
        self.max_tokens = int(system.coders[self.coder_key].max_tokens)
        self.resolution = int(system.cfg["model"]["resolution"])

    def fingerprint(self) -> dict[str, Any]:
        return {"matcher": self.kind, **self.identity, "max_tokens": self.max_tokens}

    # ------------------------------------------------------------------ images

    def _to_tensor(self, imgs: list[np.ndarray]):
        import torch

        prep = _ImagePrep(self.resolution if self.kind == "damsm" else None)
        return [torch.from_numpy(prep(a)) for a in imgs]

    def image_preprocessor(self) -> "_ImagePrep | None":
        """Per-image preprocessing for facemetrics' shared decode pass: the damsm kind resizes
        to the generator's resolution (fixed shape); the clip kind keeps image sizes, so it
        has no split path (None)."""
        return _ImagePrep(self.resolution) if self.kind == "damsm" else None

    def encode_preprocessed(self, batch: np.ndarray) -> np.ndarray:
        import torch

        rows = [self.encode_image_tensor(torch.from_numpy(np.ascontiguousarray(batch[i:i + self.batch_size]))
                                         .to(self.system.device)).cpu()
                for i in range(0, len(batch), self.batch_size)]
        return torch.cat(rows).numpy().astype(np.float32) if rows else np.zeros((0, 0), np.float32)

    def encode_image_tensor(self, x):
        """Embeddings of a batch of images in [-1, 1] (B, 3, H, W) already on the device."""
        import torch

        with torch.no_grad():
            if self.kind == "damsm":
                enc = self.system.image_encoder
                was = enc.training
                enc.eval()
                code = enc(x)[1]
                enc.train(was)
                return code.float()
            from models.text import clip_image_features

            return clip_image_features(self.system.clip_model, x)

    def encode_images(self, imgs: list[np.ndarray]) -> np.ndarray:
        import torch

        rows = []
        for i in range(0, len(imgs), self.batch_size):
            ts = self._to_tensor(imgs[i:i + self.batch_size])
            shapes = {tuple(t.shape) for t in ts}
            if len(shapes) == 1:
                rows.append(self.encode_image_tensor(torch.stack(ts).to(self.system.device)).cpu())
            else:  # mixed sizes (clip kind): one by one
                rows.extend(self.encode_image_tensor(t[None].to(self.system.device)).cpu() for t in ts)
        return torch.cat(rows).numpy().astype(np.float32) if rows else np.zeros((0, 0), np.float32)

    # ------------------------------------------------------------------ texts

    def encode_texts(self, texts: list[str]) -> np.ndarray:
        import torch

        coder = self.system.coders[self.coder_key]
        rows, n_trunc = [], 0
        for i in range(0, len(texts), self.batch_size):
            chunk = texts[i:i + self.batch_size]
            enc = [coder.encode(t, rng=None, policy="truncate") for t in chunk]
            n_trunc += sum(e[2] for e in enc)
            ids = torch.from_numpy(np.stack([e[0] for e in enc])).to(self.system.device)
            lens = torch.tensor([e[1] for e in enc], dtype=torch.int64, device=self.system.device)
            with torch.no_grad():
                if self.kind == "damsm" or self.system.text_key == "clip":
                    was = self.system.text_encoder.training
                    self.system.text_encoder.eval()
                    sent = self.system.text_encoder(ids, lens)[1]
                    self.system.text_encoder.train(was)
                else:
                    sent = self.system.clip_sentence({"clip": (ids, lens)})
            rows.append(sent.float().cpu())
        if n_trunc:
            warnings.warn(
                f"{n_trunc} of {len(texts)} captions exceed the {self.kind} matcher's limit of "
                f"{self.max_tokens} tokens and were truncated", stacklevel=2)
        return torch.cat(rows).numpy().astype(np.float32) if rows else np.zeros((0, 0), np.float32)


def matcher_for_system(system, kind: str | None = None, identity: dict | None = None) -> Matcher:
    from models import config as C

    kind = kind or system.cfg["loss"]["matching"]
    ident = {"variant": C.variant(system.cfg), **(identity or {})}
    if system.clip_info is not None:
        ident["clip"] = system.clip_info
    return Matcher(system, kind, ident)


def load_matcher(checkpoint_path: str, device: str = "cpu", kind: str | None = None) -> Matcher:
    """The matcher of a ``models`` checkpoint (see module docstring)."""
    from models.system import load_checkpoint, resolve_device, system_from_checkpoint

    dev = resolve_device(device)
    ck = load_checkpoint(checkpoint_path, param="--matcher")
    system = system_from_checkpoint(ck, dev, param="--matcher")
    system.eval()
    ident = {"checkpoint_sha256": sha256_file(ck["path"]), "step": ck["step"], "checkpoint": str(Path(ck["path"]).name)}
    return matcher_for_system(system, kind, ident)


class _ImagePrep:
    """Picklable: uint8 H×W×3 → (bilinear resize to ``size`` when given) → float32 (3, H, W) in [-1, 1]."""

    def __init__(self, size: int | None) -> None:
        self.size = size

    def __call__(self, a: np.ndarray) -> np.ndarray:
        from PIL import Image

        a = np.asarray(a)
        if a.ndim != 3 or a.shape[2] != 3 or a.dtype != np.uint8:
            raise FacemetricsError(f"matcher images must be H×W×3 uint8, got {a.dtype} {a.shape}")
        if self.size is not None and a.shape[:2] != (self.size, self.size):
            a = np.asarray(Image.fromarray(a).resize((self.size, self.size), Image.BILINEAR))
        return a.transpose(2, 0, 1).astype(np.float32) / np.float32(127.5) - np.float32(1.0)
