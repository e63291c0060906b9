"""Where the byte stream under a WebSocket is made: TCP, and TLS on top when asked.

Every WebSocket in the library gets its stream here (the client through a
:data:`StreamOpener`, :func:`open_tcp` by default; the server through
:func:`accept_tls`), so how TLS is done is decided in this one module. A
``trio.SocketStream`` in a run with a poller (Linux) gets TLS on its own
socket (:mod:`~telcoflow_trio.ws._tls`), which the lean connection drives
like plain TCP (:mod:`~telcoflow_trio.ws._connection`); any other stream
(in memory, other systems) gets ``trio.SSLStream``.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import TypeAlias

import trio

from ._poller import current_poller
from ._tls import tls_over_socket

__all__ = ["StreamOpener", "accept_tls", "open_tcp", "start_tls"]

#: Opens the byte stream under a WebSocket: ``(host, port, ssl_context) -> stream``.
StreamOpener: TypeAlias = Callable[[str, int, ssl.SSLContext | None], Awaitable[trio.abc.Stream]]


async def open_tcp(host: str, port: int, ssl_context: ssl.SSLContext | None) -> trio.abc.Stream:
    """The default :data:`StreamOpener`: TCP, plus a completed TLS handshake if asked."""
    tcp = await trio.open_tcp_stream(host, port)
    return tcp if ssl_context is None else await start_tls(tcp, ssl_context, host)


async def start_tls(
    stream: trio.abc.Stream, ssl_context: ssl.SSLContext, host: str
) -> trio.abc.Stream:
    """Run the client side of a TLS handshake over ``stream`` for ``host``; close it on failure.

    ``host`` is sent as SNI and checked against the server's certificate when
    ``ssl_context`` says so (``ssl.create_default_context()`` does).

    Raises:
        trio.BrokenResourceError: the handshake failed (``__cause__`` is the
            ``ssl.SSLError``; for a certificate, its ``verify_message`` says why).
    """
    return await _tls(stream, ssl_context, server_side=False, server_hostname=host)


async def accept_tls(
    stream: trio.abc.Stream, ssl_context: ssl.SSLContext, close_timeout: float = 2.0
) -> trio.abc.Stream:
    """Run the server side of a TLS handshake over an accepted ``stream``; close it on failure.

    ``close_timeout`` bounds the wait for room for our close_notify at close.

    Raises:
        trio.BrokenResourceError: the handshake failed (``__cause__`` is the
            ``ssl.SSLError``, e.g. a client certificate that was required and missing).
    """
    return await _tls(stream, ssl_context, server_side=True, close_timeout=close_timeout)


async def _tls(
    stream: trio.abc.Stream,
    ssl_context: ssl.SSLContext,
    *,
    server_side: bool,
    server_hostname: str | None = None,
    close_timeout: float = 2.0,
) -> trio.abc.Stream:
    poller = current_poller() if type(stream) is trio.SocketStream else None
    if poller is not None:
        assert isinstance(stream, trio.SocketStream)
        return await tls_over_socket(
            stream,
            ssl_context,
            poller,
            server_side=server_side,
            server_hostname=server_hostname,
            close_timeout=close_timeout,
        )
    tls = trio.SSLStream(
        stream, ssl_context, server_side=server_side, server_hostname=server_hostname
    )
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tls.transport_stream)
        raise
    return tls
