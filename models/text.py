"""Text encoders: AttnGAN's BiLSTM and CLIP's text transformer, one interface.

``encoder(ids, lengths) -> (words, sent, mask)`` with ``words`` (B, word_dim, T) word
features, ``sent`` (B, sent_dim) the sentence feature and ``mask`` (B, T) True on padding.

* BiLSTM (AttnGAN ``RNN_ENCODER``): embedding → dropout → one bidirectional LSTM
  layer of ``embedding_dim / 2`` units per direction; word features are the per-step
  outputs, the sentence feature the two final hidden states concatenated.
* CLIP: token embedding + positions → causal transformer → ``ln_final``; word features
  are the final token states of the caption's BPE tokens (between start and end of
  text; width ``transformer.width``), the sentence feature is the end-of-text state
  projected by ``text_projection`` (CLIP's own text embedding, ``embed_dim``).
"""
from __future__ import annotations

import contextlib
from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from facemetrics.errors import FacemetricsError
from facemetrics.storage.torchfile import load_torch_dict
from facemetrics.storage.digest import file_sha256


class LSTMEncoder(nn.Module):
    def __init__(self, ntoken: int, ninput: int = 300, nhidden: int = 256, dropout: float = 0.5) -> None:
        super().__init__()
        self.word_dim = self.sent_dim = nhidden
        self.encoder = nn.Embedding(ntoken, ninput)
        # a dropout whose mask is drawn for the global batch (equal under torchrun, see models.parallel)
        from models.parallel import BatchDropout

        self.drop = BatchDropout(dropout)
        self.rnn = nn.LSTM(ninput, nhidden // 2, 1, batch_first=True, bidirectional=True)
        nn.init.uniform_(self.encoder.weight, -0.1, 0.1)

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor):
        T = ids.size(1)
        emb = self.drop(self.encoder(ids))
        packed = nn.utils.rnn.pack_padded_sequence(emb, lengths.cpu(), batch_first=True, enforce_sorted=False)
        out, (h, _) = self.rnn(packed)
        out = nn.utils.rnn.pad_packed_sequence(out, batch_first=True, total_length=T)[0]
        words = out.transpose(1, 2).contiguous()  # B x D x T
        sent = h.transpose(0, 1).reshape(ids.size(0), -1)  # B x D (forward, backward)
        mask = torch.arange(T, device=ids.device)[None, :] >= lengths.to(ids.device)[:, None]
        return words, sent, mask


# ----------------------------------------------------------------------------- CLIP

def build_clip(cfg: dict):
    """The CLIP model of ``cfg["clip"]``: random weights drawn from ``init_seed`` (the global
    RNG is left untouched) or, with ``pretrained``, weights read from that local file."""
    import open_clip

    c = cfg["clip"]
    path = c["pretrained"]
    if path is not None and not Path(path).is_file():
        raise FacemetricsError(f"CLIP weights file not found: {path}", "--set clip.pretrained")
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(c["init_seed"])
        with _quiet_open_clip():
            if c["custom"] is not None:
                cu = c["custom"]
                model = open_clip.CLIP(cu["embed_dim"], cu["vision_cfg"], cu["text_cfg"])
            else:
                try:
                    model = open_clip.create_model(c["model"], pretrained=None)
                except RuntimeError as e:
                    raise FacemetricsError(f"unknown CLIP model {c['model']!r}: {e}", "--set clip.model") from None
    if path is not None:
        sd = load_torch_dict(path, "CLIP weights", "--set clip.pretrained")
        if "state_dict" in sd:
            sd = sd["state_dict"]
        sd = {k.removeprefix("module."): v for k, v in sd.items()}
        try:
            model.load_state_dict(sd)
        except RuntimeError as e:
            raise FacemetricsError(
                f"CLIP weights {path} do not fit clip.model={c['model']!r}: {str(e)[:300]}",
                "--set clip.pretrained") from None
    model.eval()
    return model


@contextlib.contextmanager
def _quiet_open_clip():
    import logging

    log = logging.getLogger()
    old = log.level
    log.setLevel(logging.ERROR)  # "No pretrained weights loaded" is expected here
    try:
        yield
    finally:
        log.setLevel(old)


def clip_identity(cfg: dict, model) -> dict:
    """What determines the CLIP weights: the file's sha256, or the random-init recipe plus a
    checksum of the token embedding (to detect a torch version that draws differently)."""
    c = cfg["clip"]
    check = float(model.token_embedding.weight.detach().double().abs().sum())
    if c["pretrained"]:
        h = file_sha256(c["pretrained"])
        return {"weights": "file", "sha256": h, "model": c["model"], "checksum": check}
    return {"weights": "random", "init_seed": c["init_seed"], "model": c["model"] if c["custom"] is None else "custom",
            "checksum": check}


class ClipTextEncoder(nn.Module):
    """CLIP text tower as an AttnGAN text encoder (ids from :class:`models.data.ClipCoder`)."""

    def __init__(self, clip_model) -> None:
        super().__init__()
        self.clip = clip_model  # shared with the CLIP matcher; state saved by the trainer
        self.word_dim = clip_model.transformer.width
        proj = clip_model.text_projection
        self.sent_dim = proj.shape[1] if isinstance(proj, torch.Tensor) else proj.out_features

    def forward(self, ids: torch.Tensor, lengths: torch.Tensor):
        """Runs the transformer on the first ``max(lengths) + 2`` positions only: with CLIP's causal
        mask the states of those positions do not depend on the padding after them. Word features
        are zero-padded back to ``ids.size(1) - 2`` positions (masked)."""
        m = self.clip
        cast = m.transformer.get_cast_dtype()
        T = ids.size(1) - 2
        L = min(int(lengths.max()) + 2, ids.size(1))
        x_ids = ids[:, :L]
        x = m.token_embedding(x_ids).to(cast) + m.positional_embedding[:L].to(cast)
        x = m.transformer(x, attn_mask=m.attn_mask[:L, :L])
        x = m.ln_final(x)  # B x L x width
        eot = x_ids.argmax(dim=-1)  # the end-of-text id is the largest id
        sent = x[torch.arange(x.size(0), device=x.device), eot]
        proj = m.text_projection
        sent = proj(sent) if isinstance(proj, nn.Linear) else sent @ proj
        words = x[:, 1:L - 1].transpose(1, 2)
        words = F.pad(words, (0, T - words.size(2))).contiguous()
        mask = torch.arange(T, device=ids.device)[None, :] >= lengths.to(ids.device)[:, None]
        return words.float(), sent.float(), mask


class FrozenTextCache:
    """Per-caption memo of a frozen text encoder's outputs.

    Each missing caption is encoded *alone* (its exact token length), so a cached row never
    depends on which other captions shared its batch: results are identical whether the cache
    was filled before or after a resume."""

    def __init__(self, encoder: nn.Module) -> None:
        self.encoder = encoder
        self.rows: dict[bytes, tuple[torch.Tensor, torch.Tensor]] = {}

    @torch.no_grad()
    def __call__(self, ids: torch.Tensor, lengths: torch.Tensor):
        T = ids.size(1) - 2
        words, sents = [], []
        for b in range(ids.size(0)):
            n = int(lengths[b])
            key = ids[b, : n + 2].cpu().numpy().tobytes()
            hit = self.rows.get(key)
            if hit is None:
                w, s, _ = self.encoder(ids[b:b + 1, : n + 2], lengths[b:b + 1])
                hit = (w[0, :, :n].clone(), s[0].clone())
                self.rows[key] = hit
            words.append(F.pad(hit[0], (0, T - hit[0].size(1))))
            sents.append(hit[1])
        mask = torch.arange(T, device=ids.device)[None, :] >= lengths.to(ids.device)[:, None]
        return torch.stack(words), torch.stack(sents), mask


def clip_image_features(clip_model, images: torch.Tensor) -> torch.Tensor:
    """CLIP image embedding of images in [-1, 1] (B, 3, H, W): resize (bicubic, antialiased)
    to the model's input size, normalise with CLIP's mean/std, ``encode_image``."""
    size = clip_model.visual.image_size
    size = size if isinstance(size, (tuple, list)) else (size, size)
    x = (images.float() + 1.0) / 2.0
    if tuple(x.shape[-2:]) != tuple(size):
        x = F.interpolate(x, size=tuple(size), mode="bicubic", align_corners=False, antialias=True)
    mean = torch.tensor((0.48145466, 0.4578275, 0.40821073), device=x.device).view(1, 3, 1, 1)
    std = torch.tensor((0.26862954, 0.26130258, 0.27577711), device=x.device).view(1, 3, 1, 1)
    return clip_model.encode_image((x - mean) / std).float()
