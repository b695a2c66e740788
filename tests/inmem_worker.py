"""Helper process for tests/test_streaming.py (not a test module): in-memory scoring under torchrun.

``python -m torch.distributed.run --nproc-per-node 2 tests/inmem_worker.py OUT.json REAL_DIR FAKE.npy``
joins a gloo group (as a training script does), then on every rank scores the
whole FAKE array (each rank extracts its block), a ``Generated`` side whose
per-rank ``fn`` hands out that rank's block of FAKE, and a ``Metrics``
accumulator fed this rank's block in uneven batches. Rank 0 writes the three
records to OUT.json; every rank checks it got the same records.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
for p in (str(REPO), str(REPO / "tests")):
    if p not in sys.path:
        sys.path.insert(0, p)

import dist_worker  # noqa: E402,F401  (registers the "toy" extractor)

TOY = dict(extractor="toy", metrics="fid,kid,is", kid_subset_size=6, kid_subsets=20, is_splits=2, seed=3,
           progress=False, cache=False)


def main(out: str, real: str, fake_file: str) -> int:
    import torch.distributed as dist

    import facemetrics
    from facemetrics.pipeline.distributed import shard_bounds

    dist.init_process_group("gloo")
    try:
        rank, world = dist.get_rank(), dist.get_world_size()
        fake = np.load(fake_file)
        a, b = shard_bounds(len(fake), rank, world)
        pos = [a]

        def fn(bs: int) -> np.ndarray:  # this rank's block, then zeros (never used: truncated)
            rows = fake[pos[0]:min(pos[0] + bs, b)]
            pos[0] += bs
            return np.concatenate([rows, np.zeros((bs - len(rows), *fake.shape[1:]), np.uint8)])

        recs = {"array": facemetrics.score(real, fake, **TOY),
                "generator": facemetrics.score(real, facemetrics.Generated(fn, n=len(fake), batch_size=4), **TOY)}
        m = facemetrics.Metrics("fid,kid,is", real=real, extractor="toy", kid_subset_size=6, kid_subsets=20,
                                is_splits=2, seed=3, batch_size=4, cache=False)
        block = np.arange(a, b)
        for part in np.array_split(block, 3):
            m.update(fake[part])
        recs["stream"] = m.compute()
        for r in recs.values():
            r.pop("created")
        everyone = [None] * world
        dist.all_gather_object(everyone, recs)
        assert all(e == everyone[0] for e in everyone), "ranks got different records"
        if rank == 0:
            Path(out).write_text(json.dumps(recs))
    finally:
        dist.destroy_process_group()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
