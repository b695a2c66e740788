"""Face2Text data: records, identity-disjoint split, AttnGAN augmentation, step-indexed batches.

* Face2Text v0.1 (``face2text/v0.1/clean.json``): 400 LFW images, each the ``_0001``
  image of a different person, 1–4 cleaned descriptions each. The JSON names
  ``Name/Name_0001.bmp``; the file is ``lfw/deepfunneled/Name/Name_0001.jpg``.
  Identity = the LFW person name.
* Face2Text v1.0 (``face2text/v1.0/raw.json``): ``{response_id, filename, user_id,
  description}`` rows for CelebA files, 1–2 descriptions per image; images are looked
  up in ``celeba/<any subfolder>/``; missing images are skipped and counted. CelebA
  identities are only known with ``data.identity_file`` (``identity_CelebA.txt``);
  without it every image is its own identity (split by image).

The split puts whole identities in either train or test, so no test image (nor any
image of a test person) is ever read by training. Every random choice of the data
pipeline is a function of ``(seed, phase, epoch, index)``, so a resumed run sees
exactly the batches an uninterrupted run would, whatever the number of workers.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterator, Sequence

import numpy as np

from facemetrics.datasets.face2text import Face2TextEntry, read_face2text
from facemetrics.errors import FacemetricsError

_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Caption:
    text: str
    caption_id: str


@dataclass(frozen=True)
class FaceRecord:
    """One real image with its captions."""

    key: str  # unique, stable name (e.g. "Aaron_Peirsol/Aaron_Peirsol_0001" or "000035")
    path: Path | None  # absolute image path (None for synthetic data)
    identity: str
    captions: tuple[Caption, ...]


# ----------------------------------------------------------------------------- loaders

def _require(path: Path, what: str) -> Path:
    if not path.exists():
        raise FacemetricsError(f"{what} not found: {path} (check --data)", "--data")
    return path


def load_face2text_v01(root: Path) -> list[FaceRecord]:
    """Face2Text v0.1 (LFW). ``root`` holds ``face2text/v0.1/clean.json`` and ``lfw/deepfunneled``."""
    meta = _require(root / "face2text" / "v0.1" / "clean.json", "Face2Text v0.1 clean.json")
    lfw = _require(root / "lfw" / "deepfunneled", "LFW deepfunneled folder")
    by_image: dict[str, list[Face2TextEntry]] = {}
    for e in read_face2text(meta, "0.1", "--data")[1]:
        by_image.setdefault(e.image, []).append(e)
    out, missing = [], 0
    for rel, entries in by_image.items():
        path = lfw / rel
        caps = tuple(Caption(e.text.strip(), e.caption_id) for e in entries if tokenize(e.text))
        if not path.is_file() or not caps:
            missing += 1
            continue
        out.append(FaceRecord(PurePosixPath(rel).with_suffix("").as_posix(), path.resolve(), entries[0].identity, caps))
    if not out:
        raise FacemetricsError(f"no Face2Text v0.1 image found under {lfw}", "--data")
    return sorted(out, key=lambda r: r.key)


def _celeba_index(root: Path) -> dict[str, Path]:
    base = _require(root / "celeba", "CelebA folder")
    index: dict[str, Path] = {}
    for p in sorted(base.rglob("*.jpg")):
        index.setdefault(p.name, p.resolve())
    return index


def load_face2text_v10(root: Path, identity_file: str | None = None,
                       stats: dict | None = None) -> list[FaceRecord]:
    """Face2Text v1.0 (CelebA); images missing under ``root/celeba`` are skipped and counted.

    Only the captioned images present under ``celeba/`` are usable (177 in the shared data
    folder, of 4,076 named by ``raw.json``): a :class:`UserWarning` says how many were
    skipped, and ``stats`` (when given) is filled with ``dataset``, ``images_named``,
    ``images_present``, ``images_missing``, ``captions_named``, ``captions_used``,
    ``captions_of_missing_images`` and ``captions_without_words``."""
    import warnings

    meta = _require(root / "face2text" / "v1.0" / "raw.json", "Face2Text v1.0 raw.json")
    entries = read_face2text(meta, "1.0", "--data")[1]
    files = _celeba_index(root)
    ids: dict[str, str] = {}
    if identity_file:
        p = Path(identity_file)
        if not p.is_file():
            raise FacemetricsError(f"identity file not found: {p}", "--set data.identity_file")
        for line in p.read_text().splitlines():
            parts = line.split()
            if len(parts) == 2:
                ids[parts[0]] = parts[1]
    caps: dict[str, list[Caption]] = {}
    named = {e.image for e in entries}
    no_words = of_missing = 0
    for e in entries:
        if e.image not in files:
            of_missing += 1
        elif not tokenize(e.text):
            no_words += 1
        else:
            caps.setdefault(e.image, []).append(Caption(e.text.strip(), e.caption_id))
    out = [
        FaceRecord(Path(f).stem, files[f], ids.get(f, Path(f).stem), tuple(c))
        for f, c in sorted(caps.items())
    ]
    missing = len(named - set(files))
    info = {"dataset": "face2text-v1.0", "images_named": len(named), "images_present": len(out),
            "images_missing": missing, "captions_named": len(entries),
            "captions_used": sum(len(r.captions) for r in out), "captions_of_missing_images": of_missing,
            "captions_without_words": no_words}
    if stats is not None:
        stats.update(info)
    if not out:
        raise FacemetricsError(
            f"none of the Face2Text v1.0 images is under {root / 'celeba'}", "--data"
        )
    if missing:
        warnings.warn(
            f"Face2Text v1.0: {missing} of the {len(named)} images named by raw.json are not under "
            f"{root / 'celeba'} and are skipped with their {of_missing} captions; using the {len(out)} "
            f"present images ({info['captions_used']} captions)", UserWarning, stacklevel=2)
    return out


_SYN_WORDS = ("young old smiling serious woman man long short dark blonde hair beard glasses "
              "round narrow face eyes nose lips wide thin brown grey").split()


def load_synthetic(n: int, seed: int = 0) -> list[FaceRecord]:
    """Synthetic records (no files; images drawn in :class:`TrainSet`) for speed tests only."""
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        caps = tuple(
            Caption("a " + " ".join(rng.choice(_SYN_WORDS, size=int(rng.integers(5, 25)))), f"{i}-{j}")
            for j in range(int(rng.integers(1, 5)))
        )
        out.append(FaceRecord(f"syn{i:05d}", None, f"syn{i:05d}", caps))
    return out


def load_records(cfg: dict, stats: dict | None = None) -> list[FaceRecord]:
    """The records of ``cfg["data"]`` (optionally a seeded subset of ``max_images``).

    ``stats`` (when given) receives what was found: ``dataset``, ``images`` (records
    returned) and, for v1.0, the counts of :func:`load_face2text_v10`."""
    d = cfg["data"]
    info: dict = {"dataset": d["dataset"]}
    if d["dataset"] == "synthetic":
        recs = load_synthetic(d["synthetic_images"], d["split_seed"])
    else:
        if not d["root"]:
            raise FacemetricsError("no data folder given: pass --data PATH", "--data")
        root = Path(d["root"]).expanduser()
        _require(root, "data folder")
        if d["dataset"] == "face2text-v0.1":
            recs = load_face2text_v01(root)
        else:
            recs = load_face2text_v10(root, d["identity_file"], stats=info)
    if d["max_images"] and d["max_images"] < len(recs):
        rng = np.random.default_rng([d["split_seed"], 1])
        keep = np.sort(rng.choice(len(recs), size=d["max_images"], replace=False))
        recs = [recs[i] for i in keep]
    info["images"] = len(recs)
    if stats is not None:
        stats.update(info)
    return recs


def split_records(records: Sequence[FaceRecord], test_fraction: float, seed: int
                  ) -> tuple[list[FaceRecord], list[FaceRecord]]:
    """Split by identity: a seeded permutation of the sorted identities; the first
    ``max(1, round(test_fraction * n_identities))`` go to test. Raises when either side is empty."""
    identities = sorted({r.identity for r in records})
    n_test = max(1, int(round(test_fraction * len(identities))))
    if n_test >= len(identities):
        raise FacemetricsError(
            f"cannot split {len(identities)} identities with test_fraction={test_fraction}: "
            "no training identity would remain", "--set data.test_fraction")
    perm = np.random.default_rng([seed, 2]).permutation(len(identities))
    test_ids = {identities[i] for i in perm[:n_test]}
    train = [r for r in records if r.identity not in test_ids]
    test = [r for r in records if r.identity in test_ids]
    return train, test


# ----------------------------------------------------------------------------- text

def tokenize(text: str) -> list[str]:
    """AttnGAN's tokenisation: lower case, runs of ``\\w`` characters, ASCII only."""
    out = []
    for t in _WORD.findall(text.lower()):
        t = t.encode("ascii", "ignore").decode("ascii")
        if t:
            out.append(t)
    return out


class CaptionTooLong(FacemetricsError):
    """A caption exceeds the text encoder's token limit and the policy is ``error``."""


class WordCoder:
    """Word-level vocabulary for the BiLSTM: ``<end>`` (padding) = 0, ``<unk>`` = 1."""

    def __init__(self, words: Sequence[str], words_num: int) -> None:
        self.itos = ["<end>", "<unk>", *words]
        self.stoi = {w: i for i, w in enumerate(self.itos)}
        self.words_num = words_num
        self.length = words_num  # padded id length

    @property
    def max_tokens(self) -> int:
        return self.words_num

    @classmethod
    def build(cls, captions: Sequence[str], words_num: int, min_count: int = 1) -> "WordCoder":
        counts: dict[str, int] = {}
        for c in captions:
            for w in tokenize(c):
                counts[w] = counts.get(w, 0) + 1
        words = sorted(w for w, n in counts.items() if n >= min_count)
        return cls(words, words_num)

    def state(self) -> dict:
        return {"kind": "words", "words": self.itos[2:], "words_num": self.words_num}

    def n_tokens(self, text: str) -> int:
        return len(tokenize(text))

    def encode(self, text: str, rng: np.random.Generator | None = None,
               policy: str = "truncate") -> tuple[np.ndarray, int, bool]:
        """``(ids[words_num] int64, length, truncated)``. Over ``words_num`` words: with
        ``rng`` (training) an ordered random subset as AttnGAN does; else truncate or raise."""
        ids = [self.stoi.get(w, 1) for w in tokenize(text)]
        if not ids:
            raise FacemetricsError(f"caption has no words: {text!r}")
        truncated = len(ids) > self.words_num
        if truncated:
            if rng is not None:
                keep = np.sort(rng.permutation(len(ids))[: self.words_num])
                ids = [ids[i] for i in keep]
            elif policy == "error":
                raise CaptionTooLong(
                    f"caption has {len(ids)} words, over the LSTM encoder's limit of "
                    f"{self.words_num} (text.words_num): {text[:80]!r}...", "--long-captions")
            else:
                ids = ids[: self.words_num]
        out = np.zeros(self.words_num, dtype=np.int64)
        out[: len(ids)] = ids
        return out, len(ids), truncated


class ClipCoder:
    """CLIP BPE tokens: ``<start_of_text> bpe... <end_of_text>`` padded with 0 to ``context_length``."""

    def __init__(self, context_length: int = 77) -> None:
        from open_clip.tokenizer import SimpleTokenizer

        self.tok = SimpleTokenizer()
        self.sot = self.tok.encoder["<start_of_text>"]
        self.eot = self.tok.encoder["<end_of_text>"]
        self.length = context_length

    @property
    def max_tokens(self) -> int:
        return self.length - 2

    def state(self) -> dict:
        return {"kind": "clip-bpe", "context_length": self.length}

    def n_tokens(self, text: str) -> int:
        return len(self.tok.encode(text))

    def encode(self, text: str, rng: np.random.Generator | None = None,
               policy: str = "truncate") -> tuple[np.ndarray, int, bool]:
        """``(ids[context_length], n_bpe_tokens, truncated)``; truncation keeps the end token."""
        bpe = self.tok.encode(text)
        if not bpe:
            raise FacemetricsError(f"caption has no tokens: {text!r}")
        truncated = len(bpe) > self.max_tokens
        if truncated:
            if rng is None and policy == "error":
                raise CaptionTooLong(
                    f"caption has {len(bpe)} BPE tokens, over CLIP's limit of {self.max_tokens} "
                    f"(context {self.length}): {text[:80]!r}...", "--long-captions")
            bpe = bpe[: self.max_tokens]
        ids = np.zeros(self.length, dtype=np.int64)
        seq = [self.sot, *bpe, self.eot]
        ids[: len(seq)] = seq
        return ids, len(bpe), truncated


def coder_from_state(state: dict) -> WordCoder | ClipCoder:
    if state["kind"] == "words":
        return WordCoder(state["words"], state["words_num"])
    return ClipCoder(state["context_length"])


# ----------------------------------------------------------------------------- images

def stage_sizes(resolution: int) -> list[int]:
    """Image sizes of the generator stages: 64, 128, ... up to ``resolution``."""
    sizes = [64]
    while sizes[-1] < resolution:
        sizes.append(sizes[-1] * 2)
    return sizes


def to_tensor(img, size: int | None = None):
    """PIL RGB → float tensor (3, H, W) in [-1, 1]; optionally resized (bilinear) to size×size."""
    import torch
    from PIL import Image

    if size is not None and img.size != (size, size):
        img = img.resize((size, size), Image.BILINEAR)
    a = np.asarray(img, dtype=np.float32)
    return torch.from_numpy(a).permute(2, 0, 1).div(127.5).sub(1.0)


def augment(img, resolution: int, rng: np.random.Generator) -> list:
    """AttnGAN's training transform: resize the short side to ``resolution * 76 / 64``,
    random ``resolution`` crop, random horizontal flip; then one tensor per stage size."""
    from PIL import Image

    big = int(resolution * 76 / 64)
    w, h = img.size
    if w <= h:
        nw, nh = big, max(big, int(round(h * big / w)))
    else:
        nw, nh = max(big, int(round(w * big / h))), big
    img = img.resize((nw, nh), Image.BILINEAR)
    x = int(rng.integers(0, nw - resolution + 1))
    y = int(rng.integers(0, nh - resolution + 1))
    img = img.crop((x, y, x + resolution, y + resolution))
    if rng.random() < 0.5:
        img = img.transpose(Image.FLIP_LEFT_RIGHT)
    sizes = stage_sizes(resolution)
    return [to_tensor(img, s if s != resolution else None) for s in sizes]


def synthetic_image(index: int, size: int = 250):
    """A deterministic smooth colour image for speed tests (no real data)."""
    from PIL import Image

    rng = np.random.default_rng([index, 3])
    yy, xx = np.mgrid[0:size, 0:size] / size
    chans = [np.sin(rng.uniform(2, 8) * xx + rng.uniform(0, 6)) * np.cos(rng.uniform(2, 8) * yy) for _ in range(3)]
    a = ((np.stack(chans, -1) + 1) * 127.5).clip(0, 255).astype(np.uint8)
    return Image.fromarray(a)


class TrainSet:
    """Map-style dataset whose keys are ``(index, epoch, phase)`` tuples.

    Returns ``(images per stage, {coder name: (ids, length)}, index)``; the caption (one
    of the record's 1–4, uniformly), crop, flip and word subset are drawn from
    ``np.random.default_rng([seed, phase, epoch, index])``. Every coder (LSTM words,
    CLIP BPE) encodes the same chosen caption.
    """

    def __init__(self, records: Sequence[FaceRecord], coders: dict, resolution: int, seed: int) -> None:
        self.records = list(records)
        self.coders = dict(coders)
        self.resolution = resolution
        self.seed = seed
        self._cache: dict[int, Any] = {}

    def __len__(self) -> int:
        return len(self.records)

    def image(self, index: int):
        img = self._cache.get(index)
        if img is None:
            from PIL import Image

            rec = self.records[index]
            if rec.path is None:
                img = synthetic_image(index)
            else:
                with Image.open(rec.path) as im:
                    img = im.convert("RGB")
            self._cache[index] = img
        return img

    def __getitem__(self, key: tuple[int, int, int]):
        index, epoch, phase = key
        rng = np.random.default_rng([self.seed, phase, epoch, index])
        imgs = augment(self.image(index), self.resolution, rng)
        caps = self.records[index].captions
        cap = caps[int(rng.integers(len(caps)))]
        ids = {}
        for name in sorted(self.coders):
            x, n, _ = self.coders[name].encode(cap.text, rng=rng)
            ids[name] = (x, n)
        return imgs, ids, index


def collate(batch):
    import torch

    imgs = [torch.stack([b[0][s] for b in batch]) for s in range(len(batch[0][0]))]
    ids = {
        name: (torch.from_numpy(np.stack([b[1][name][0] for b in batch])),
               torch.tensor([b[1][name][1] for b in batch], dtype=torch.int64))
        for name in batch[0][1]
    }
    index = torch.tensor([b[2] for b in batch], dtype=torch.int64)
    return imgs, ids, index


class StepBatchSampler:
    """Yields the key lists of steps ``start..end-1``: epoch ``e = step // (n // bs)`` uses a
    permutation seeded by ``(seed, phase, e)``; incomplete last batches are dropped.

    ``batch_size`` is the global batch; with ``rank``/``world`` (torchrun, see
    :mod:`models.parallel`) each rank gets the contiguous block ``rank`` of ``world``
    of every global batch, so the ranks together load exactly what one process would."""

    def __init__(self, n: int, batch_size: int, seed: int, phase: int, start: int, end: int,
                 rank: int = 0, world: int = 1) -> None:
        if batch_size > n:
            raise FacemetricsError(
                f"batch size {batch_size} is larger than the training set ({n} images)",
                "--set train.batch_size")
        self.n, self.bs, self.seed, self.phase = n, batch_size, seed, phase
        self.start, self.end = start, end
        self.per_epoch = n // batch_size
        self.rank, self.world = rank, world

    def epoch_of(self, step: int) -> int:
        return step // self.per_epoch

    def keys(self, step: int) -> list[tuple[int, int, int]]:
        epoch, pos = divmod(step, self.per_epoch)
        perm = np.random.default_rng([self.seed, self.phase, epoch, 7919]).permutation(self.n)
        return [(int(i), epoch, self.phase) for i in perm[pos * self.bs:(pos + 1) * self.bs]]

    def __iter__(self) -> Iterator[list[tuple[int, int, int]]]:
        per = self.bs // self.world
        for step in range(self.start, self.end):
            yield self.keys(step)[self.rank * per:(self.rank + 1) * per]

    def __len__(self) -> int:
        return max(0, self.end - self.start)


def make_loader(dataset: TrainSet, batch_size: int, seed: int, phase: int, start: int, end: int,
                num_workers: int = 0, rank: int = 0, world: int = 1):
    """Batches of steps ``start..end-1`` (this rank's block of each global batch)."""
    import torch

    sampler = StepBatchSampler(len(dataset), batch_size, seed, phase, start, end, rank, world)
    return torch.utils.data.DataLoader(
        dataset, batch_sampler=sampler, collate_fn=collate, num_workers=num_workers,
        persistent_workers=False,
        # a private generator: creating the iterator must not draw from the global RNG
        generator=torch.Generator().manual_seed(seed),
    )


# --------------------------------------------------------------------------- records in checkpoints

def record_to_dict(r, root: Path | None) -> dict:
    path = None if r.path is None else str(r.path)
    rel = None
    if r.path is not None and root is not None:
        try:
            rel = Path(r.path).relative_to(Path(root).resolve()).as_posix()
        except ValueError:
            rel = None
    return {"key": r.key, "path": path, "rel": rel, "identity": r.identity,
            "captions": [[c.caption_id, c.text] for c in r.captions]}


def record_from_dict(d: dict, root: str | None = None):
    path = d["path"]
    if root and d.get("rel"):
        path = str(Path(root).resolve() / d["rel"])
    return FaceRecord(d["key"], None if path is None else Path(path), d["identity"],
                      tuple(Caption(t, i) for i, t in d["captions"]))
