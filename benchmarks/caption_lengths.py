#!/usr/bin/env python
"""Caption lengths in Face2Text v0.1 and v1.0: AttnGAN words and CLIP BPE tokens.

Words are counted with the tokenisation the LSTM text encoder uses
(:func:`models.data.tokenize`: lower case, runs of ``\\w``, ASCII only); CLIP tokens
with open_clip's BPE tokenizer (:class:`open_clip.tokenizer.SimpleTokenizer`, which
ships its vocabulary and works offline), without the start/end tokens, so the
limit is 75 (context 77). For each caption set: count, mean, median, p90, p99 and
max (percentiles: NumPy's default linear interpolation), and the fraction of
captions over each word limit (``--words-num``, default the config default
``text.words_num`` plus the shipped configs' values) and over CLIP's 75 tokens.

Caption sets: v0.1 ``clean.json`` (every description, the 400 LFW images), v1.0
``raw.json`` (every description, 4,076 CelebA images) and the v1.0 descriptions of
the images present under ``celeba/`` (what ``data.dataset: face2text-v1.0`` trains
on). Descriptions with no word (which the loaders drop) are left out and counted.

Usage::

    python benchmarks/caption_lengths.py --data ../shared/data [--words-num 18,32,48] [--json out.json]

Prints a markdown table (no caption text: Face2Text must not be redistributed).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any, Sequence

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

CLIP_LIMIT = 75  # context 77 minus <start_of_text> and <end_of_text>


def caption_sets(root: Path) -> dict[str, list[str]]:
    """The caption texts of each set (see the module docstring), in file order."""
    v01 = json.loads((root / "face2text" / "v0.1" / "clean.json").read_text())
    v10 = json.loads((root / "face2text" / "v1.0" / "raw.json").read_text())
    present = {p.name for p in (root / "celeba").rglob("*.jpg")} if (root / "celeba").is_dir() else set()
    return {
        "v0.1 clean (LFW)": [d["text"] for row in v01 for d in row["descriptions"]],
        "v1.0 raw (all CelebA)": [r["description"] for r in v10],
        "v1.0 present images": [r["description"] for r in v10 if r["filename"] in present],
    }


def describe(lengths: Sequence[int]) -> dict[str, float]:
    """mean, median, p90, p99, max of ``lengths``."""
    a = np.asarray(lengths, dtype=np.float64)
    return {"mean": float(a.mean()), "median": float(np.median(a)), "p90": float(np.percentile(a, 90)),
            "p99": float(np.percentile(a, 99)), "max": float(a.max())}


def measure(texts: Sequence[str], words_nums: Sequence[int]) -> dict[str, Any]:
    """Word and BPE statistics of ``texts`` (captions with no word are counted and left out)."""
    from open_clip.tokenizer import SimpleTokenizer

    from models.data import tokenize

    tok = SimpleTokenizer()
    words = [len(tokenize(t)) for t in texts]
    kept = [(t, w) for t, w in zip(texts, words) if w > 0]
    w = [n for _, n in kept]
    b = [len(tok.encode(t)) for t, _ in kept]
    return {
        "n": len(kept), "dropped_empty": len(texts) - len(kept),
        "words": describe(w), "bpe": describe(b),
        "over_words": {str(k): float(np.mean(np.asarray(w) > k)) for k in words_nums},
        "over_clip": float(np.mean(np.asarray(b) > CLIP_LIMIT)),
    }


def markdown(results: dict[str, dict], words_nums: Sequence[int]) -> str:
    """One row per caption set and unit (words, BPE tokens)."""
    over = " | ".join(f"> {k} words" for k in words_nums)
    lines = [f"| captions | n | unit | mean | median | p90 | p99 | max | {over} | > {CLIP_LIMIT} BPE |",
             "|---|---:|---|---:|---:|---:|---:|---:|" + "---:|" * len(words_nums) + "---:|"]
    for name, r in results.items():
        for unit in ("words", "bpe"):
            s = r[unit]
            cells = [f"{s['mean']:.1f}", f"{s['median']:.0f}", f"{s['p90']:.1f}", f"{s['p99']:.1f}", f"{s['max']:.0f}"]
            if unit == "words":
                extra = [f"{100 * r['over_words'][str(k)]:.1f} %" for k in words_nums] + [""]
            else:
                extra = [""] * len(words_nums) + [f"{100 * r['over_clip']:.1f} %"]
            lines.append(f"| {name} | {r['n']} | {'words' if unit == 'words' else 'CLIP BPE'} | "
                         + " | ".join(cells + extra) + " |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    from models.config import DEFAULTS

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, type=Path, help="folder holding face2text/ and celeba/")
    ap.add_argument("--words-num", default=None,
                    help=f"comma-separated word limits [default: {DEFAULTS['text']['words_num']} (config default), "
                         "32 (shipped configs), 48 (face2text_64_long)]")
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = ap.parse_args(argv)
    if not (args.data / "face2text" / "v0.1" / "clean.json").is_file():
        ap.error(f"--data: no face2text/v0.1/clean.json under {args.data}")
    try:
        words_nums = ([int(x) for x in args.words_num.split(",") if x.strip()] if args.words_num
                      else [DEFAULTS["text"]["words_num"], 32, 48])
    except ValueError:
        ap.error(f"--words-num: comma-separated integers, got {args.words_num!r}")
    if not words_nums or min(words_nums) < 1:
        ap.error("--words-num: give at least one limit >= 1")
    results = {name: measure(texts, words_nums) for name, texts in caption_sets(args.data).items()}
    print(markdown(results, words_nums), end="")
    dropped = {k: r["dropped_empty"] for k, r in results.items() if r["dropped_empty"]}
    if dropped:
        print(f"\nDescriptions without any word (left out): {dropped}")
    if args.json:
        args.json.write_text(json.dumps({"words_nums": words_nums, "results": results}, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
