#!/usr/bin/env python
"""Bounded-time reference training of the models/ producer, evaluated against its step-0 generator.

For each variant: train the DAMSM stage (if any) and checkpoint the untouched generator
(``step0.pt``), continue the same run (exact resume) until the wall-time budget is spent,
then for both checkpoints generate one image per held-out caption (EMA generator) and score:

* FID, clean preset, against the held-out real images (``run/real_test``), through
  ``facemetrics.api.score``;
* FSD / FSS (face embedder, with the pairs manifest) when ``facemetrics.pairing.face_scoring`` is
  present in this checkout;
* R-precision (1 true + 99 captions of other identities, 10 folds) with the run's own
  matcher (final checkpoint; its DAMSM/CLIP encoders are frozen after the DAMSM stage, so
  step 0 and final are scored by the same matcher). The matcher's R-precision on the real
  held-out images is reported as a sanity row.

Writes ``OUT/<variant>/results.json``, sample grids, and the markdown table
``--results`` (default ``benchmarks/RESULTS.md``) from every ``OUT/*/results.json``.

Example (what the lead runs; ~1 h per variant on CPU, or a GPU with --device cuda)::

    python benchmarks/train_reference.py --data ../shared/data --out runs/reference \\
        --variant lstm-damsm --variant clip-damsm --minutes 60 --threads 1
"""
from __future__ import annotations

import argparse
import importlib.util
import json
import platform
import shutil
import sys
import time
import warnings
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

VARIANTS = {"lstm-damsm": ("lstm", "damsm"), "lstm-clip": ("lstm", "clip"),
            "clip-damsm": ("clip", "damsm"), "clip-clip": ("clip", "clip")}


def _score(real_dir: Path, samples: Path, device: str, face: bool) -> dict:
    from facemetrics.api import score

    metrics = ["fid"] + (["fsd", "fss"] if face else [])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        rec = score(str(real_dir), str(samples), metrics=metrics, preset="clean", device=device,
                    pairs=str(samples / "pairs.jsonl"), progress=False, label=samples.name)
    out = {k: {"value": v["value"], "std": v.get("std"), "n": v.get("n")} for k, v in rec["metrics"].items()}
    out["n_real"], out["n_fake"] = rec["real"]["n"], rec["fake"]["n"]
    out["warnings"] = rec["warnings"]
    return out


def _image_ids(rows: list) -> list:
    """The real image each pairs row's caption describes: its path (unknown: the row is its own image)."""
    return [r.get("real") or f"row {i}" for i, r in enumerate(rows)]


def _rprec(matcher, samples: Path, seed: int) -> dict:
    import numpy as np
    from PIL import Image

    from models.evaluate import r_precision

    rows = [json.loads(x) for x in (samples / "pairs.jsonl").read_text().splitlines()]
    imgs = [np.asarray(Image.open(samples / r["fake"]).convert("RGB")) for r in rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ie = matcher.encode_images(imgs)
        te = matcher.encode_texts([r["caption"] for r in rows])
        return r_precision(ie, te, _image_ids(rows), [r.get("identity") for r in rows], seed=seed)


def _real_rprec(matcher, samples: Path, seed: int) -> dict:
    """The matcher on the real image each caption describes (its own upper reference)."""
    import numpy as np
    from PIL import Image

    from models.evaluate import r_precision

    rows = [json.loads(x) for x in (samples / "pairs.jsonl").read_text().splitlines()]
    cache: dict = {}
    imgs = [cache.setdefault(r["real"], np.asarray(Image.open(r["real"]).convert("RGB"))) for r in rows]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return r_precision(matcher.encode_images(imgs), matcher.encode_texts([r["caption"] for r in rows]),
                           _image_ids(rows), [r.get("identity") for r in rows], seed=seed)


def run_variant(args, name: str) -> dict:
    import torch

    from models import config as C
    from models.generate import generate
    from models.matcher import load_matcher
    from models.train import resume, train

    text, matching = VARIANTS[name]
    run = Path(args.out) / name
    sets = [f"data.root={args.data}", f"text.encoder={text}", f"loss.matching={matching}",
            f"device={args.device}", *args.set]
    cfg = C.build_config(args.config, sets)
    t0 = time.time()
    if (run / "last.pt").exists():
        raise SystemExit(f"{run} already holds a run; choose another --out")
    damsm_steps = cfg["damsm"]["steps"] if C.needs_damsm(cfg) else 0
    train(cfg, run, progress=not args.quiet, stop_at=damsm_steps)
    t_damsm = time.time() - t0
    shutil.copyfile(run / "last.pt", run / "step0.pt")
    left = max(args.minutes - t_damsm / 60.0, 0.1)
    res = resume(run, {"train": {"max_minutes": float(left)}}, progress=not args.quiet)
    t_train = time.time() - t0
    log = [json.loads(x) for x in (run / "log.jsonl").read_text().splitlines()]
    gan = [r for r in log if r.get("phase") == "gan"]
    dm = [r for r in log if r.get("phase") == "damsm"]
    face = importlib.util.find_spec("facemetrics.pairing.face_scoring") is not None
    matcher = load_matcher(str(run / "last.pt"), args.device)
    out: dict = {"variant": name, "config": args.config, "overrides": args.set, "device": args.device,
                 "threads": torch.get_num_threads(), "machine": platform.processor() or platform.machine(),
                 "minutes_budget": args.minutes, "minutes_train": round(t_train / 60, 2),
                 "minutes_damsm": round(t_damsm / 60, 2), "damsm_steps": damsm_steps,
                 "gan_steps": res["gan_step"], "status": res["status"],
                 "gan_steps_per_s": round(res["gan_step"] / max(t_train - t_damsm, 1e-9), 4),
                 "clip": matcher.identity.get("clip"), "matcher": matcher.kind,
                 "last_losses": gan[-1]["losses"] if gan else None,
                 "damsm_first_last": [dm[0]["losses"], dm[-1]["losses"]] if dm else None,
                 "face_metrics": face, "evals": {}}
    for tag, ck in (("step0", run / "step0.pt"), ("final", run / "last.pt")):
        samples = run / f"samples_{tag}"
        if samples.exists():
            shutil.rmtree(samples)
        generate(str(ck), "test", samples, seed=args.seed, device=args.device, progress=False)
        ev = _score(run / "real_test", samples, args.device, face)
        ev["rprec"] = _rprec(matcher, samples, args.seed)
        out["evals"][tag] = ev
    out["evals"]["real"] = {"rprec": _real_rprec(matcher, run / "samples_final", args.seed)}
    grids = sorted((run / "grids").glob("step_*.png"))
    out["grids"] = [str(grids[0]), str(grids[-1])] if grids else []
    if args.grid_dir and grids:
        gd = Path(args.grid_dir)
        gd.mkdir(parents=True, exist_ok=True)
        for g, tag in ((grids[0], "step0"), (grids[-1], "final")):
            shutil.copyfile(g, gd / f"{name}_{tag}.png")
        out["grids_copied"] = [f"{name}_step0.png", f"{name}_final.png"]
    out["minutes_total"] = round((time.time() - t0) / 60, 2)
    (run / "results.json").write_text(json.dumps(out, indent=1))
    return out


def _fmt(ev: dict, key: str, digits: int = 2) -> str:
    m = ev.get(key)
    if not m:
        return "n/a"
    s = f"{m['value']:.{digits}f}"
    return s + (f" ± {m['std']:.{digits}f}" if m.get("std") is not None and key == "rprec" else "")


def write_table(out_dir: Path, path: Path, grid_rel: str | None) -> None:
    results = [json.loads(p.read_text()) for p in sorted(out_dir.glob("*/results.json"))]
    lines = ["| variant | CLIP weights | DAMSM steps (min) | GAN steps (steps/s) | wall min | generator | "
             "FID ↓ (clean) | FSD ↓ | FSS ↑ | R-prec ↑ (own matcher) | n fake / n real |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        clip = "—" if not r.get("clip") else ("random (no pretrained CLIP offline)" if r["clip"]["weights"] == "random"
                                              else f"file {r['clip']['sha256'][:12]}")
        for tag, label in (("step0", "untrained (step 0)"), ("final", "trained, EMA")):
            ev = r["evals"][tag]
            lines.append(
                f"| {r['variant']} | {clip} | {r['damsm_steps']} ({r['minutes_damsm']}) | "
                f"{r['gan_steps']} ({r['gan_steps_per_s']}) | "
                f"{r['minutes_train']} | {label} | {_fmt(ev, 'fid', 1)} | {_fmt(ev, 'fsd', 3)} | "
                f"{_fmt(ev, 'fss', 3)} | {_fmt(ev, 'rprec', 3)} ({r['matcher']}) | {ev['n_fake']} / {ev['n_real']} |")
        lines.append(f"| {r['variant']} | | | | | real held-out images | | | | "
                     f"{_fmt(r['evals']['real'], 'rprec', 3)} ({r['matcher']}) | |")
    body = "\n".join(lines)
    grids = ""
    if grid_rel:
        grids = "\n\nSample grids (EMA generator, fixed noise, the first held-out caption of 16 held-out people; " \
                "the captions are in each run folder's `grids/captions.txt`, not copied here: Face2Text text " \
                "must not be redistributed):\n\n" + "\n".join(
                    f"- {r['variant']}: step 0 `{grid_rel}/{r['variant']}_step0.png`, "
                    f"final `{grid_rel}/{r['variant']}_final.png`" for r in results)
    meta = dict(results[0]) if results else {}
    try:
        meta["config"] = Path(meta.get("config", "")).resolve().relative_to(REPO).as_posix()
    except ValueError:
        pass
    text = f"""## models/ reference training: results

Produced by `benchmarks/train_reference.py` (config `{meta.get('config')}`, overrides {meta.get('overrides')},
device {meta.get('device')}, {meta.get('threads')} torch thread(s), machine `{meta.get('machine')}`). Face2Text v0.1
(LFW), identity-disjoint split (80 of 400 people held out), 64×64, one image per held-out caption,
noise seed 0. Wall-time budget per variant: {meta.get('minutes_budget')} min (DAMSM stage included).

{body}

Notes
- "untrained (step 0)" is the same run's generator before its first GAN step (after the DAMSM
  stage), scored with the same matcher, so the rows differ only by GAN training.
- FID uses ~250 generated and 80 real images: far fewer than the 2048 feature dimensions, so the
  covariances are rank-deficient and FID is biased upwards; compare rows of this table only.
- R-precision: 1 true caption + 99 captions of other identities, 10 folds (mean ± population std),
  matcher = the run's own frozen DAMSM (BiLSTM or CLIP text + CNN image encoder) or CLIP; chance
  level is 0.01. The "real held-out images" row scores the matcher itself on the real images the
  captions describe: near chance means the matcher is undertrained at this budget (AttnGAN trains
  DAMSM for ~600 epochs; a bounded CPU stage gives it tens).
- Generated rows can score *above* the real images with the run's own matcher: G is trained with
  λ · (DAMSM or CLIP matching loss) against these very frozen encoders, so it learns what this
  matcher rewards, which need not be what the caption says. With the matcher near chance on real
  images, a high generated R-precision measures that optimisation, not text fidelity; an
  independent matcher (pretrained CLIP via `facemetrics score --metrics rprec --matcher clip:...`)
  avoids the bias, but none is available offline here.
- "wall min" is the training time (DAMSM + GAN, including step-0/final sample grids); evaluation
  time is extra.
- FSD/FSS: dlib face-descriptor L2 distance / cosine similarity between each generated image and
  the real image of its caption (`facemetrics score --pairs`), averaged; "n/a" when the
  face-metrics code (facemetrics.pairing.face_scoring) is not in the checkout that ran this script.
- No pretrained CLIP weights exist offline here: the clip variants use a randomly initialised
  ViT-B-32 (seed clip.init_seed); its text features are random projections of the BPE tokens.{grids}
"""
    # Only this script's own section is rewritten; the other benchmarks' sections stay.
    start, end = "<!-- train_reference:start -->", "<!-- train_reference:end -->"
    block = f"{start}\n{text.rstrip()}\n{end}"
    doc = path.read_text() if path.exists() else "# Benchmark results\n"
    if start in doc and end in doc:
        doc = doc[:doc.index(start)] + block + doc[doc.index(end) + len(end):]
    else:
        doc = doc.rstrip() + "\n\n" + block + "\n"
    from facemetrics.storage.atomic import atomic_write_text

    atomic_write_text(path, doc)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="folder holding face2text/, lfw/")
    ap.add_argument("--out", required=True, help="folder for the runs")
    ap.add_argument("--variant", action="append", choices=sorted(VARIANTS), default=None)
    ap.add_argument("--minutes", type=float, default=10.0, help="wall-time budget per variant (DAMSM + GAN)")
    ap.add_argument("--config", default=str(REPO / "models" / "configs" / "face2text_64_cpu.yaml"))
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--device", default="auto")
    ap.add_argument("--threads", type=int, default=None, help="torch CPU threads (1 is fastest on a busy machine)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--results", default=str(REPO / "benchmarks" / "RESULTS.md"))
    ap.add_argument("--grid-dir", default=str(REPO / "benchmarks" / "results"),
                    help="copy the step-0 and final grids here ('' to skip)")
    ap.add_argument("--table-only", action="store_true", help="only rebuild the table from OUT/*/results.json")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args()
    if args.threads:
        import torch

        torch.set_num_threads(args.threads)
    from models.system import resolve_device

    args.device = str(resolve_device(args.device))
    if not args.table_only:
        for v in args.variant or ["lstm-damsm", "clip-damsm"]:
            r = run_variant(args, v)
            print(json.dumps({k: r[k] for k in ("variant", "gan_steps", "minutes_total")}
                             | {t: {m: e[m]["value"] for m in e if isinstance(e[m], dict) and "value" in e[m]}
                                for t, e in r["evals"].items()}), flush=True)
    rel = None
    if args.grid_dir:
        try:
            rel = Path(args.grid_dir).resolve().relative_to(Path(args.results).resolve().parent).as_posix()
        except ValueError:
            rel = args.grid_dir
    write_table(Path(args.out), Path(args.results), rel)
    print(f"wrote {args.results}")


if __name__ == "__main__":
    main()
