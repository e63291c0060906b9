"""A log line for a problem a peer can repeat at will, at most once per interval.

A misbehaving peer can send a malformed frame every 20 ms on every call; one
ERROR line each would flood the application's logs and cost CPU on the hot
path. :class:`ThrottledLog` writes the first occurrence at once, then at most one
line per ``interval`` seconds (trio's clock, so it follows ``MockClock`` in
tests), each saying how many it left out since the previous line. The counters
in ``statistics()`` still count every occurrence.
"""

from __future__ import annotations

import logging
from typing import final

import trio

__all__ = ["ThrottledLog"]


@final
class ThrottledLog:
    """``logger.log(level, ...)`` at most once per ``interval`` seconds; the rest counted."""

    __slots__ = ("_interval", "_level", "_logger", "_next", "suppressed")

    def __init__(self, logger: logging.Logger, level: int, interval: float = 10.0) -> None:
        self._logger = logger
        self._level = level
        self._interval = interval
        self._next = -float("inf")
        #: Occurrences left out since the last line written.
        self.suppressed = 0

    def __call__(self, message: str, *args: object) -> None:
        """Log ``message % args``, or count it if a line went out less than ``interval`` ago."""
        now = trio.current_time()
        if now < self._next:
            self.suppressed += 1
            return
        if self.suppressed:
            message += " (%d more like it since the last report)"
            args = (*args, self.suppressed)
            self.suppressed = 0
        self._next = now + self._interval
        self._logger.log(self._level, message, *args)
