"""Sampling, sample grids, R-precision and FID for a run (used by training, ``generate`` and benchmarks).

R-precision is the core metric :func:`facemetrics.metrics.rprecision.r_precision`
(DESIGN.md §3) with the run's own matcher (DAMSM or CLIP, whichever the run
trains with) in place of the reference matcher of ``facemetrics score``: image i
is the EMA sample for caption i of the evaluation rows (:func:`eval_set`), the
caption pool is those rows' captions, and for each image ``negatives`` (99)
captions are drawn without replacement from the pool's captions of *other real
images and other identities* (never the same image or identity; fewer eligible
captions is an error, never a silent smaller protocol); a hit when the true
caption's cosine is strictly highest (ties are misses); the mean and population
std over ``folds`` (10) folds of a permutation, all drawn from
``numpy.random.default_rng(seed)``. Numbers are comparable across runs that use
the same matcher only (each run's matcher is its own).

FID (clean preset) is computed in memory by :class:`facemetrics.Metrics` from the
uint8 samples; it equals ``facemetrics score REAL_DIR FOLDER`` on the same images
saved as PNG (lossless), which is what earlier versions did.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch


def to_uint8(x: torch.Tensor) -> np.ndarray:
    """(B, 3, H, W) in [-1, 1] → (B, H, W, 3) uint8, as AttnGAN saves images: round((x+1)·127.5)."""
    return ((x.detach().float().clamp(-1, 1) + 1.0) * 127.5).round().to(torch.uint8).permute(0, 2, 3, 1).cpu().numpy()


@torch.no_grad()
def sample(system, texts: Sequence[str], *, seed: int, batch_size: int = 32, ema: bool = True,
           policy: str = "truncate", stage: int = -1, progress: bool = False) -> tuple[np.ndarray, int]:
    """Generate one image per caption (noise z and CA ε drawn in order from a CPU generator
    seeded with ``seed``). Returns (N, H, W, 3) uint8 and the number of truncated captions."""
    from tqdm import tqdm

    G = system.G_ema if ema else system.G
    was = G.training
    G.eval()
    system.text_encoder.eval()
    gen = torch.Generator().manual_seed(seed)
    out, n_trunc = [], 0
    zd, cd = system.cfg["model"]["z_dim"], system.cfg["model"]["condition_dim"]
    for i in tqdm(range(0, len(texts), batch_size), disable=not progress, desc="generate", unit="batch"):
        chunk = list(texts[i:i + batch_size])
        ids, trunc = system.encode_captions(chunk, policy)
        n_trunc += sum(trunc)
        words, sent, mask = system.encode_text(ids)
        z = torch.randn(len(chunk), zd, generator=gen).to(system.device)
        eps = torch.randn(len(chunk), cd, generator=gen).to(system.device)
        imgs = G(z, sent.float(), words.float(), mask, eps=eps)[0]
        out.append(to_uint8(imgs[stage]))
    G.train(was)
    return (np.concatenate(out) if out else np.zeros((0, 64, 64, 3), np.uint8)), n_trunc


def save_grid(images: np.ndarray, path: Path, pad: int = 2) -> None:
    """Tile (N, H, W, 3) uint8 images row-major in a ⌈√N⌉-wide grid; atomic PNG write."""
    from PIL import Image

    from facemetrics.storage.atomic import atomic_open

    n, h, w, _ = images.shape
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[k]
    with atomic_open(path, "wb") as f:
        Image.fromarray(grid).save(f, format="PNG")


def r_precision(img_emb: np.ndarray, txt_emb: np.ndarray, image_ids: Sequence[str], identities: Sequence[str], *,
                negatives: int = 99, folds: int = 10, seed: int = 0) -> dict[str, Any]:
    """R-precision (the core metric, module docstring) of rows: image i ↔ caption i; the pool is the captions.

    ``image_ids``/``identities``: the real image and identity each row's caption
    describes. Returns the metric's dict (value, std, n, higher_is_better,
    details); raises :class:`~facemetrics.errors.FacemetricsError` when the pool
    leaves fewer than ``negatives`` eligible captions for some image or there
    are fewer images than ``folds``.
    """
    from facemetrics.metrics.rprecision import r_precision as core

    res = core(img_emb, txt_emb, np.arange(len(image_ids)), list(image_ids), list(identities),
               n_negatives=negatives, folds=folds, seed=seed)
    return res.to_dict()


def check_rprec_pool(rows: Sequence[tuple[Any, Any]], negatives: int, folds: int, param: str) -> None:
    """Refuse (before any training) an evaluation set too small for the R-precision protocol."""
    from facemetrics.errors import FacemetricsError
    from facemetrics.metrics.rprecision import sample_negatives

    n = len(rows)
    if n < folds:
        raise FacemetricsError(f"R-precision over {folds} folds needs at least {folds} evaluation captions, the "
                               f"evaluation set has {n}; raise train.eval_images (0 = all) or lower "
                               "train.eval_rprec_folds", param)
    try:
        sample_negatives(np.arange(n), [r.key for r, _ in rows], [r.identity for r, _ in rows], negatives,
                         np.random.default_rng(0))
    except FacemetricsError as e:
        raise FacemetricsError(f"{e} (periodic evaluation: raise train.eval_images, 0 = all held-out captions, or "
                               "lower train.eval_rprec_negatives)", param) from None


def write_images(images: np.ndarray, names: Sequence[str], folder: Path) -> None:
    from PIL import Image

    from facemetrics.storage.atomic import atomic_open

    folder.mkdir(parents=True, exist_ok=True)
    for a, name in zip(images, names):
        with atomic_open(folder / name, "wb") as f:
            Image.fromarray(a).save(f, format="PNG")


def fid_of_images(real: Path, images: np.ndarray, device: str, batch_size: int = 32) -> dict[str, Any]:
    """FID (clean preset) of (N, H, W, 3) uint8 ``images`` against the folder ``real``, in memory
    (:class:`facemetrics.Metrics`; REAL's features come from the feature cache after the first time)."""
    from facemetrics.pipeline.streaming import Metrics

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        m = Metrics("fid", real=str(real), device=device, batch_size=batch_size, cache=True)
        m.update(images)
        rec = m.compute()
    f = rec["metrics"]["fid"]
    return {"value": float(f["value"]), "n_real": rec["real"]["n"], "n_fake": rec["fake"]["n"],
            "preset": "clean", "warnings": rec.get("warnings", [])}


def eval_set(records: Sequence, limit: int = 0) -> list[tuple[Any, Any]]:
    """(record, caption) pairs of a split in a fixed order (sorted records, captions in file order)."""
    rows = [(r, c) for r in sorted(records, key=lambda r: r.key) for c in r.captions]
    return rows[:limit] if limit else rows


def evaluate(system, records: Sequence, real_dir: Path, *, seed: int, limit: int = 0, fid: bool = True,
             batch_size: int = 32, rprec_negatives: int = 99, rprec_folds: int = 10) -> dict[str, Any]:
    """R-precision (the run's own matcher, module docstring) and FID vs ``real_dir`` of EMA samples for
    held-out captions (nothing is written to disk)."""
    from models.matcher import matcher_for_system

    rows = eval_set(records, limit)
    texts = [c.text for _, c in rows]
    with torch.random.fork_rng(devices=[system.device] if system.device.type == "cuda" else []):
        imgs, n_trunc = sample(system, texts, seed=seed, batch_size=batch_size)
    out: dict[str, Any] = {"n": len(texts), "truncated_captions": n_trunc}
    m = matcher_for_system(system)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ie = m.encode_images(list(imgs))
        te = m.encode_texts(texts)
    out["rprec"] = r_precision(ie, te, [r.key for r, _ in rows], [r.identity for r, _ in rows],
                               negatives=rprec_negatives, folds=rprec_folds, seed=seed)
    out["rprec"]["details"]["matcher"] = m.kind
    if fid:
        out["fid"] = fid_of_images(real_dir, imgs, str(system.device))
    return out
