"""The values of the stream bridge API: enums, handler types and the bridge's result."""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeAlias

import attrs

if TYPE_CHECKING:
    from ._connector import BridgeContext

__all__ = [
    "BridgeEnd",
    "BridgeResult",
    "CloseInfo",
    "ContextStreamHandler",
    "DirectionStats",
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

#: A handler that also gets the bridge's :class:`BridgeContext` (who the call is,
#: per-call state, sending to either side): ``async (message, context) -> (data, op)``.
ContextStreamHandler: TypeAlias = Callable[
    [str | bytes, "BridgeContext"], Awaitable[HandlerResult]
]


async def relay(message: str | bytes) -> HandlerResult:
    """The default handler: relay every message unchanged."""
    return message, StreamOp.RELAY


class BridgeEnd(enum.Enum):
    """Why a bridge ended."""

    #: The call side ended: Teler closed its WebSocket, or the call hung up.
    CALL_CLOSED = "call_closed"
    #: The remote closed its WebSocket normally (1000 or 1001).
    REMOTE_CLOSED = "remote_closed"
    #: ``call_stream_handler`` returned ``StreamOp.STOP``.
    CALL_STOP = "call_stop"
    #: ``remote_stream_handler`` returned ``StreamOp.STOP``.
    REMOTE_STOP = "remote_stop"
    #: An error ended it (only seen on :attr:`StreamBridgeError.result`).
    ERROR = "error"


@attrs.frozen
class CloseInfo:
    """How one side's connection was closed."""

    code: int
    reason: str | None
    #: ``True``: the peer closed first and these are its code and reason;
    #: ``False``: the bridge closed it with them.
    by_peer: bool


@attrs.frozen
class DirectionStats:
    """Traffic one way. Text counts characters (base64 JSON is ASCII), binary bytes."""

    messages_in: int = 0
    bytes_in: int = 0
    messages_out: int = 0
    bytes_out: int = 0


@attrs.frozen
class BridgeResult:
    """What ``bridge_stream()``/``bridge_call()`` return (and errors carry as ``.result``)."""

    end: BridgeEnd
    #: How the call side was closed.
    call_close: CloseInfo | None
    #: How the remote was closed; ``None`` when it never connected.
    remote_close: CloseInfo | None
    #: Messages read from the call and sent to the remote.
    call_to_remote: DirectionStats
    #: Messages read from the remote and sent to the call.
    remote_to_call: DirectionStats
    #: Seconds from the start of the bridge to the end of its teardown.
    duration: float
