"""Fine-tuned face Inception as a feature extractor (``--extractor face-inception.pt``).

Outputs, one row per image:

* ``"pool"`` — the 2048-d pool3 features of the fine-tuned trunk (FID/KID);
* ``"logits"`` — the head's K outputs. For a single-label (softmax) head,
  :meth:`FinetunedInceptionExtractor.class_probabilities` gives ``softmax(logits)``,
  the p(y|x) of the domain Inception Score. A multi-label (sigmoid attribute) head
  has no distribution over classes, so the IS is refused there with a clear error
  (its outputs are still returned for inspection).

Preprocessing is the one the checkpoint was trained with (its preset and image
size, then ``(x - 128) / 128``). :meth:`fingerprint` includes the checkpoint's
sha256, so features of a fine-tuned network never share a cache entry with the
stock Inception's or another checkpoint's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.extractors.base import FeatureExtractor, Preprocessor

#: Preprocessor output key (distinct from other extractors' keys).
INPUT_KEY = "face_inception"


class FinetunedInceptionExtractor(FeatureExtractor):
    """Pool features and head outputs of a ``finetune-inception`` checkpoint."""

    name = "finetuned"
    outputs = ("pool", "logits")

    def __init__(self, checkpoint: str, device: str = "cpu") -> None:
        self.path = Path(checkpoint)
        if not self.path.is_file():
            raise FacemetricsError(f"extractor checkpoint does not exist: {self.path}", "--extractor")
        self.device = device
        self._meta: dict | None = None
        self._sha: str | None = None
        self._model = None

    # ---- metadata (read on first use, never at construction)
    def _checkpoint(self) -> dict:
        if self._meta is None:
            from facemetrics.face_inception import load_checkpoint, sha256_file

            ck = load_checkpoint(self.path, "--extractor")
            self._sha = sha256_file(self.path)
            self._state = ck.pop("model")
            self._meta = ck
        return self._meta

    @property
    def head(self) -> dict:
        return self._checkpoint()["head"]

    @property
    def classes(self) -> list[str]:
        return list(self.head["classes"])

    @property
    def sha256(self) -> str:
        self._checkpoint()
        assert self._sha is not None
        return self._sha

    def preprocessor(self) -> Preprocessor:
        from facemetrics.face_inception import Preprocess

        pre = self._checkpoint()["preprocess"]
        return _KeyedPreprocess(Preprocess(pre["preset"], int(pre["image_size"])))

    def fingerprint(self) -> dict[str, Any]:
        from facemetrics.face_inception import get_resizer
        from facemetrics.inception_net import ARCH

        ck = self._checkpoint()
        pre = ck["preprocess"]
        return {
            "extractor": self.name,
            "arch": ARCH,
            "checkpoint_sha256": self.sha256,
            "preset": pre["preset"],
            "image_size": int(pre["image_size"]),
            "input": pre.get("input", "(x-128)/128"),
            "resizer": get_resizer(pre["preset"], int(pre["image_size"]))[1],
            "head": self.head["kind"],
            "n_outputs": len(self.classes),
            "outputs": list(self.outputs),
        }

    def load(self, device: str | None = None) -> None:
        import torch

        from facemetrics.face_inception import build_model

        if device is not None:
            self.device = device
        self._checkpoint()
        model = build_model(len(self.classes))
        model.load_state_dict(self._state, strict=True)
        self._model = model.to(torch.device(self.device)).eval()

    def forward(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from facemetrics.inception_net import normalize

        if self._model is None:
            self.load()
        x = torch.from_numpy(np.ascontiguousarray(batch[INPUT_KEY], dtype=np.float32))
        x = normalize(x.permute(0, 3, 1, 2)).to(torch.device(self.device))
        with torch.no_grad():
            pool, logits = self._model(x)
        return {"pool": pool.cpu().numpy(), "logits": logits.float().cpu().numpy()}

    def class_probabilities(self, logits: np.ndarray) -> np.ndarray:
        """p(y|x) = softmax(logits) for the domain IS; refused for a multi-label head."""
        if self.head["kind"] != "single":
            raise FacemetricsError(
                f"the Inception Score needs a single-label (softmax) head, but {self.path} has a "
                f"multi-label attribute head ({len(self.classes)} independent sigmoid outputs), which "
                "defines no distribution over classes; drop 'is' from --metrics, or use a checkpoint "
                "trained with --labels folders or a csv with a 'label' column",
                "--metrics",
            )
        z = np.asarray(logits, dtype=np.float64)
        z = z - z.max(axis=1, keepdims=True)
        e = np.exp(z)
        return e / e.sum(axis=1, keepdims=True)


class _KeyedPreprocess:
    """Picklable ``img -> {INPUT_KEY: size×size×3 float32}``."""

    def __init__(self, pre) -> None:
        self.pre = pre

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        return {INPUT_KEY: self.pre.resize(img)}
