"""Sampling, sample grids, R-precision and FID for a run (used by training, ``generate`` and benchmarks).

R-precision (DESIGN.md §3, AttnGAN/DM-GAN protocol without their slips): for each
generated image, cosine scores of its true caption and of up to 99 captions drawn
without replacement from *other identities*; a hit when the true caption scores
strictly highest. Reported: mean over 10 folds of a seeded permutation (np.array_split)
and the population std over those folds. This is a stop-gap until
``facemetrics.metrics.rprecision`` lands on main; the numbers follow the same definition.
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
    from models.train import _tqdm

    tqdm = _tqdm()
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

    from facemetrics.atomic import atomic_open

    n, h, w, _ = images.shape
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = math.ceil(n / cols)
    grid = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, np.uint8)
    for k in range(n):
        r, c = divmod(k, cols)
        grid[pad + r * (h + pad): pad + r * (h + pad) + h, pad + c * (w + pad): pad + c * (w + pad) + w] = images[k]
    with atomic_open(path, "wb") as f:
        Image.fromarray(grid).save(f, format="PNG")


def r_precision(img_emb: np.ndarray, txt_emb: np.ndarray, groups: Sequence[str], *,
                negatives: int = 99, folds: int = 10, seed: int = 0) -> dict[str, Any]:
    """R-precision of rows (image i ↔ caption i), negatives from other ``groups`` (identities)."""
    a = np.asarray(img_emb, np.float64)
    b = np.asarray(txt_emb, np.float64)
    a = a / np.maximum(np.linalg.norm(a, axis=1, keepdims=True), 1e-12)
    b = b / np.maximum(np.linalg.norm(b, axis=1, keepdims=True), 1e-12)
    g = np.asarray(list(groups))
    n = len(a)
    rng = np.random.default_rng(seed)
    hits = np.zeros(n, bool)
    n_negs = []
    for i in range(n):
        pool = np.flatnonzero(g != g[i])
        k = min(negatives, len(pool))
        neg = rng.choice(pool, size=k, replace=False) if k else np.zeros(0, int)
        true = a[i] @ b[i]
        hits[i] = bool(np.all(true > a[i] @ b[neg].T)) if k else True
        n_negs.append(k)
    order = np.random.default_rng([seed, 1]).permutation(n)
    per_fold = [hits[f].mean() for f in np.array_split(order, min(folds, n)) if len(f)]
    if min(n_negs, default=0) < negatives:
        warnings.warn(f"R-precision: only {min(n_negs)} mismatched captions available for some images "
                      f"(protocol: {negatives}); numbers are not comparable with 1-in-100 R-precision", stacklevel=2)
    return {"value": float(np.mean(per_fold)), "std": float(np.std(per_fold)), "n": int(n),
            "higher_is_better": True,
            "details": {"negatives": negatives, "min_negatives": int(min(n_negs, default=0)), "folds": len(per_fold),
                        "seed": seed, "std_kind": "population std over folds"}}


def write_images(images: np.ndarray, names: Sequence[str], folder: Path) -> None:
    from PIL import Image

    from facemetrics.atomic import atomic_open

    folder.mkdir(parents=True, exist_ok=True)
    for a, name in zip(images, names):
        with atomic_open(folder / name, "wb") as f:
            Image.fromarray(a).save(f, format="PNG")


def fid_with_facemetrics(real: Path, fake: Path, device: str) -> dict[str, Any] | None:
    """FID (clean preset) of ``fake`` against ``real`` through ``facemetrics.api.score``;
    None (with a warning) when that API is not available in this checkout."""
    try:
        from facemetrics.api import score
    except ImportError as e:
        warnings.warn(f"FID skipped: facemetrics.api is not available ({e})", stacklevel=2)
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = score(str(real), str(fake), metrics=("fid",), preset="clean", device=device, progress=False,
                    cache=True)
    m = rec["metrics"]["fid"]
    return {"value": float(m["value"]), "n_real": rec["real"]["n"], "n_fake": rec["fake"]["n"],
            "preset": "clean", "warnings": rec.get("warnings", [])}


def eval_set(records: Sequence, limit: int = 0) -> list[tuple[Any, Any]]:
    """(record, caption) pairs of a split in a fixed order (sorted records, captions in file order)."""
    rows = [(r, c) for r in sorted(records, key=lambda r: r.key) for c in r.captions]
    return rows[:limit] if limit else rows


def evaluate(system, records: Sequence, real_dir: Path, work_dir: Path, *, seed: int, limit: int = 0,
             fid: bool = True, batch_size: int = 32) -> dict[str, Any]:
    """R-precision (the run's own matcher) and FID vs ``real_dir`` of EMA samples for held-out captions."""
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
    out["rprec"] = r_precision(ie, te, [r.identity for r, _ in rows], seed=seed)
    out["rprec"]["details"]["matcher"] = m.kind
    if fid:
        names = [f"{i:05d}.png" for i in range(len(imgs))]
        write_images(imgs, names, work_dir)
        try:
            out["fid"] = fid_with_facemetrics(real_dir, work_dir, str(system.device))
        finally:
            for nme in names:
                (work_dir / nme).unlink(missing_ok=True)
            try:
                work_dir.rmdir()
            except OSError:
                pass
    return out
