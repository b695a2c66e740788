"""The facemetrics version (its own module, so the record and the CLI can read it without importing the package API)."""

__version__ = "0.1.0"
