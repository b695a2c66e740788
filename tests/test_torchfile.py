"""facemetrics.storage.torchfile: any unreadable file is a clear usage error, never a traceback."""
from __future__ import annotations

import collections
import io

import numpy as np
import pytest
import torch

from facemetrics.errors import FacemetricsError
from facemetrics.storage.torchfile import load_torch, load_torch_dict, load_torchscript, save_torch

N_GARBAGE = 400  # seeds 0..399 of 4 KiB random bytes


def _raw_error(data: bytes) -> str | None:
    try:
        torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001
        return type(e).__name__
    return None


def test_random_bytes_always_give_facemetrics_error(tmp_path):
    raw: collections.Counter = collections.Counter()
    p = tmp_path / "garbage.pt"
    for seed in range(N_GARBAGE):
        data = np.random.default_rng(seed).bytes(4096)
        raw[_raw_error(data)] += 1
        p.write_bytes(data)
        with pytest.raises(FacemetricsError, match=r"weights .*garbage\.pt is corrupted or not a torch file") as ei:
            load_torch(p, "weights", "--flag")
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


class _Touch:
    """Unpickling this runs ``Path(marker).touch()``: a pure-Python stand-in for any payload."""

    def __init__(self, marker) -> None:
        self.marker = marker

    def __reduce__(self):
        import pathlib

        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("protocol,legacy", [(2, False), (4, False), (5, False), (2, True)])
def test_code_carrying_pickle_is_refused_and_never_runs(tmp_path, protocol, legacy):
    marker = tmp_path / "MARKER"
    p = tmp_path / "payload.pt"
    torch.save({"format": "models.attngan/1", "x": _Touch(marker)}, p, pickle_protocol=protocol,
               _use_new_zipfile_serialization=not legacy)
    with pytest.raises(FacemetricsError, match=r"checkpoint .*payload\.pt needs arbitrary code to load "
                                               r"\(its pickle references .*(Path|getattr).*refusing to unpickle") as ei:
        load_torch(p, "checkpoint", "--checkpoint")
    assert ei.value.param == "--checkpoint"
    assert not marker.exists()


def test_numpy_values_are_refused_as_needing_code(tmp_path):
    """What models.train wrote before its RNG states became tensors: a numpy array."""
    p = tmp_path / "old.pt"
    torch.save({"rng": {"numpy": ("MT19937", np.zeros(624, np.uint32), 0, 0, 0.0)}}, p)
    with pytest.raises(FacemetricsError, match=r"needs arbitrary code to load \(its pickle references numpy\."):
        load_torch(p, "checkpoint", "--resume")


def test_plain_pickle_of_a_newer_protocol_is_refused_but_not_called_corrupted(tmp_path):
    p = tmp_path / "p4.pt"
    torch.save({"a": torch.ones(2)}, p, pickle_protocol=4)
    with pytest.raises(FacemetricsError, match=r"p4\.pt is a pickle \(protocol 4\) that torch\.load\(weights_only=True\) "
                                               "cannot read"):
        load_torch(p, "weights", "--w")


def test_load_torch_has_no_opt_out():
    import inspect

    assert "weights_only" not in inspect.signature(load_torch).parameters


def test_save_torch_refuses_what_weights_only_cannot_read(tmp_path):
    from facemetrics.storage.torchfile import check_plain

    check_plain({"a": [torch.ones(2), (1, 2.5, None, "x", True)], "s": torch.Size([2]), "d": torch.float32})
    for bad, where in [({"v": torch.__version__}, r"\['v'\] is a torch\.torch_version\.TorchVersion"),
                       ({"x": [np.zeros(2)]}, r"\['x'\]\[0\] is a numpy\.ndarray"),
                       ({"k": {1: np.int64(3)}}, r"\['k'\]\[1\] is a numpy\.int64")]:
        with pytest.raises(TypeError, match=where):
            save_torch(bad, tmp_path / "bad.pt")
    assert not list(tmp_path.iterdir())  # nothing written, not even a temporary file


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
@pytest.mark.parametrize("member", ["data.pkl", "constants.pkl"])
def test_torchscript_archive_with_a_payload_pickle_never_runs(tmp_path, member):
    """torch.jit.load resolves an archive's pickled globals as TorchScript types, never Python."""
    import pickle
    import zipfile

    marker = tmp_path / "MARKER"
    good = tmp_path / "lin.pt"
    torch.jit.save(torch.jit.script(torch.nn.Linear(3, 2)), str(good))
    bad = tmp_path / "bad.pt"
    with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w", zipfile.ZIP_STORED) as zout:
        for name in zin.namelist():
            data = zin.read(name)
            zout.writestr(name, pickle.dumps(_Touch(marker), protocol=2) if name.endswith("/" + member) else data)
    with pytest.raises(FacemetricsError, match=r"weights .*bad\.pt is corrupted or not a TorchScript file "
                                               r"\(RuntimeError: Unknown type name"):
        load_torchscript(bad, "weights", "--w")
    torch.save(_Touch(marker), tmp_path / "saved.pt")  # a torch.save payload handed to a TorchScript flag
    with pytest.raises(FacemetricsError, match="not a TorchScript file"):
        load_torchscript(tmp_path / "saved.pt", "weights", "--w")
    assert not marker.exists()
