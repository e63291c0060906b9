"""An in-memory WebSocket server: the far end of a bridge (a voice AI) in a test, no sockets.

:func:`open_memory_server` runs a handler per connection; whatever should reach
it gets ``open_stream=server.open_stream`` (a
:class:`~telcoflow_trio.streams.StreamConnector`, a ``TelcoflowClient``, or
:meth:`MemoryServer.connect` for a client of your own). The WebSocket protocol
runs for real (trio-websocket on in-memory streams whose buffers are bounded
like a socket's, 64 KiB each way), so close codes, pings, size limits and
backpressure behave as on TCP, and everything runs under ``MockClock``.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any, TypeAlias, final

import trio
import trio_websocket

from .._memory_stream import bounded_stream_pair
from ..exceptions import WSSConnectionClosed
from ..ws._transport import ClientWebSocket, WebSocket, open_websocket

__all__ = ["MemoryServer", "echo", "open_memory_server"]

logger = logging.getLogger(__name__)

#: Bound on a connection's opening handshake.
_HANDSHAKE_TIMEOUT = 10.0

#: Serves one accepted connection; its ``path`` attribute has the request path.
ConnectionHandler: TypeAlias = Callable[[WebSocket], Awaitable[None]]


async def echo(ws: WebSocket) -> None:
    """A :func:`open_memory_server` handler that sends every message straight back."""
    while True:
        await ws.send_message(await ws.get_message())


@final
class MemoryServer:
    """A running in-memory WebSocket server. Get one from :func:`open_memory_server`.

    Attributes:
        url: a ``ws://`` URL for it; any URL works with :meth:`open_stream`, only
            its path reaches the handler.
        reject_with: while set to an HTTP status, every upgrade is refused with it
            (``401`` tests a bridge's authentication failure).
        errors: exceptions the handler raised (each closed its connection with 1011).
        paths: the request path (with query) of every accepted connection.
    """

    def __init__(
        self, handler: ConnectionHandler, nursery: trio.Nursery, close_timeout: float
    ) -> None:
        self._handler = handler
        self._nursery = nursery
        self._close_timeout = close_timeout
        self._closing = False
        self.url = "ws://memory.invalid"
        self.reject_with: int | None = None
        self.errors: list[Exception] = []
        self.paths: list[str] = []
        self.active = 0

    def __repr__(self) -> str:
        return f"<MemoryServer active={self.active} accepted={len(self.paths)}>"

    async def open_stream(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        """A :data:`StreamOpener` connected to this server (``host``, ``port`` ignored).

        Raises:
            ConnectionRefusedError: the server has shut down, or ``ssl_context``
                was given (it speaks plain ``ws://`` only).
        """
        if self._closing:
            raise ConnectionRefusedError("the memory server is shut down")
        if ssl_context is not None:
            raise ConnectionRefusedError("the memory server has no TLS: use a ws:// URL")
        client, server = bounded_stream_pair()
        self._nursery.start_soon(self._serve, server)
        await trio.lowlevel.checkpoint()
        return client

    def connect(
        self, path: str = "/", **options: Any
    ) -> AbstractAsyncContextManager[ClientWebSocket]:
        """A client WebSocket to ``path``, for an ``async with`` block.

        ``options``: ``headers``, ``subprotocols``, ``connect_timeout``,
        ``close_timeout``, ``max_message_size``, ``message_queue_size``.
        """
        return open_websocket(self.url + path, open_stream=self.open_stream, **options)

    async def _serve(self, stream: trio.abc.Stream) -> None:
        # trio-websocket's server stops on any escaping exception: nothing escapes here.
        try:
            async with trio.open_nursery() as nursery:
                ws = None
                with trio.move_on_after(_HANDSHAKE_TIMEOUT):
                    request = await trio_websocket.wrap_server_stream(nursery, stream)
                    if self.reject_with is not None:
                        await request.reject(self.reject_with, body=b"rejected by the test")
                    else:
                        ws = WebSocket(await request.accept(), self._close_timeout)
                if ws is not None:
                    self.paths.append(ws.path)
                    await self._run_handler(ws)
                nursery.cancel_scope.cancel()
        except* (trio.BrokenResourceError, trio.ClosedResourceError, WSSConnectionClosed) as group:
            logger.debug("memory server connection failed: %r", group.exceptions[0])
        except* trio_websocket.HandshakeError as group:
            logger.debug("memory server handshake failed: %r", group.exceptions[0])
        finally:
            await trio.aclose_forcefully(stream)

    async def _run_handler(self, ws: WebSocket) -> None:
        code, reason = 1000, None
        self.active += 1
        try:
            await self._handler(ws)
        except WSSConnectionClosed:
            pass  # the client went away: nothing to report
        except Exception as exc:
            logger.warning("memory server handler raised %r", exc)
            self.errors.append(exc)
            code, reason = 1011, "handler error"
        finally:
            self.active -= 1
            await ws.aclose(code, reason)


@asynccontextmanager
async def open_memory_server(
    handler: ConnectionHandler = echo, *, close_timeout: float = 2.0
) -> AsyncIterator[MemoryServer]:
    """Serve WebSockets in memory for the duration of the block.

    Each connection runs ``handler(ws)`` (default :func:`echo`) with a
    :class:`~telcoflow_trio.ws._transport.WebSocket`: ``await ws.get_message()``,
    ``await ws.send_message(...)``, ``ws.path``. When the handler returns the
    connection closes with 1000; when it raises, with 1011 (and the exception is
    kept in :attr:`MemoryServer.errors`). Leaving the block cancels every handler.
    """
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        server = MemoryServer(handler, nursery, close_timeout)
        try:
            yield server
        except BaseException as exc:
            body_error = exc  # the test's own error: keep it out of the nursery's group
        finally:
            server._closing = True
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
