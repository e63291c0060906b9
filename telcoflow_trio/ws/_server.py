"""The server side of :mod:`telcoflow_trio.ws`: :func:`serve_websocket`, one stream, requests."""

from __future__ import annotations

import logging
import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import ClassVar, NoReturn, cast, final

import trio

from ..exceptions import WSSConnectionClosed
from ._connection import LeanRequest, LeanWebSocket, WebSocketConnection, accept_lean_websocket
from ._handshake import Headers, str_headers
from ._streams import accept_tls

__all__ = ["WebSocketRequest", "WebSocketServer", "serve_websocket", "serve_websocket_stream"]

logger = logging.getLogger(__name__)


@final
class WebSocketRequest(LeanRequest):
    """A client's upgrade request, handed to the handler to :meth:`accept` or :meth:`reject`.

    ``path`` (with the query string), ``headers`` (``(bytes, bytes)`` pairs,
    names lower-cased) and ``subprotocols`` (offered by the client) say what
    was asked.
    """

    __slots__ = ()

    _connection_class: ClassVar[type[LeanWebSocket]] = WebSocketConnection

    @property
    def proposed_subprotocols(self) -> tuple[str, ...]:
        """The subprotocols the client offered (trio-websocket's name)."""
        return tuple(self.subprotocols)

    async def accept(
        self, subprotocol: str | None = None, extra_headers: Headers | None = None
    ) -> WebSocketConnection:
        """Answer 101 and return the connection (closed by the server when the handler ends).

        Raises:
            ValueError: ``subprotocol`` was not offered, or a header is invalid.
            RuntimeError: the request was accepted or rejected already.
        """
        if self._done:
            raise RuntimeError("the request was accepted or rejected already")
        ws = await super().accept(subprotocol, str_headers(extra_headers))
        return cast(WebSocketConnection, ws)

    async def reject(
        self,
        status_code: int,
        body: bytes | None = None,
        extra_headers: Headers | None = None,
    ) -> None:
        """Answer with HTTP ``status_code`` (and ``body``), then close the connection.

        Raises:
            ValueError: a header is invalid.
            RuntimeError: the request was accepted or rejected already.
        """
        if self._done:
            raise RuntimeError("the request was accepted or rejected already")
        await super().reject(status_code, body or b"", str_headers(extra_headers))


@final
class WebSocketServer:
    """What :func:`serve_websocket` hands to ``task_status``: where it listens."""

    __slots__ = ("listeners",)

    def __init__(self, listeners: list[trio.SocketListener]) -> None:
        #: The listening sockets (one per address family the host resolved to).
        self.listeners = listeners

    @property
    def port(self) -> int:
        """The port listened on (useful after asking for port 0)."""
        port: int = self.listeners[0].socket.getsockname()[1]
        return port


async def serve_websocket(
    handler: Callable[[WebSocketRequest], Awaitable[object]],
    host: str | None,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    handler_nursery: trio.Nursery | None = None,
    max_message_size: int = 1 << 20,
    handshake_timeout: float = 10.0,
    close_timeout: float = 2.0,
    task_status: trio.TaskStatus[WebSocketServer] = trio.TASK_STATUS_IGNORED,
) -> NoReturn:
    """Serve WebSockets on ``host:port`` (TLS with ``ssl_context``): ``handler(request)`` each.

    Use with ``server = await nursery.start(serve_websocket, handler, host, 0, None)``.
    The handler accepts (``ws = await request.accept()``) or rejects. TLS and
    the upgrade request must complete within ``handshake_timeout``, or the
    connection is dropped. When the handler returns the connection is closed
    with 1000; when it raises, the exception is logged and the connection is
    closed with 1011 (a request left undecided is answered 500): a handler
    never stops the server, nor another connection. Handlers run in
    ``handler_nursery`` if given.

    Raises:
        OSError: the address cannot be listened on.
    """

    one = partial(
        serve_websocket_stream,
        handler,
        ssl_context=ssl_context,
        max_message_size=max_message_size,
        handshake_timeout=handshake_timeout,
        close_timeout=close_timeout,
    )
    listeners = await trio.open_tcp_listeners(port, host=host)
    task_status.started(WebSocketServer(listeners))
    await trio.serve_listeners(one, listeners, handler_nursery=handler_nursery)


async def serve_websocket_stream(
    handler: Callable[[WebSocketRequest], Awaitable[object]],
    stream: trio.abc.Stream,
    *,
    ssl_context: ssl.SSLContext | None = None,
    max_message_size: int = 1 << 20,
    handshake_timeout: float = 10.0,
    close_timeout: float = 2.0,
    plain_http: bool = False,
) -> None:
    """Serve one connection that is already open: what :func:`serve_websocket` does for each.

    For streams that come from elsewhere than its TCP listener: an in-memory
    pair in a test, a listener of your own, TLS you did yourself. Everything
    said of :func:`serve_websocket`'s handler holds (its exception is logged,
    not raised), and the stream is closed on return. A :class:`trio.SocketStream`
    gets the plain-TCP fast path. With ``plain_http`` the handler also gets plain
    HTTP requests (``request.upgrade`` false), to answer with ``request.respond``.
    """
    request: WebSocketRequest | None = None
    tls: trio.abc.Stream = stream  # with TLS on the socket, the stream gives it up
    try:
        with trio.move_on_after(handshake_timeout):
            if ssl_context is not None:
                tls = await accept_tls(stream, ssl_context, close_timeout)
            got = await accept_lean_websocket(
                tls,
                max_message_size=max_message_size,
                close_timeout=close_timeout,
                request_class=WebSocketRequest,
                plain_http=plain_http,
            )
            request = cast(WebSocketRequest | None, got)
    except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
        logger.debug("WebSocket opening failed: %r", exc.__cause__ or exc)
    if request is None:  # a bad request was answered with 400 already
        await trio.aclose_forcefully(tls)
        return
    where = request.path.split("?", 1)[0]  # a query string may hold secrets
    code = 1000
    try:
        await handler(request)
    except WSSConnectionClosed as exc:
        logger.debug("WebSocket %s: %s", where, exc)
    except Exception:
        logger.exception("WebSocket handler for %s failed", where)
        code = 1011
    finally:
        await _finish(request, code)


async def _finish(request: WebSocketRequest, code: int) -> None:
    """Close what the handler left open: the connection with ``code``, or the request with 500."""
    ws = request._accepted
    if ws is not None:
        await ws.aclose(code)  # bounded by close_timeout, even when cancelled
    elif not request._done:
        with trio.CancelScope(shield=True, deadline=trio.current_time() + request.close_timeout):
            await request.reject(500, b"the server did not accept the WebSocket")
