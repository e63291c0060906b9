"""Correlation of call commands with their responses, without I/O.

Each command gets a fresh id and two deadlines: the one sent to the server
(``timeout_ms``) and the client's own, a grace period later, after which the
caller gets :class:`~telcoflow_trio.exceptions.WSSCallCommandTimeoutError`.
"""

from __future__ import annotations

import itertools
import os
from typing import Any

import attrs

from ..exceptions import (
    WSSCallCommandError,
    WSSCallCommandTimeoutError,
    WSSCallError,
    WSSError,
    refusal,
)
from ._frames import Command, CommandResponse, Response
from ._states import CallCommand

__all__ = ["CommandTracker", "PendingCommand", "request_error", "response_error"]


@attrs.define(eq=False)
class PendingCommand:
    """A command sent and not yet answered."""

    frame: Command
    command: CallCommand
    sent_at: float
    deadline: float


def response_error(response: CommandResponse) -> WSSCallError | None:
    """The exception a failed response stands for, ``None`` on success."""
    if response.success:
        return None
    code = response.error_code
    message = response.error_message or f"command failed ({code or 'no error code'})"
    if code == "TIMEOUT":
        return WSSCallCommandTimeoutError(f"the server timed out the command: {message}")
    return WSSCallCommandError(message, error_code=code, error_message=response.error_message)


def request_error(response: Response, what: str, *, session: bool = False) -> WSSError | None:
    """The exception a refused control ``response`` to ``what`` stands for; ``None`` if ok.

    See :func:`~telcoflow_trio.exceptions.refusal` (``session``: a request
    about a session, whose unknown codes raise ``WSSSessionError``).
    """
    if response.ok:
        return None
    return refusal(
        what,
        response.error_code,
        response.error_message,
        content=response.error_content,
        session=session,
    )


class CommandTracker:
    """The commands in flight on one media connection."""

    def __init__(self, grace: float = 5.0) -> None:
        self.grace = grace
        self._pending: dict[str, PendingCommand] = {}
        # A per-connection random prefix plus a counter: unique and cheap.
        self._ids = (f"{os.urandom(6).hex()}-{n}" for n in itertools.count(1))

    def __len__(self) -> int:
        return len(self._pending)

    def start(
        self, command: CallCommand, now: float, timeout: float, data: dict[str, Any] | None = None
    ) -> PendingCommand:
        """Register a command; send ``.frame`` and wait until ``.deadline``."""
        frame = Command(next(self._ids), str(command), round(timeout * 1000), data)
        pending = PendingCommand(frame, command, now, now + timeout + self.grace)
        self._pending[frame.command_id] = pending
        return pending

    def resolve(self, response: CommandResponse) -> PendingCommand | None:
        """The pending command ``response`` answers, removed; ``None`` if unknown or late."""
        return self._pending.pop(response.command_id, None)

    def forget(self, pending: PendingCommand) -> None:
        """Stop tracking ``pending`` (its caller gave up or was cancelled)."""
        self._pending.pop(pending.frame.command_id, None)

    def drain(self) -> list[PendingCommand]:
        """Remove and return everything in flight (the connection is gone)."""
        pending = list(self._pending.values())
        self._pending.clear()
        return pending
