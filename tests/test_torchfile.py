"""facemetrics.torchfile: any unreadable file is a clear usage error, never a traceback."""
from __future__ import annotations

import collections
import io

import numpy as np
import pytest
import torch

from facemetrics.errors import FacemetricsError
from facemetrics.torchfile import load_torch, load_torch_dict, load_torchscript, save_torch

N_GARBAGE = 400  # seeds 0..399 of 4 KiB random bytes


def _raw_error(data: bytes, weights_only: bool) -> str | None:
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=weights_only)
    except Exception as e:  # noqa: BLE001
        return type(e).__name__
    return None


@pytest.mark.parametrize("weights_only", [True, False])
def test_random_bytes_always_give_facemetrics_error(tmp_path, weights_only):
    raw: collections.Counter = collections.Counter()
    p = tmp_path / "garbage.pt"
    for seed in range(N_GARBAGE):
        data = np.random.default_rng(seed).bytes(4096)
        raw[_raw_error(data, weights_only)] += 1
        p.write_bytes(data)
        with pytest.raises(FacemetricsError, match=r"weights .*garbage\.pt is corrupted or not a torch file") as ei:
            load_torch(p, "weights", "--flag", weights_only=weights_only)
        assert ei.value.param == "--flag"
    # the seeds reach torch.load failure modes beyond UnpicklingError (IndexError,
    # UnicodeDecodeError, KeyError, OverflowError...): the ones that used to leak
    assert raw[None] == 0
    assert len(set(raw) - {"UnpicklingError"}) >= 2, raw


def test_missing_truncated_and_non_dict(tmp_path):
    with pytest.raises(FacemetricsError, match="checkpoint does not exist"):
        load_torch(tmp_path / "nope.pt", "checkpoint", "--x")
    good = tmp_path / "good.pt"
    save_torch({"a": torch.arange(1000)}, good)
    assert torch.equal(load_torch_dict(good, "checkpoint", "--x")["a"], torch.arange(1000))
    assert not list(tmp_path.glob(".*.tmp"))  # the atomic write left nothing behind
    cut = tmp_path / "cut.pt"
    cut.write_bytes(good.read_bytes()[:-200])
    with pytest.raises(FacemetricsError, match="corrupted or not a torch file"):
        load_torch(cut, "checkpoint", "--x")
    lst = tmp_path / "list.pt"
    torch.save([1, 2], lst)
    assert load_torch(lst, "checkpoint", "--x") == [1, 2]
    with pytest.raises(FacemetricsError, match="holds a list, not a dict"):
        load_torch_dict(lst, "checkpoint", "--x")


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # writing the fixture needs the deprecated API
def test_torchscript_reader(tmp_path):
    good = tmp_path / "lin.pt"
    torch.manual_seed(0)
    lin = torch.nn.Linear(3, 2)
    torch.jit.save(torch.jit.script(lin), str(good))
    x = torch.randn(4, 3)
    torch.testing.assert_close(load_torchscript(good, "weights", "--w")(x), lin(x), rtol=0, atol=0)
    with pytest.raises(FacemetricsError, match="weights does not exist"):
        load_torchscript(tmp_path / "nope.pt", "weights", "--w")
    for name, data in [("garbage.pt", np.random.default_rng(0).bytes(4096)),
                       ("cut.pt", good.read_bytes()[:-200])]:
        (tmp_path / name).write_bytes(data)
        with pytest.raises(FacemetricsError, match=rf"weights .*{name} is corrupted or not a TorchScript file") as ei:
            load_torchscript(tmp_path / name, "weights", "--w")
        assert ei.value.param == "--w"
