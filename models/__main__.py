"""``python -m models train|generate|sweep``: the reference producer's command line.

User mistakes (unknown config keys, wrong files, a checkpoint of another variant,
captions over the encoder's limit with ``--long-captions error``) become click usage
errors (exit status 2) naming the option at fault.
"""
from __future__ import annotations

import json
import sys

import click

from facemetrics.cli.errors import user_errors
from facemetrics.errors import FacemetricsError


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
def cli() -> None:
    """Reference text-to-face producer: AttnGAN with BiLSTM/DAMSM or CLIP text, trained on Face2Text."""


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML config (keys as in models/config.py DEFAULTS); defaults when omitted")
@click.option("--data", "data_root", type=click.Path(file_okay=False), default=None,
              help="data folder holding face2text/, lfw/, celeba/ (sets data.root)")
@click.option("--out", "out", type=click.Path(file_okay=False), default=None, help="new run folder")
@click.option("--resume", "resume_dir", type=click.Path(file_okay=False), default=None,
              help="continue the run in this folder from its last.pt")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE",
              help="override a config key, e.g. --set train.batch_size=16 (repeatable)")
@click.option("--device", default=None, help="auto, cpu, cuda, cuda:N, mps (sets device)")
@click.option("--seed", type=int, default=None, help="sets seed")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="GAN steps (sets train.steps)")
@click.option("--max-minutes", type=click.FloatRange(min=0), default=None,
              help="stop with a checkpoint after this wall time (sets train.max_minutes)")
@click.option("--stop-at", type=click.IntRange(min=1), default=None,
              help="stop with a checkpoint at this global step (DAMSM + GAN steps), as if interrupted")
@click.option("--show-config", is_flag=True, help="print the resolved config and exit")
@click.option("--threads", type=click.IntRange(min=1), default=None,
              help="CPU threads for torch [default: torch's choice]; 1 is fastest on a busy machine")
@click.option("--quiet", is_flag=True, help="no progress bar")
@user_errors
def train(config_path, data_root, out, resume_dir, overrides, device, seed, steps, max_minutes, stop_at,
          show_config, threads, quiet):
    """Train a variant (config + overrides), or continue one with --resume.

    Data-parallel on several processes or GPUs: ``torchrun --nproc-per-node K -m models train ...``
    (same arguments; the global batch train.batch_size is split over the K ranks, and the run
    equals a single-process run up to float rounding; a run may be resumed with another K)."""
    from models import config as C

    _threads(threads)
    extra = list(overrides)
    if data_root is not None:
        extra.append(f"data.root={json.dumps(data_root)}")
    if device is not None:
        extra.append(f"device={json.dumps(device)}")
    if seed is not None:
        extra.append(f"seed={seed}")
    if steps is not None:
        extra.append(f"train.steps={steps}")
    if max_minutes is not None:
        extra.append(f"train.max_minutes={max_minutes}")
    if resume_dir is not None:
        if out is not None and out != resume_dir:
            raise FacemetricsError("--resume continues a run in its own folder; drop --out", "--out")
        from models.system import load_checkpoint
        from models.train import resume

        file_cfg = C.build_config(config_path, []) if config_path else None
        merged: dict = {}
        for item in extra:
            C.merge(C.DEFAULTS, C.parse_override(item), f"override {item!r}", "--set")  # key/type check
            merged = _deep(merged, C.parse_override(item))
        if show_config:
            ck = load_checkpoint(resume_dir, param="--resume")
            click.echo(C.to_yaml(C.merge(ck["config"], merged, "overrides", "--set")))
            return
        res = resume(resume_dir, merged, config_file_cfg=file_cfg, progress=not quiet, stop_at=stop_at)
    else:
        cfg = C.build_config(config_path, extra)
        if show_config:
            click.echo(C.to_yaml(cfg))
            return
        if out is None:
            raise FacemetricsError("give a run folder with --out (or continue one with --resume)", "--out")
        from models.train import train as run_train

        res = run_train(cfg, out, progress=not quiet, stop_at=stop_at)
    from facemetrics.pipeline.distributed import is_main_process

    if is_main_process():  # under torchrun every rank returns the same result; rank 0 reports it
        click.echo(json.dumps(res))


def _threads(n: int | None) -> None:
    if n:
        import torch

        torch.set_num_threads(n)


def _deep(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _deep(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


@cli.command()
@click.option("--checkpoint", required=True, type=click.Path(), help="a run's last.pt (or its run folder)")
@click.option("--captions", default="test",
              help="test / train (the checkpoint's split) or a .txt (one per line) / .jsonl file")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="output folder for PNGs + pairs.jsonl")
@click.option("--n-per-caption", type=click.IntRange(min=1), default=1)
@click.option("--seed", type=int, default=0, help="noise seed")
@click.option("--batch-size", type=click.IntRange(min=1), default=32)
@click.option("--device", default="auto")
@click.option("--ema/--no-ema", default=True, help="use the EMA generator")
@click.option("--long-captions", type=click.Choice(["truncate", "error"]), default=None,
              help="captions over the text encoder's limit [default: the run's text.long_captions]")
@click.option("--data", "data_root", type=click.Path(file_okay=False), default=None,
              help="data folder, if it moved since training")
@click.option("--limit", type=click.IntRange(min=0), default=0, help="first N captions only (0 = all)")
@click.option("--overwrite", is_flag=True, help="replace images already in --out")
@click.option("--variant", "expect_variant", default=None,
              type=click.Choice(["lstm-damsm", "lstm-clip", "clip-damsm", "clip-clip"]),
              help="refuse a checkpoint of another variant")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for torch")
@click.option("--quiet", is_flag=True)
@user_errors
def generate(checkpoint, captions, out, n_per_caption, seed, batch_size, device, ema, long_captions, data_root,
             limit, overwrite, expect_variant, threads, quiet):
    """Generate images for captions and write the pairs manifest facemetrics reads."""
    import warnings

    _threads(threads)
    from models.generate import generate as run_generate

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        meta = run_generate(checkpoint, captions, out, n_per_caption=n_per_caption, seed=seed,
                            batch_size=batch_size, device=device, ema=ema, long_captions=long_captions,
                            data_root=data_root, limit=limit, overwrite=overwrite,
                            expect_variant=expect_variant, progress=not quiet)
    for w in caught:
        if "truncated" in str(w.message):
            click.echo(f"warning: {w.message}", err=True)
    click.echo(json.dumps({k: meta[k] for k in ("variant", "step", "n_images", "truncated_captions")}
                          | {"out": str(out), "pairs": f"{out}/pairs.jsonl"}))


@cli.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="YAML config every cell starts from (defaults when omitted)")
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2,...",
              help="a config key and its values, e.g. --grid loss.lambda=1,5,10 (repeatable: the cells are the "
                   "cartesian product, first --grid slowest)")
@click.option("--minutes", required=True, type=click.FloatRange(min=0, min_open=True),
              help="training budget of each cell: wall time over every resume, DAMSM stage included "
                   "(sets train.budget_minutes)")
@click.option("--out", required=True, type=click.Path(file_okay=False), help="sweep folder (rerun to resume)")
@click.option("--data", "data_root", type=click.Path(file_okay=False), default=None,
              help="data folder holding face2text/, lfw/, celeba/ (sets data.root)")
@click.option("--set", "overrides", multiple=True, metavar="KEY=VALUE", help="override a config key in every cell")
@click.option("--device", default="auto", help="auto, cpu, cuda, cuda:N, mps (train, generate and score)")
@click.option("--devices", default=None, metavar="LIST",
              help="with --parallel: comma-separated devices handed out to the running cells (e.g. cuda:0,cuda:1)")
@click.option("--parallel", type=click.IntRange(min=1), default=1, help="cells run at the same time (processes)")
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads of each cell's processes")
@click.option("--matcher", default=None, metavar="SPEC",
              help="R-precision matcher for every cell (facemetrics score --matcher), e.g. damsm:OTHER/last.pt; "
                   "default: each cell's own DAMSM encoders, labelled as such (not comparable across cells)")
@click.option("--metrics", default=",".join(("fid", "fsd", "fss", "rprec")), help="facemetrics score --metrics")
@click.option("--sort", default="fid", help="rank the cells by this metric")
@click.option("--limit", type=click.IntRange(min=0), default=0,
              help="generate for the first N held-out captions only (0 = all)")
@click.option("--gen-seed", type=int, default=0, help="noise seed of generate")
@click.option("--score-seed", type=int, default=0, help="seed of facemetrics score (R-precision negatives)")
@click.option("--ci", default=None, is_flag=False, flag_value="", metavar="[VALUE]",
              help="pass --ci [VALUE] to facemetrics score when its score command has that option (else a warning)")
@click.option("--quiet", is_flag=True, help="no progress lines")
@user_errors
def sweep(config_path, grid, minutes, out, data_root, overrides, device, devices, parallel, threads, matcher,
          metrics, sort, limit, gen_seed, score_seed, ci, quiet):
    """Train every cell of a grid under a time budget, generate, score with facemetrics and rank the cells.

    Each cell is OUT/<key>=<value>,... (a run folder, samples, metrics.json, grid.png); OUT/sweep.json
    records the grid, budget, seeds and each cell's status; OUT/report.md|csv|html rank the scored cells.
    Rerunning the same command resumes: finished cells are not retrained, an interrupted one continues
    (train --resume) with what is left of its budget."""
    from pathlib import Path

    from models.sweep import SweepOptions, sweep as run_sweep

    opts = SweepOptions(
        grid=list(grid), minutes=minutes, out=Path(out), config=config_path, data=data_root,
        overrides=list(overrides), device=device, threads=threads, matcher=matcher,
        metrics=tuple(m.strip() for m in metrics.split(",") if m.strip()), sort=sort.strip(), limit=limit,
        gen_seed=gen_seed, score_seed=score_seed, parallel=parallel,
        devices=[d.strip() for d in devices.split(",") if d.strip()] if devices else None, ci=ci, quiet=quiet)
    res = run_sweep(opts, say=(lambda m: None) if quiet else (lambda m: click.echo(m, err=True)))
    click.echo(res.pop("markdown"))
    click.echo(json.dumps(res))
    if res["failed"]:
        sys.exit(1)


def main() -> None:
    cli(prog_name="python -m models")


if __name__ == "__main__":
    sys.exit(main())
