"""A real, bounded CPU fine-tuning on LFW identities, then FID/KID/IS with the result.

1. ``finetune-inception`` on the LFW people with ≥ 20 images (``--max-per-class``
   images each, seeded), at a reduced image size, trunk frozen up to ``--freeze-until``.
2. With the fine-tuned extractor (and, for reference, the pretrained trunk at the
   same size): FID and KID between two disjoint random halves of LFW ``_0001``
   images (different people, none of them necessarily in training) and between LFW
   half A and the first CelebA 89×109 images; the domain IS (softmax head) of each set.

    FACEMETRICS_DATA=/path/to/shared/data python benchmarks/finetune_lfw_run.py --out runs/ft

Writes ``OUT/face-inception.pt`` (+ curves PNG) and ``OUT/summary.json``; prints a
markdown summary.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="runs/finetune-lfw")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--image-size", type=int, default=128)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--max-per-class", type=int, default=20)
    ap.add_argument("--freeze-until", default="mixed_7")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--n-eval", type=int, default=500, help="images per set for FID/KID")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()

    import torch

    from facemetrics.extractors.finetuned import FinetunedInceptionExtractor
    from facemetrics.nets.face_inception import Preprocess
    from facemetrics.finetune.train import FinetuneConfig, finetune
    from facemetrics.imaging.images import decode_rgb
    from facemetrics.nets.inception import normalize, pretrained_inception
    from facemetrics.metrics.fid import frechet_distance
    from facemetrics.metrics.inception_score import inception_score_from_probs
    from facemetrics.metrics.kid import kid

    torch.set_num_threads(args.threads)
    data = Path(os.environ.get("FACEMETRICS_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
    lfw = data / "lfw" / "deepfunneled"
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    load0 = os.getloadavg()[0]
    t0 = time.perf_counter()
    res = finetune(FinetuneConfig(
        data=str(lfw), out=str(out / "face-inception.pt"), labels="folders", min_per_class=20,
        max_per_class=args.max_per_class, val_split=0.2, image_size=args.image_size, epochs=args.epochs,
        batch_size=16, lr=args.lr, backbone_lr_scale=0.1, freeze_until=args.freeze_until, seed=args.seed,
        progress=False))
    train_s = time.perf_counter() - t0

    people = sorted(p.name for p in lfw.iterdir() if p.is_dir())
    rng = np.random.default_rng(args.seed)
    pick = rng.choice(len(people), size=2 * args.n_eval, replace=False)
    sets = {
        "lfw_a": [lfw / people[i] / f"{people[i]}_0001.jpg" for i in pick[: args.n_eval]],
        "lfw_b": [lfw / people[i] / f"{people[i]}_0001.jpg" for i in pick[args.n_eval:]],
        "celeba": sorted((data / "celeba" / "89x109").iterdir())[: args.n_eval],
    }
    ex = FinetunedInceptionExtractor(str(out / "face-inception.pt"))
    ex.load()
    stock = pretrained_inception().eval()
    pre = Preprocess("clean", args.image_size)
    feats: dict[str, dict[str, np.ndarray]] = {}
    t1 = time.perf_counter()
    for name, files in sets.items():
        pools, logits, spools = [], [], []
        for b in range(0, len(files), 50):
            batch = np.stack([pre.resize(decode_rgb(f.read_bytes())) for f in files[b:b + 50]])
            o = ex.forward({"face_inception": batch})
            pools.append(o["pool"]), logits.append(o["logits"])
            with torch.inference_mode():
                spools.append(stock(normalize(torch.from_numpy(batch).permute(0, 3, 1, 2))).numpy())
        feats[name] = {"pool": np.concatenate(pools), "logits": np.concatenate(logits),
                       "stock": np.concatenate(spools)}
    eval_s = time.perf_counter() - t1

    def fid(x: np.ndarray, y: np.ndarray) -> float:
        x, y = x.astype(np.float64), y.astype(np.float64)
        return frechet_distance(x.mean(0), np.cov(x, rowvar=False), y.mean(0), np.cov(y, rowvar=False))

    summary: dict = {
        "train": {"seconds": train_s, "validation": res.validation, "history": res.history,
                  "classes": len(res.classes), "n_train": res.n_train, "n_val": res.n_val,
                  "image_size": args.image_size, "epochs": args.epochs, "freeze_until": args.freeze_until,
                  "max_per_class": args.max_per_class, "lr": args.lr, "seed": args.seed,
                  "threads": args.threads, "load_average_at_start": load0},
        "eval": {"n_per_set": args.n_eval, "seconds": eval_s, "image_size": args.image_size},
    }
    for key, label in (("pool", "fine-tuned"), ("stock", "pretrained trunk")):
        a, b, c = feats["lfw_a"][key], feats["lfw_b"][key], feats["celeba"][key]
        summary["eval"][label] = {
            "fid_lfwA_lfwB": fid(a, b), "fid_lfwA_celeba": fid(a, c),
            "kid_lfwA_lfwB": kid(a, b, subsets=50, subset_size=min(500, args.n_eval), seed=0).value,
            "kid_lfwA_celeba": kid(a, c, subsets=50, subset_size=min(500, args.n_eval), seed=0).value,
        }
    for name in sets:
        r = inception_score_from_probs(ex.class_probabilities(feats[name]["logits"]), splits=10, seed=0)
        summary["eval"].setdefault("domain_is", {})[name] = {"mean": r.value, "std": r.std}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    v = res.validation
    print(f"trained {args.epochs} epochs in {train_s:.0f} s: {res.n_train} train / {res.n_val} val images of "
          f"{len(res.classes)} identities; validation accuracy {v['accuracy']:.3f} (chance {v['chance']:.3f})")
    for label in ("fine-tuned", "pretrained trunk"):
        e = summary["eval"][label]
        print(f"{label}: FID(LFW A, LFW B) {e['fid_lfwA_lfwB']:.2f}  FID(LFW A, CelebA) {e['fid_lfwA_celeba']:.2f}  "
              f"KID {e['kid_lfwA_lfwB']:.4f} vs {e['kid_lfwA_celeba']:.4f}")
    print("domain IS:", {k: round(x["mean"], 3) for k, x in summary["eval"]["domain_is"].items()})


if __name__ == "__main__":
    main()
