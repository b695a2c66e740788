"""Metrics as pure functions of features or statistics."""
