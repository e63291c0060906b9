"""Where the byte stream under a WebSocket is made: TCP, and TLS on top when asked.

Every WebSocket in the library gets its stream here (the client through a
:data:`StreamOpener`, :func:`open_tcp` by default; the server through
:func:`accept_tls`), so how TLS is done is decided in this one module. Today
TLS is ``trio.SSLStream``; a plain ``trio.SocketStream`` gets the lean
connection's socket fast path (see :mod:`~telcoflow_trio.ws._connection`).
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from typing import TypeAlias

import trio

__all__ = ["StreamOpener", "accept_tls", "open_tcp", "start_tls"]

#: Opens the byte stream under a WebSocket: ``(host, port, ssl_context) -> stream``.
StreamOpener: TypeAlias = Callable[[str, int, ssl.SSLContext | None], Awaitable[trio.abc.Stream]]


async def open_tcp(host: str, port: int, ssl_context: ssl.SSLContext | None) -> trio.abc.Stream:
    """The default :data:`StreamOpener`: TCP, plus a completed TLS handshake if asked."""
    tcp = await trio.open_tcp_stream(host, port)
    return tcp if ssl_context is None else await start_tls(tcp, ssl_context, host)


async def start_tls(
    stream: trio.abc.Stream, ssl_context: ssl.SSLContext, host: str
) -> trio.SSLStream[trio.abc.Stream]:
    """Run the client side of a TLS handshake over ``stream``; close it on failure.

    Raises:
        trio.BrokenResourceError: the handshake failed (``__cause__`` is the
            ``ssl.SSLError``).
    """
    return await _handshake(trio.SSLStream(stream, ssl_context, server_hostname=host))


async def accept_tls(
    stream: trio.abc.Stream, ssl_context: ssl.SSLContext
) -> trio.SSLStream[trio.abc.Stream]:
    """Run the server side of a TLS handshake over an accepted ``stream``; close it on failure.

    Raises:
        trio.BrokenResourceError: the handshake failed (``__cause__`` is the
            ``ssl.SSLError``, e.g. a client certificate that was required and missing).
    """
    return await _handshake(trio.SSLStream(stream, ssl_context, server_side=True))


async def _handshake(tls: trio.SSLStream[trio.abc.Stream]) -> trio.SSLStream[trio.abc.Stream]:
    try:
        await tls.do_handshake()
    except BaseException:
        await trio.aclose_forcefully(tls.transport_stream)
        raise
    return tls
