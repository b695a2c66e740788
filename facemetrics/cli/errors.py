"""The one mapping of :class:`~facemetrics.errors.FacemetricsError` to click's errors.

* a user mistake: click's usage error (exit status 2, no traceback), naming the
  parameter at fault when the error has one (``Invalid value for '--pairs': ...``);
* :class:`~facemetrics.errors.DistributedError` (a rank died) and
  :class:`~facemetrics.errors.OutputWriteError` (a result file could not be written):
  ``Error: ...`` with exit status 1, no usage text.
"""
from __future__ import annotations

import functools

import click

from facemetrics.errors import DistributedError, FacemetricsError, OutputWriteError


def click_error(e: FacemetricsError, ctx: click.Context | None = None) -> click.ClickException:
    """The click exception that reports ``e`` (see the module docstring); ``ctx`` gives the usage line."""
    if isinstance(e, (DistributedError, OutputWriteError)):
        return click.ClickException(str(e))
    param = getattr(e, "param", None)
    if param:
        return click.BadParameter(str(e), ctx=ctx, param_hint=f"'{param}'")
    return click.UsageError(str(e), ctx=ctx)


def user_errors(f):
    """Decorate a click command so that a :class:`FacemetricsError` it raises is reported by :func:`click_error`
    (for commands that also run outside the ``facemetrics`` group)."""
    @functools.wraps(f)
    def wrapper(*args, **kwargs):
        try:
            return f(*args, **kwargs)
        except FacemetricsError as e:
            raise click_error(e, click.get_current_context(silent=True)) from None
    return wrapper
