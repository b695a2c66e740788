"""FaceNet (InceptionResnetV1, VGGFace2 weights) as a face embedder.

The network is defined here, parameter for parameter compatible with
facenet-pytorch's ``InceptionResnetV1`` so that its checkpoint
``20180402-114759-vggface2.pt`` (a plain state dict, David Sandberg's
TF FaceNet 20180402-114759 converted) loads strictly. The facenet-pytorch package itself
pins old torch/numpy/Pillow and is not a dependency.

Network facts (from facenet-pytorch's ``models/inception_resnet_v1.py``): every
``BasicConv2d`` is conv (no bias) → BatchNorm(eps=1e-3) → ReLU; stem
conv 3→32 s2, 32→32, 32→64 p1, maxpool 3 s2, 64→80 1×1, 80→192, 192→256 s2;
5 × Block35 (scale 0.17), Mixed_6a, 10 × Block17 (scale 0.10), Mixed_7a,
5 × Block8 (scale 0.20), Block8 (no ReLU), global average pool, dropout,
Linear(1792→512, no bias), BatchNorm1d(512, eps=1e-3), L2 normalisation.
The checkpoint also holds ``logits.*`` (the 8,631-way VGGFace2 classifier): it is
not used for embeddings and is dropped explicitly before the strict load.

Preprocessing: face box = the largest dlib HOG detection (as in
:mod:`facemetrics.extractors.face_dlib`), clipped to the image, cropped and resized
to 160×160 with PIL bilinear (what facenet-pytorch's ``extract_face`` does with
an MTCNN box and its default ``margin=0``); no face or ``align="never"``: the
centred square crop resized to 160×160 (bicubic). Network input
``(x - 127.5) / 128`` (facenet-pytorch's ``fixed_image_standardization``).
Output ``"embedding"``: (N, 512) float32, unit L2 norm.

Weights are resolved when first used: explicit path > ``$FACEMETRICS_FACENET`` >
``<user cache>/20180402-114759-vggface2.pt`` (:func:`facemetrics.nets.weights.cache_dir`) >
``$TORCH_HOME/checkpoints/20180402-114759-vggface2.pt`` (facenet-pytorch's own cache).
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from facemetrics.errors import FacemetricsError, WeightsNotFoundError
from facemetrics.extractors.base import FeatureExtractor
from facemetrics.nets.weights import WeightsSpec, sha256_file
from facemetrics.nets.weights import resolve_weights as _resolve

WEIGHTS_NAME = "20180402-114759-vggface2.pt"
WEIGHTS_URL = "https://github.com/timesler/facenet-pytorch/releases/download/v2.2.9/20180402-114759-vggface2.pt"
ENV_VAR = "FACEMETRICS_FACENET"
INPUT_SIZE = 160
VGGFACE2_CLASSES = 8631


# --------------------------------------------------------------------------- network

def build_network(num_classes: int | None = None):
    """An InceptionResnetV1 ``torch.nn.Module`` (eval mode, random weights).

    With ``num_classes`` it also has the ``logits`` head (``Linear(512, num_classes)``)
    so that a full facenet-pytorch checkpoint loads with no key dropped.
    """
    import torch
    from torch import nn
    from torch.nn import functional as F

    class BasicConv2d(nn.Module):
        def __init__(self, cin, cout, kernel_size, stride, padding=0):
            super().__init__()
            self.conv = nn.Conv2d(cin, cout, kernel_size, stride=stride, padding=padding, bias=False)
            self.bn = nn.BatchNorm2d(cout, eps=0.001, momentum=0.1, affine=True)
            self.relu = nn.ReLU(inplace=False)

        def forward(self, x):
            return self.relu(self.bn(self.conv(x)))

    def seq(*mods):
        return nn.Sequential(*mods)

    class _Residual(nn.Module):
        """out = act(conv2d(cat(branches)) * scale + x)."""

        relu_out = True

        def forward(self, x):
            branches = [self.branch0(x), self.branch1(x)]
            if hasattr(self, "branch2"):
                branches.append(self.branch2(x))
            out = self.conv2d(torch.cat(branches, 1)) * self.scale + x
            return self.relu(out) if self.relu_out else out

    class Block35(_Residual):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale
            self.branch0 = BasicConv2d(256, 32, 1, 1)
            self.branch1 = seq(BasicConv2d(256, 32, 1, 1), BasicConv2d(32, 32, 3, 1, 1))
            self.branch2 = seq(BasicConv2d(256, 32, 1, 1), BasicConv2d(32, 32, 3, 1, 1), BasicConv2d(32, 32, 3, 1, 1))
            self.conv2d = nn.Conv2d(96, 256, 1, 1)
            self.relu = nn.ReLU(inplace=False)

    class Block17(_Residual):
        def __init__(self, scale):
            super().__init__()
            self.scale = scale
            self.branch0 = BasicConv2d(896, 128, 1, 1)
            self.branch1 = seq(
                BasicConv2d(896, 128, 1, 1),
                BasicConv2d(128, 128, (1, 7), 1, (0, 3)),
                BasicConv2d(128, 128, (7, 1), 1, (3, 0)),
            )
            self.conv2d = nn.Conv2d(256, 896, 1, 1)
            self.relu = nn.ReLU(inplace=False)

    class Block8(_Residual):
        def __init__(self, scale=1.0, relu_out=True):
            super().__init__()
            self.scale = scale
            self.relu_out = relu_out
            self.branch0 = BasicConv2d(1792, 192, 1, 1)
            self.branch1 = seq(
                BasicConv2d(1792, 192, 1, 1),
                BasicConv2d(192, 192, (1, 3), 1, (0, 1)),
                BasicConv2d(192, 192, (3, 1), 1, (1, 0)),
            )
            self.conv2d = nn.Conv2d(384, 1792, 1, 1)
            if relu_out:
                self.relu = nn.ReLU(inplace=False)

    class Mixed6a(nn.Module):
        def __init__(self):
            super().__init__()
            self.branch0 = BasicConv2d(256, 384, 3, 2)
            self.branch1 = seq(BasicConv2d(256, 192, 1, 1), BasicConv2d(192, 192, 3, 1, 1), BasicConv2d(192, 256, 3, 2))
            self.branch2 = nn.MaxPool2d(3, stride=2)

        def forward(self, x):
            return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x)], 1)

    class Mixed7a(nn.Module):
        def __init__(self):
            super().__init__()
            self.branch0 = seq(BasicConv2d(896, 256, 1, 1), BasicConv2d(256, 384, 3, 2))
            self.branch1 = seq(BasicConv2d(896, 256, 1, 1), BasicConv2d(256, 256, 3, 2))
            self.branch2 = seq(BasicConv2d(896, 256, 1, 1), BasicConv2d(256, 256, 3, 1, 1), BasicConv2d(256, 256, 3, 2))
            self.branch3 = nn.MaxPool2d(3, stride=2)

        def forward(self, x):
            return torch.cat([self.branch0(x), self.branch1(x), self.branch2(x), self.branch3(x)], 1)

    class InceptionResnetV1(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv2d_1a = BasicConv2d(3, 32, 3, 2)
            self.conv2d_2a = BasicConv2d(32, 32, 3, 1)
            self.conv2d_2b = BasicConv2d(32, 64, 3, 1, 1)
            self.maxpool_3a = nn.MaxPool2d(3, stride=2)
            self.conv2d_3b = BasicConv2d(64, 80, 1, 1)
            self.conv2d_4a = BasicConv2d(80, 192, 3, 1)
            self.conv2d_4b = BasicConv2d(192, 256, 3, 2)
            self.repeat_1 = seq(*[Block35(0.17) for _ in range(5)])
            self.mixed_6a = Mixed6a()
            self.repeat_2 = seq(*[Block17(0.10) for _ in range(10)])
            self.mixed_7a = Mixed7a()
            self.repeat_3 = seq(*[Block8(0.20) for _ in range(5)])
            self.block8 = Block8(relu_out=False)
            self.avgpool_1a = nn.AdaptiveAvgPool2d(1)
            self.dropout = nn.Dropout(0.6)
            self.last_linear = nn.Linear(1792, 512, bias=False)
            self.last_bn = nn.BatchNorm1d(512, eps=0.001, momentum=0.1, affine=True)
            if num_classes is not None:
                self.logits = nn.Linear(512, num_classes)

        def forward(self, x):
            """L2-normalised 512-d embeddings of standardised (N, 3, 160, 160) input."""
            for name in ("conv2d_1a", "conv2d_2a", "conv2d_2b", "maxpool_3a", "conv2d_3b", "conv2d_4a",
                         "conv2d_4b", "repeat_1", "mixed_6a", "repeat_2", "mixed_7a", "repeat_3", "block8"):
                x = getattr(self, name)(x)
            x = self.dropout(self.avgpool_1a(x))
            x = self.last_bn(self.last_linear(x.flatten(1)))
            return F.normalize(x, p=2, dim=1)

    return InceptionResnetV1().eval()


def load_state_dict_strict(net, state: dict, source: str = "state dict") -> list[str]:
    """Load a facenet-pytorch state dict into ``net`` strictly.

    ``logits.*`` keys are dropped first when ``net`` has no ``logits`` head (they are
    the classifier, unused for embeddings); any other missing or unexpected key is a
    :class:`FacemetricsError` naming ``source``. Returns the dropped keys.
    """
    has_logits = hasattr(net, "logits")
    dropped = [] if has_logits else [k for k in state if k.startswith("logits.")]
    state = {k: v for k, v in state.items() if k not in set(dropped)}
    want = net.state_dict()
    missing = [k for k in want if k not in state]
    unexpected = [k for k in state if k not in want]
    wrong = [
        f"{k} {tuple(getattr(state[k], 'shape', ()))} != {tuple(want[k].shape)}"
        for k in want
        if k in state and tuple(getattr(state[k], "shape", ())) != tuple(want[k].shape)
    ]
    problems = [
        f"{label} ({len(items)}): {', '.join(items[:5])}{' ...' if len(items) > 5 else ''}"
        for label, items in (("Missing keys", missing), ("Unexpected keys", unexpected), ("Wrong shapes", wrong))
        if items
    ]
    if problems:
        raise FacemetricsError(
            f"{source} is not a facenet-pytorch InceptionResnetV1 state dict: " + "; ".join(problems),
            "--face-weights",
        )
    net.load_state_dict(state, strict=True)
    return dropped


# --------------------------------------------------------------------------- weights

FACENET_WEIGHTS = WeightsSpec(
    name="FaceNet (facenet-pytorch InceptionResnetV1, VGGFace2)",
    filename=WEIGHTS_NAME,
    env_var=ENV_VAR,
    fix_hint=(
        f"download {WEIGHTS_URL} and pass --face-weights PATH, set ${ENV_VAR}=PATH, "
        f"or put it in the user cache folder as {WEIGHTS_NAME}"
    ),
)


def _torch_home() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return Path(os.environ.get("TORCH_HOME") or os.path.join(base, "torch"))


def resolve_weights(explicit: str | os.PathLike | None = None) -> Path:
    """The FaceNet VGGFace2 checkpoint.

    :func:`facemetrics.nets.weights.resolve_weights` order (explicit path > ``$FACEMETRICS_FACENET``
    > user cache dir; no download: the file's sha256 is not pinned here), then
    facenet-pytorch's own cache ``$TORCH_HOME/checkpoints/20180402-114759-vggface2.pt``.
    Raises :class:`WeightsNotFoundError` listing every place tried and how to fix it.
    """
    try:
        return _resolve(FACENET_WEIGHTS, explicit, allow_download=False, param="--face-weights")
    except WeightsNotFoundError as e:
        hub = _torch_home() / "checkpoints" / WEIGHTS_NAME
        if hub.is_file():
            return hub
        msg = str(e)
        line = f"\n  - facenet-pytorch cache {hub} (absent)"
        msg = msg.replace("\nFix:", line + "\nFix:") if "\nFix:" in msg else msg + line
        raise WeightsNotFoundError(msg, "--face-weights") from None


# --------------------------------------------------------------------------- extractor

class FacenetPreprocessor:
    """Picklable ``img -> {"face": uint8 160×160×3, "detected": bool}`` (see module doc)."""

    def __init__(self, align: str = "auto", upsample: int | None = None) -> None:
        self.align = align
        self.upsample = upsample

    def __call__(self, img: np.ndarray) -> dict[str, np.ndarray]:
        from PIL import Image

        from facemetrics.extractors.face_dlib import (
            DlibFacePreprocessor,
            centred_resize,
        )

        img = np.ascontiguousarray(img, dtype=np.uint8)
        if self.align != "never":
            rect = DlibFacePreprocessor("", self.align, self.upsample).detect(img)
            if rect is not None:
                h, w = img.shape[:2]
                box = (max(rect.left(), 0), max(rect.top(), 0), min(rect.right() + 1, w), min(rect.bottom() + 1, h))
                if box[2] > box[0] and box[3] > box[1]:
                    face = Image.fromarray(img).crop(box).resize((INPUT_SIZE, INPUT_SIZE), Image.BILINEAR)
                    return {"face": np.asarray(face, dtype=np.uint8), "detected": np.bool_(True)}
        return {"face": centred_resize(img, INPUT_SIZE), "detected": np.bool_(False)}


class FacenetExtractor(FeatureExtractor):
    """InceptionResnetV1 (VGGFace2); outputs ``embedding`` (N, 512) and ``detected`` (N,)."""

    name = "facenet"
    outputs = ("embedding", "detected")
    dims = 512

    def __init__(self, align: str = "auto", upsample: int | None = None, weights: str | os.PathLike | None = None) -> None:
        from facemetrics.extractors.face_dlib import ALIGN_MODES

        if align not in ALIGN_MODES:
            raise FacemetricsError(
                f"--face-align must be one of {', '.join(ALIGN_MODES)}, got {align!r}", "--face-align"
            )
        self.align = align
        self.upsample = None if upsample is None else int(upsample)
        self.explicit_weights = weights
        self._path: Path | None = None
        self._net = None
        self._device = "cpu"
        self.dropped_keys: list[str] = []

    @property
    def weights_path(self) -> Path:
        if self._path is None:
            self._path = resolve_weights(self.explicit_weights)
        return self._path

    def weights_sha256(self) -> str:
        return sha256_file(self.weights_path)

    def preprocessor(self) -> FacenetPreprocessor:
        return FacenetPreprocessor(self.align, self.upsample)

    def load(self, device: str = "cpu") -> None:
        if self._net is not None and device == self._device:
            return
        from facemetrics.storage.torchfile import load_torch_dict

        path = self.weights_path
        state = load_torch_dict(path, "FaceNet weights", "--face-weights")
        net = build_network()
        self.dropped_keys = load_state_dict_strict(net, state, str(path))
        self._net = net.to(device).eval()
        self._device = device

    def forward(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        import torch

        if self._net is None:
            self.load(self._device)
        faces = np.asarray(batch["face"], dtype=np.uint8)
        x = torch.from_numpy(faces).to(self._device).permute(0, 3, 1, 2).float()
        x = (x - 127.5) / 128.0
        with torch.inference_mode():
            emb = self._net(x).float().cpu().numpy()
        return {"embedding": emb.astype(np.float32), "detected": np.asarray(batch["detected"], bool).reshape(-1)}

    def fingerprint(self) -> dict[str, Any]:
        from facemetrics.extractors.face_dlib import MAX_UPSAMPLE, MIN_DETECT_SIDE

        return {
            "extractor": "facenet",
            "network": "InceptionResnetV1 (facenet-pytorch layout)",
            "weights_sha256": self.weights_sha256(),
            "detector": "never" if self.align == "never" else "dlib.get_frontal_face_detector",
            "upsample": self.upsample if self.upsample is not None else f"auto(>={MIN_DETECT_SIDE},max{MAX_UPSAMPLE})",
            "crop": "box-clipped+PIL-bilinear-160",
            "fallback": "centre-square-crop+PIL-bicubic-160",
            "input": "(x-127.5)/128",
        }
