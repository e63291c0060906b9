"""The stream bridge: Teler's ``StreamConnector`` API on trio.

Bridge a call's media WebSocket (Teler, through FastAPI/Starlette under
Hypercorn's trio worker, or trio-websocket) or a Telcoflow ``ActiveCall`` to a
remote WebSocket such as a voice-AI endpoint, through two pluggable handlers::

    from telcoflow_trio.streams import StreamConnector, StreamOp

    connector = StreamConnector(remote_url="wss://ai.example/agent")

    @router.websocket("/media-stream")
    async def media_stream(websocket: WebSocket) -> None:
        await websocket.accept()
        await connector.bridge_stream(websocket)

:mod:`telcoflow_trio.streams.teler` has the Teler message helpers (parsing
``start``/``audio``, building ``audio``/``clear``/``interrupt``, re-chunking).
"""

from .._bridge_result import (
    BridgeEnd as BridgeEnd,
    BridgeResult as BridgeResult,
    CloseInfo as CloseInfo,
    DirectionStats as DirectionStats,
)
from ..exceptions import StreamBridgeError as StreamBridgeError
from . import teler as teler
from ._connector import (
    BridgeContext as BridgeContext,
    ContextStreamHandler as ContextStreamHandler,
    StreamConnector as StreamConnector,
    bridge_call as bridge_call,
)
from ._sockets import (
    AsgiWebSocket as AsgiWebSocket,
    CallAudio as CallAudio,
    CallLike as CallLike,
    as_message_stream as as_message_stream,
)
from ._types import (
    HandlerResult as HandlerResult,
    StreamHandler as StreamHandler,
    StreamOp as StreamOp,
    StreamType as StreamType,
    relay as relay,
)

__all__ = [
    "AsgiWebSocket",
    "BridgeContext",
    "BridgeEnd",
    "BridgeResult",
    "CallAudio",
    "CallLike",
    "CloseInfo",
    "ContextStreamHandler",
    "DirectionStats",
    "HandlerResult",
    "StreamBridgeError",
    "StreamConnector",
    "StreamHandler",
    "StreamOp",
    "StreamType",
    "as_message_stream",
    "bridge_call",
    "relay",
    "teler",
]
