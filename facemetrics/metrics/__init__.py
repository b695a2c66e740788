"""Metrics: pure functions from features or embeddings to MetricResult."""
