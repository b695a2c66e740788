"""``generate``: images for captions from a checkpoint, plus the pairs manifest.

Output folder: one PNG per (caption, sample) named ``{i:05d}_{identity}_{caption_id}_{k}.png``,
``pairs.jsonl`` following the shared pairs contract (``fake`` relative to the folder,
``caption``, ``real`` absolute path of the real image the caption describes,
``identity``, ``caption_id``) and ``generate.json`` (checkpoint, step, seed, counts).
``facemetrics score REAL OUT --pairs OUT/pairs.jsonl`` reads it as is.
"""
from __future__ import annotations

import json
import re
import warnings
from pathlib import Path
from typing import Any

from facemetrics.pairing.captions import write_pair_rows
from facemetrics.storage.atomic import atomic_write_text
from facemetrics.storage.digest import file_sha256
from facemetrics.errors import FacemetricsError


def _safe(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", s)[:60] or "x"


def read_caption_file(path: Path) -> list[dict]:
    """``.txt``: one caption per non-empty line; ``.jsonl``: objects with ``caption`` and optional
    ``real``, ``identity``, ``caption_id``."""
    if not path.is_file():
        raise FacemetricsError(f"captions file not found: {path} (or use 'test' / 'train')", "--captions")
    rows = []
    if path.suffix.lower() == ".jsonl":
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if not line.strip():
                continue
            try:
                d = json.loads(line)
            except ValueError as e:
                raise FacemetricsError(f"{path}:{n}: not JSON ({e})", "--captions") from None
            if not isinstance(d, dict) or not isinstance(d.get("caption"), str):
                raise FacemetricsError(f"{path}:{n}: needs a string 'caption'", "--captions")
            rows.append({"caption": d["caption"], "caption_id": str(d.get("caption_id", n)),
                         "real": d.get("real"), "identity": d.get("identity")})
    else:
        for n, line in enumerate(path.read_text().splitlines(), 1):
            if line.strip():
                rows.append({"caption": line.strip(), "caption_id": str(n), "real": None, "identity": None})
    if not rows:
        raise FacemetricsError(f"captions file {path} holds no caption", "--captions")
    return rows


def caption_rows(ck: dict, which: str, data_root: str | None) -> list[dict]:
    from models.data import record_from_dict

    if which == "test":
        recs = [record_from_dict(d, data_root) for d in ck["test_records"]]
    elif which == "train":
        from models.data import load_records, split_records

        cfg = json.loads(json.dumps(ck["config"]))
        if data_root:
            cfg["data"]["root"] = data_root
        recs, _ = split_records(load_records(cfg), cfg["data"]["test_fraction"], cfg["data"]["split_seed"])
        if [r.key for r in recs] != ck["split"]["train"]:
            raise FacemetricsError("the data folder gives a different training split than the checkpoint's", "--data")
    else:
        return read_caption_file(Path(which))
    rows = []
    for r in sorted(recs, key=lambda r: r.key):
        for c in r.captions:
            rows.append({"caption": c.text, "caption_id": c.caption_id,
                         "real": None if r.path is None else str(r.path), "identity": r.identity})
    return rows


def check_lengths(system, texts: list[str], policy: str) -> int:
    """Number of captions over the text encoder's limit; raises for ``policy == "error"``."""
    coder = system.text_coder
    over = [(i, coder.n_tokens(t)) for i, t in enumerate(texts) if coder.n_tokens(t) > coder.max_tokens]
    if over and policy == "error":
        i, n = over[0]
        unit = "words" if system.text_key == "lstm" else "BPE tokens"
        raise FacemetricsError(
            f"{len(over)} caption(s) exceed the {system.text_key} text encoder's limit of {coder.max_tokens} "
            f"{unit}; the first (#{i}) has {n}: {texts[i][:80]!r}... Use --long-captions truncate to cut them",
            "--long-captions")
    return len(over)


def generate(checkpoint: str, captions: str, out: str | Path, *, n_per_caption: int = 1, seed: int = 0,
             batch_size: int = 32, device: str = "auto", ema: bool = True, long_captions: str | None = None,
             data_root: str | None = None, limit: int = 0, overwrite: bool = False,
             expect_variant: str | None = None, progress: bool = True) -> dict[str, Any]:
    from models.evaluate import sample, write_images
    from models.system import load_checkpoint, resolve_device, system_from_checkpoint

    out = Path(out)
    if n_per_caption < 1:
        raise FacemetricsError("--n-per-caption must be >= 1", "--n-per-caption")
    if out.exists() and any(out.iterdir()):
        if not overwrite:
            raise FacemetricsError(f"output folder {out} is not empty (use --overwrite to replace its images)", "--out")
        for p in out.iterdir():
            if p.is_file() and (p.suffix.lower() == ".png" or p.name in ("pairs.jsonl", "generate.json")):
                p.unlink()
    dev = resolve_device(device)
    ck = load_checkpoint(checkpoint)
    system = system_from_checkpoint(ck, dev, expect_variant=expect_variant)
    system.eval()
    policy = long_captions or ck["config"]["text"]["long_captions"]
    rows = caption_rows(ck, captions, data_root)
    if limit:
        rows = rows[:limit]
    texts = [r["caption"] for r in rows]
    n_long = check_lengths(system, texts, policy)
    if n_long:
        warnings.warn(f"{n_long} of {len(texts)} captions exceed the text encoder's limit of "
                      f"{system.text_coder.max_tokens} tokens and were truncated", stacklevel=2)
    jobs = [(i, k) for i in range(len(rows)) for k in range(n_per_caption)]
    imgs, _ = sample(system, [texts[i] for i, _ in jobs], seed=seed, batch_size=batch_size, ema=ema,
                     policy=policy, progress=progress)
    names, pairs = [], []
    for (i, k), _img in zip(jobs, imgs):
        r = rows[i]
        name = f"{i:05d}_{_safe(r['identity'] or 'caption')}_{_safe(r['caption_id'])}_{k}.png"
        names.append(name)
        row = {"fake": name, "caption": r["caption"]}
        if r["real"]:
            row["real"] = str(Path(r["real"]).resolve())
        if r["identity"]:
            row["identity"] = r["identity"]
        row["caption_id"] = r["caption_id"]
        pairs.append(row)
    write_images(imgs, names, out)
    write_pair_rows(out / "pairs.jsonl", pairs)
    h = file_sha256(ck["path"])
    meta = {"checkpoint": ck["path"], "checkpoint_sha256": h, "variant": ck["variant"], "step": ck["step"],
            "gan_step": ck["gan_step"], "seed": seed, "ema": ema, "captions": captions, "n_captions": len(rows),
            "n_per_caption": n_per_caption, "n_images": len(names), "truncated_captions": n_long,
            "long_captions": policy, "resolution": ck["config"]["model"]["resolution"], "clip": ck.get("clip")}
    atomic_write_text(out / "generate.json", json.dumps(meta, indent=1))
    return meta
