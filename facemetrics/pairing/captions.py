"""Pairs manifests: which caption, and which real image, each generated image came from.

One row per generated image, as JSON lines (``.jsonl``/``.ndjson``) or CSV (``.csv``)
with the same column names::

    {"fake": "img_0001.png",            # relative to the FAKE folder / zip (required)
     "caption": "A young woman ...",    # the caption that produced it (optional here)
     "real": "Name/Name_0001.jpg",      # absolute, or relative to the REAL folder / zip
     "identity": "Name",                # optional
     "caption_id": "582"}               # optional

Rules (a broken manifest is an error naming the file and line, never a silent drop):
unknown columns, an empty or absolute-outside-FAKE ``fake``, ``..`` escaping a root,
a ``fake`` listed twice, and - when ``check_files`` - files that do not exist are
:class:`~facemetrics.errors.FacemetricsError` (``param="--pairs"``).

Paths are judged as given, never through their links: an absolute ``fake`` is
inside FAKE when, made absolute and normalised (``os.path.normpath``: ``..`` is
folded lexically, links are not resolved), it lies under the FAKE folder as
given or as resolved, or under a folder on its own path that is the FAKE folder
(same device and inode: FAKE reached through another link). So a FAKE made of
symlinks to files elsewhere, or given through a symlink, works; ``..`` stepping
out does not. A relative ``real`` is joined to the REAL folder as given; an
absolute one may lie anywhere and is kept as given (normalised, not resolved).

When the REAL root is a ``.zip``, ``real`` becomes ``<zip path>/<member>`` (a
pseudo-path; :func:`split_zip_member` takes it apart again).

Matching by file stem (:func:`pairs_from_stems`) is available, but only when
called explicitly: nothing here guesses pairs on its own.
"""
from __future__ import annotations

import csv
import io
import json
import os
import posixpath
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from facemetrics.errors import FacemetricsError

COLUMNS = ("fake", "caption", "real", "identity", "caption_id")
_MAX_LISTED = 10


@dataclass(frozen=True)
class PairRecord:
    """One generated image and where it came from.

    ``fake`` is a POSIX path relative to the FAKE root; ``real`` an absolute path
    as given (normalised, links not resolved), a ``<zip>/<member>`` pseudo-path,
    or None when the manifest has no real image for it.
    ``line`` is the manifest line (JSONL) or row (CSV, header = 1), for messages.
    """

    fake: str
    caption: str | None = None
    real: Path | None = None
    identity: str | None = None
    caption_id: str | None = None
    line: int | None = None


def pair_key(p: PairRecord) -> str:
    """What identifies a pair across runs of different generators on one manifest: its caption and the
    file name of its real image (``compare`` aligns per-sample values of two runs by it)."""
    real = Path(str(p.real)).name if p.real is not None else ""
    return f"{p.caption or ''}\x1f{real}"


def _listing(items: list[str]) -> str:
    shown = "; ".join(items[:_MAX_LISTED])
    more = len(items) - _MAX_LISTED
    return shown + (f"; ... and {more} more" if more > 0 else "")


def _read_rows(path: Path) -> list[tuple[int, dict]]:
    suffix = path.suffix.lower()
    try:
        text = path.read_text(encoding="utf-8-sig")
    except OSError as e:
        raise FacemetricsError(f"cannot read pairs manifest {path}: {e}", "--pairs") from None
    except UnicodeDecodeError as e:
        raise FacemetricsError(f"pairs manifest {path} is not UTF-8 text: {e}", "--pairs") from None
    rows: list[tuple[int, dict]] = []
    if suffix in (".jsonl", ".ndjson"):
        for i, line in enumerate(text.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise FacemetricsError(f"{path}:{i}: not a JSON object ({e.msg})", "--pairs") from None
            if not isinstance(obj, dict):
                raise FacemetricsError(f"{path}:{i}: each line must be a JSON object", "--pairs")
            rows.append((i, obj))
    elif suffix == ".csv":
        reader = csv.DictReader(io.StringIO(text))
        if reader.fieldnames is None:
            raise FacemetricsError(f"pairs manifest {path} is empty", "--pairs")
        for row in reader:
            if None in row:
                raise FacemetricsError(
                    f"{path}:{reader.line_num}: more cells than header columns", "--pairs"
                )
            rows.append((reader.line_num, {k: (v if v != "" else None) for k, v in row.items()}))
    else:
        raise FacemetricsError(
            f"pairs manifest must end in .jsonl, .ndjson or .csv: {path}", "--pairs"
        )
    if not rows:
        raise FacemetricsError(f"pairs manifest {path} has no rows", "--pairs")
    return rows


def _as_str(v, where: str, key: str) -> str | None:
    if v is None:
        return None
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return str(v)
    if not isinstance(v, str):
        raise FacemetricsError(f"{where}: {key!r} must be a string, got {type(v).__name__}", "--pairs")
    return v


def _zip_names(root: Path) -> set[str]:
    with zipfile.ZipFile(root) as zf:
        return {i.filename for i in zf.infolist() if not i.is_dir()}


def _norm_relative(p: str, where: str, key: str) -> str:
    q = posixpath.normpath(p.replace(os.sep, "/"))
    if q.startswith("../") or q == ".." or q == ".":
        raise FacemetricsError(f"{where}: {key} {p!r} leaves its root folder", "--pairs")
    return q


def _given(path: str | os.PathLike) -> str:
    """``path`` made absolute and normalised lexically: ``..`` folded, links NOT resolved."""
    return os.path.normpath(os.path.abspath(path))


def _below(path: str, base: str) -> str | None:
    """POSIX name of the normalised absolute ``path`` under ``base`` (also normalised), else None."""
    if base != os.sep and path.startswith(base + os.sep):
        return Path(os.path.relpath(path, base)).as_posix()
    if base == os.sep and path != base:
        return Path(path[1:]).as_posix()
    return None


class FolderRoot:
    """A FAKE/REAL root folder, to say which absolute paths lie inside it (see module doc).

    ``given`` is the root as the user wrote it (absolute, normalised, links kept),
    ``real`` the resolved one; :meth:`name_of` gives a path's POSIX name under
    the root, the names :func:`facemetrics.imaging.images.scan` lists (relative to the
    root as walked, links inside kept).
    """

    def __init__(self, root: str | os.PathLike) -> None:
        self.given = _given(root)
        self.real = os.path.realpath(root)
        try:
            st = os.stat(self.real)
            self._id: tuple[int, int] | None = (st.st_dev, st.st_ino)
        except OSError:
            self._id = None
        self._is_root: dict[str, bool] = {}

    def _same_as_root(self, folder: str) -> bool:
        hit = self._is_root.get(folder)
        if hit is None:
            try:
                st = os.stat(folder)
                hit = self._id is not None and (st.st_dev, st.st_ino) == self._id
            except OSError:
                hit = False
            self._is_root[folder] = hit
        return hit

    def name_of(self, path: str | os.PathLike) -> str | None:
        """POSIX name of the absolute ``path`` under this root, or None when it is not inside.

        Judged on ``path`` normalised but not resolved: under the root as given,
        under the resolved root, or under a folder of ``path`` that is the root
        directory itself (same st_dev/st_ino). What lies below the root is never
        resolved, so a symlinked file inside the root is inside whatever it
        points at; ``..`` cannot step out (it is folded before the comparison).
        """
        p = _given(path)
        for base in (self.given, self.real):
            name = _below(p, base)
            if name is not None:
                return name
        folder = os.path.dirname(p)
        while True:
            if self._same_as_root(folder):
                return _below(p, folder)
            parent = os.path.dirname(folder)
            if parent == folder:
                return None
            folder = parent


def split_zip_member(path: Path) -> tuple[Path, str] | None:
    """``(zip path, member)`` for a ``<zip>/<member>`` pseudo-path, else None."""
    parts = path.parts
    for i in range(len(parts) - 1, 0, -1):
        head = Path(*parts[:i])
        if head.suffix.lower() == ".zip" and head.is_file():
            return head, PurePosixPath(*parts[i:]).as_posix()
    return None


def _fake_name(row: dict, where: str, fake_dir: FolderRoot | None) -> str:
    """A row's ``fake`` as a name relative to the FAKE root."""
    fake = _as_str(row.get("fake"), where, "fake")
    if not fake or not fake.strip():
        raise FacemetricsError(f"{where}: 'fake' (the generated image) is missing or empty", "--pairs")
    if Path(fake).is_absolute():
        if fake_dir is None:
            raise FacemetricsError(f"{where}: 'fake' must be relative to the FAKE root: {fake}", "--pairs")
        name = fake_dir.name_of(fake)
        if name is None:
            raise FacemetricsError(
                f"{where}: 'fake' {fake} is not inside the FAKE folder {fake_dir.given}", "--pairs")
        fake = name
    return _norm_relative(fake, where, "'fake'")


def _real_path(row: dict, where: str, real_root_p: Path | None, real_is_zip: bool,
               real_dir: Path | None) -> Path | None:
    """A row's ``real`` as a path (absolute as given, or under the REAL root); None when it has none."""
    real_s = _as_str(row.get("real"), where, "real")
    if real_s is None or not real_s.strip():
        return None
    rp = Path(real_s).expanduser()
    if rp.is_absolute():
        return Path(_given(rp))
    if real_root_p is None:
        raise FacemetricsError(f"{where}: 'real' {real_s!r} is relative but no REAL folder was given", "--pairs")
    if real_is_zip:
        return real_root_p / _norm_relative(real_s, where, "'real'")
    assert real_dir is not None
    return real_dir / _norm_relative(real_s, where, "'real'")


def load_pairs(
    path: str | os.PathLike,
    fake_root: str | os.PathLike | None,
    real_root: str | os.PathLike | None,
    *,
    check_files: bool = True,
) -> list[PairRecord]:
    """Read and validate a pairs manifest (see module doc for the format and rules).

    ``fake_root``/``real_root`` are the FAKE/REAL folders (or zips) as the user
    gave them: containment is judged on those paths, links included (a resolved
    root works as well).
    """
    path = Path(path)
    if not path.is_file():
        raise FacemetricsError(f"pairs manifest does not exist: {path}", "--pairs")
    fake_root_p = Path(fake_root).resolve() if fake_root is not None else None
    real_root_p = Path(real_root).resolve() if real_root is not None else None
    real_is_zip = real_root_p is not None and real_root_p.suffix.lower() == ".zip" and real_root_p.is_file()
    fake_is_zip = fake_root_p is not None and fake_root_p.suffix.lower() == ".zip" and fake_root_p.is_file()
    fake_dir = FolderRoot(fake_root) if fake_root is not None and not fake_is_zip else None
    real_dir = Path(_given(real_root)) if real_root is not None and not real_is_zip else None

    rows = _read_rows(path)
    records: list[PairRecord] = []
    seen: dict[str, int] = {}
    dups: list[str] = []
    for line, row in rows:
        where = f"{path}:{line}"
        unknown = sorted(set(row) - set(COLUMNS))
        if unknown:
            raise FacemetricsError(
                f"{where}: unknown column(s) {', '.join(map(repr, unknown))}; allowed: {', '.join(COLUMNS)}",
                "--pairs",
            )
        fake = _fake_name(row, where, fake_dir)
        if fake in seen:
            dups.append(f"{fake!r} (lines {seen[fake]} and {line})")
        else:
            seen[fake] = line
        real = _real_path(row, where, real_root_p, real_is_zip, real_dir)
        records.append(
            PairRecord(
                fake=fake,
                caption=_as_str(row.get("caption"), where, "caption"),
                real=real,
                identity=_as_str(row.get("identity"), where, "identity"),
                caption_id=_as_str(row.get("caption_id"), where, "caption_id"),
                line=line,
            )
        )
    if dups:
        raise FacemetricsError(
            f"{path}: each generated image must appear once; duplicated 'fake': {_listing(dups)}", "--pairs"
        )
    if check_files:
        check_pair_files(records, fake_root_p, manifest=path)
    return records


def check_pair_files(records: list[PairRecord], fake_root: Path | None, *, manifest: Path | str = "pairs") -> None:
    """Raise naming every row whose fake or real file does not exist."""
    missing: list[str] = []
    fake_names: set[str] | None = None
    if fake_root is not None and fake_root.suffix.lower() == ".zip" and fake_root.is_file():
        fake_names = _zip_names(fake_root)
    zips: dict[Path, set[str]] = {}
    for r in records:
        if fake_root is not None:
            ok = r.fake in fake_names if fake_names is not None else (fake_root / r.fake).is_file()
            if not ok:
                missing.append(f"line {r.line}: fake {r.fake!r} not in {fake_root}")
        if r.real is not None:
            zm = None if r.real.is_file() else split_zip_member(r.real)
            if zm is not None:
                names = zips.get(zm[0])
                if names is None:
                    names = zips[zm[0]] = _zip_names(zm[0])
                ok = zm[1] in names
            else:
                ok = r.real.is_file()
            if not ok:
                missing.append(f"line {r.line}: real {str(r.real)!r} does not exist")
    if missing:
        raise FacemetricsError(
            f"{manifest}: {len(missing)} file(s) named in the pairs manifest are missing: {_listing(missing)}",
            "--pairs",
        )


def write_pairs(path: str | os.PathLike, records: list[PairRecord], real_root: str | os.PathLike | None = None) -> None:
    """Write ``records`` as JSONL (``.jsonl``) or CSV (``.csv``), atomically.

    ``real`` is written relative to ``real_root`` when it lies inside it (judged
    as :meth:`FolderRoot.name_of` does, links not resolved), else absolute.
    """
    root = FolderRoot(real_root) if real_root is not None else None

    def real_str(r: PairRecord) -> str | None:
        if r.real is None:
            return None
        name = root.name_of(r.real) if root is not None else None
        return name if name is not None else str(r.real)

    write_pair_rows(path, [
        {"fake": r.fake, "caption": r.caption, "real": real_str(r), "identity": r.identity, "caption_id": r.caption_id}
        for r in records
    ])


def write_pair_rows(path: str | os.PathLike, rows: list[dict]) -> None:
    """The one pairs-manifest writer: ``rows`` (dicts of :data:`COLUMNS` fields, as given) to JSONL
    (``.jsonl``/``.ndjson``; keys in the rows' order, None left out) or CSV (``.csv``), atomically."""
    from facemetrics.storage.atomic import atomic_write_text

    path = Path(path)
    if path.suffix.lower() in (".jsonl", ".ndjson"):
        text = "".join(json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False) + "\n"
                       for row in rows)
    elif path.suffix.lower() == ".csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(COLUMNS), lineterminator="\n")
        w.writeheader()
        for row in rows:
            w.writerow({k: ("" if v is None else v) for k, v in row.items()})
        text = buf.getvalue()
    else:
        raise FacemetricsError(f"pairs manifest must end in .jsonl, .ndjson or .csv: {path}", "--pairs")
    atomic_write_text(path, text)


def pairs_from_stems(fake_source, real_source) -> list[PairRecord]:
    """Pair each generated image with the real image of the same file stem.

    The documented matching rule for generators that write no manifest: the fake
    ``a/b/Name_0001.png`` pairs with the real image whose file name without
    extension is also ``Name_0001`` (folders are ignored on both sides). A stem that
    occurs twice on either side, and a fake with no real of its stem, are errors.
    ``fake_source``/``real_source`` are :class:`facemetrics.imaging.images.ImageSource` or
    paths (scanned). Captions are None: this gives FSD/FSS pairs, not captions.
    """
    from facemetrics.imaging.images import ImageSource, scan

    fs = fake_source if isinstance(fake_source, ImageSource) else scan(fake_source, "FAKE")
    rs = real_source if isinstance(real_source, ImageSource) else scan(real_source, "REAL")

    def by_stem(src: ImageSource, label: str) -> dict[str, str]:
        out: dict[str, str] = {}
        clashes = []
        for n in src.names:
            stem = PurePosixPath(n).stem
            if stem in out:
                clashes.append(f"{out[stem]!r} and {n!r}")
            out.setdefault(stem, n)
        if clashes:
            raise FacemetricsError(
                f"cannot match by file stem: {label} has several images with the same stem: {_listing(clashes)}",
                label,
            )
        return out

    fstems, rstems = by_stem(fs, "FAKE"), by_stem(rs, "REAL")
    unmatched = [n for s, n in fstems.items() if s not in rstems]
    if unmatched:
        raise FacemetricsError(
            f"{len(unmatched)} generated image(s) have no real image of the same stem: {_listing(unmatched)}",
            "--pairs",
        )
    out = []
    for n in fs.names:
        rname = rstems[PurePosixPath(n).stem]
        real = Path(f"{rs.root}/{rname}") if rs.kind == "zip" else (rs.root / rname)
        out.append(PairRecord(fake=n, real=real))
    return out
