"""The package's logging: a NullHandler, and call ids on log records.

The client sets the call id in each call's task, so every record logged there
(by the library or by your handler, and by the tasks the call starts) can carry
it. The library installs no handler but a :class:`logging.NullHandler` on the
package logger; add the filter to yours::

    handler.addFilter(CallIdFilter())
    handler.setFormatter(logging.Formatter("%(call_id)s %(levelname)s %(message)s"))
"""

from __future__ import annotations

import contextvars
import logging
from collections.abc import Iterator
from contextlib import contextmanager

__all__ = ["CallIdFilter", "call_context", "current_call_id"]

# A library leaves output to the application: without this, its warnings would reach
# stderr through logging's last resort in a program that never configured logging.
logging.getLogger("telcoflow_trio").addHandler(logging.NullHandler())

_call_id: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "telcoflow_trio_call_id", default=None
)


def current_call_id() -> str | None:
    """The id of the call whose task is running, or ``None`` outside a call."""
    return _call_id.get()


@contextmanager
def call_context(call_id: str) -> Iterator[None]:
    """Run the block as part of call ``call_id`` (for its log records)."""
    token = _call_id.set(call_id)
    try:
        yield
    finally:
        _call_id.reset(token)


class CallIdFilter(logging.Filter):
    """Adds ``record.call_id``: the current call's id, or ``default`` outside a call.

    A record that already has a ``call_id`` (``extra={"call_id": ...}``) keeps
    it. Add it to a *handler* (a filter on a logger does not see the records of
    its child loggers). It never drops a record.
    """

    def __init__(self, default: str = "-") -> None:
        super().__init__()
        self.default = default

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "call_id", None) is None:
            record.call_id = _call_id.get() or self.default
        return True
