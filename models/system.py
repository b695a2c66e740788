"""The networks of one run, built from a config (and a checkpoint): text side, DAMSM, G, Ds.

:class:`System` owns the coders (caption → ids), the text encoder, the optional CLIP
model and DAMSM image encoder, the generator, its EMA copy and one discriminator per
stage. It knows nothing about optimisation (see :mod:`models.train`).
"""
from __future__ import annotations

import copy
from typing import Any

import torch
import torch.nn as nn

from facemetrics.errors import FacemetricsError
from facemetrics.storage.torchfile import load_torch
from models import config as C
from models.data import ClipCoder, WordCoder, coder_from_state, stage_sizes

CHECKPOINT_FORMAT = "models.attngan/1"


def resolve_device(name: str) -> torch.device:
    """``auto`` → cuda if available, else mps, else cpu; other names are checked."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda")
        if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
            return torch.device("mps")
        return torch.device("cpu")
    try:
        dev = torch.device(name)
    except RuntimeError:
        raise FacemetricsError(f"unknown device {name!r} (auto, cpu, cuda, cuda:N, mps)", "--device") from None
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise FacemetricsError("device cuda requested but CUDA is not available", "--device")
    return dev


class System(nn.Module):
    def __init__(self, cfg: dict, coder_states: dict[str, dict], device: torch.device) -> None:
        super().__init__()
        self.cfg = cfg
        self.device = device
        self.coders: dict[str, Any] = {k: coder_from_state(v) for k, v in coder_states.items()}
        self.text_key = cfg["text"]["encoder"]
        self.clip_model = None
        self.clip_info: dict | None = None
        if C.needs_clip(cfg):
            from models.text import build_clip, clip_identity

            self.clip_model = build_clip(cfg)
            self.clip_info = clip_identity(cfg, self.clip_model)
            for p in self.clip_model.parameters():
                p.requires_grad_(False)
        if self.text_key == "lstm":
            from models.text import LSTMEncoder

            t = cfg["text"]
            self.text_encoder = LSTMEncoder(len(self.coders["lstm"].itos), t["lstm_input_dim"],
                                            t["embedding_dim"], t["lstm_dropout"])
        else:
            from models.text import ClipTextEncoder

            self.text_encoder = ClipTextEncoder(self.clip_model)
            if not cfg["clip"]["freeze"]:
                for p in self.clip_text_parameters():
                    p.requires_grad_(True)
        wd, sd = self.text_encoder.word_dim, self.text_encoder.sent_dim
        self.image_encoder = None
        if C.needs_damsm(cfg):
            from models.image_encoder import build_image_encoder

            self.image_encoder = build_image_encoder(cfg, wd, sd)
        m = cfg["model"]
        self.n_stages = len(stage_sizes(m["resolution"]))
        from models.nets import Discriminator, Generator, weights_init

        self.G = Generator(self.n_stages, sd, wd, m["z_dim"], m["condition_dim"], m["gf_dim"], m["r_num"])
        self.Ds = nn.ModuleList([Discriminator(s, m["df_dim"], sd) for s in stage_sizes(m["resolution"])])
        self.clip_d = None
        if cfg["loss"]["discriminator"] == "clip":
            from models.nets import ClipCondHead

            self.clip_d = ClipCondHead(cfg["clip_d"]["init_scale"], cfg["clip_d"]["init_bias"])
        self.G.apply(weights_init)
        self.Ds.apply(weights_init)
        self.G_ema = copy.deepcopy(self.G)
        for p in self.G_ema.parameters():
            p.requires_grad_(False)
        self.to(device)

    # ------------------------------------------------------------------ building

    @classmethod
    def for_training(cls, cfg: dict, train_captions: list[str], device: torch.device) -> "System":
        states: dict[str, dict] = {}
        if cfg["text"]["encoder"] == "lstm":
            states["lstm"] = WordCoder.build(train_captions, cfg["text"]["words_num"],
                                             cfg["text"]["min_word_count"]).state()
        if C.needs_clip(cfg):
            ctx = cfg["clip"]["custom"]["text_cfg"].get("context_length", 77) if cfg["clip"]["custom"] else 77
            states["clip"] = ClipCoder(ctx).state()
        return cls(cfg, states, device)

    def coder_states(self) -> dict[str, dict]:
        return {k: v.state() for k, v in self.coders.items()}

    def clip_text_parameters(self) -> list[nn.Parameter]:
        m = self.clip_model
        ps = [m.token_embedding.weight, m.positional_embedding, *m.transformer.parameters(), *m.ln_final.parameters()]
        proj = m.text_projection
        ps += list(proj.parameters()) if isinstance(proj, nn.Module) else [proj]
        return ps

    # ------------------------------------------------------------------ text

    @property
    def text_coder(self):
        return self.coders[self.text_key]

    def encode_text(self, ids: dict[str, tuple[torch.Tensor, torch.Tensor]], cached: bool = False):
        """(words, sent, mask) of the text encoder; ``cached`` memoises a frozen CLIP text tower per caption."""
        x, n = ids[self.text_key]
        x, n = x.to(self.device), n.to(self.device)
        if cached and self.text_key == "clip":
            return self._cache("text", self.text_encoder)(x, n)
        return self.text_encoder(x, n)

    def clip_sentence(self, ids: dict[str, tuple[torch.Tensor, torch.Tensor]], cached: bool = False) -> torch.Tensor:
        """CLIP's text embedding of the batch captions (for the clip matching loss/matcher)."""
        from models.text import ClipTextEncoder

        enc = self.text_encoder if self.text_key == "clip" else ClipTextEncoder(self.clip_model)
        x, n = ids["clip"]
        x, n = x.to(self.device), n.to(self.device)
        if cached:
            return self._cache("clip", enc)(x, n)[1]
        return enc(x, n)[1]

    def _cache(self, name: str, encoder):
        from models.text import FrozenTextCache

        caches = self.__dict__.setdefault("_text_caches", {})
        if name not in caches:
            caches[name] = FrozenTextCache(encoder)
        return caches[name]

    def encode_captions(self, texts: list[str], policy: str = "truncate") -> tuple[dict, list[bool]]:
        """Ids of every coder for ``texts`` (no augmentation); returns ids and per-caption truncation."""
        import numpy as np

        out, trunc = {}, [False] * len(texts)
        for name, coder in self.coders.items():
            rows = [coder.encode(t, rng=None, policy=policy) for t in texts]
            out[name] = (torch.from_numpy(np.stack([r[0] for r in rows])),
                         torch.tensor([r[1] for r in rows], dtype=torch.int64))
            trunc = [a or r[2] for a, r in zip(trunc, rows)]
        return out, trunc

    # ------------------------------------------------------------------ state

    def state(self) -> dict:
        """Network states to checkpoint (frozen random/pretrained CLIP weights are rebuilt, not stored)."""
        st = {"G": self.G.state_dict(), "G_ema": self.G_ema.state_dict(), "Ds": self.Ds.state_dict()}
        if self.text_key == "lstm":
            st["text_encoder"] = self.text_encoder.state_dict()
        elif not self.cfg["clip"]["freeze"]:
            names = {id(p) for p in self.clip_text_parameters()}
            st["clip_text"] = {k: v for k, v in self.clip_model.state_dict(keep_vars=True).items()
                               if id(v) in names}
            st["clip_text"] = {k: v.detach() for k, v in st["clip_text"].items()}
        if self.image_encoder is not None:
            st["image_encoder"] = self.image_encoder.trainable_state_dict()
        if self.clip_d is not None:
            st["clip_d"] = self.clip_d.state_dict()
        return st

    def load_state(self, st: dict) -> None:
        self.G.load_state_dict(st["G"])
        self.G_ema.load_state_dict(st["G_ema"])
        self.Ds.load_state_dict(st["Ds"])
        if "text_encoder" in st:
            self.text_encoder.load_state_dict(st["text_encoder"])
        if "clip_text" in st:
            self.clip_model.load_state_dict(st["clip_text"], strict=False)
        if self.image_encoder is not None:
            self.image_encoder.load_trainable(st["image_encoder"])
        if self.clip_d is not None:
            self.clip_d.load_state_dict(st["clip_d"])


def load_checkpoint(path: str, map_location: str | torch.device = "cpu", param: str = "--checkpoint") -> dict:
    """Read a checkpoint written by :mod:`models.train`, with clear errors for wrong files."""
    from pathlib import Path

    p = Path(path)
    if p.is_dir():
        p = p / "last.pt"
    if not p.is_file():
        raise FacemetricsError(f"checkpoint not found: {p}", param)
    # tensors and plain containers only (config, coder vocabularies and RNG states included):
    # a checkpoint from someone else can never run code here
    ck = load_torch(p, "checkpoint", param, map_location=map_location)
    if not isinstance(ck, dict) or ck.get("format") != CHECKPOINT_FORMAT:
        raise FacemetricsError(f"{p} is not a models checkpoint (format {CHECKPOINT_FORMAT})", param)
    ck["path"] = str(p)
    return ck


def system_from_checkpoint(ck: dict, device: torch.device, expect_variant: str | None = None,
                           param: str = "--checkpoint") -> System:
    """Rebuild the networks of a checkpoint; refuse one of another variant when ``expect_variant``."""
    cfg = ck["config"]
    got = C.variant(cfg)
    if expect_variant is not None and got != expect_variant:
        raise FacemetricsError(
            f"checkpoint {ck['path']} is variant {got} (text encoder {cfg['text']['encoder']}, matching "
            f"{cfg['loss']['matching']}), not {expect_variant}", param)
    sys_ = System(cfg, ck["coders"], device)
    if ck.get("clip") is not None and sys_.clip_info is not None:
        want, have = ck["clip"], sys_.clip_info
        if want.get("sha256") != have.get("sha256") or abs(want["checksum"] - have["checksum"]) > 1e-6 * max(1.0, abs(want["checksum"])):
            raise FacemetricsError(
                f"the CLIP weights rebuilt for {ck['path']} differ from those it was trained with "
                f"({want} vs {have}); give the same clip.pretrained file / torch version", param)
    try:
        sys_.load_state(ck["state"])
    except (RuntimeError, KeyError) as e:
        raise FacemetricsError(f"checkpoint {ck['path']} does not fit its own config: {str(e)[:300]}", param) from None
    return sys_
