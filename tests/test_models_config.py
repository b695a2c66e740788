"""Config loading: defaults, files, overrides, validation."""
from __future__ import annotations

from pathlib import Path

import pytest

from facemetrics.errors import FacemetricsError
from models import config as C

CONFIGS = Path(__file__).resolve().parents[1] / "models" / "configs"


@pytest.mark.parametrize("name", sorted(p.name for p in CONFIGS.glob("*.yaml")))
def test_shipped_configs_load(name):
    cfg = C.build_config(CONFIGS / name)
    assert C.variant(cfg) in {"lstm-damsm", "lstm-clip", "clip-damsm", "clip-clip"}


def test_overrides_apply_in_order_and_are_typed():
    cfg = C.build_config(None, ["train.steps=7", "loss.lambda=2", "clip.pretrained=/x.pt", "train.steps=9"])
    assert cfg["train"]["steps"] == 9 and cfg["loss"]["lambda"] == 2.0 and isinstance(cfg["loss"]["lambda"], float)
    assert cfg["clip"]["pretrained"] == "/x.pt" and C.DEFAULTS["train"]["steps"] == 20000


@pytest.mark.parametrize("item,msg", [
    ("train.stesp=3", "did you mean train.steps"),
    ("text.encoder=gru", "must be one of lstm, clip"),
    ("train.amp=true", "must be str"),
    ("train.batch_size=1", "must be >= 2"),
    ("data.test_fraction=1.5", "must be in (0, 1)"),
    ("train", "must look like key.sub=value"),
    ("model=3", "must be a mapping"),
])
def test_bad_overrides(item, msg):
    with pytest.raises(FacemetricsError, match=msg.replace("(", r"\(").replace(")", r"\)")) as e:
        C.build_config(None, [item])
    assert e.value.param == "--set"


def test_bad_file(tmp_path):
    p = tmp_path / "c.yaml"
    p.write_text("train: [1, 2\n")
    with pytest.raises(FacemetricsError, match="not valid YAML"):
        C.build_config(p)
    with pytest.raises(FacemetricsError, match="config file not found"):
        C.build_config(tmp_path / "missing.yaml")


def test_variant_stages():
    cfg = C.build_config(None, ["text.encoder=clip", "loss.matching=clip"])
    assert not C.needs_damsm(cfg) and C.needs_clip(cfg)
    cfg = C.build_config(None, ["loss.matching=clip"])
    assert C.needs_damsm(cfg) and C.needs_clip(cfg)  # the LSTM is trained by DAMSM


def test_upgrade_gives_a_saved_config_the_keys_added_since():
    """A run saved before train.eval_rprec_* existed resumes with their defaults (validate needs every key)."""
    import copy

    from models import config as C

    old = copy.deepcopy(C.build_config(None, []))
    del old["train"]["eval_rprec_negatives"], old["train"]["eval_rprec_folds"]
    with pytest.raises(KeyError):
        C.validate(old)
    up = C.upgrade(old)
    C.validate(up)
    assert up["train"]["eval_rprec_negatives"] == 99 and up["train"]["eval_rprec_folds"] == 10
    assert "eval_rprec_negatives" not in old["train"]  # the saved config itself is left alone
    assert C.diff(up, C.build_config(None, [])) == []
