"""Labeled Faces in the Wild: image paths and the View 2 protocol files.

LFW images live at ``<root>/<Name>/<Name>_<nnnn>.jpg`` (``nnnn`` zero-padded to 4).
``pairs.txt`` (View 2) starts with ``<folds>\\t<n>``; each fold then lists ``n``
same-person lines ``Name\\ti\\tj`` followed by ``n`` different-person lines
``Name1\\ti\\tName2\\tj``. ``people.txt`` starts with the number of folds; each fold
is a count line followed by that many ``Name\\tnumber_of_images`` lines.
(Huang et al. 2007, "Labeled Faces in the Wild", UMass Amherst TR 07-49.)
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from facemetrics.errors import FacemetricsError


def lfw_image_path(root: str | os.PathLike, name: str, number: int) -> Path:
    """``<root>/<name>/<name>_<number:04d>.jpg``."""
    return Path(root) / name / f"{name}_{int(number):04d}.jpg"


@dataclass(frozen=True)
class LFWPair:
    """One View 2 pair; ``fold`` counts from 0."""

    fold: int
    same: bool
    left_name: str
    left_number: int
    right_name: str
    right_number: int

    def paths(self, root: str | os.PathLike) -> tuple[Path, Path]:
        return lfw_image_path(root, self.left_name, self.left_number), lfw_image_path(
            root, self.right_name, self.right_number
        )


def _lines(path: Path) -> list[str]:
    try:
        return [ln for ln in path.read_text().splitlines() if ln.strip()]
    except OSError as e:
        raise FacemetricsError(f"cannot read {path}: {e}") from None


def load_lfw_pairs(pairs_txt: str | os.PathLike, folds: list[int] | range | None = None) -> list[LFWPair]:
    """Parse View 2 ``pairs.txt``; ``folds`` (0-based) selects folds, default all.

    Each fold is checked to hold exactly ``n`` same then ``n`` different pairs.
    """
    path = Path(pairs_txt)
    lines = _lines(path)
    try:
        n_folds, n = (int(x) for x in lines[0].split())
    except (ValueError, IndexError):
        raise FacemetricsError(f"{path}: first line must be '<folds> <pairs per half-fold>'") from None
    if len(lines) - 1 != n_folds * 2 * n:
        raise FacemetricsError(f"{path}: expected {n_folds * 2 * n} pair lines, found {len(lines) - 1}")
    wanted = set(range(n_folds)) if folds is None else set(folds)
    bad = sorted(f for f in wanted if not 0 <= f < n_folds)
    if bad:
        raise FacemetricsError(f"{path}: folds {bad} out of range 0..{n_folds - 1}")
    out: list[LFWPair] = []
    for i, line in enumerate(lines[1:]):
        fold, k = divmod(i, 2 * n)
        if fold not in wanted:
            continue
        parts = line.split()
        same = k < n
        try:
            if same and len(parts) == 3:
                p = LFWPair(fold, True, parts[0], int(parts[1]), parts[0], int(parts[2]))
            elif not same and len(parts) == 4:
                p = LFWPair(fold, False, parts[0], int(parts[1]), parts[2], int(parts[3]))
            else:
                raise ValueError
        except ValueError:
            kind = "same-person 'Name i j'" if same else "different-person 'Name1 i Name2 j'"
            raise FacemetricsError(f"{path}:{i + 2}: expected a {kind} line, got {line!r}") from None
        out.append(p)
    return out


def load_lfw_people(people_txt: str | os.PathLike) -> list[list[tuple[str, int]]]:
    """Parse ``people.txt``: one list of ``(name, number_of_images)`` per fold."""
    path = Path(people_txt)
    lines = _lines(path)
    try:
        n_folds = int(lines[0])
        folds: list[list[tuple[str, int]]] = []
        i = 1
        for _ in range(n_folds):
            count = int(lines[i])
            i += 1
            fold = []
            for ln in lines[i : i + count]:
                name, num = ln.split()
                fold.append((name, int(num)))
            if len(fold) != count:
                raise ValueError
            folds.append(fold)
            i += count
    except (ValueError, IndexError):
        raise FacemetricsError(f"{path}: not an LFW people.txt (fold count, then count + 'Name n' lines per fold)") from None
    if i != len(lines):
        raise FacemetricsError(f"{path}: {len(lines) - i} unexpected trailing lines")
    return folds
