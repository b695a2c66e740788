"""Metric functions: features in, :class:`facemetrics.result.MetricResult` out."""
