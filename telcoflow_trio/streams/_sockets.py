"""One small socket interface for the bridge, and an adapter for each kind of peer.

The bridge talks to both of its sides through
:class:`~telcoflow_trio.ws._transport.MessageStream`: ``get_message()`` (raising
:class:`~telcoflow_trio.exceptions.WSSConnectionClosed` with the peer's code and
reason once it has closed), ``send_message(str | bytes)`` and a bounded,
idempotent ``aclose(code, reason)``. :func:`as_message_stream` turns what a user
hands to ``bridge_stream`` into one:

* a :class:`telcoflow_trio.ws.WebSocketConnection` (from
  :func:`telcoflow_trio.ws.serve_websocket`) is used as it is: it is a
  :class:`MessageStream`, with no adapter in between;
* a trio-websocket ``WebSocketConnection`` (for example from its ``serve_websocket``)
  is wrapped in :class:`~telcoflow_trio.ws._transport.WebSocket`;
* an ASGI WebSocket (Starlette/FastAPI ``WebSocket``, or anything with the ASGI
  message-level ``receive()``/``send()``) is wrapped in :class:`AsgiWebSocket`;
* a :class:`MessageStream` is used as it is.

:class:`CallAudio` does the same for a Telcoflow ``ActiveCall``: its received
audio is the "messages", writes go to its send buffer, closing ends the call.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any, Protocol, cast, runtime_checkable

import trio
import trio_websocket

from .._call import TerminationInfo, TerminationReason
from ..exceptions import (
    BufferClosedError,
    WSSCallClosedError,
    WSSConnectionClosed,
    WSSError,
)
from ..ws._transport import MessageStream, WebSocket

__all__ = ["AsgiWebSocket", "CallAudio", "CallLike", "as_message_stream"]

logger = logging.getLogger(__name__)

_AsgiMessage = Mapping[str, Any]


class _AsgiSocket(Protocol):
    """The ASGI message level of a Starlette/FastAPI ``WebSocket``."""

    async def receive(self) -> _AsgiMessage: ...

    async def send(self, message: _AsgiMessage) -> None: ...


def _disconnect_errors() -> tuple[type[BaseException], ...]:
    # Starlette turns a send on a dead transport into WebSocketDisconnect and a
    # send after its own close into WebSocketDisconnected (a RuntimeError).
    errors: tuple[type[BaseException], ...] = (OSError, RuntimeError, trio.BrokenResourceError)
    try:
        from starlette.websockets import WebSocketDisconnect
    except ImportError:  # pragma: no cover - the adapter also serves plain ASGI
        return errors
    return (*errors, WebSocketDisconnect)


class AsgiWebSocket:
    """A :class:`MessageStream` over an accepted ASGI WebSocket (e.g. under Hypercorn).

    Text and binary both ways. The peer's close arrives as ``websocket.disconnect``
    and is raised as :class:`WSSConnectionClosed` with the code the server
    reports (Hypercorn reports 1006 when the client went away without the
    server closing first), on this and every later call.

    Args:
        websocket: the accepted ASGI WebSocket.
        close_timeout: bound on :meth:`aclose`, in seconds.
    """

    __slots__ = ("_close_sent", "_closed", "_errors", "_receive", "_send", "close_timeout")

    def __init__(self, websocket: _AsgiSocket, close_timeout: float = 2.0) -> None:
        self._receive = websocket.receive
        self._send = websocket.send
        #: Why the socket is unusable (peer closed, send failed, we closed), once it is.
        self._closed: tuple[int, str | None] | None = None
        self._close_sent = False
        self._errors = _disconnect_errors()
        self.close_timeout = close_timeout

    async def get_message(self) -> str | bytes:
        if self._closed is not None:
            raise WSSConnectionClosed(*self._closed)
        message = await self._receive()
        kind = message["type"]
        if kind == "websocket.receive":
            text: str | None = message.get("text")
            return text if text is not None else cast(bytes, message["bytes"])
        if kind == "websocket.disconnect":
            self._closed = (message.get("code", 1005), message.get("reason") or None)
            raise WSSConnectionClosed(*self._closed)
        self._closed = (1002, f"unexpected ASGI message {kind!r}")
        raise WSSConnectionClosed(*self._closed, by_peer=False)

    async def send_message(self, message: str | bytes) -> None:
        if self._closed is not None:
            raise WSSConnectionClosed(*self._closed)
        event = (
            {"type": "websocket.send", "text": message}
            if isinstance(message, str)
            else {"type": "websocket.send", "bytes": message}
        )
        try:
            await self._send(event)
        except self._errors as exc:
            self._closed = (getattr(exc, "code", 1006), None)
            raise WSSConnectionClosed(*self._closed) from exc

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code``; bounded by ``close_timeout`` even when cancelled. Idempotent."""
        if self._close_sent:
            return
        self._close_sent = True
        if self._closed is not None:
            return  # the peer is gone: nobody to tell
        self._closed = (code, reason)
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self.close_timeout):
            try:
                await self._send({"type": "websocket.close", "code": code, "reason": reason or ""})
            except self._errors:
                logger.debug("closing the ASGI WebSocket failed: it was already gone")


@runtime_checkable
class CallLike(Protocol):
    """What :meth:`StreamConnector.bridge_call` needs of a Telcoflow ``ActiveCall``."""

    @property
    def call_id(self) -> str: ...

    @property
    def terminated(self) -> bool: ...

    def audio_stream(self) -> AsyncIterator[bytes]: ...

    async def write_audio(self, data: bytes) -> None: ...

    async def clear_send_audio_buffer(self) -> int: ...

    async def close(self) -> None: ...


class CallAudio:
    """A :class:`MessageStream` over a call's audio: PCM chunks in, PCM out.

    The end of ``call.audio_stream()`` (the call ended) reads as a close, and
    so does writing after the call ended: 1006 when the call's media connection
    was lost, else 1000, with the call's ``termination`` as the reason
    (``"call ended: media_lost (...)"``; ``"call ended"`` for a call without
    one). :meth:`aclose` ends the call with ``call.close()`` unless it has
    already ended.

    Args:
        call: the live call.
        close_timeout: bound on :meth:`aclose`, in seconds.
    """

    __slots__ = ("_audio", "_call", "_next", "close_timeout")

    def __init__(self, call: CallLike, close_timeout: float = 2.0) -> None:
        self._call = call
        self._audio = call.audio_stream()
        self._next: Callable[[], Awaitable[bytes]] = self._audio.__anext__
        self.close_timeout = close_timeout

    def _ended(self) -> WSSConnectionClosed:
        """The call's end as a close: 1006 when its media connection was lost."""
        info: TerminationInfo | None = getattr(self._call, "termination", None)
        if info is None:
            return WSSConnectionClosed(1000, "call ended")
        reason = f"call ended: {info.reason.value}" + (f" ({info.detail})" if info.detail else "")
        return WSSConnectionClosed(
            1006 if info.reason is TerminationReason.MEDIA_LOST else 1000, reason
        )

    async def get_message(self) -> bytes:
        try:
            return await self._next()
        except StopAsyncIteration:
            raise self._ended() from None

    async def send_message(self, message: str | bytes) -> None:
        if not isinstance(message, bytes):
            raise TypeError(
                f"a Telcoflow call plays bytes (16-bit PCM); got {type(message).__name__}"
            )
        try:
            await self._call.write_audio(message)
        except (BufferClosedError, WSSCallClosedError):
            raise self._ended() from None

    async def clear(self) -> None:
        """Drop the audio queued for the caller (barge-in)."""
        with contextlib.suppress(BufferClosedError, WSSCallClosedError):
            await self._call.clear_send_audio_buffer()

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """End the call (``call.close()``) unless it already ended; bounded, idempotent."""
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self.close_timeout):
            aclose = getattr(self._audio, "aclose", None)
            if aclose is not None:
                await aclose()
            if not self._call.terminated:
                try:
                    await self._call.close()
                except WSSError as exc:
                    logger.debug("closing call %s failed: %r", self._call.call_id, exc)


def as_message_stream(socket: object, close_timeout: float = 2.0) -> MessageStream:
    """The bridge's view of a call-side socket.

    Raises:
        TypeError: ``socket`` is none of the supported kinds.
    """
    if isinstance(socket, trio_websocket.WebSocketConnection):
        return WebSocket(socket, close_timeout)
    if all(callable(getattr(socket, name, None)) for name in _MESSAGE_STREAM):
        return cast(MessageStream, socket)
    if callable(getattr(socket, "receive", None)) and callable(getattr(socket, "send", None)):
        return AsgiWebSocket(cast(_AsgiSocket, socket), close_timeout)
    raise TypeError(
        "bridge_stream() takes a trio-websocket connection, an ASGI WebSocket "
        f"(Starlette/FastAPI) or a MessageStream; got {type(socket).__name__}"
    )


_MESSAGE_STREAM = ("get_message", "send_message", "aclose")
