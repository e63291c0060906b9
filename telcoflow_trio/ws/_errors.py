"""The close reason and the exceptions of :mod:`telcoflow_trio.ws`.

Shaped like trio-websocket's so that moving is an import change, and placed in
the library's tree (:mod:`telcoflow_trio.exceptions`)::

    WSSConnectionError
    ├── WSSConnectionClosed
    │   └── ConnectionClosed        .reason is a CloseReason (code, name, reason)
    └── HandshakeError              the connection could not be opened (__cause__ says why)
        ├── ConnectionRejected      the server answered the upgrade with an HTTP error
        └── ConnectionTimeout       opening took longer than connect_timeout
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

from wsproto.frame_protocol import CloseReason as _Codes

from ..exceptions import WSSConnectionClosed, WSSConnectionError

__all__ = [
    "CloseReason",
    "ConnectionClosed",
    "ConnectionRejected",
    "ConnectionTimeout",
    "HandshakeError",
    "code_and_reason",
]


class CloseReason(NamedTuple):
    """How a WebSocket closed: ``code`` and ``reason`` (a tuple, so ``code, reason = ...``)."""

    code: int
    reason: str | None

    @property
    def name(self) -> str:
        """The code's name (``NORMAL_CLOSURE``, ``MESSAGE_TOO_BIG``...), or its range's."""
        try:
            return _Codes(self.code).name
        except ValueError:
            if 1000 <= self.code <= 2999:
                return "RFC_RESERVED"
            if 3000 <= self.code <= 3999:
                return "IANA_RESERVED"
            if 4000 <= self.code <= 4999:
                return "PRIVATE_RESERVED"
            return "INVALID_CODE"


class ConnectionClosed(WSSConnectionClosed):
    """The WebSocket is closed; ``reason`` says how (a :class:`CloseReason`).

    A :class:`~telcoflow_trio.exceptions.WSSConnectionClosed`, so code that
    catches that catches this; unlike there, ``reason`` is the whole
    :class:`CloseReason` (as in trio-websocket) and ``code`` its code.
    """

    reason: CloseReason  # type: ignore[assignment]

    def __init__(self, reason: CloseReason, *, by_peer: bool = True) -> None:
        super().__init__(reason.code, reason.reason, by_peer=by_peer)
        self.reason = reason


def code_and_reason(exc: WSSConnectionClosed) -> tuple[int, str | None]:
    """``(code, reason text)`` of any close exception, this module's or the library's."""
    if isinstance(exc, ConnectionClosed):
        return int(exc.reason.code), exc.reason.reason
    return int(exc.code), exc.reason


class HandshakeError(WSSConnectionError):
    """The WebSocket could not be opened; ``__cause__`` holds the underlying error."""


class ConnectionTimeout(HandshakeError):
    """Opening the WebSocket (TCP, TLS and the upgrade) took longer than allowed."""


class ConnectionRejected(HandshakeError):
    """The server answered the upgrade with HTTP ``status_code`` instead of 101.

    ``headers`` are the response's (names lower-cased) and ``body`` the first
    4 KiB of its body.
    """

    def __init__(
        self, status_code: int, headers: Sequence[tuple[bytes, bytes]], body: bytes | None
    ) -> None:
        super().__init__(f"the server refused the WebSocket upgrade with HTTP {status_code}")
        self.status_code = status_code
        self.headers = tuple(headers)
        self.body = body
