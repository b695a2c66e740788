"""Error types.

:class:`FacemetricsError` is a user mistake (bad path, wrong flag, unusable data):
the CLI turns it into a click usage error (exit 2, no traceback). Anything else is
a bug and keeps its traceback.
"""
from __future__ import annotations


class FacemetricsError(Exception):
    """A problem with the user's input, named clearly enough to fix it.

    ``param`` optionally names the CLI argument or flag at fault (e.g. ``"REAL"``,
    ``"--pairs"``) so the CLI can point at it.
    """

    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


class WeightsNotFoundError(FacemetricsError):
    """No weights file could be found or fetched; the message lists what was tried."""


class DistributedError(FacemetricsError):
    """A multi-process run broke (a rank died, crashed or timed out); nothing was written.

    Not a usage mistake: the CLI reports it with exit status 1 on every rank.
    """


class OutputWriteError(FacemetricsError):
    """A result file asked for (``--json``, ``-o``) could not be written: full disk, no permission, ...

    Not a usage mistake: the CLI reports it as ``Error: ...`` with exit status 1,
    without a traceback. The write was atomic, so no half-written file is left.
    """
