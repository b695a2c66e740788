"""Records of a fixed set of scoring runs, and a diff of two such sets (refactoring check).

    python benchmarks/record_equivalence.py run OUT_DIR [--repo PATH]   # with a checkout's code
    python benchmarks/record_equivalence.py diff BEFORE_DIR AFTER_DIR   # equal except time stamps?

``run`` scores real LFW / Face2Text-style sets through the CLI of the checkout at
``--repo`` (default: this one) with a fresh cache: FID/KID (clean and tf1), REAL as a
statistics file, FID/KID/FSD/FSS with a pairs manifest whose real images are REAL
(the one-pass case), R-precision and CLIP score with a seeded random tiny CLIP, a
two-process torchrun run, and ``facemetrics demo``. The image folders are links under
a fixed work folder, so two runs see the same paths. ``diff`` compares every record
key by key, ignoring only ``created`` (the time stamp), and exits 1 on a difference.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
WORK = Path("/tmp/fm-record-equivalence")
IGNORED = {"created"}


def _data() -> Path:
    return Path(os.environ.get("FACEMETRICS_DATA", HERE.parent / "shared" / "data"))


def _pair_sets(root: Path, people: list[str], tag: str, sets: dict[str, Path]) -> None:
    """real<tag>/ (each person's first image), fake<tag>/ (their second) and pairs<tag>.jsonl."""
    from facemetrics.pairing.captions import write_pair_rows

    real, fake = WORK / f"real{tag}", WORK / f"fake{tag}"
    real.mkdir(parents=True)
    fake.mkdir(parents=True)
    rows = []
    for i, p in enumerate(people):
        (real / f"{p}.jpg").symlink_to(root / p / f"{p}_0001.jpg")
        (fake / f"{i:03d}.jpg").symlink_to(root / p / f"{p}_0002.jpg")
        rows.append({"fake": f"{i:03d}.jpg", "caption": f"a photo of {p.replace('_', ' ')}, number {i}",
                     "real": f"{p}.jpg", "identity": p})
    write_pair_rows(WORK / f"pairs{tag}.jsonl", rows)
    sets.update({f"real{tag}": real, f"fake{tag}": fake, f"pairs{tag}": WORK / f"pairs{tag}.jsonl"})


def _link_sets() -> dict[str, Path]:
    """Folders of links to LFW images: a/b (30 people each); 16 and 110 (real, fake) pairs with manifests."""
    root = _data() / "lfw" / "deepfunneled"
    people = sorted(p.name for p in root.iterdir() if p.is_dir())
    twice = [p for p in people if (root / p / f"{p}_0002.jpg").is_file()]
    if WORK.exists():
        shutil.rmtree(WORK)
    sets = {k: WORK / k for k in ("a", "b")}
    for d in sets.values():
        d.mkdir(parents=True)
    for i, p in enumerate(people[100:130]):
        (sets["a"] / f"{i:03d}.jpg").symlink_to(root / p / f"{p}_0001.jpg")
    for i, p in enumerate(people[300:330]):
        (sets["b"] / f"{i:03d}.jpg").symlink_to(root / p / f"{p}_0001.jpg")
    _pair_sets(root, twice[:16], "16", sets)
    _pair_sets(root, twice[100:210], "110", sets)
    return sets


def _tiny_clip(repo: Path) -> Path:
    """A seeded random tiny open_clip model's weights (the tests' fm-tiny-clip)."""
    sys.path.insert(0, str(repo / "tests"))
    from conftest_text import register_tiny_arch, save_tiny_weights  # noqa: E402

    register_tiny_arch()
    return save_tiny_weights(WORK / "tiny-clip.pt", seed=0)


def _runs(s: dict[str, Path], clip: Path) -> dict[str, list[str]]:
    a, b = str(s["a"]), str(s["b"])
    npz = str(WORK / "a.npz")
    return {
        "fid_kid_clean": ["score", a, b, "--metrics", "fid,kid", "--kid-subset-size", "10", "--seed", "3"],
        "fid_tf1": ["score", a, b, "--metrics", "fid", "--preset", "tf1"],
        "stats": ["stats", a, "-o", npz, "--features"],
        "fid_kid_npz": ["score", npz, b, "--metrics", "fid,kid", "--kid-subset-size", "10"],
        "face_one_pass": ["score", str(s["real16"]), str(s["fake16"]), "--pairs", str(s["pairs16"]),
                          "--metrics", "fid,kid,fsd,fss", "--kid-subset-size", "8"],
        "text": ["score", str(s["real110"]), str(s["fake110"]), "--pairs", str(s["pairs110"]),
                 "--metrics", "rprec,clipscore",
                 "--matcher", f"clip:fm-tiny-clip:{clip}", "--seed", "1"],
    }


def run(out: Path, repo: Path) -> None:
    out.mkdir(parents=True, exist_ok=True)
    sets = _link_sets()
    clip = _tiny_clip(repo)
    env = {**os.environ, "PYTHONPATH": str(repo), "FACEMETRICS_OFFLINE": "1",
           "FACEMETRICS_CACHE": str(WORK / "cache")}
    py = [sys.executable, "-c", "import sys; sys.path.insert(0, %r); from conftest_text import register_tiny_arch; "
          "register_tiny_arch(); from facemetrics.cli.main import main; sys.argv[0] = 'facemetrics'; main()"
          % str(repo / "tests")]
    for name, args in _runs(sets, clip).items():
        target = out / f"{name}.json"
        cmd = py + args + (["--json", str(target), "-q"] if args[0] == "score" else ["-q"])
        subprocess.run(cmd, env=env, check=True, cwd=WORK, stdout=subprocess.DEVNULL)
        print(f"{name}: ok", file=sys.stderr)
    tr = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "-m", "facemetrics", "score",
          str(sets["a"]), str(sets["b"]), "--metrics", "fid,kid", "--kid-subset-size", "10", "-q", "--no-cache",
          "--json", str(out / "torchrun.json")]
    subprocess.run(tr, env=env, check=True, cwd=WORK, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    subprocess.run(py + ["demo", "--out", str(WORK / "demo"), "-q"], env=env, check=True, cwd=WORK,
                   stdout=subprocess.DEVNULL)
    shutil.copy(WORK / "demo" / "record.json", out / "demo.json")
    for rec in out.glob("*.json"):  # the bundled examples live in the checkout: name it the same in both runs
        rec.write_text(rec.read_text().replace(str(repo), "<repo>"))
    print(f"records in {out}", file=sys.stderr)


def _diff(a, b, path: str = "") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        out = []
        for k in sorted(set(a) | set(b)):
            if k in IGNORED:
                continue
            if k not in a or k not in b:
                out.append(f"{path}/{k}: only in {'after' if k in b else 'before'}")
            else:
                out += _diff(a[k], b[k], f"{path}/{k}")
        return out
    if isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        return [d for i, (x, y) in enumerate(zip(a, b)) for d in _diff(x, y, f"{path}[{i}]")]
    return [] if a == b else [f"{path}: {a!r} != {b!r}"]


def diff(before: Path, after: Path) -> int:
    names = sorted({p.name for p in before.glob("*.json")} | {p.name for p in after.glob("*.json")})
    bad = 0
    for n in names:
        if not (before / n).is_file() or not (after / n).is_file():
            print(f"{n}: missing on one side")
            bad += 1
            continue
        d = _diff(json.loads((before / n).read_text()), json.loads((after / n).read_text()))
        print(f"{n}: {'equal except time stamps' if not d else f'{len(d)} difference(s)'}")
        for line in d[:20]:
            print(f"  {line}")
        bad += bool(d)
    print(f"{len(names) - bad} of {len(names)} records equal")
    return 1 if bad else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    r = sub.add_parser("run")
    r.add_argument("out", type=Path)
    r.add_argument("--repo", type=Path, default=HERE)
    d = sub.add_parser("diff")
    d.add_argument("before", type=Path)
    d.add_argument("after", type=Path)
    args = ap.parse_args()
    if args.cmd == "run":
        run(args.out, args.repo.resolve())
    else:
        sys.exit(diff(args.before, args.after))


if __name__ == "__main__":
    main()
