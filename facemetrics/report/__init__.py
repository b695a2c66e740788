"""Comparison tables and figures of many records."""
