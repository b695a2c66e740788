"""Make the real records under tests/data/records/ (run from the repository root).

    FACEMETRICS_DATA=/path/to/shared/data python tests/data/records/make_records.py

Three runs scored against the same real set: the first 100 Face2Text v0.1 people
of LFW who have a second photo (their ``_0001`` images, the images Face2Text
describes):

* ``oracle``      the real images themselves (copies),
* ``same-person`` each person's ``_0002`` photo,
* ``celeba``      CelebA images 000001-000100 (other people), scored without KID.

FID/KID come from ``facemetrics.api.score`` (clean preset, packaged Inception
layers); R-precision and CLIP score from ``facemetrics.pairing.text_scoring.score_text``
with each image paired to the first Face2Text description of its person and a
tiny open_clip model with seeded random weights (``fm-tiny-clip``, seed 0) as
the matcher: real computations, but chance-level text numbers (no pretrained
CLIP can be downloaded here). No image or caption is stored; the script checks
that no caption text ends up in a record.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parents[2]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from conftest_text import TINY_ARCH, pair, save_tiny_weights  # noqa: E402
from facemetrics.api import score  # noqa: E402
from facemetrics.imaging.images import scan  # noqa: E402
from facemetrics.record import build_record, write_record  # noqa: E402
from facemetrics.result import MetricResult  # noqa: E402
from facemetrics.pairing.text_scoring import score_text  # noqa: E402

DATA = Path(os.environ.get("FACEMETRICS_DATA", REPO.parent / "shared" / "data"))
N = 100


def main() -> None:
    lfw = DATA / "lfw" / "deepfunneled"
    entries = json.loads((DATA / "face2text" / "v0.1" / "clean.json").read_text())
    people = []
    for e in entries:
        first = lfw / e["image"].replace(".bmp", ".jpg")
        second = Path(str(first).replace("_0001.jpg", "_0002.jpg"))
        if second.is_file():
            people.append((first, second, e["descriptions"][0]["text"]))
        if len(people) == N:
            break
    tmp = Path(tempfile.mkdtemp(prefix="fm-records-"))
    os.environ["FACEMETRICS_CACHE"] = str(tmp / "cache")  # the real set's features are extracted once
    real = tmp / "real"
    real.mkdir()
    for first, _, _ in people:
        shutil.copy(first, real / first.name)
    runs = {
        "oracle": [first for first, _, _ in people],
        "same-person": [second for _, second, _ in people],
        "celeba": [DATA / "celeba" / "89x109" / f"{i:06d}.jpg" for i in range(1, N + 1)],
    }
    weights = save_tiny_weights(tmp / "fm-tiny-clip-seed0.pt", seed=0)
    captions = [c for _, _, c in people]
    for label, files in runs.items():
        fake = tmp / label
        fake.mkdir()
        names = []
        for i, f in enumerate(files):
            name = f"{i:03d}{f.suffix}"
            shutil.copy(f, fake / name)
            names.append(name)
        metrics = "fid" if label == "celeba" else "fid,kid"
        rec = score(str(real), str(fake), metrics=metrics, cache=True, progress=False, seed=0, label=label)
        pairs = [pair(n, c, real=real / first.name, identity=first.parent.name)
                 for n, c, (first, _, _) in zip(names, captions, people)]
        text, warns = score_text(pairs, scan(fake), metrics={"rprec", "clipscore"},
                                 matcher_spec=f"clip:{TINY_ARCH}:{weights}", seed=0, progress=False)
        results = {k: MetricResult(k, v["value"], v["higher_is_better"], v["std"], v["n"], v["details"])
                   for k, v in rec["metrics"].items()}
        results.update(text)
        # Face2Text terms: the truncation warning's caption snippet is not stored
        warns = [re.sub(r'"[^"]*"\)$', '"[caption not stored]")', w) for w in warns]
        out = build_record(real=rec["real"], fake=rec["fake"], protocol=rec["protocol"], metrics=results,
                           warnings=rec["warnings"] + warns, failed_images=rec["failed_images"], label=label)
        blob = json.dumps(out)
        leaked = [c for c in captions if c[:30] in blob]
        assert not leaked, f"caption text must not be stored: {leaked} in {out['warnings']}"
        write_record(out, HERE / f"{label}.json")
        print(label, {k: round(v["value"], 4) for k, v in out["metrics"].items()})
    shutil.rmtree(tmp)


if __name__ == "__main__":
    main()
