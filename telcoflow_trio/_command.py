"""What every ``telcoflow-trio`` command needs around its trio run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["warnings_to_stderr"]


@contextmanager
def warnings_to_stderr(prog: str) -> Iterator[None]:
    """While a command runs, print the library's warnings and errors on stderr.

    The package logger has only a ``NullHandler`` (a library leaves output to the
    application); a command is the application, so it shows them, unless logging
    is configured already (the root logger has a handler).
    """
    if logging.getLogger().handlers:
        yield
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"{prog}: %(levelname)s: %(message)s"))
    package = logging.getLogger("telcoflow_trio")
    package.addHandler(handler)
    try:
        yield
    finally:
        package.removeHandler(handler)
