"""``facemetrics merge-stats``: combine ``stats --shard I/N`` files into one statistics file."""
from __future__ import annotations

import click

from facemetrics.errors import FacemetricsError


@click.command("merge-stats")
@click.argument("shards", nargs=-1, required=True, metavar="SHARD.npz...")
@click.option("-o", "--out", required=True, type=click.Path(dir_okay=False), help="Output .npz (usable as REAL).")
def merge_stats(shards, out):
    """Merge the shard files of `facemetrics stats FOLDER --shard I/N` into statistics of the whole FOLDER.

    Every shard 1..N must be given exactly once, all made with the same protocol
    (extractor, weights, preset) from the same folder; otherwise nothing is
    written and the error names the offending or missing shards. Per-image
    features are kept (in file order) when every shard has them.
    """
    from facemetrics.pipeline.shards import merge_shards

    if not out.endswith(".npz"):
        raise FacemetricsError(f"output must end in .npz: {out}", "--out")
    from facemetrics.storage.atomic import output_file

    st, feats = merge_shards(list(shards))
    with output_file(out, "the statistics file", "--out"):
        st.save(out, feats)
    extra = f" features={len(feats)}" if feats is not None else ""
    click.echo(f"{out}: n={st.n} dims={st.dims} from {st.meta['merged_from']['count']} shards{extra}")
