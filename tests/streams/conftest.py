"""In-memory WebSockets for the stream bridge tests: a call pair and a fake remote.

Both run on in-memory streams whose buffers are bounded like a socket's, so a
side that stops reading pushes back on its writer as over TCP.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable
from functools import partial
from typing import cast

import pytest
import trio
import trio.testing
import trio_websocket

from telcoflow_trio._memory_stream import bounded_stream_pair
from telcoflow_trio.exceptions import StreamBridgeError, WSSConnectionClosed
from telcoflow_trio.streams import BridgeResult
from telcoflow_trio.ws._transport import WebSocket

RemoteHandler = Callable[[WebSocket], Awaitable[None]]


async def echo(ws: WebSocket) -> None:
    """Send every message straight back."""
    while True:
        await ws.send_message(await ws.get_message())


class Freezable(trio.abc.Stream):
    """A stream that can stop moving bytes (a peer that hangs without closing)."""

    def __init__(self, inner: trio.abc.Stream) -> None:
        self.inner = inner
        self.frozen = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.frozen:
            await trio.sleep_forever()
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        data = await self.inner.receive_some(max_bytes)
        if self.frozen:
            await trio.sleep_forever()
        return data

    async def aclose(self) -> None:
        await self.inner.aclose()


CallPair = tuple[trio_websocket.WebSocketConnection, WebSocket]


async def open_call_pair(nursery: trio.Nursery) -> CallPair:
    """(the app's server-side connection, Teler's client-side WebSocket) over memory."""
    client_stream, server_stream = bounded_stream_pair()
    server: list[trio_websocket.WebSocketConnection] = []

    async def accept() -> None:
        request = await trio_websocket.wrap_server_stream(nursery, server_stream)
        server.append(await request.accept())

    async with trio.open_nursery() as both:
        both.start_soon(accept)
        client = await trio_websocket.wrap_client_stream(
            nursery, cast(trio.SocketStream, client_stream), "app.test", "/media-stream"
        )
    return server[0], WebSocket(client)


class MemoryRemote:
    """A WebSocket server the bridge reaches through ``open_stream=remote.open_stream``.

    Each connection runs ``handler`` (default: echo) on a :class:`WebSocket`;
    when the handler returns, the connection is closed with 1000.
    """

    def __init__(
        self,
        nursery: trio.Nursery,
        handler: RemoteHandler = echo,
        *,
        lockstep: bool = False,
        refuse: bool = False,
    ) -> None:
        self.nursery = nursery
        self.handler = handler
        self.lockstep = lockstep
        self.refuse = refuse
        self.requests: list[trio_websocket.WebSocketRequest] = []
        self.connections: list[trio_websocket.WebSocketConnection] = []
        #: The close each connection ended with, as the server saw it.
        self.closes: list[tuple[int, str | None]] = []
        self.errors: list[BaseException] = []
        #: The server end of each connection's byte stream.
        self.streams: list[Freezable] = []
        self.done = trio.Event()

    async def open_stream(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        if self.refuse:
            raise OSError(111, "Connection refused")
        pair = trio.testing.lockstep_stream_pair if self.lockstep else bounded_stream_pair
        client, server = pair()
        self.nursery.start_soon(self._serve, Freezable(server))
        return client

    async def _serve(self, stream: Freezable) -> None:
        self.streams.append(stream)
        request = await trio_websocket.wrap_server_stream(self.nursery, stream)
        self.requests.append(request)
        offered = request.proposed_subprotocols
        conn = await request.accept(subprotocol=offered[0] if offered else None)
        self.connections.append(conn)
        ws = WebSocket(conn)
        try:
            await self.handler(ws)
        except WSSConnectionClosed:
            pass
        except Exception as exc:  # keep serve from dying (trio-websocket note D)
            self.errors.append(exc)
        finally:
            await ws.aclose()
            reason = conn.closed
            self.closes.append((reason.code, reason.reason) if reason else (1006, None))
            self.done.set()


@pytest.fixture
def remote(nursery: trio.Nursery) -> MemoryRemote:
    """An echoing remote."""
    return MemoryRemote(nursery)


@pytest.fixture
def make_remote(nursery: trio.Nursery) -> Callable[..., MemoryRemote]:
    """``make_remote(handler, lockstep=..., refuse=...)``."""
    return partial(MemoryRemote, nursery)


@pytest.fixture
async def call_pair(nursery: trio.Nursery) -> CallPair:
    """(the app's side of a call WebSocket, Teler's side), in memory."""
    return await open_call_pair(nursery)


class Running:
    """A bridge run in the background: its result or error once done."""

    def __init__(self) -> None:
        self.result: BridgeResult | None = None
        self.error: BaseException | None = None
        self.done = trio.Event()

    async def wait(self) -> BridgeResult:
        await self.done.wait()
        if self.error is not None:
            raise self.error
        assert self.result is not None
        return self.result

    async def wait_error(self) -> StreamBridgeError:
        await self.done.wait()
        assert isinstance(self.error, StreamBridgeError), self.error
        return self.error


def spawn(nursery: trio.Nursery, bridge: Callable[[], Awaitable[BridgeResult]]) -> Running:
    """Run ``bridge()`` in ``nursery``, keeping what it returns or raises."""
    running = Running()

    async def run() -> None:
        try:
            running.result = await bridge()
        except Exception as exc:
            running.error = exc
        finally:
            running.done.set()

    nursery.start_soon(run)
    return running
