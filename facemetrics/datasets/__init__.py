"""Loaders for face datasets at paths the user gives (nothing is bundled)."""
from facemetrics.datasets.face2text import (
    Face2TextEntry,
    Face2TextRecord,
    Face2TextSet,
    load_face2text,
    read_face2text,
)
from facemetrics.datasets.lfw import (
    LFWPair,
    lfw_image_path,
    load_lfw_pairs,
    load_lfw_people,
)

__all__ = [
    "Face2TextEntry",
    "Face2TextRecord",
    "Face2TextSet",
    "LFWPair",
    "lfw_image_path",
    "load_face2text",
    "load_lfw_pairs",
    "load_lfw_people",
    "read_face2text",
]
