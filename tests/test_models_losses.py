"""Losses and attention of models/ checked against naive re-computations (loops over pairs,
AttnGAN's sigmoid + BCELoss formulation, the Gaussian KL closed form, brute-force R-precision)."""
from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from models import losses as L


def _naive_word_scores(regions, words, lengths, g1, g2, g3):
    """AttnGAN's words_loss similarity, one (caption, image) pair at a time in float64."""
    B = regions.size(0)
    R = regions.flatten(2).double()
    S = torch.zeros(B, B, dtype=torch.float64)
    for i in range(B):
        w = words[i, :, : lengths[i]].double()  # D x T
        for j in range(B):
            ctx = R[j]  # D x N
            attn = ctx.t() @ w  # N x T
            attn = torch.softmax(attn, dim=1)  # over words
            attn = torch.softmax(g1 * attn.t(), dim=1)  # T x N, over regions
            wc = ctx @ attn.t()  # D x T
            cos = (w * wc).sum(0) / (w.norm(dim=0) * wc.norm(dim=0))
            S[j, i] = g3 * torch.log(torch.exp(g2 * cos).sum())
    return S


def test_word_scores_match_naive_attngan_loop():
    torch.manual_seed(0)
    B, D, T = 5, 7, 6
    regions = torch.randn(B, D, 3, 4)
    words = torch.randn(B, D, T)
    lengths = torch.tensor([6, 2, 4, 1, 5])
    mask = torch.arange(T)[None] >= lengths[:, None]
    words_padded = words.masked_fill(mask[:, None, :], 123.0)  # padding must not matter
    got = L.word_scores(regions, words_padded, mask, 4.0, 5.0, 10.0).double()
    want = _naive_word_scores(regions, words, lengths, 4.0, 5.0, 10.0)
    assert torch.allclose(got, want, rtol=1e-5, atol=1e-4)


def test_sentence_loss_and_identity_mask():
    torch.manual_seed(1)
    code, sent = torch.randn(4, 6), torch.randn(4, 6)
    cls = torch.tensor([0, 1, 0, 2])
    s0, s1 = L.sent_loss(code, sent, cls, 10.0)
    cos = torch.tensor([[float(F.cosine_similarity(code[j], sent[i], dim=0)) for i in range(4)] for j in range(4)])
    S = 10 * cos.double()
    S[0, 2] = S[2, 0] = -math.inf  # same identity, not a negative
    want0 = np.mean([-(S[j, j] - torch.logsumexp(S[j], 0)).item() for j in range(4)])
    want1 = np.mean([-(S[i, i] - torch.logsumexp(S[:, i], 0)).item() for i in range(4)])
    assert s0.item() == pytest.approx(want0, rel=1e-5)
    assert s1.item() == pytest.approx(want1, rel=1e-5)


class _TinyD(torch.nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(2)
        self.f = torch.nn.Linear(12, 5)
        self.u = torch.nn.Linear(5, 1)
        self.c = torch.nn.Linear(8, 1)

    def features(self, x):
        return self.f(x.flatten(1))

    def uncond_logits(self, f):
        return self.u(f).view(-1)

    def cond_logits(self, f, s):
        return self.c(torch.cat([f, s[:, :3]], 1)).view(-1)


def test_discriminator_and_generator_losses_equal_attngan_sigmoid_bce():
    torch.manual_seed(5)
    D = _TinyD()
    real, fake, sent = torch.randn(4, 3, 2, 2), torch.randn(4, 3, 2, 2), torch.randn(4, 6)
    bce = torch.nn.BCELoss()
    sig = torch.sigmoid
    fr, ff = D.features(real), D.features(fake)
    one, zero = torch.ones(4), torch.zeros(4)
    want = ((bce(sig(D.uncond_logits(fr)), one) + bce(sig(D.cond_logits(fr, sent)), one)) / 2
            + (bce(sig(D.uncond_logits(ff)), zero) + bce(sig(D.cond_logits(ff, sent)), zero)
               + bce(sig(D.cond_logits(fr[:3], sent[1:])), zero[:3])) / 3)
    assert L.d_loss(D, real, fake, sent).item() == pytest.approx(want.item(), rel=1e-6)
    want_g = bce(sig(D.uncond_logits(ff)), one) + bce(sig(D.cond_logits(ff, sent)), one)
    assert L.g_adv_loss(D, fake, sent).item() == pytest.approx(want_g.item(), rel=1e-6)


def test_kl_is_the_gaussian_closed_form():
    torch.manual_seed(3)
    mu, logvar = torch.randn(3, 4), torch.randn(3, 4)
    # KL(N(mu, s^2) || N(0, 1)) per element = log(1/s) + (s^2 + mu^2 - 1) / 2
    s2 = logvar.exp().double()
    kl = (-0.5 * torch.log(s2) + (s2 + mu.double() ** 2 - 1) / 2).mean()
    assert L.kl_loss(mu, logvar).item() == pytest.approx(kl.item(), rel=1e-6)


def test_word_attention_masks_padding_and_is_a_convex_combination():
    from models.nets import WordAttention

    torch.manual_seed(4)
    att = WordAttention(6, 5)
    h, words = torch.randn(2, 6, 3, 3), torch.randn(2, 5, 4)
    mask = torch.tensor([[False, False, True, True], [False, False, False, False]])
    ctx, a = att(h, words, mask)
    assert a.shape == (2, 4, 3, 3)
    assert torch.allclose(a.sum(1), torch.ones(2, 3, 3), atol=1e-6)
    assert torch.all(a[0, 2:] == 0)
    src = att.conv_context(words)
    for b in range(2):
        for y in range(3):
            for x in range(3):
                logits = src[b].t() @ h[b, :, y, x]
                logits[mask[b]] = -math.inf
                w = torch.softmax(logits, 0)
                assert torch.allclose(ctx[b, :, y, x], src[b] @ w, atol=1e-5)


def test_training_log_r_precision_is_the_core_metric():
    """models.evaluate.r_precision is facemetrics' R-precision (never the same image or identity among
    the negatives), not a protocol of its own: same value and fold spread on the same rows."""
    from facemetrics.errors import FacemetricsError
    from facemetrics.metrics.rprecision import r_precision as core
    from models.evaluate import r_precision

    rng = np.random.default_rng(0)
    n, d = 30, 8
    txt = rng.normal(size=(n, d))
    img = txt + rng.normal(scale=1.2, size=(n, d))
    images = [f"img{i}" for i in range(n)]
    groups = [f"id{i // 2}" for i in range(n)]  # pairs of rows share an identity
    res = r_precision(img, txt, images, groups, negatives=10, folds=5, seed=7)
    ref = core(img, txt, np.arange(n), images, groups, n_negatives=10, folds=5, seed=7)
    assert res["value"] == ref.value and res["std"] == ref.std and res["details"]["n_negatives"] == 10
    assert 0 < res["value"] < 1
    # perfect embeddings: every true caption ranks first
    assert r_precision(txt, txt, images, groups, negatives=10, folds=5)["value"] == 1.0
    # too few eligible negatives (28 other-identity captions) is an error, never fewer negatives
    with pytest.raises(FacemetricsError, match="negative"):
        r_precision(img, txt, images, groups, negatives=29, folds=5)


def test_clip_text_encoder_trimmed_context_and_cache_match_full_context():
    from models.config import build_config
    from models.data import ClipCoder
    from models.text import ClipTextEncoder, FrozenTextCache, build_clip

    cfg = build_config(None, [
        "clip.custom={embed_dim: 16, vision_cfg: {image_size: 32, layers: 1, width: 32, patch_size: 16, "
        "head_width: 16}, text_cfg: {context_length: 77, vocab_size: 49408, width: 32, heads: 2, layers: 2}}"])
    enc = ClipTextEncoder(build_clip(cfg)).eval()
    coder = ClipCoder(77)
    rows = [coder.encode(t) for t in ("a smiling woman with long hair", "old man", "a man with a beard")]
    ids = torch.from_numpy(np.stack([r[0] for r in rows]))
    lens = torch.tensor([r[1] for r in rows])
    with torch.no_grad():
        w, s, mask = enc(ids, lens)
        # reference: the open_clip model on the full 77-token context
        m = enc.clip
        x = m.ln_final(m.transformer(m.token_embedding(ids) + m.positional_embedding, attn_mask=m.attn_mask))
        full_sent = x[torch.arange(3), ids.argmax(-1)] @ m.text_projection
        assert torch.allclose(s, full_sent, atol=1e-5)
        assert torch.allclose(s, m.encode_text(ids), atol=1e-5)
        for b in range(3):
            n = int(lens[b])
            assert torch.allclose(w[b, :, :n], x[b, 1:1 + n].t(), atol=1e-5)
            assert mask[b, n:].all() and not mask[b, :n].any()
            assert (w[b, :, int(lens.max()):] == 0).all()  # beyond the trimmed context: zero padding
        cache = FrozenTextCache(enc)
        w2, s2, m2 = cache(ids, lens)
        w3, s3, _ = cache(ids.flip(0), lens.flip(0))  # hits, in another batch order
    keep = ~mask[:, None, :]
    assert torch.allclose(w2 * keep, w * keep, atol=1e-5) and (w2 * ~keep == 0).all()
    assert torch.allclose(s2, s, atol=1e-5) and torch.equal(m2, mask)
    assert torch.equal(w3, w2.flip(0)) and torch.equal(s3, s2.flip(0)) and len(cache.rows) == 3


def test_inception_damsm_encoder_uses_frozen_mixed_6e_regions():
    from models.image_encoder import InceptionEncoder

    torch.manual_seed(6)
    e = InceptionEncoder(16, 12).train()
    x = (torch.rand(2, 3, 64, 64) * 2 - 1).requires_grad_(True)
    regions, code = e(x)
    assert regions.shape == (2, 16, 17, 17) and code.shape == (2, 12)  # Mixed_6e is 17x17
    (regions.sum() + code.sum()).backward()
    assert x.grad is not None and x.grad.abs().sum() > 0  # the generator gets gradients through it
    assert sorted(n for n, p in e.named_parameters() if p.requires_grad) == [
        "emb_cnn_code.bias", "emb_cnn_code.weight", "emb_features.weight"]
    assert not e.trunk.training and set(e.trainable_state_dict()) == {
        "emb_cnn_code.bias", "emb_cnn_code.weight", "emb_features.weight"}


def test_damsm_sentence_weight_scales_the_sentence_loss_only():
    """damsm.sentence_weight: total = word loss + w · sentence loss; 1 is AttnGAN's plain sum."""
    from facemetrics.errors import FacemetricsError
    from models import config as C

    torch.manual_seed(0)
    B, D, T = 4, 6, 5
    regions, code = torch.randn(B, D, 2, 3), torch.randn(B, D)
    words, sent = torch.randn(B, D, T), torch.randn(B, D)
    mask = torch.arange(T)[None] >= torch.tensor([5, 3, 2, 4])[:, None]
    cls = torch.tensor([0, 1, 2, 1])
    g = {"gamma1": 4.0, "gamma2": 5.0, "gamma3": 10.0}
    base, parts = L.damsm_loss(regions, code, words, sent, mask, cls, g)
    w = sum(L.words_loss(regions, words, mask, cls, 4.0, 5.0, 10.0))
    s = sum(L.sent_loss(code, sent, cls, 10.0))
    assert torch.allclose(base, w + s) and parts["s_loss"] == pytest.approx(float(s))
    assert torch.allclose(L.damsm_loss(regions, code, words, sent, mask, cls, {**g, "sentence_weight": 1.0})[0], base)
    heavy, parts2 = L.damsm_loss(regions, code, words, sent, mask, cls, {**g, "sentence_weight": 2.5})
    assert torch.allclose(heavy, w + 2.5 * s) and parts2 == parts  # the logged parts stay unweighted
    assert torch.allclose(L.damsm_loss(regions, code, words, sent, mask, cls, {**g, "sentence_weight": 0.0})[0], w)
    assert C.build_config(None, ["damsm.sentence_weight=2"])["damsm"]["sentence_weight"] == 2.0
    with pytest.raises(FacemetricsError, match="'damsm.sentence_weight' must be >= 0"):
        C.build_config(None, ["damsm.sentence_weight=-1"])
