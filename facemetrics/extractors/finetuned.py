"""Fine-tuned face Inception as a feature extractor (``--extractor face-inception.pt``).

Outputs, one row per image:

* ``"pool"`` — the 2048-d pool3 features of the fine-tuned trunk (FID/KID);
* ``"logits"`` — the head's K outputs. For a single-label (softmax) head,
  :meth:`FinetunedInceptionExtractor.class_probabilities` is ``softmax(logits)``,
  the p(y|x) of the *domain* Inception Score (IS over the K face classes instead
  of the 1008 ImageNet classes). A multi-label (sigmoid attribute) head defines no
  distribution over classes, so the IS is refused for it with a clear error
  (:meth:`check_is`); its outputs are still returned.

Preprocessing: the checkpoint's image size and, unless the caller names one, its
preset (then that preset's normalisation). A preset other than the training one
is allowed (it is the scoring protocol) but warned about. :meth:`fingerprint`
includes the checkpoint's sha256 (as ``weights_sha256``), the preset and the
size, so features of a fine-tuned network never share a cache entry with the
stock Inception's or another checkpoint's.
"""
from __future__ import annotations

import warnings
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

    def __init__(self, checkpoint: str, device: str = "cpu", preset: str | None = None) -> None:
        self.path = Path(checkpoint)
        if not self.path.is_file():
            raise FacemetricsError(f"extractor checkpoint does not exist: {self.path}", "--extractor")
        if preset is not None:
            from facemetrics.imaging.resize import check_preset

            check_preset(preset)
        self.device = device
        self._preset_arg = preset
        self._meta: dict | None = None
        self._state: dict | None = None
        self._sha: str | None = None
        self._model = None

    # ---------------------------------------------------------------- checkpoint (read on first use)
    def _checkpoint(self) -> dict:
        if self._meta is None:
            from facemetrics.nets.face_inception import load_checkpoint, sha256_file

            ck = load_checkpoint(self.path, "--extractor")
            self._sha = sha256_file(self.path)
            self._state = ck.pop("model")
            self._meta = ck
            trained = ck["preprocess"]["preset"]
            if self._preset_arg is not None and self._preset_arg != trained:
                warnings.warn(
                    f"{self.path.name} was fine-tuned with preset {trained!r}; extracting with {self._preset_arg!r}",
                    stacklevel=3,
                )
        return self._meta

    @property
    def head(self) -> dict:
        return self._checkpoint()["head"]

    @property
    def classes(self) -> list[str]:
        return list(self.head["classes"])

    @property
    def preset(self) -> str:
        return self._preset_arg or self._checkpoint()["preprocess"]["preset"]

    @property
    def image_size(self) -> int:
        return int(self._checkpoint()["preprocess"]["image_size"])

    @property
    def sha256(self) -> str:
        self._checkpoint()
        assert self._sha is not None
        return self._sha

    # ---------------------------------------------------------------- interface
    def preprocessor(self) -> Preprocessor:
        from facemetrics.nets.face_inception import Preprocess

        return _KeyedPreprocess(Preprocess(self.preset, self.image_size))

    def fingerprint(self) -> dict[str, Any]:
        from facemetrics.nets.face_inception import normalisation
        from facemetrics.nets.inception import ARCH

        ck = self._checkpoint()
        shift, scale = normalisation(self.preset)
        return {
            "extractor": self.name,
            "network": f"face-inception ({ARCH}, fine-tuned)",
            "layer": "pool3",
            "weights_sha256": self.sha256,
            "base_weights_sha256": ck.get("base_weights", {}).get("sha256"),
            "preset": self.preset,
            "trained_preset": ck["preprocess"]["preset"],
            "image_size": self.image_size,
            "input": f"(x-{shift:g})/{scale:g}",
            "head": self.head["kind"],
            "n_outputs": len(self.classes),
            "logits": f"{self.head['kind']}-label head, {len(self.classes)} outputs",
        }

    def load(self, device: str | None = None) -> None:
        import torch

        from facemetrics.nets.face_inception import build_model

        if device is not None and device != self.device:
            self.device = device
            if self._model is not None:
                self._model = self._model.to(torch.device(device))
        if self._model is not None:
            return
        self._checkpoint()
        model = build_model(len(self.classes))
        model.load_state_dict(self._state, strict=True)
        self._state = None  # the model holds the weights now
        self._model = model.to(torch.device(self.device)).eval()

    def forward(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        from facemetrics.nets.face_inception import normalisation
        from facemetrics.nets.inception import normalize

        self.load()
        shift, scale = normalisation(self.preset)
        x = torch.from_numpy(np.ascontiguousarray(batch[INPUT_KEY], dtype=np.float32))
        x = normalize(x.permute(0, 3, 1, 2), shift, scale).to(torch.device(self.device))
        with torch.inference_mode():
            pool, logits = self._model(x)
        return {"pool": pool.float().cpu().numpy(), "logits": logits.float().cpu().numpy()}

    # ---------------------------------------------------------------- domain IS
    def check_is(self) -> None:
        """Raise :class:`FacemetricsError` when the head cannot give an IS (multi-label)."""
        if self.head["kind"] != "single":
            raise FacemetricsError(
                f"the Inception Score needs a single-label (softmax) head, but {self.path} has a "
                f"multi-label attribute head ({len(self.classes)} independent sigmoid outputs), which "
                "defines no distribution over classes; drop 'is' from --metrics, or use a checkpoint "
                "trained with --labels folders or a csv with a 'label' column",
                "--metrics",
            )

    def class_probabilities(self, logits: np.ndarray) -> np.ndarray:
        """p(y|x) = softmax(logits) (float64) for the domain IS; refused for a multi-label head."""
        from facemetrics.metrics.inception_score import softmax

        self.check_is()
        return softmax(logits)


class _KeyedPreprocess:
    """Picklable ``img -> {INPUT_KEY: size×size×3 float32 in [0, 255]}``."""

    def __init__(self, pre) -> None:
        self.pre = pre

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        return {INPUT_KEY: self.pre.resize(img)}
