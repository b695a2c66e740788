"""Label sources for Inception fine-tuning: identity folders, Face2Text attributes, CSV.

A label source turns ``--data DIR`` plus ``--labels SPEC`` into a :class:`LabelSet`:
a list of images (paths relative to DIR) with their targets, and the head layout.

``SPEC`` is one of

* ``folders`` — one class per sub-folder of DIR (LFW layout ``DIR/Name/Name_0001.jpg``);
  single-label softmax head. Folders with fewer than ``min_per_class`` images are
  dropped (the LFW convention "people with at least K images"); the number dropped
  is reported.
* ``face2text-attributes[:CAPTIONS.json]`` — attributes derived from Face2Text v0.1
  captions (``clean.json``; without ``:FILE``, ``DIR/clean.json`` is used) by the
  keyword rules below; DIR is the LFW image folder (the JSON's ``Name/Name_0001.bmp``
  is LFW's ``Name/Name_0001.jpg``). Multi-label head.
* ``csv:FILE`` — a CSV with an ``image`` column (path relative to DIR, or absolute) and
  either a ``label`` column (one class per image; single-label head) or a ``labels``
  column (``;``-separated classes; multi-label head, every class absent from a row is
  a negative for that row).

Multi-label heads are made of *groups*: a ``binary`` group is one sigmoid output
(target 1/0), a ``categorical`` group is one sigmoid per value with a one-hot
target (trained with binary cross-entropy, evaluated by the arg-max inside the
group). A group may be *unknown* for an image; its outputs are then masked out of
the loss and the accuracy.

Face2Text keyword rules (``attributes_from_captions``)
------------------------------------------------------
Captions are lower-cased and split into word tokens (letters, digits, apostrophes;
hyphenated words are split into their parts, so "dark-brown" is "dark brown" and
"mid-thirties" is "mid thirties"; multi-word patterns below are matched on the
lower-cased text itself). Each caption of an image votes separately; the image label of a
group is the value with the most caption votes, *unknown* on a tie or no vote,
except where "any caption" is said.

* **gender** (binary output ``male``): a caption votes *male* when it has more male
  words than female words, *female* when fewer. Male words: man, men, male, guy,
  gentleman, gent, boy, he, his, him, himself, husband, father, dad, sir, mr,
  businessman, sportsman, policeman, chairman, king, prince, actor, grandfather.
  Female words: woman, women, female, lady, girl, she, her, hers, herself, wife,
  mother, mom, mum, actress, queen, princess, grandmother, businesswoman.
* **hair colour** (categorical ``hair_black``, ``hair_brown``, ``hair_blond``,
  ``hair_grey``, ``hair_red``): for each token ``hair`` (not the phrase
  "facial hair") or ``haired``, scan back at most 5 tokens, stopping at ``.;:!?`` or at another
  feature noun (eyes, skin, brows, beard, lips, face, ...); the nearest colour word
  wins. Also "hair is/was [up to 2 words] COLOUR". Stand-alone
  "blonde"/"blond" (no "hair" nearby) and "brunette", "redhead" count too. Colour
  words: black, dark, jet → black; brown, brunette, chestnut → brown; blond,
  blonde, fair, golden, yellow → blond; grey, gray, white, silver, greying, graying,
  pepper (salt and pepper) → grey; red, ginger, auburn, redhead → red.
  A caption votes for each colour it mentions once.
* **smile** (binary ``smiling``): negations are removed first ("not smiling",
  "isn't smiling", "no smile", "without a smile", "doesn't/does not smile",
  "not a smile") and each counts as a *not smiling* cue, as do serious, frown,
  frowning, stern, grim, scowl, scowling. Positive cues: smile, smiles, smiled,
  smiling, smiley, grin, grins, grinning, laugh, laughs, laughing, beaming. A
  caption with only positive cues votes *smiling*, only negative cues *not
  smiling*, both or neither: no vote.
* **glasses** (binary ``glasses``): *yes* when any caption mentions glasses,
  spectacles, sunglasses, eyeglasses, specs or shades without a negation ("no",
  "without", "not wearing" within the 3 preceding tokens); otherwise *no* (people
  describing a face mention glasses when they are there).
* **facial hair** (binary ``facial_hair``): a caption counts one *yes* per mention of
  beard, bearded, moustache, mustache, moustached, mustached, goatee, stubble,
  stubbly, whiskers, sideburns, unshaven or "facial hair" that is not negated (as for
  glasses), and one *no* per clean-shaven / clean shaven / beardless / "no facial
  hair" / "shaved face" or negated mention; it votes for the larger count. The image
  is *yes* when more captions vote yes than no, otherwise *no* (no mention → no).
* **age group** (categorical ``age_young``, ``age_middle``, ``age_old``): phrases
  young, younger, youthful, teen, teens, teenager, teenage, adolescent, twenties →
  young; middle-aged, "middle aged", "middle age", "middle adulthood", thirties,
  forties, fifties → middle; elderly, senior, pensioner, "old age", "old/older +
  person noun" (man, woman, lady, gentleman, guy, person, male, female),
  "quite/very/rather old", sixties, seventies, eighties, nineties → old; numbers
  "NN's", "NNs", "NN-something", "NN years old", "NN year old", "in his/her
  [early|mid|late] NN" → young below 30, middle 30–54, old from 55. A caption
  votes for each group it mentions once.

These rules are heuristics over free text; ``attribute_counts`` reports how many
images each rule labels, and the tests pin them on handwritten captions.
"""
from __future__ import annotations

import csv
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

from facemetrics.errors import FacemetricsError
from facemetrics.imaging.images import _is_image_name


@dataclass(frozen=True)
class Group:
    """Outputs of a multi-label head that belong together."""

    name: str
    kind: str  # "binary" | "categorical"
    outputs: tuple[str, ...]  # output (class) names of this group


@dataclass
class LabelSet:
    """Images with targets and the head layout.

    ``kind == "single"``: ``targets[i]`` is a class index into ``classes``.
    ``kind == "multi"``: ``targets[i]`` is a list of floats (one per class, 0/1) and
    ``masks[i]`` a list of 0/1 (1 where the target is known).
    """

    kind: str
    classes: list[str]
    names: list[str]  # image paths relative to the data root (or absolute)
    targets: list
    masks: list | None = None
    groups: list[Group] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    spec: str = ""

    def __len__(self) -> int:
        return len(self.names)

    def head(self) -> dict:
        """JSON-able head description stored in checkpoints."""
        return {
            "kind": self.kind,
            "classes": list(self.classes),
            "groups": [{"name": g.name, "kind": g.kind, "outputs": list(g.outputs)} for g in self.groups],
        }


# --------------------------------------------------------------------------- folders

def _images_in(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _is_image_name(p.name))


def from_folders(root: Path, min_per_class: int) -> LabelSet:
    """One class per sub-folder of ``root`` holding at least ``min_per_class`` images."""
    subdirs = sorted(p for p in root.iterdir() if p.is_dir())
    if not subdirs:
        raise FacemetricsError(
            f"--labels folders needs one sub-folder per class in {root}, found none", "--data"
        )
    classes, names, targets = [], [], []
    dropped = 0
    largest = 0
    for d in subdirs:
        imgs = _images_in(d)
        largest = max(largest, len(imgs))
        if len(imgs) < min_per_class:
            dropped += 1
            continue
        k = len(classes)
        classes.append(d.name)
        for p in imgs:
            names.append(p.relative_to(root).as_posix())
            targets.append(k)
    if not classes:
        raise FacemetricsError(
            f"empty label set: none of the {len(subdirs)} folders in {root} has at least "
            f"{min_per_class} images (the largest has {largest}); lower --min-per-class",
            "--min-per-class",
        )
    notes = [f"{len(classes)} classes with >= {min_per_class} images; {dropped} folders dropped"]
    return LabelSet("single", classes, names, targets, notes=notes, spec="folders")


# --------------------------------------------------------------------------- csv

def from_csv(root: Path, csv_path: Path, min_per_class: int) -> LabelSet:
    """Labels from a CSV with ``image`` and ``label`` (single) or ``labels`` (multi, ``;``)."""
    if not csv_path.is_file():
        raise FacemetricsError(f"label CSV does not exist: {csv_path}", "--labels")
    with open(csv_path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        cols = [c.strip() for c in (reader.fieldnames or [])]
        rows = [{(k or "").strip(): (v or "").strip() for k, v in r.items()} for r in reader]
    if "image" not in cols or not ({"label", "labels"} & set(cols)):
        raise FacemetricsError(
            f"{csv_path} needs an 'image' column and a 'label' (single) or 'labels' "
            f"(';'-separated) column; found columns {cols}", "--labels"
        )
    multi = "labels" in cols and "label" not in cols
    col = "labels" if multi else "label"
    names, raw = [], []
    for i, r in enumerate(rows, start=2):
        img, lab = r.get("image", ""), r.get(col, "")
        if not img:
            raise FacemetricsError(f"{csv_path} line {i}: empty 'image'", "--labels")
        labs = [x.strip() for x in lab.split(";") if x.strip()] if multi else ([lab] if lab else [])
        if not labs:
            if multi:  # an image with no positive label is a valid all-negative row
                names.append(img)
                raw.append([])
                continue
            raise FacemetricsError(f"{csv_path} line {i}: empty '{col}' for {img}", "--labels")
        names.append(img)
        raw.append(labs)
    if not names:
        raise FacemetricsError(f"empty label set: {csv_path} has no rows", "--labels")
    missing = [n for n in names if not (Path(n) if Path(n).is_absolute() else root / n).is_file()]
    if missing:
        raise FacemetricsError(
            f"{len(missing)} image(s) named in {csv_path} do not exist under {root}, e.g. {missing[:3]}",
            "--labels",
        )
    classes = sorted({c for labs in raw for c in labs})
    if not classes:
        raise FacemetricsError(f"empty label set: {csv_path} names no label", "--labels")
    counts = Counter(c for labs in raw for c in labs)
    few = sorted((c for c in classes if counts[c] < min_per_class), key=lambda c: (counts[c], c))
    if few:
        listed = ", ".join(f"{c!r} ({counts[c]})" for c in few[:10])
        raise FacemetricsError(
            f"{len(few)} class(es) in {csv_path} have fewer than --min-per-class={min_per_class} "
            f"images: {listed}{' ...' if len(few) > 10 else ''}; remove those rows or lower --min-per-class",
            "--min-per-class",
        )
    index = {c: k for k, c in enumerate(classes)}
    spec = f"csv:{csv_path}"
    if not multi:
        if len(classes) < 2:
            raise FacemetricsError(f"{csv_path} has a single class {classes[0]!r}; need two or more", "--labels")
        return LabelSet("single", classes, names, [index[labs[0]] for labs in raw], spec=spec)
    targets = [[1.0 if c in labs else 0.0 for c in classes] for labs in raw]
    masks = [[1.0] * len(classes) for _ in raw]
    groups = [Group(c, "binary", (c,)) for c in classes]
    return LabelSet("multi", classes, names, targets, masks, groups, spec=spec)


# --------------------------------------------------------------------------- Face2Text rules

_TOKEN = re.compile(r"[a-z0-9']+|[.;:!?]")

MALE_WORDS = frozenset(
    "man men male guy gentleman gent boy he his him himself husband father dad sir mr "
    "businessman sportsman policeman chairman king prince actor grandfather".split()
)
FEMALE_WORDS = frozenset(
    "woman women female lady girl she her hers herself wife mother mom mum actress queen "
    "princess grandmother businesswoman".split()
)
HAIR_COLOURS: dict[str, str] = {
    **dict.fromkeys(["black", "dark", "jet"], "black"),
    **dict.fromkeys(["brown", "brunette", "chestnut"], "brown"),
    **dict.fromkeys(["blond", "blonde", "fair", "golden", "yellow"], "blond"),
    **dict.fromkeys(["grey", "gray", "white", "silver", "greying", "graying", "pepper"], "grey"),
    **dict.fromkeys(["red", "ginger", "auburn", "redhead"], "red"),
}
HAIR_VALUES = ("black", "brown", "blond", "grey", "red")
_FEATURE_NOUNS = frozenset(
    "eyes eye skin skinned complexion brows eyebrows eyebrow beard moustache mustache lips "
    "lip face nose teeth suit shirt tie jacket ears cheeks chin".split()
)
_SMILE_POS = frozenset(
    "smile smiles smiled smiling smiley grin grins grinning laugh laughs laughing beaming".split()
)
_SMILE_NEG_WORDS = frozenset("serious frown frowning frowns stern grim scowl scowling".split())
_SMILE_NEGATIONS = re.compile(
    r"\b(?:not|isn't|is not|no|without|doesn't|does not|never|aren't|wasn't)\s+(?:a\s+|any\s+|even\s+|really\s+)?"
    r"(?:smil(?:e|es|ing)|grin(?:s|ning)?|laugh(?:s|ing)?)\b"
)
_GLASSES = frozenset("glasses spectacles sunglasses eyeglasses specs shades".split())
_FACIAL_HAIR = frozenset(
    "beard bearded moustache mustache moustached mustached goatee stubble stubbly whiskers "
    "sideburns unshaven".split()
)
_NEGATORS = frozenset("no without not never".split())
_CLEAN_SHAVEN = re.compile(r"\bclean[- ]?shaven\b|\bbeardless\b|\bno facial hair\b|\bshaved face\b")
_AGE_WORDS: dict[str, str] = {
    **dict.fromkeys(["young", "younger", "youthful", "teen", "teens", "teenager", "teenage", "adolescent",
                     "twenties"], "young"),
    **dict.fromkeys(["thirties", "forties", "fifties", "fourties"], "middle"),
    **dict.fromkeys(["elderly", "senior", "pensioner", "sixties", "seventies", "eighties",
                     "nineties"], "old"),
}
_AGE_PHRASES = [
    (re.compile(r"\bmiddle[- ](?:aged|age|adulthood)\b"), "middle"),
    (re.compile(r"\bold age\b"), "old"),
    (re.compile(r"\b(?:old|older) (?:man|woman|lady|gentleman|guy|person|male|female|men|women)\b"), "old"),
    (re.compile(r"\b(?:quite|very|rather|fairly|pretty) old\b"), "old"),
]
_AGE_NUMBERS = re.compile(
    r"\b(\d{2})\s*(?:'s|s|-something|\s?-?years?[- ]old|\s?-?year[- ]old)\b"
    r"|\bin (?:his|her|their) (?:early |mid |mid-|late )?(\d{2})"
)
AGE_VALUES = ("young", "middle", "old")


def _tokens(text: str) -> list[str]:
    return _TOKEN.findall(text.lower())


def _age_of_number(n: int) -> str:
    return "young" if n < 30 else ("middle" if n < 55 else "old")


def caption_votes(text: str) -> dict[str, set[str]]:
    """The votes one caption casts: ``{group: {values}}`` (absent group: no vote).

    Groups: ``gender`` ({"male"} or {"female"}), ``hair`` (colours), ``smile``
    ({"yes"} / {"no"}), ``glasses`` ({"yes"}), ``facial_hair`` ({"yes"} / {"no"}),
    ``age`` (groups). See the module docstring for the rules.
    """
    low = text.lower()
    toks = _tokens(low)
    votes: dict[str, set[str]] = {}
    m = sum(t in MALE_WORDS for t in toks)
    f = sum(t in FEMALE_WORDS for t in toks)
    if m != f:
        votes["gender"] = {"male" if m > f else "female"}
    colours = _hair_colours(toks)
    if colours:
        votes["hair"] = colours
    smile = _smile_vote(low)
    if smile:
        votes["smile"] = {smile}
    gy, _ = _mentions(toks, _GLASSES)
    if gy:
        votes["glasses"] = {"yes"}
    fy, fn = _mentions(toks, _FACIAL_HAIR)
    fy += len(re.findall(r"(?<!no )\bfacial hair\b", low))
    fn += len(_CLEAN_SHAVEN.findall(low))
    if fy > fn:
        votes["facial_hair"] = {"yes"}
    elif fn > fy:
        votes["facial_hair"] = {"no"}
    ages = _ages(low, toks)
    if ages:
        votes["age"] = ages
    return votes


def _hair_colours(toks: list[str]) -> set[str]:
    """Hair colours named before "hair"/"haired" (within the clause), after "hair is/was", or as one word."""
    colours: set[str] = set()
    for i, t in enumerate(toks):
        if t in ("hair", "haired"):
            if i > 0 and toks[i - 1] == "facial":
                continue
            for j in range(i - 1, max(-1, i - 6), -1):
                w = toks[j]
                if w in ".;:!?" or w in _FEATURE_NOUNS:
                    break
                if w in HAIR_COLOURS:
                    colours.add(HAIR_COLOURS[w])
                    break
            if i + 1 < len(toks) and toks[i + 1] in ("is", "was"):
                for w in toks[i + 2 : i + 5]:
                    if w in HAIR_COLOURS:
                        colours.add(HAIR_COLOURS[w])
                        break
        elif t in ("blonde", "blond", "brunette", "redhead"):
            colours.add(HAIR_COLOURS[t])
    return colours


def _smile_vote(low: str) -> str | None:
    """"yes" when the caption only speaks of smiling, "no" when only of not smiling, else None."""
    negated = len(_SMILE_NEGATIONS.findall(low))
    rest = _tokens(_SMILE_NEGATIONS.sub(" ", low))
    pos = sum(t in _SMILE_POS for t in rest)
    neg = negated + sum(t in _SMILE_NEG_WORDS for t in rest)
    if pos and not neg:
        return "yes"
    if neg and not pos:
        return "no"
    return None


def _mentions(toks: list[str], words: frozenset[str]) -> tuple[int, int]:
    """(plain, negated) mentions of ``words``: negated when a negator is among the 3 tokens before."""
    yes = no = 0
    for i, t in enumerate(toks):
        if t in words:
            if any(w in _NEGATORS for w in toks[max(0, i - 3) : i]):
                no += 1
            else:
                yes += 1
    return yes, no


def _ages(low: str, toks: list[str]) -> set[str]:
    """Age groups named by words, phrases or numbers."""
    ages = {_AGE_WORDS[t] for t in toks if t in _AGE_WORDS}
    for rx, g in _AGE_PHRASES:
        if rx.search(low):
            ages.add(g)
    for a, b in _AGE_NUMBERS.findall(low):
        ages.add(_age_of_number(int(a or b)))
    return ages


def _majority(counter: Counter) -> str | None:
    if not counter:
        return None
    top = counter.most_common()
    if len(top) > 1 and top[0][1] == top[1][1]:
        return None
    return top[0][0]


def attributes_from_captions(captions: Sequence[str]) -> dict[str, str | None]:
    """Image-level attributes from all captions of one image (None = unknown).

    Returns ``{"gender": "male"|"female"|None, "hair": colour|None, "smile": "yes"|"no"|None,
    "glasses": "yes"|"no", "facial_hair": "yes"|"no", "age": "young"|"middle"|"old"|None}``.
    """
    counts: dict[str, Counter] = {g: Counter() for g in ("gender", "hair", "smile", "glasses",
                                                         "facial_hair", "age")}
    for c in captions:
        for g, vals in caption_votes(c).items():
            counts[g].update(vals)
    out: dict[str, str | None] = {g: _majority(counts[g]) for g in ("gender", "hair", "smile", "age")}
    out["glasses"] = "yes" if counts["glasses"]["yes"] else "no"
    fh = counts["facial_hair"]
    out["facial_hair"] = "yes" if fh["yes"] > fh["no"] else "no"
    return out


#: Head layout of the Face2Text attribute head.
FACE2TEXT_GROUPS: tuple[Group, ...] = (
    Group("gender", "binary", ("male",)),
    Group("hair", "categorical", tuple(f"hair_{v}" for v in HAIR_VALUES)),
    Group("smile", "binary", ("smiling",)),
    Group("glasses", "binary", ("glasses",)),
    Group("facial_hair", "binary", ("facial_hair",)),
    Group("age", "categorical", tuple(f"age_{v}" for v in AGE_VALUES)),
)
_BINARY_POSITIVE = {"gender": "male", "smile": "yes", "glasses": "yes", "facial_hair": "yes"}
_CATEGORIES = {"hair": HAIR_VALUES, "age": AGE_VALUES}


def encode_attributes(attrs: dict[str, str | None]) -> tuple[list[float], list[float]]:
    """Target and mask vectors (layout :data:`FACE2TEXT_GROUPS`) of one image's attributes."""
    target: list[float] = []
    mask: list[float] = []
    for g in FACE2TEXT_GROUPS:
        v = attrs.get(g.name)
        if g.kind == "binary":
            target.append(1.0 if v == _BINARY_POSITIVE[g.name] else 0.0)
            mask.append(0.0 if v is None else 1.0)
        else:
            vals = _CATEGORIES[g.name]
            target.extend(1.0 if v == x else 0.0 for x in vals)
            mask.extend([0.0 if v is None else 1.0] * len(vals))
    return target, mask


def load_face2text(json_path: Path) -> dict[str, list[str]]:
    """``{LFW relative image path (.jpg): [captions]}`` from a Face2Text v0.1 JSON."""
    from facemetrics.datasets.face2text import read_face2text

    out: dict[str, list[str]] = {}
    for e in read_face2text(json_path, "0.1", "--labels")[1]:
        out.setdefault(e.image, []).append(e.text)
    return out


def attribute_counts(labels: LabelSet) -> dict[str, dict[str, int]]:
    """Per group: how many images have each value, and how many are unknown."""
    out: dict[str, dict[str, int]] = {}
    col = 0
    for g in labels.groups:
        width = len(g.outputs)
        c: Counter = Counter()
        for t, m in zip(labels.targets, labels.masks or []):
            if not m[col]:
                c["unknown"] += 1
            elif g.kind == "binary":
                c[g.outputs[0] if t[col] else f"not_{g.outputs[0]}"] += 1
            else:
                k = max(range(width), key=lambda j: t[col + j])
                c[g.outputs[k]] += 1
        out[g.name] = dict(c)
        col += width
    return out


def from_face2text(root: Path, json_path: Path, min_per_class: int) -> LabelSet:
    """Face2Text attribute labels of the LFW images under ``root`` (multi-label head)."""
    caps = load_face2text(json_path)
    names = sorted(n for n in caps if (root / n).is_file())
    if not names:
        raise FacemetricsError(
            f"empty label set: none of the {len(caps)} images named in {json_path} exists under {root} "
            "(DIR must be the LFW folder holding Name/Name_0001.jpg)", "--data"
        )
    targets, masks = [], []
    for n in names:
        t, m = encode_attributes(attributes_from_captions(caps[n]))
        targets.append(t)
        masks.append(m)
    classes = [o for g in FACE2TEXT_GROUPS for o in g.outputs]
    ls = LabelSet("multi", classes, names, targets, masks, list(FACE2TEXT_GROUPS),
                  spec=f"face2text-attributes:{json_path}")
    missing = len(caps) - len(names)
    if missing:
        ls.notes.append(f"{missing} captioned images not found under {root}")
    _check_multi_counts(ls, min_per_class)
    return ls


def _check_multi_counts(ls: LabelSet, min_per_class: int) -> None:
    """Every categorical value and both sides of every binary output need ``min_per_class`` images."""
    counts = attribute_counts(ls)
    few = []
    for g in ls.groups:
        c = counts[g.name]
        values = list(g.outputs) + ([f"not_{g.outputs[0]}"] if g.kind == "binary" else [])
        for v in values:
            if c.get(v, 0) < min_per_class:
                few.append(f"{g.name}={v} ({c.get(v, 0)})")
    if few:
        raise FacemetricsError(
            f"{len(few)} attribute value(s) have fewer than --min-per-class={min_per_class} images: "
            + ", ".join(few) + "; lower --min-per-class",
            "--min-per-class",
        )


# --------------------------------------------------------------------------- dispatch

def load_labels(data: str | Path, spec: str, min_per_class: int) -> LabelSet:
    """Build the :class:`LabelSet` for ``--data`` and ``--labels`` (see module docstring)."""
    root = Path(data)
    if not root.is_dir():
        raise FacemetricsError(f"--data must be an existing folder: {root}", "--data")
    if min_per_class < 2:
        raise FacemetricsError("--min-per-class must be at least 2 (one training and one "
                               "validation image per class)", "--min-per-class")
    if spec == "folders":
        return from_folders(root, min_per_class)
    if spec == "face2text-attributes" or spec.startswith("face2text-attributes:"):
        path = spec.partition(":")[2]
        json_path = Path(path) if path else root / "clean.json"
        if not json_path.is_file():
            raise FacemetricsError(
                f"Face2Text captions not found at {json_path}; give them as "
                "--labels face2text-attributes:PATH/clean.json", "--labels"
            )
        return from_face2text(root, json_path, min_per_class)
    if spec.startswith("csv:"):
        return from_csv(root, Path(spec[4:]), min_per_class)
    raise FacemetricsError(
        f"unknown label source {spec!r}; use folders, face2text-attributes[:FILE] or csv:FILE", "--labels"
    )
