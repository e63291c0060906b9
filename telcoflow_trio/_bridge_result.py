"""How a stream bridge ended: the values ``bridge_*`` return and ``StreamBridgeError`` carries.

Kept apart from :mod:`telcoflow_trio.streams` (which re-exports them) so that
:mod:`telcoflow_trio.exceptions` can name them without importing the bridge.
"""

from __future__ import annotations

import enum

import attrs

__all__ = ["BridgeEnd", "BridgeResult", "CloseInfo", "DirectionStats"]


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
