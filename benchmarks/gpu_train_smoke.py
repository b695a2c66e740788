#!/usr/bin/env python
"""GPU training smoke test: a few DAMSM steps + N GAN steps per variant; steps/s and peak memory.

Paper-default widths (gf 32, df 64, Z 100, condition 100, embedding 256, batch 20, CLIP
ViT-B-32 with random weights). Data: Face2Text v0.1 under ``--data`` or ``synthetic``
(generated images and captions: same pipeline and tensor shapes, for timing only).
GAN steps/s is measured after ``--warmup`` steps (cuDNN autotuning, caches), from the
training log (each step ends in a host sync through ``loss.item()``).

    python benchmarks/gpu_train_smoke.py --data ../shared/data --steps 200 --device cuda
"""
from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def measure(args, variant: str, resolution: int, out: Path) -> dict:
    import torch

    from models import config as C
    from models.train import train

    text, matching = variant.split("-")
    sets = [f"device={args.device}", f"text.encoder={text}", f"loss.matching={matching}",
            f"model.resolution={resolution}", "text.words_num=32", f"train.batch_size={args.batch_size}",
            f"damsm.steps={args.damsm_steps}", "damsm.batch_size=32", f"train.steps={args.warmup + args.steps}",
            f"train.log_every={args.warmup}", "train.sample_every=0", "train.checkpoint_every=0",
            "train.eval_every=0", f"train.amp={args.amp}", "data.num_workers=4", *args.set]
    if args.data == "synthetic":
        sets += ["data.dataset=synthetic", "data.synthetic_images=512"]
    else:
        sets += [f"data.root={args.data}"]
    cfg = C.build_config(None, sets)
    run = out / f"{variant}_{resolution}"
    if torch.cuda.is_available():
        torch.cuda.reset_peak_memory_stats()
    t0 = time.time()
    res = train(cfg, run, progress=False)
    wall = time.time() - t0
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    start = log[0]
    gan = [r for r in log if r.get("phase") == "gan"][1:]  # drop the warm-up interval
    dm = [r for r in log if r.get("phase") == "damsm"]
    steps = sum(r["steps"] for r in gan)
    secs = sum(r["steps"] / r["steps_per_s"] for r in gan)
    row = {"variant": variant, "resolution": resolution, "batch_size": args.batch_size,
           "gan_steps_timed": steps, "gan_steps_per_s": round(steps / secs, 3) if secs else None,
           "images_per_s": round(steps * args.batch_size / secs, 1) if secs else None,
           "damsm_steps": sum(r["steps"] for r in dm),
           "damsm_steps_per_s": round(sum(r["steps"] for r in dm) / sum(r["steps"] / r["steps_per_s"] for r in dm), 3)
           if dm else None,
           "amp": start["amp"], "status": res["status"], "wall_s": round(wall, 1),
           "losses_finite": all(all(v == v and abs(v) != float("inf") for v in r["losses"].values())
                                for r in log if "losses" in r),
           "last_losses": {k: round(v, 3) for k, v in gan[-1]["losses"].items()} if gan else None}
    if torch.cuda.is_available():
        row["peak_mem_gib"] = round(torch.cuda.max_memory_allocated() / 2**30, 2)
    return row


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="synthetic", help="data folder (face2text/, lfw/) or 'synthetic'")
    ap.add_argument("--steps", type=int, default=200, help="timed GAN steps per variant")
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--damsm-steps", type=int, default=20)
    ap.add_argument("--batch-size", type=int, default=20)
    ap.add_argument("--variant", action="append", default=None,
                    choices=["lstm-damsm", "lstm-clip", "clip-damsm", "clip-clip"])
    ap.add_argument("--resolution", action="append", type=int, default=None, choices=[64, 128, 256])
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--amp", default="auto", choices=["auto", "off", "bf16", "fp16"])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--out", default=None, help="folder for the runs and gpu_smoke.json [default: a temp dir]")
    args = ap.parse_args()
    import torch

    env = {"torch": torch.__version__, "python": platform.python_version(),
           "cuda": torch.version.cuda, "cuda_available": torch.cuda.is_available(),
           "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
    print(json.dumps(env), flush=True)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("error: --device cuda but CUDA is not available on this machine", file=sys.stderr)
        return 2
    out = Path(args.out or tempfile.mkdtemp(prefix="gpu_smoke_"))
    rows = []
    for res in args.resolution or [64]:
        for v in args.variant or ["lstm-damsm", "clip-damsm", "clip-clip"]:
            try:
                row = measure(args, v, res, out)
            except Exception as e:  # noqa: BLE001 - report and go on with the other variants
                import traceback

                traceback.print_exc()
                row = {"variant": v, "resolution": res, "batch_size": args.batch_size, "error": repr(e)[:300],
                       "gan_steps_per_s": None, "images_per_s": None, "damsm_steps_per_s": None, "amp": None,
                       "losses_finite": False}
            rows.append(row)
            print(json.dumps(row), flush=True)
    (out / "gpu_smoke.json").write_text(json.dumps({"env": env, "args": vars(args), "rows": rows}, indent=1))
    print("\n| variant | res | batch | GAN steps/s | img/s | DAMSM steps/s | AMP | peak GiB | finite |")
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['variant']} | {r['resolution']} | {r['batch_size']} | {r['gan_steps_per_s']} | "
              f"{r['images_per_s']} | {r['damsm_steps_per_s']} | {r['amp']} | {r.get('peak_mem_gib')} | "
              f"{r['losses_finite']} |")
    return 0 if all(r["losses_finite"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
