"""Face2Text captions (RiVaL group, University of Malta; Gatt et al., LREC 2018).

* v0.1 (``clean.json`` / ``raw.json``): a list of ``{"img_id": int, "image":
  "Name/Name_0001.bmp", "descriptions": [{"desc_id": int, "text": str}]}``. The
  images are LFW's ``Name/Name_0001.jpg``: the ``.bmp`` suffix in the JSON is
  mapped to ``.jpg`` under the LFW root; the identity is the LFW person name.
* v1.0 (``raw.json``): a list of ``{"response_id", "filename", "user_id",
  "description"}`` with CelebA file names (``000035.jpg``) under the CelebA root;
  identity unknown (None).

The data may not be redistributed: it is read from wherever the user keeps it.
Empty descriptions (v0.1 ``raw.json`` has 17) are not returned but listed in
:attr:`Face2TextSet.skipped` with the reason.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath

from facemetrics.errors import FacemetricsError


@dataclass(frozen=True)
class Face2TextRecord:
    """One caption bound to its image (absolute path; may not exist locally)."""

    image: Path
    caption: str
    caption_id: str
    image_id: str
    identity: str | None = None


@dataclass
class Face2TextSet:
    version: str
    records: list[Face2TextRecord]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (caption id, reason)

    def images(self) -> list[Path]:
        """Distinct image paths in first-seen order."""
        return list(dict.fromkeys(r.image for r in self.records))

    def missing_images(self) -> list[Path]:
        """Distinct image paths that are not files under the given root."""
        return [p for p in self.images() if not p.is_file()]

    def by_image(self) -> dict[Path, list[Face2TextRecord]]:
        out: dict[Path, list[Face2TextRecord]] = {}
        for r in self.records:
            out.setdefault(r.image, []).append(r)
        return out


def _detect_version(data) -> str:
    if isinstance(data, list) and data and isinstance(data[0], dict):
        if {"image", "descriptions"} <= set(data[0]):
            return "0.1"
        if {"filename", "description"} <= set(data[0]):
            return "1.0"
    raise ValueError("neither the v0.1 nor the v1.0 Face2Text schema")


def load_face2text(json_path: str | os.PathLike, image_root: str | os.PathLike, version: str = "auto") -> Face2TextSet:
    """Caption records of a Face2Text JSON file, bound to images under ``image_root``.

    ``image_root`` is the LFW folder (``.../lfw/deepfunneled``) for v0.1 and the
    CelebA image folder for v1.0. ``version``: ``"0.1"``, ``"1.0"`` or ``"auto"``
    (from the schema).
    """
    path = Path(json_path)
    root = Path(image_root).resolve()
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FacemetricsError(f"cannot read Face2Text JSON {path}: {e}") from None
    try:
        found = _detect_version(data)
    except ValueError as e:
        raise FacemetricsError(f"{path}: {e}") from None
    if version != "auto" and version != found:
        raise FacemetricsError(f"{path}: asked for Face2Text v{version} but the file has the v{found} schema")
    out = Face2TextSet(version=found, records=[])
    if found == "0.1":
        for item in data:
            rel = PurePosixPath(item["image"])
            if rel.suffix.lower() == ".bmp":
                rel = rel.with_suffix(".jpg")
            identity = rel.parts[0] if len(rel.parts) > 1 else rel.stem.rsplit("_", 1)[0]
            for d in item["descriptions"]:
                cid = str(d["desc_id"])
                text = (d.get("text") or "").strip()
                if not text:
                    out.skipped.append((cid, "empty description"))
                    continue
                out.records.append(Face2TextRecord(root / rel, text, cid, str(item["img_id"]), identity))
    else:
        for item in data:
            cid = str(item["response_id"])
            text = (item.get("description") or "").strip()
            if not text:
                out.skipped.append((cid, "empty description"))
                continue
            fn = str(item["filename"])
            out.records.append(Face2TextRecord(root / fn, text, cid, PurePosixPath(fn).stem, None))
    return out
