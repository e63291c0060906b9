"""The values of the stream bridge API: its enums and handler types."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import TypeAlias

__all__ = [
    "HandlerResult",
    "StreamHandler",
    "StreamOp",
    "StreamType",
    "relay",
]


class StreamType(enum.IntEnum):
    """Which way audio flows (Teler's values)."""

    #: Listen-only: the call's messages go to the remote, nothing comes back.
    UNIDIRECTIONAL = 0
    #: Both ways.
    BIDIRECTIONAL = 1


class StreamOp(enum.IntEnum):
    """What the bridge does with a handler's result (Teler's values)."""

    #: Send the returned data to the other side (``None`` sends nothing).
    RELAY = 0
    #: Send nothing; the returned data is ignored.
    PASS = 1
    #: End the bridge normally: both sides are closed with 1000.
    STOP = 2


#: What a handler returns: ``(data, op)``. ``data`` matters only for ``RELAY``.
HandlerResult: TypeAlias = tuple[str | bytes | None, StreamOp]

#: Teler's handler: ``async (message) -> (data, op)``.
StreamHandler: TypeAlias = Callable[[str | bytes], Awaitable[HandlerResult]]


async def relay(message: str | bytes) -> HandlerResult:
    """The default handler: relay every message unchanged."""
    return message, StreamOp.RELAY
