"""AttnGAN losses: DAMSM word/sentence matching, discriminator, generator, KL, CLIP matching.

Conventions (AttnGAN ``miscc/losses.py``): a similarity matrix ``S[j, i]`` scores image
``j`` against caption ``i`` of the batch; the matching losses are
``CE(S, labels) + CE(Sᵀ, labels)`` with ``labels = arange(B)``; off-diagonal pairs of
the same identity are masked to −∞ (they are not negatives).

* sentence: ``S = γ3 · cos(code_j, sent_i)``.
* words: for caption ``i`` and image ``j``, ``a_rt = softmax_t(⟨region_r, word_t⟩)``
  (over the caption's words), then ``β_tr = softmax_r(γ1 · a_rt)``, region context
  ``c_t = Σ_r β_tr region_r``; ``S[j, i] = γ3 · log Σ_t exp(γ2 · cos(word_t, c_t))``
  over the caption's real words.
* CLIP: ``S = γ · cos(E_img(fake_j), E_txt(caption_i))`` with CLIP's encoders.
* D: ``(BCE(u_real, 1) + BCE(c_real, 1)) / 2 + (BCE(u_fake, 0) + BCE(c_fake, 0) + BCE(c_wrong, 0)) / 3``,
  ``c_wrong`` pairing real image ``j`` with caption ``j + 1``.
* G: Σ over stages of ``BCE(u_fake, 1) + BCE(c_fake, 1)``; KL = mean of
  ``−½ (1 + log σ² − μ² − σ²)``.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F


def identity_mask(class_ids: torch.Tensor | None) -> torch.Tensor | None:
    """(B, B) True where two different batch items share an identity."""
    if class_ids is None:
        return None
    same = class_ids[:, None] == class_ids[None, :]
    return same & ~torch.eye(len(class_ids), dtype=torch.bool, device=class_ids.device)


def _match_ce(scores: torch.Tensor, mask: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    if mask is not None:
        scores = scores.masked_fill(mask, float("-inf"))
    labels = torch.arange(scores.size(0), device=scores.device)
    return F.cross_entropy(scores, labels), F.cross_entropy(scores.t(), labels)


def sentence_scores(code: torch.Tensor, sent: torch.Tensor, gamma3: float) -> torch.Tensor:
    """``γ3 · cos(code_j, sent_i)`` as (B_img, B_txt)."""
    return gamma3 * F.normalize(code.float(), dim=1, eps=1e-8) @ F.normalize(sent.float(), dim=1, eps=1e-8).t()


def sent_loss(code, sent, class_ids, gamma3: float):
    return _match_ce(sentence_scores(code, sent, gamma3), identity_mask(class_ids))


def word_scores(regions: torch.Tensor, words: torch.Tensor, word_mask: torch.Tensor,
                gamma1: float, gamma2: float, gamma3: float) -> torch.Tensor:
    """DAMSM word-level scores (B_img, B_txt); ``regions`` (B, D, h, w), ``words`` (B, D, T)."""
    regions = regions.float().flatten(2)  # Bi x D x R
    words = words.float()  # Bt x D x T
    a = torch.einsum("jdr,idt->ijrt", regions, words)  # Bt x Bi x R x T
    a = a.masked_fill(word_mask[:, None, None, :], float("-inf"))
    a = torch.softmax(a, dim=3)  # over words (AttnGAN Eq. 8)
    beta = torch.softmax(gamma1 * a, dim=2)  # over regions (Eq. 9)
    ctx = torch.einsum("jdr,ijrt->ijdt", regions, beta)  # Bt x Bi x D x T
    cos = F.cosine_similarity(words[:, None], ctx, dim=2, eps=1e-8)  # Bt x Bi x T
    r = torch.exp(gamma2 * cos).masked_fill(word_mask[:, None, :], 0.0).sum(dim=2).log()
    return gamma3 * r.t()  # Bi x Bt


def words_loss(regions, words, word_mask, class_ids, gamma1, gamma2, gamma3):
    return _match_ce(word_scores(regions, words, word_mask, gamma1, gamma2, gamma3), identity_mask(class_ids))


def damsm_loss(regions, code, words, sent, word_mask, class_ids, g: dict) -> tuple[torch.Tensor, dict]:
    """``w0 + w1 + λs · (s0 + s1)`` and its word and sentence parts (unweighted).

    ``g``: ``gamma1..3`` and optionally ``sentence_weight`` (λs, default 1 = AttnGAN's sum);
    a larger λs leans on the sentence feature, which sees every word of a long caption,
    against the word loss, whose log-sum-exp over words grows with the caption's length."""
    w0, w1 = words_loss(regions, words, word_mask, class_ids, g["gamma1"], g["gamma2"], g["gamma3"])
    s0, s1 = sent_loss(code, sent, class_ids, g["gamma3"])
    sw = float(g.get("sentence_weight", 1.0))
    return w0 + w1 + sw * (s0 + s1), {"w_loss": (w0 + w1).item(), "s_loss": (s0 + s1).item()}


def clip_match_loss(img_emb: torch.Tensor, txt_emb: torch.Tensor, class_ids, gamma: float) -> torch.Tensor:
    a, b = _match_ce(sentence_scores(img_emb, txt_emb, gamma), identity_mask(class_ids))
    return a + b


def _bce(logits: torch.Tensor, target: float) -> torch.Tensor:
    return F.binary_cross_entropy_with_logits(logits.float(), torch.full_like(logits.float(), target))


def d_loss(netD, real: torch.Tensor, fake: torch.Tensor, sent: torch.Tensor,
           wrong_sent: torch.Tensor | None = None, wrong_weight: float | None = None) -> torch.Tensor:
    """AttnGAN's D loss (module docstring). ``wrong_sent`` are the mismatched captions of the
    first ``len(wrong_sent)`` real images (default ``sent[1:]``) and ``c_wrong`` is their BCE
    sum times ``wrong_weight`` (default ``1 / len(wrong_sent)``, the mean); a torchrun rank
    passes its rows of the global shift and ``world / (B_global − 1)`` (see models.parallel)."""
    if wrong_sent is None:
        wrong_sent = sent[1:]
    if wrong_weight is None:
        wrong_weight = 1.0 / max(len(wrong_sent), 1)
    fr = netD.features(real)
    ff = netD.features(fake.detach())
    cond_real = _bce(netD.cond_logits(fr, sent), 1.0)
    cond_fake = _bce(netD.cond_logits(ff, sent), 0.0)
    wl = netD.cond_logits(fr[:len(wrong_sent)], wrong_sent).float()
    cond_wrong = F.binary_cross_entropy_with_logits(wl, torch.zeros_like(wl), reduction="sum") * wrong_weight
    real_u = _bce(netD.uncond_logits(fr), 1.0)
    fake_u = _bce(netD.uncond_logits(ff), 0.0)
    return (real_u + cond_real) / 2.0 + (fake_u + cond_fake + cond_wrong) / 3.0


def g_adv_loss(netD, fake: torch.Tensor, sent: torch.Tensor) -> torch.Tensor:
    f = netD.features(fake)
    return _bce(netD.uncond_logits(f), 1.0) + _bce(netD.cond_logits(f, sent), 1.0)


def d_loss_uncond(netD, real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    """The unconditional part of :func:`d_loss`, with its weights: real_u / 2 + fake_u / 3 (the CLIP
    discriminator variant after its switch, where the conditional judgement is :func:`clip_d_loss`'s)."""
    real_u = _bce(netD.uncond_logits(netD.features(real)), 1.0)
    fake_u = _bce(netD.uncond_logits(netD.features(fake.detach())), 0.0)
    return real_u / 2.0 + fake_u / 3.0


def clip_d_loss(head, img_real: torch.Tensor, img_fake: torch.Tensor, txt: torch.Tensor, wrong_txt: torch.Tensor,
                wrong_weight: float) -> torch.Tensor:
    """The conditional part of :func:`d_loss` judged by the CLIP head (:class:`models.nets.ClipCondHead`):
    cond_real / 2 + (cond_fake + cond_wrong) / 3, on CLIP image embeddings of the real and (detached)
    generated last-stage images and CLIP text embeddings; ``wrong_txt`` are the mismatched captions of the
    first ``len(wrong_txt)`` real images, their BCE summed times ``wrong_weight`` (as in :func:`d_loss`)."""
    cond_real = _bce(head(img_real, txt), 1.0)
    cond_fake = _bce(head(img_fake, txt), 0.0)
    wl = head(img_real[:len(wrong_txt)], wrong_txt).float()
    cond_wrong = F.binary_cross_entropy_with_logits(wl, torch.zeros_like(wl), reduction="sum") * wrong_weight
    return cond_real / 2.0 + (cond_fake + cond_wrong) / 3.0


def g_adv_uncond(netD, fake: torch.Tensor) -> torch.Tensor:
    return _bce(netD.uncond_logits(netD.features(fake)), 1.0)


def g_clip_cond(head, img_fake: torch.Tensor, txt: torch.Tensor) -> torch.Tensor:
    """G's conditional adversarial term under the CLIP discriminator: BCE(head(CLIP(G(z, t)), t), 1)."""
    return _bce(head(img_fake, txt), 1.0)


def kl_loss(mu: torch.Tensor, logvar: torch.Tensor) -> torch.Tensor:
    mu, logvar = mu.float(), logvar.float()
    return torch.mean(-0.5 * (1 + logvar - mu.pow(2) - logvar.exp()))
