"""The client side of :mod:`telcoflow_trio.ws`: opening a WebSocket, by URL or by parts.

The whole opening (TCP, TLS, the upgrade) runs in the caller's task under one
deadline, ``connect_timeout``, so it can never hang: there is no reader task to
wait for (trio-websocket's own timeout can, see docs/performance.md). The
``nursery`` of :func:`connect_websocket` and :func:`connect_websocket_url` is
taken for trio-websocket's signature only; nothing runs in it.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Iterable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import cast
from urllib.parse import urlsplit

import h11
import trio

from ..exceptions import WSSConnectionError
from ._connection import WebSocketConnection, lean_client_handshake
from ._errors import ConnectionRejected, ConnectionTimeout, HandshakeError
from ._handshake import Headers, str_headers
from ._streams import open_tcp
from ._transport import redact_url

__all__ = [
    "connect_websocket",
    "connect_websocket_url",
    "open_websocket",
    "open_websocket_url",
]


def _url_parts(
    url: str, ssl_context: ssl.SSLContext | None
) -> tuple[str, int, str, bool | ssl.SSLContext]:
    """``(host, port, resource, use_ssl)`` of a ``ws://`` or ``wss://`` URL.

    Raises:
        ValueError: not such a URL, or an ``ssl_context`` with ``ws://``.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {redact_url(url)!r}")
    if parts.scheme == "ws" and ssl_context is not None:
        raise ValueError("an ssl_context needs a wss:// URL")
    secure = parts.scheme == "wss"
    resource = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
    use_ssl: bool | ssl.SSLContext = ssl_context or secure
    return parts.hostname, parts.port or (443 if secure else 80), resource, use_ssl


async def connect_websocket(
    nursery: trio.Nursery | None,
    host: str,
    port: int,
    resource: str,
    *,
    use_ssl: bool | ssl.SSLContext,
    subprotocols: Iterable[str] | None = None,
    extra_headers: Headers | None = None,
    message_queue_size: int | None = None,
    max_message_size: int = 1 << 20,
    connect_timeout: float = 10.0,
    disconnect_timeout: float = 2.0,
) -> WebSocketConnection:
    """Open a WebSocket to ``host:port`` for ``resource``; the caller closes it (``aclose``).

    ``use_ssl``: ``True`` for TLS with the default context, or the context
    itself. ``extra_headers`` are sent with the upgrade (``str`` or ``bytes``
    pairs). ``message_queue_size`` is accepted for trio-websocket's signature
    and ignored: there is no queue, messages are read in the caller's task.
    ``disconnect_timeout`` bounds every close of the connection.

    Raises:
        ConnectionRejected: the server answered the upgrade with an HTTP error.
        ConnectionTimeout: opening took longer than ``connect_timeout``.
        HandshakeError: anything else kept it from opening (``__cause__``:
            refused TCP, a TLS failure, an invalid answer, a hang-up).
        ValueError: a header or subprotocol is invalid.
    """
    del nursery, message_queue_size  # trio-websocket's signature; nothing runs in the nursery
    headers = str_headers(extra_headers)
    offered = list(subprotocols or ())
    context = ssl.create_default_context() if use_ssl is True else use_ssl or None
    name = f"[{host}]" if ":" in host else host  # an IPv6 address
    host_header = name if port == (443 if context else 80) else f"{name}:{port}"
    where = f"{'wss' if context else 'ws'}://{host_header}{resource.split('?', 1)[0]}"
    stream: trio.abc.Stream | None = None
    try:
        with trio.fail_after(connect_timeout):
            stream = await open_tcp(host, port, context)
            ws = await lean_client_handshake(
                stream,
                host_header,
                resource,
                headers=headers,
                subprotocols=offered,
                max_message_size=max_message_size,
                close_timeout=disconnect_timeout,
                connection_class=WebSocketConnection,
            )
    except BaseException as exc:
        if stream is not None:
            await trio.aclose_forcefully(stream)
        if isinstance(exc, ConnectionRejected):
            raise
        if isinstance(exc, trio.TooSlowError):
            raise ConnectionTimeout(
                f"opening {where} took longer than {connect_timeout:g} s"
            ) from None
        if isinstance(
            exc, OSError | trio.BrokenResourceError | WSSConnectionError | h11.ProtocolError
        ):
            raise HandshakeError(f"could not open {where}: {exc}") from exc
        raise
    return cast(WebSocketConnection, ws)


async def connect_websocket_url(
    nursery: trio.Nursery | None,
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    subprotocols: Iterable[str] | None = None,
    extra_headers: Headers | None = None,
    message_queue_size: int | None = None,
    max_message_size: int = 1 << 20,
    connect_timeout: float = 10.0,
    disconnect_timeout: float = 2.0,
) -> WebSocketConnection:
    """:func:`connect_websocket` to ``url`` (``ws://`` or ``wss://``, TLS with ``ssl_context``).

    Raises:
        ValueError: not a WebSocket URL, or ``ssl_context`` with ``ws://``.
        HandshakeError: as :func:`connect_websocket`.
    """
    host, port, resource, use_ssl = _url_parts(url, ssl_context)
    return await connect_websocket(
        nursery,
        host,
        port,
        resource,
        use_ssl=use_ssl,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        connect_timeout=connect_timeout,
        disconnect_timeout=disconnect_timeout,
    )


@asynccontextmanager
async def open_websocket(
    host: str,
    port: int,
    resource: str,
    *,
    use_ssl: bool | ssl.SSLContext,
    subprotocols: Iterable[str] | None = None,
    extra_headers: Headers | None = None,
    message_queue_size: int | None = None,
    max_message_size: int = 1 << 20,
    connect_timeout: float = 10.0,
    disconnect_timeout: float = 2.0,
) -> AsyncIterator[WebSocketConnection]:
    """:func:`connect_websocket` for the block; closed with 1000 when it ends.

    The block's own exception comes out unchanged (never in a group).
    """
    ws = await connect_websocket(
        None,
        host,
        port,
        resource,
        use_ssl=use_ssl,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        connect_timeout=connect_timeout,
        disconnect_timeout=disconnect_timeout,
    )
    try:
        yield ws
    finally:
        await ws.aclose()


def open_websocket_url(
    url: str,
    ssl_context: ssl.SSLContext | None = None,
    *,
    subprotocols: Iterable[str] | None = None,
    extra_headers: Headers | None = None,
    message_queue_size: int | None = None,
    max_message_size: int = 1 << 20,
    connect_timeout: float = 10.0,
    disconnect_timeout: float = 2.0,
) -> AbstractAsyncContextManager[WebSocketConnection]:
    """:func:`open_websocket` to ``url``: ``async with open_websocket_url("wss://...") as ws:``.

    Raises:
        ValueError: (at once) not a WebSocket URL, or ``ssl_context`` with ``ws://``.
        HandshakeError: as :func:`connect_websocket`.
    """
    host, port, resource, use_ssl = _url_parts(url, ssl_context)
    return open_websocket(
        host,
        port,
        resource,
        use_ssl=use_ssl,
        subprotocols=subprotocols,
        extra_headers=extra_headers,
        message_queue_size=message_queue_size,
        max_message_size=max_message_size,
        connect_timeout=connect_timeout,
        disconnect_timeout=disconnect_timeout,
    )
