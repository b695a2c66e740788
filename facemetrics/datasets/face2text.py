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


@dataclass(frozen=True)
class Face2TextEntry:
    """One description as the JSON file has it.

    ``image`` is the image path relative to the image root (v0.1: the LFW
    ``Name/Name_0001.jpg``, any suffix in the JSON mapped to ``.jpg``; v1.0: the
    CelebA file name); ``text`` is the description unstripped (callers filter).
    """

    image: str
    text: str
    caption_id: str
    image_id: str
    identity: str | None


def _entries_v01(data: list) -> list[Face2TextEntry]:
    out = []
    for item in data:
        rel = PurePosixPath(str(item["image"])).with_suffix(".jpg")
        identity = rel.parts[0] if len(rel.parts) > 1 else rel.stem.rsplit("_", 1)[0]
        for d in item["descriptions"]:
            out.append(Face2TextEntry(rel.as_posix(), str(d.get("text") or ""), str(d["desc_id"]),
                                      str(item["img_id"]), identity))
    return out


def _entries_v10(data: list) -> list[Face2TextEntry]:
    out = []
    for item in data:
        fn = str(item["filename"])
        out.append(Face2TextEntry(fn, str(item.get("description") or ""), str(item["response_id"]),
                                  PurePosixPath(fn).stem, None))
    return out


def read_face2text(json_path: str | os.PathLike, version: str = "auto",
                   param: str | None = None) -> tuple[str, list[Face2TextEntry]]:
    """The one Face2Text parser: ``(version, entries)`` of a v0.1 or v1.0 JSON file, in file order.

    ``version``: ``"0.1"``, ``"1.0"`` or ``"auto"`` (from the schema). An unreadable
    file, an unknown schema, another version than asked and an entry lacking a
    field are :class:`FacemetricsError` naming ``param``.
    """
    path = Path(json_path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise FacemetricsError(f"cannot read Face2Text JSON {path}: {e}", param) from None
    try:
        found = _detect_version(data)
    except ValueError as e:
        raise FacemetricsError(f"{path}: {e}", param) from None
    if version != "auto" and version != found:
        raise FacemetricsError(f"{path}: asked for Face2Text v{version} but the file has the v{found} schema", param)
    try:
        return found, (_entries_v01 if found == "0.1" else _entries_v10)(data)
    except (KeyError, TypeError, AttributeError) as e:
        raise FacemetricsError(f"{path}: a Face2Text v{found} entry without the field {e}", param) from None


def load_face2text(json_path: str | os.PathLike, image_root: str | os.PathLike, version: str = "auto") -> Face2TextSet:
    """Caption records of a Face2Text JSON file, bound to images under ``image_root``.

    ``image_root`` is the LFW folder (``.../lfw/deepfunneled``) for v0.1 and the
    CelebA image folder for v1.0. ``version``: ``"0.1"``, ``"1.0"`` or ``"auto"``
    (from the schema).
    """
    root = Path(image_root).resolve()
    found, entries = read_face2text(json_path, version)
    out = Face2TextSet(version=found, records=[])
    for e in entries:
        text = e.text.strip()
        if not text:
            out.skipped.append((e.caption_id, "empty description"))
            continue
        out.records.append(Face2TextRecord(root / e.image, text, e.caption_id, e.image_id, e.identity))
    return out
