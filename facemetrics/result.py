"""One metric's outcome, as it travels into a record and a report."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass
class MetricResult:
    """A metric value with its spread, interval and protocol.

    ``std`` is the population standard deviation (ddof=0) over the metric's own
    repetitions (splits, subsets, folds, images) unless ``details["std_kind"]``
    says otherwise. ``details`` carries the protocol (preset, extractor, seeds,
    subset sizes, ...) so that a number never travels without it.

    ``ci`` is the interval (``None`` when not asked, ``--ci 0``): ``{"lo", "hi", "level",
    "method", "draws", "seed", ...}`` (see :mod:`facemetrics.metrics.uncertainty`).
    ``samples`` holds the per-sample values behind a per-sample metric (per pair, image
    or caption; not written to the record: ``score --rows`` keeps them for ``compare``).
    """

    name: str
    value: float
    higher_is_better: bool
    std: float | None = None
    n: int | None = None
    details: dict[str, Any] = field(default_factory=dict)
    ci: dict[str, Any] | None = None
    samples: Any = field(default=None, repr=False, compare=False)

    def to_dict(self) -> dict[str, Any]:
        import copy

        return {"value": self.value, "higher_is_better": self.higher_is_better, "std": self.std, "n": self.n,
                "details": copy.deepcopy(self.details), "ci": copy.deepcopy(self.ci)}
