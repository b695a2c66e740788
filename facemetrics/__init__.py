"""facemetrics: evaluation metrics for text-to-face generators.

Importing this package loads no weights and imports no heavy module; the public
API functions import what they need when called.
"""
from __future__ import annotations

from facemetrics.version import __version__

__all__ = ["__version__", "score", "compute_stats", "Metrics", "Generated"]


def score(*args, **kwargs):  # noqa: D401 - thin lazy wrapper
    """Score FAKE against REAL; see :func:`facemetrics.api.score`."""
    from facemetrics.api import score as _score

    return _score(*args, **kwargs)


def compute_stats(*args, **kwargs):
    """Reference statistics of a folder; see :func:`facemetrics.api.compute_stats`."""
    from facemetrics.api import compute_stats as _compute_stats

    return _compute_stats(*args, **kwargs)


def __getattr__(name: str):
    """``facemetrics.Metrics`` (streaming accumulator) and ``facemetrics.Generated`` (generator input),
    imported on first use."""
    if name == "Metrics":
        from facemetrics.pipeline.streaming import Metrics

        return Metrics
    if name == "Generated":
        from facemetrics.imaging.inputs import Generated

        return Generated
    raise AttributeError(f"module 'facemetrics' has no attribute {name!r}")
