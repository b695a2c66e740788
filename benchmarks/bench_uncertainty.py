#!/usr/bin/env python
"""Cost of the intervals (``--ci``) and of FID∞ relative to plain FID, on LFW faces.

  python benchmarks/bench_uncertainty.py [--n 1000] [--data /work/shared/data] [--draws 50] [--device cpu]

REAL = the first image of N LFW people, FAKE = the first image of the next N people (links
in a temporary folder; nothing is copied). One :func:`facemetrics.pipeline.planner.plan` /
``run`` extracts the Inception features of both sides (the only decoding: every call of
``facemetrics.imaging.images.decode_rgb`` is counted and the script asserts that each image
was decoded exactly once), then the metric step is timed alone on those features:

  fid (no interval) | fid + subsampling interval | kid (no interval) | kid + interval | fid_inf

and printed with its ratio to plain FID's metric step, next to the extraction time.
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def lfw_folders(data: Path, n: int, base: Path) -> tuple[Path, Path]:
    root = data / "lfw" / "deepfunneled"
    people = sorted(p.name for p in root.iterdir() if p.is_dir())
    if len(people) < 2 * n:
        raise SystemExit(f"LFW has {len(people)} people; --n {n} needs {2 * n}")
    out = []
    for side, chunk in (("real", people[:n]), ("fake", people[n:2 * n])):
        d = base / side
        d.mkdir()
        for i, p in enumerate(chunk):
            (d / f"{i:05d}_{p}_0001.jpg").symlink_to(root / p / f"{p}_0001.jpg")
        out.append(d)
    return out[0], out[1]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000, help="images per side")
    ap.add_argument("--data", type=Path, default=Path(os.environ.get("FACEMETRICS_DATA", REPO.parent / "shared" / "data")))
    ap.add_argument("--draws", type=int, default=None, help="--ci-draws (default: 50 subsamples)")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--batch-size", type=int, default=32)
    args = ap.parse_args()

    import facemetrics.imaging.images as im
    from facemetrics.metrics.registry import compute_all, resolve
    from facemetrics.options import ScoreOptions
    from facemetrics.pipeline import planner
    from facemetrics.pipeline.distributed import session
    from facemetrics.storage.cacheio import cache_disabled

    decodes = [0]
    orig = im.decode_rgb

    def counting(data):
        decodes[0] += 1
        return orig(data)

    im.decode_rgb = counting
    import warnings

    warnings.simplefilter("ignore")
    with tempfile.TemporaryDirectory() as tmp:
        real, fake = lfw_folders(args.data, args.n, Path(tmp))
        opts = ScoreOptions(metrics="fid,kid,fid_inf", ci=0.0, ci_draws=args.draws, cache=False, progress=False,
                            device=args.device, batch_size=args.batch_size)
        specs = resolve(opts.metrics)
        with cache_disabled(True), session(opts.device) as ctx:
            t0 = time.perf_counter()
            plan = planner.plan(ctx, str(real), str(fake), specs, opts)
            outcome = planner.run(plan)
            t_extract = time.perf_counter() - t0
        n_images = plan.fake_src and len(plan.fake_src) + len(plan.real_src)
        assert decodes[0] == n_images, f"{decodes[0]} decodes for {n_images} images"

        inputs = outcome.inputs

        def timed(metric: str, ci: float) -> tuple[float, object]:
            inputs.options = dataclasses.replace(opts, ci=ci)
            t = time.perf_counter()
            res = compute_all(resolve(metric)[:1], inputs)
            return time.perf_counter() - t, res[metric]

        rows = []
        base, fid0 = timed("fid", 0.0)
        for label, metric, ci in (("fid", "fid", 0.0), ("fid + 95% interval", "fid", 0.95), ("kid", "kid", 0.0),
                                  ("kid + 95% interval", "kid", 0.95), ("fid_inf", "fid_inf", 0.0)):
            dt, res = timed(metric, ci)
            iv = f"[{res.ci['lo']:.4g}, {res.ci['hi']:.4g}]" if res.ci else ""
            rows.append((label, dt, dt / base, f"{res.value:.5g} {iv}"))
        assert decodes[0] == n_images, "an image was decoded again by a metric step"

    print(f"n = {args.n} per side, device {args.device}; extraction (decode + Inception, both sides): "
          f"{t_extract:.1f} s; decodes {decodes[0]} (= images: each decoded once)")
    print(f"{'metric step':<22}{'seconds':>10}{'x plain FID':>13}  value [interval]")
    for label, dt, ratio, val in rows:
        print(f"{label:<22}{dt:>10.2f}{ratio:>13.1f}  {val}")
    total = t_extract + rows[0][1]
    print(f"whole run, plain FID: {total:.1f} s; + FID interval: {t_extract + rows[1][1]:.1f} s "
          f"({(t_extract + rows[1][1]) / total:.2f}x); + FID∞: {t_extract + rows[4][1]:.1f} s "
          f"({(t_extract + rows[4][1]) / total:.2f}x)")


if __name__ == "__main__":
    main()
