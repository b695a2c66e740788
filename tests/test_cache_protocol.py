"""The feature cache never serves features of another protocol (preset) or other Inception weights.

Counted at the network: every call of ``InceptionExtractor.forward`` is a real
extraction. The same score twice must hit (no forward); another preset or another
weights file on the same folders must run the network again and give its own value.
"""
from __future__ import annotations

import warnings

import pytest

from facemetrics.api import score
from facemetrics.extractors import inception as inc
from facemetrics.extractors.inception import write_layers_torchscript


@pytest.fixture
def counted(monkeypatch, tmp_path):
    monkeypatch.setenv("FACEMETRICS_CACHE", str(tmp_path / "cache"))
    calls = []
    real_forward = inc.InceptionExtractor.forward

    def forward(self, batch):
        calls.append((self.preset, str(self.weights_path), len(batch["image"])))
        return real_forward(self, batch)

    monkeypatch.setattr(inc.InceptionExtractor, "forward", forward)
    return calls


def _fid(a, b, **kw) -> float:
    return score(str(a), str(b), metrics="fid", progress=False, cache=True, **kw)["metrics"]["fid"]["value"]


def test_cache_hit_needs_same_preset(lfw_small, counted):
    a, b = lfw_small
    clean = _fid(a, b, preset="clean")
    assert sum(n for _, _, n in counted) == 24  # 12 + 12 images through the network
    counted.clear()
    assert _fid(a, b, preset="clean") == clean and counted == []  # the cache works: a hit runs nothing
    tf1 = _fid(a, b, preset="tf1")
    assert {p for p, _, _ in counted} == {"tf1"} and sum(n for _, _, n in counted) == 24
    assert tf1 != clean
    counted.clear()
    assert _fid(a, b, preset="pytorch-fid") != tf1 and sum(n for _, _, n in counted) == 24


def test_cache_hit_needs_same_inception_weights(lfw_small, counted, tmp_path):
    a, b = lfw_small
    default = _fid(a, b)
    assert sum(n for _, _, n in counted) == 24
    counted.clear()
    # another file holding the same layers (re-saved TorchScript, other bytes): a different
    # weights fingerprint, so the network runs again (and gives the same features)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.script's deprecation notice
        other = write_layers_torchscript(tmp_path / "other-inception.pt")
    again = _fid(a, b, inception_weights=str(other))
    assert {w for _, w, _ in counted} <= {str(other), str(other.resolve())}
    assert sum(n for _, _, n in counted) == 24
    assert again == pytest.approx(default, rel=1e-4)
    counted.clear()
    assert _fid(a, b, inception_weights=str(other)) == again and counted == []  # and that entry hits in turn
