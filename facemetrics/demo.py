"""The built-in demo: bundled LFW faces scored against a degraded copy of themselves.

The degradation is deterministic: Gaussian blur (radius 2) followed by JPEG
re-encoding at quality 15, written to ``out/degraded`` with the same file names,
plus a pairs manifest (``out/pairs.jsonl``) binding each degraded face to its
original (identity = the LFW person), so paired metrics can run too.
"""
from __future__ import annotations

from pathlib import Path

EXAMPLES = Path(__file__).resolve().parent / "examples"


def example_faces() -> list[Path]:
    return sorted(EXAMPLES.glob("*.jpg"))


def make_degraded(out: Path, blur_radius: float = 2.0, jpeg_quality: int = 15) -> tuple[Path, Path]:
    """Write the degraded copies and the pairs manifest; returns (folder, manifest)."""
    from PIL import Image, ImageFilter

    from facemetrics.pairing.captions import write_pair_rows
    from facemetrics.storage.atomic import atomic_open

    folder = out / "degraded"
    folder.mkdir(parents=True, exist_ok=True)
    rows = []
    for f in example_faces():
        with Image.open(f) as im:
            img = im.convert("RGB").filter(ImageFilter.GaussianBlur(blur_radius))
        with atomic_open(folder / f.name, "wb") as fh:
            img.save(fh, format="JPEG", quality=jpeg_quality)
        identity = f.stem.rsplit("_", 1)[0]
        rows.append({"fake": f.name, "real": str(f), "caption": f"a photo of {identity.replace('_', ' ')}",
                     "identity": identity})
    manifest = out / "pairs.jsonl"
    write_pair_rows(manifest, rows)
    return folder, manifest
