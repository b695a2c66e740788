"""``facemetrics report`` (comparison tables) and ``facemetrics plot`` (curves, sample grids)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import click

from facemetrics.cli.errors import user_errors
from facemetrics.errors import FacemetricsError


def _emit(text: str | bytes, output: Path | None) -> None:
    """Write atomically to ``output``, or to stdout."""
    from facemetrics.storage.atomic import atomic_write_bytes

    if output is None:
        if isinstance(text, bytes):
            raise FacemetricsError("a PNG cannot go to the terminal: give -o FILE.png", "-o")
        click.echo(text, nl=False)
    else:
        atomic_write_bytes(output, text if isinstance(text, bytes) else text.encode("utf-8"))


def _load_compare(path: Path) -> dict:
    import json

    try:
        res = json.loads(Path(path).read_text())
    except (OSError, ValueError) as e:
        raise FacemetricsError(f"cannot read comparison {path}: {e}", "--compare") from None
    if not isinstance(res, dict) or res.get("schema") != "facemetrics.compare/1":
        raise FacemetricsError(f"{path} is not a `facemetrics compare --json` result", "--compare")
    return res


@click.command("report")
@click.argument("records", nargs=-1, required=True, type=click.Path(path_type=Path), metavar="RECORDS...")
@click.option("--format", "fmt", type=click.Choice(["markdown", "csv", "html"]), default="markdown",
              show_default=True, help="Output format.")
@click.option("--sort", default=None, metavar="METRIC", help="Best first by this metric (e.g. fid, rprec).")
@click.option("--metrics", default=None, metavar="LIST", help="Comma-separated metrics to show [default: all].")
@click.option("--force", is_flag=True, help="Tabulate numbers from different protocols in one column "
              "(the differences are listed under the table).")
@click.option("--curves", multiple=True, type=click.Path(dir_okay=False, path_type=Path), metavar="LOG.jsonl",
              help="HTML only: add metric-vs-step curves of these training logs (repeatable).")
@click.option("--grid", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="PAIRS",
              help="HTML only: add a sample grid from this pairs manifest (needs --fake).")
@click.option("--fake", "fake_root", type=click.Path(path_type=Path), default=None,
              help="Folder/zip of the generated images named in --grid.")
@click.option("--real", "real_root", type=click.Path(path_type=Path), default=None,
              help="Root of relative real-image paths in --grid.")
@click.option("--compare", "comparisons", multiple=True, type=click.Path(dir_okay=False, path_type=Path),
              metavar="CMP.json", help="Results of `facemetrics compare --json`: mark B's significant "
              "differences from A with * (repeatable).")
@click.option("--title", default="facemetrics report", show_default=True, help="HTML page title.")
@click.option("-o", "--output", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Write here (atomically) instead of stdout.")
@user_errors
def report(records, **options):
    """Compare scoring records (JSON from `facemetrics score --json`): one row per run, one column per metric.

    RECORDS are record files or folders (every record *.json below). Columns never
    mix protocols (preset, extractor weights, matcher, sample counts, ...) unless --force.
    """
    from facemetrics.report.tables import build_table, load_records, render

    o = ReportOptions(**options)
    if (o.curves or o.grid) and o.fmt != "html":
        raise FacemetricsError("--curves/--grid embed figures in HTML: add --format html, or use "
                               "`facemetrics plot curves|grid` for PNG files", "--format")
    if o.grid and o.fake_root is None:
        raise FacemetricsError("--grid needs --fake (the folder of the generated images)", "--fake")
    wanted = [m.strip() for m in o.metrics.split(",") if m.strip()] if o.metrics else None
    cmps = [_load_compare(c) for c in o.comparisons]
    table = build_table(load_records(list(records)), sort=o.sort, force=o.force, metrics=wanted, comparisons=cmps)
    kw = {"title": o.title, "images": _figures(o)} if o.fmt == "html" else {}
    for note in table.notes:
        click.echo(f"warning: protocols differ: {note}", err=True)
    _emit(render(table, o.fmt, **kw), o.output)


@dataclass(frozen=True)
class ReportOptions:
    """The options of ``facemetrics report`` besides RECORDS (see its flags)."""

    fmt: str
    sort: str | None
    metrics: str | None
    force: bool
    curves: tuple[Path, ...]
    grid: Path | None
    fake_root: Path | None
    real_root: Path | None
    comparisons: tuple[Path, ...]
    title: str
    output: Path | None


def _figures(o: ReportOptions) -> list[tuple[str, bytes]]:
    """The HTML report's embedded PNGs: training curves, then the sample grid."""
    images = []
    if o.curves:
        from facemetrics.report.plots import plot_curves

        images.append(("Metrics during training", plot_curves(list(o.curves))))
    if o.grid:
        from facemetrics.report.plots import grid_from_manifest, png_bytes

        images.append(("Generated next to real", png_bytes(grid_from_manifest(o.grid, o.fake_root, o.real_root))))
    return images


@click.group("plot")
def plot() -> None:
    """PNG figures: training curves, sample grids, the FID∞/IS∞ fit."""


@plot.command("curves")
@click.argument("logs", nargs=-1, required=True, type=click.Path(dir_okay=False, path_type=Path), metavar="LOG.jsonl...")
@click.option("--metrics", default=None, metavar="LIST", help="Comma-separated metrics [default: all in the logs].")
@click.option("--dpi", type=click.IntRange(min=30, max=600), default=100, show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .png.")
@user_errors
def curves_cmd(logs, metrics, dpi, output):
    """Metric-vs-training-step curves, one panel per metric, one line per log."""
    from facemetrics.report.plots import plot_curves

    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    _emit(plot_curves(list(logs), wanted, dpi=dpi), output)
    click.echo(str(output))


@plot.command("grid")
@click.argument("fake", type=click.Path(path_type=Path), metavar="FAKE")
@click.option("--pairs", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="Pairs manifest (fake, caption, real).")
@click.option("--real", "real_root", type=click.Path(path_type=Path), default=None,
              help="Root of relative real-image paths.")
@click.option("-n", "--samples", type=click.IntRange(min=1), default=8, show_default=True)
@click.option("--cols", type=click.IntRange(min=1), default=4, show_default=True, help="Tiles per row.")
@click.option("--cell", type=click.IntRange(min=16, max=1024), default=128, show_default=True,
              help="Image size in pixels.")
@click.option("--seed", type=int, default=0, show_default=True, help="Which rows are drawn.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .png.")
@user_errors
def grid_cmd(fake, pairs, real_root, samples, cols, cell, seed, output):
    """Generated images next to the real image of their caption, caption underneath."""
    from facemetrics.report.plots import grid_from_manifest, png_bytes

    img = grid_from_manifest(pairs, fake, real_root, n=samples, seed=seed, cell=cell, cols=cols)
    _emit(png_bytes(img), output)
    click.echo(str(output))


@plot.command("fid-inf")
@click.argument("record", type=click.Path(dir_okay=False, path_type=Path), metavar="RECORD.json")
@click.option("--metrics", default=None, metavar="LIST", help="fid_inf, is_inf [default: those in the record].")
@click.option("--dpi", type=click.IntRange(min=30, max=600), default=100, show_default=True)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path), help="Output .png.")
@user_errors
def fid_inf_cmd(record, metrics, dpi, output):
    """FID (and IS) at the sample sizes of a record's fid_inf (is_inf) against 1/N, with the fitted line."""
    from facemetrics.report.plots import plot_extrapolation
    from facemetrics.report.tables import load_records

    rec = load_records([record])[0].record
    wanted = [m.strip() for m in metrics.split(",") if m.strip()] if metrics else None
    _emit(plot_extrapolation(rec, wanted, dpi=dpi), output)
    click.echo(str(output))
