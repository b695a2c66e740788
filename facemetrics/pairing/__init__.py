"""Pairs manifests and the paired metrics' inputs (FSD/FSS faces, R-precision/CLIP score texts)."""
