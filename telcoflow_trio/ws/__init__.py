"""WebSockets (RFC 6455) on trio: the library's own fast transport, public.

Shaped like the parts of trio-websocket programs use, so that moving is an
import change::

    from telcoflow_trio.ws import open_websocket_url, serve_websocket, ConnectionClosed

    async with open_websocket_url("wss://example.net/ws", extra_headers=headers) as ws:
        await ws.send_message("hello")
        reply = await ws.get_message()

    async def echo(request):
        ws = await request.accept()
        while True:  # until ConnectionClosed, which ends the handler quietly
            await ws.send_message(await ws.get_message())

    server = await nursery.start(serve_websocket, echo, "127.0.0.1", 0, None)

Differences from trio-websocket, on purpose:

* **No reader task.** Messages are parsed in the task that calls
  :meth:`~WebSocketConnection.get_message`; pings are answered and the peer's
  close is seen while some task is in it (or in a
  :meth:`~WebSocketConnection.ping`, which reads for itself while nobody else
  does, keeping what it reads for ``get_message``, bounded). Keep one task reading.
* **Opening never hangs**: TCP, TLS and the upgrade run under one
  ``connect_timeout`` in the caller's task (:class:`ConnectionTimeout`).
* **A handler's exception ends only its own connection** (closed with 1011
  and logged); trio-websocket's server stops on the first one.
* Every close is bounded (``disconnect_timeout`` / ``close_timeout``), and
  close codes are checked before they are sent (``ValueError``).
* Headers may be given as ``str`` or ``bytes`` pairs. ``message_queue_size``
  is accepted and ignored (there is no queue).

The exceptions are in the library's tree: :class:`ConnectionClosed` is a
:class:`~telcoflow_trio.exceptions.WSSConnectionClosed` (its ``reason`` a
:class:`CloseReason`), :class:`HandshakeError` (and :class:`ConnectionRejected`,
:class:`ConnectionTimeout`) a :class:`~telcoflow_trio.exceptions.WSSConnectionError`.

Layout: ``_framing`` (RFC 6455 framing, sans-IO), ``_handshake`` (the h11
upgrade, sans-IO), ``_connection`` (the I/O connection, with the socket
fast path for TCP and TLS), ``_poller`` (one epoll set per run, deferred small
writes), ``_tls`` (TLS on a non-blocking ``ssl.SSLSocket`` driven by the
poller), ``_streams`` (where TCP and TLS streams are made), ``_errors``, ``_client`` and
``_server`` (this API), ``_transport`` (the seam the rest of the library
uses, with trio-websocket still selectable there).
"""

from ._client import (
    connect_websocket as connect_websocket,
    connect_websocket_url as connect_websocket_url,
    open_websocket as open_websocket,
    open_websocket_url as open_websocket_url,
)
from ._connection import WebSocketConnection as WebSocketConnection
from ._errors import (
    CloseReason as CloseReason,
    ConnectionClosed as ConnectionClosed,
    ConnectionRejected as ConnectionRejected,
    ConnectionTimeout as ConnectionTimeout,
    HandshakeError as HandshakeError,
)
from ._server import (
    WebSocketRequest as WebSocketRequest,
    WebSocketServer as WebSocketServer,
    serve_websocket as serve_websocket,
    serve_websocket_stream as serve_websocket_stream,
)

__all__ = [
    "CloseReason",
    "ConnectionClosed",
    "ConnectionRejected",
    "ConnectionTimeout",
    "HandshakeError",
    "WebSocketConnection",
    "WebSocketRequest",
    "WebSocketServer",
    "connect_websocket",
    "connect_websocket_url",
    "open_websocket",
    "open_websocket_url",
    "serve_websocket",
    "serve_websocket_stream",
]
