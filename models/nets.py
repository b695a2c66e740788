"""AttnGAN generator and discriminators (Xu et al. 2018), device-agnostic.

Generator: conditioning augmentation (CA: fc → GLU → (μ, log σ²), c = μ + σ·ε) →
stage 0 (fc to 4×4×16·gf, four nearest-upsample + conv + BN + GLU blocks → 64×64×gf) →
for every further stage, word attention (context = softmax over words of
hᵀ·W·e, masked on padding) concatenated to the hidden state, ``r_num`` residual
blocks and one upsample block (×2). Each stage has a 3×3 conv + tanh image head.

Discriminators (one per stage, 64/128/256): a ×16 strided-conv encoder (plus
extra down blocks above 64) to 4×4×8·df, an unconditional logit and a conditional
logit (the sentence feature tiled over 4×4, concatenated, 3×3 conv, then a 4×4
conv). Logits are returned *before* the sigmoid; losses use BCE-with-logits, the
same loss as AttnGAN's sigmoid + BCELoss, without its float16/overflow hazards.
"""
from __future__ import annotations

import torch
import torch.nn as nn
import torch.nn.functional as F


class GLU(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n = x.size(1) // 2
        return x[:, :n] * torch.sigmoid(x[:, n:])


def conv3x3(cin: int, cout: int) -> nn.Conv2d:
    return nn.Conv2d(cin, cout, 3, 1, 1, bias=False)


def up_block(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), conv3x3(cin, cout * 2),
                         nn.BatchNorm2d(cout * 2), GLU())


class ResBlock(nn.Module):
    def __init__(self, c: int) -> None:
        super().__init__()
        self.block = nn.Sequential(conv3x3(c, c * 2), nn.BatchNorm2d(c * 2), GLU(),
                                   conv3x3(c, c), nn.BatchNorm2d(c))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.block(x)


class CANet(nn.Module):
    """Conditioning augmentation: ``fc(sent) → GLU → (μ, log σ²)``; ``c = μ + exp(½ log σ²)·ε``."""

    def __init__(self, t_dim: int, c_dim: int) -> None:
        super().__init__()
        self.c_dim = c_dim
        self.fc = nn.Linear(t_dim, c_dim * 4)
        self.glu = GLU()

    def forward(self, sent: torch.Tensor, eps: torch.Tensor | None = None):
        """``eps`` (B, c_dim) ~ N(0, 1); drawn from the global RNG when not given."""
        x = self.glu(self.fc(sent))
        mu, logvar = x[:, : self.c_dim], x[:, self.c_dim:]
        if eps is None:
            eps = torch.randn_like(mu)
        return mu + eps.to(mu.dtype) * torch.exp(0.5 * logvar), mu, logvar


class InitStage(nn.Module):
    def __init__(self, ngf: int, in_dim: int) -> None:
        super().__init__()
        self.ngf = ngf
        self.fc = nn.Sequential(nn.Linear(in_dim, ngf * 16 * 2, bias=False), nn.BatchNorm1d(ngf * 16 * 2), GLU())
        self.up = nn.Sequential(up_block(ngf, ngf // 2), up_block(ngf // 2, ngf // 4),
                                up_block(ngf // 4, ngf // 8), up_block(ngf // 8, ngf // 16))

    def forward(self, z: torch.Tensor, c: torch.Tensor) -> torch.Tensor:
        h = self.fc(torch.cat([c, z], 1)).view(-1, self.ngf, 4, 4)
        return self.up(h)


class WordAttention(nn.Module):
    """AttnGAN's ``GlobalAttentionGeneral``: words projected to the image channels by a 1×1
    conv; for every pixel a softmax over (unmasked) words of ⟨h_pixel, W e_word⟩; returns
    the attended word context (B, C, H, W) and the map (B, T, H, W)."""

    def __init__(self, idf: int, cdf: int) -> None:
        super().__init__()
        self.conv_context = nn.Conv1d(cdf, idf, 1, bias=False)

    def forward(self, h: torch.Tensor, words: torch.Tensor, mask: torch.Tensor | None):
        B, C, H, W = h.shape
        src = self.conv_context(words)  # B x C x T
        attn = torch.bmm(h.view(B, C, H * W).transpose(1, 2), src)  # B x HW x T
        if mask is not None:
            attn = attn.masked_fill(mask[:, None, :], float("-inf"))
        attn = torch.softmax(attn, dim=2)
        ctx = torch.bmm(src, attn.transpose(1, 2))  # B x C x HW
        return ctx.view(B, C, H, W), attn.transpose(1, 2).reshape(B, -1, H, W)


class NextStage(nn.Module):
    def __init__(self, ngf: int, word_dim: int, r_num: int) -> None:
        super().__init__()
        self.att = WordAttention(ngf, word_dim)
        self.residual = nn.Sequential(*[ResBlock(ngf * 2) for _ in range(r_num)])
        self.up = up_block(ngf * 2, ngf)

    def forward(self, h, words, mask):
        ctx, att = self.att(h, words, mask)
        return self.up(self.residual(torch.cat([h, ctx], 1))), att


class ImageHead(nn.Module):
    def __init__(self, ngf: int) -> None:
        super().__init__()
        self.conv = conv3x3(ngf, 3)

    def forward(self, h):
        return torch.tanh(self.conv(h))


class Generator(nn.Module):
    def __init__(self, n_stages: int, sent_dim: int, word_dim: int, z_dim: int = 100,
                 c_dim: int = 100, gf_dim: int = 32, r_num: int = 2) -> None:
        super().__init__()
        self.z_dim = z_dim
        self.ca = CANet(sent_dim, c_dim)
        self.init_stage = InitStage(gf_dim * 16, z_dim + c_dim)
        self.heads = nn.ModuleList([ImageHead(gf_dim)])
        self.stages = nn.ModuleList()
        for _ in range(n_stages - 1):
            self.stages.append(NextStage(gf_dim, word_dim, r_num))
            self.heads.append(ImageHead(gf_dim))

    def forward(self, z, sent, words, mask, eps: torch.Tensor | None = None):
        """Images per stage (64, 128, ...) in [-1, 1], attention maps, μ, log σ²."""
        c, mu, logvar = self.ca(sent, eps)
        h = self.init_stage(z, c)
        imgs, atts = [self.heads[0](h)], []
        for stage, head in zip(self.stages, self.heads[1:]):
            h, att = stage(h, words, mask)
            imgs.append(head(h))
            atts.append(att)
        return imgs, atts, mu, logvar


def _down(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1, bias=False), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True))


def _same(cin: int, cout: int) -> nn.Sequential:
    return nn.Sequential(conv3x3(cin, cout), nn.BatchNorm2d(cout), nn.LeakyReLU(0.2, inplace=True))


class Discriminator(nn.Module):
    """D for one resolution (64·2^k): encoder to 4×4×8df, unconditional + conditional logits."""

    def __init__(self, resolution: int, df_dim: int, sent_dim: int) -> None:
        super().__init__()
        ndf = df_dim
        layers = [nn.Conv2d(3, ndf, 4, 2, 1, bias=False), nn.LeakyReLU(0.2, inplace=True),
                  *_down(ndf, ndf * 2), *_down(ndf * 2, ndf * 4), *_down(ndf * 4, ndf * 8)]
        if resolution >= 128:
            layers += [*_down(ndf * 8, ndf * 16)]
        if resolution >= 256:
            layers += [*_down(ndf * 16, ndf * 32), *_same(ndf * 32, ndf * 16)]
        if resolution >= 128:
            layers += [*_same(ndf * 16, ndf * 8)]
        self.encode = nn.Sequential(*layers)
        self.uncond = nn.Conv2d(ndf * 8, 1, 4, 4)
        self.joint = _same(ndf * 8 + sent_dim, ndf * 8)
        self.cond = nn.Conv2d(ndf * 8, 1, 4, 4)

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.encode(x)

    def uncond_logits(self, f: torch.Tensor) -> torch.Tensor:
        return self.uncond(f).view(-1)

    def cond_logits(self, f: torch.Tensor, sent: torch.Tensor) -> torch.Tensor:
        s = sent.view(sent.size(0), -1, 1, 1).expand(-1, -1, f.size(2), f.size(3))
        return self.cond(self.joint(torch.cat([f, s.to(f.dtype)], 1))).view(-1)


class ClipCondHead(nn.Module):
    """The CLIP discriminator's conditional judgement (``loss.discriminator: clip``).

    logit(x, t) = a · cos(e_img(x), e_txt(t)) + b, with e_img/e_txt the frozen CLIP towers'
    embeddings and (a, b) the only trainable parameters (initialised from
    ``clip_d.init_scale``/``init_bias``). It replaces the conditional branch of the last
    stage's D; every stage's D keeps its unconditional branch.
    """

    def __init__(self, init_scale: float, init_bias: float) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.tensor(float(init_scale)))
        self.bias = nn.Parameter(torch.tensor(float(init_bias)))

    def forward(self, img_emb: torch.Tensor, txt_emb: torch.Tensor) -> torch.Tensor:
        cos = (F.normalize(img_emb.float(), dim=1, eps=1e-8) * F.normalize(txt_emb.float(), dim=1, eps=1e-8)).sum(1)
        return self.scale * cos + self.bias


def weights_init(m: nn.Module) -> None:
    """AttnGAN's init: orthogonal conv/linear weights, BN weight ~ N(1, 0.02), zero biases."""
    if isinstance(m, (nn.Conv2d, nn.Conv1d, nn.Linear)):
        nn.init.orthogonal_(m.weight, 1.0)
        if m.bias is not None:
            nn.init.zeros_(m.bias)
    elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
        nn.init.normal_(m.weight, 1.0, 0.02)
        nn.init.zeros_(m.bias)
