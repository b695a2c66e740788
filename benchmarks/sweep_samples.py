"""One PNG of generated samples per sweep: a row per cell, the first N samples of each (file order).

    python benchmarks/sweep_samples.py SWEEP_DIR OUT.png [--n 8]

Only generated images go in: no captions and no real images, because the Face2Text and CelebA
terms forbid redistributing them (the sweep's own ``CELL/grid.png`` has both and stays local).
The row label is the cell name; the same samples feed ``facemetrics score`` in the sweep.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from PIL import Image, ImageDraw

LABEL_W = 190


def tile(sweep: Path, n: int, size: int = 64) -> Image.Image:
    """Rows of ``n`` generated samples (``CELL/samples/*.png`` named by ``pairs.jsonl``), one row per cell."""
    cells = [c["name"] for c in json.loads((sweep / "sweep.json").read_text())["cells"]]
    out = Image.new("RGB", (LABEL_W + n * (size + 2), len(cells) * (size + 2)), "white")
    draw = ImageDraw.Draw(out)
    for row, name in enumerate(cells):
        samples = sweep / name / "samples"
        rows = [json.loads(x) for x in (samples / "pairs.jsonl").read_text().splitlines() if x.strip()]
        y = row * (size + 2)
        draw.text((4, y + size // 2 - 6), name, fill="black")
        for i, r in enumerate(rows[:n]):
            with Image.open(samples / r["fake"]) as im:
                out.paste(im.convert("RGB").resize((size, size)), (LABEL_W + i * (size + 2), y))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("sweep", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--n", type=int, default=8)
    a = ap.parse_args()
    tmp = a.out.with_name(a.out.name + ".tmp.png")
    tile(a.sweep, a.n).save(tmp)
    tmp.replace(a.out)
    print(a.out)


if __name__ == "__main__":
    main()
