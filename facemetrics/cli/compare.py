"""``facemetrics compare RUN_A.json RUN_B.json``: paired differences B − A with intervals and p-values."""
from __future__ import annotations

from pathlib import Path

import click


@click.command("compare")
@click.argument("run_a", metavar="RUN_A", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("run_b", metavar="RUN_B", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--level", type=float, default=0.95, show_default=True,
              help="Confidence level of the intervals; differences with p < 1 - LEVEL are marked significant.")
@click.option("--draws", type=click.IntRange(min=2), default=None, metavar="B",
              help="Joint subsamples for FID/KID [default: 50]; bootstrap resamples and sign flips for the "
                   "per-sample metrics [default: 1000].")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of every draw.")
@click.option("--json", "json_out", type=click.Path(dir_okay=False, allow_dash=True), default=None,
              help="Write the comparison as JSON here ('-' for stdout instead of the table).")
def compare(run_a, run_b, level, draws, seed, json_out):
    """Paired comparison of two records of `score --json ... --keep-rows FILE.npz` on the same REAL and pairs.

    Per metric: B − A, its interval and a two-sided p-value. FID/KID: joint subsampling with one
    REAL draw shared by both runs; per-sample metrics (fsd, fss, clipscore, rprec): paired by
    caption, percentile bootstrap and a sign-flip permutation test.
    """
    from facemetrics.record import dumps
    from facemetrics.report.compare import compare_records, format_compare

    res = compare_records(run_a, run_b, level=level, draws=draws, seed=seed)
    if json_out == "-":
        click.echo(dumps(res), nl=False)
        return
    click.echo(format_compare(res), nl=False)
    if json_out:
        from facemetrics.storage.atomic import atomic_write_text, output_file

        with output_file(json_out, "the comparison", "--json"):
            atomic_write_text(json_out, dumps(res))
