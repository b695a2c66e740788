"""One metric's outcome, as it travels into a record and a report."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any


@dataclass
class MetricResult:
    """A metric value with its spread and protocol.

    ``std`` is the population standard deviation (ddof=0) over the metric's own
    repetitions (splits, subsets, folds, images) unless ``details["std_kind"]``
    says otherwise. ``details`` carries the protocol (preset, extractor, seeds,
    subset sizes, ...) so that a number never travels without it.
    """

    name: str
    value: float
    higher_is_better: bool
    std: float | None = None
    n: int | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d.pop("name")
        return d
