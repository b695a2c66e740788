"""Helper process for tests/test_distributed.py (not a test module).

* ``ToyExtractor``: a small deterministic extractor (16×16 PIL downscale, fixed
  seeded projections) with a ``pool`` and a ``logits`` output, so that IS and the
  failure paths can be tested across processes without the cost of Inception. It
  is registered as extractor ``toy`` when this module is imported.
* ``python tests/dist_worker.py cli ARGS...``: run ``facemetrics ARGS...`` (the real
  CLI) in this process, after registering ``toy``. ``FM_TEST_FAIL=die|raise`` with
  ``FM_TEST_FAIL_RANK=r`` makes rank r exit abruptly (``os._exit(3)``, as a
  killed or OOM-killed process would) or raise ``RuntimeError`` when it starts
  extracting features.
* ``python tests/dist_worker.py multi CMDFILE``: join the process group here, run
  each line of CMDFILE (a JSON list of argument lists) as one CLI command inside
  that group, then leave it (tests the "group initialised by the caller" path).
"""
from __future__ import annotations

import functools
import json
import os
import sys
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from facemetrics.extractors import register_extractor  # noqa: E402
from facemetrics.extractors.base import FeatureExtractor  # noqa: E402

SIDE = 16
DIMS = 24
CLASSES = 10


def _toy_prep(img: np.ndarray, size: int) -> dict[str, np.ndarray]:
    from PIL import Image

    small = Image.fromarray(img).resize((size, size), Image.BILINEAR)
    return {"x": np.asarray(small, dtype=np.float32).reshape(-1) / 255.0}


class ToyExtractor(FeatureExtractor):
    """pool = tanh(x W₁), logits = 3·pool W₂ with W₁, W₂ drawn from default_rng(1234)."""

    name = "toy"
    outputs = ("pool", "logits")

    def __init__(self) -> None:
        rng = np.random.default_rng(1234)
        self.w1 = rng.normal(size=(SIDE * SIDE * 3, DIMS)) / np.sqrt(SIDE * SIDE * 3)
        self.w2 = rng.normal(size=(DIMS, CLASSES))

    def preprocessor(self):
        return functools.partial(_toy_prep, size=SIDE)

    def forward(self, batch):
        x = np.asarray(batch["x"], dtype=np.float64)
        pool = np.tanh((x - 0.5) @ self.w1 * 4.0)
        return {"pool": pool.astype(np.float32), "logits": (3.0 * pool @ self.w2).astype(np.float32)}

    def fingerprint(self):
        return {"extractor": "toy", "network": "toy-projection", "weights_sha256": "seed-1234", "preset": "toy",
                "layer": "pool", "logits": "toy"}


register_extractor("toy", "dist_worker:ToyExtractor")


def _install_failure() -> None:
    mode = os.environ.get("FM_TEST_FAIL")
    if not mode or os.environ.get("RANK") != os.environ.get("FM_TEST_FAIL_RANK", "1"):
        return
    import facemetrics.pipeline.side as side

    real_extract = side.extract

    def failing(*args, **kwargs):
        if mode == "die":
            sys.stderr.flush()
            os._exit(3)
        if mode == "raise":
            raise RuntimeError("injected failure in rank's extraction")
        return real_extract(*args, **kwargs)

    side.extract = failing


def main(argv: list[str]) -> int:
    from facemetrics.cli.main import cli

    mode, rest = argv[0], argv[1:]
    _install_failure()
    if mode == "cli":
        cli.main(rest, prog_name="facemetrics")  # exits
        return 0
    if mode == "multi":
        import torch.distributed as dist

        commands = json.loads(Path(rest[0]).read_text())
        dist.init_process_group("gloo")
        try:
            for args in commands:
                try:
                    cli.main(args, prog_name="facemetrics", standalone_mode=False)
                except SystemExit as e:  # pragma: no cover - reported to the test
                    if e.code:
                        return int(e.code)
        finally:
            dist.destroy_process_group()
        return 0
    raise SystemExit(f"unknown mode {mode}")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
