"""Shared helpers for the models tests: the data folder and a tiny config."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def data_root() -> Path:
    return Path(os.environ.get("FACEMETRICS_DATA", REPO / ".." / "shared" / "data"))


def require_data() -> Path:
    root = data_root()
    if not (root / "face2text" / "v0.1" / "clean.json").is_file():
        pytest.fail(f"test data not found under {root}; set FACEMETRICS_DATA")
    return root


def tiny_config(**over) -> dict:
    """16 LFW images, tiny widths, stage 0 only (64x64), a tiny custom CLIP."""
    from models import config as C

    cfg = C.build_config(None, [
        f"data.root={require_data()}",
        "data.max_images=16", "data.test_fraction=0.25", "data.num_workers=0",
        "text.words_num=12", "text.embedding_dim=16", "text.lstm_input_dim=16",
        "clip.custom={embed_dim: 16, vision_cfg: {image_size: 32, layers: 1, width: 32, patch_size: 16, "
        "head_width: 16}, text_cfg: {context_length: 77, vocab_size: 49408, width: 32, heads: 2, layers: 1}}",
        "damsm.steps=2", "damsm.batch_size=4", "damsm.cnn_width=8",
        "model.gf_dim=4", "model.df_dim=4", "model.z_dim=8", "model.condition_dim=8",
        "train.steps=3", "train.batch_size=4", "train.log_every=1", "train.sample_every=2",
        "train.checkpoint_every=0", "train.grid_size=4", "device=cpu",
        "train.eval_rprec_negatives=8",  # 13 held-out captions, at most 4 of one identity: 9 eligible negatives
        *[f"{k}={v}" for k, v in over.items()],
    ])
    return cfg
