"""The transport seam: opening is bounded, errors are translated once, closes are bounded.

Every test that opens a connection runs on both transports (``transport``
fixture): trio-websocket and the lean codec, against a trio-websocket server.
"""

from __future__ import annotations

import ssl
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
import trio_websocket
import wsproto
import wsproto.events

from telcoflow_trio.exceptions import (
    WSSAuthenticationError,
    WSSConnectionClosed,
    WSSConnectionError,
)
from telcoflow_trio.ws._transport import TRANSPORTS, Transport, open_websocket, redact_url

Handler = Callable[[trio_websocket.WebSocketRequest], Awaitable[None]]


@pytest.fixture(params=TRANSPORTS)
def transport(request: pytest.FixtureRequest) -> Transport:
    return request.param  # type: ignore[no-any-return]


def memory_server(nursery: trio.Nursery, handler: Handler | None):
    """A StreamOpener whose server end runs ``handler`` (``None``: a peer that never answers)."""

    async def open_stream(host: str, port: int, ctx: ssl.SSLContext | None) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()

        async def serve() -> None:
            if handler is None:
                await trio.sleep_forever()
            request = await trio_websocket.wrap_server_stream(nursery, server)
            await handler(request)

        nursery.start_soon(serve)
        return client

    return open_stream


async def echo(request: trio_websocket.WebSocketRequest) -> None:
    ws = await request.accept()
    try:
        while True:
            await ws.send_message(await ws.get_message())
    except trio_websocket.ConnectionClosed:
        pass


async def test_text_and_binary_round_trip_and_headers(
    autojump_clock: trio.testing.MockClock,
    transport: Transport,
) -> None:
    seen: list[tuple[bytes, bytes]] = []

    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        seen.extend(request.headers)
        await echo(request)

    async with trio.open_nursery() as nursery:
        opener = memory_server(nursery, handler)
        async with open_websocket(
            "ws://example.invalid/path?x=1",
            headers=[("x-api-key", "k")],
            open_stream=opener,
            transport=transport,
        ) as ws:
            await ws.send_message("hello")
            assert await ws.get_message() == "hello"
            await ws.send_message(b"\x00\x01")
            assert await ws.get_message() == b"\x00\x01"
            await ws.send_messages(["one", b"two", "three"])
            assert [await ws.get_message() for _ in range(3)] == ["one", b"two", "three"]
        nursery.cancel_scope.cancel()
    assert (b"x-api-key", b"k") in seen


@pytest.mark.parametrize(
    ("status", "error"),
    [(401, WSSAuthenticationError), (403, WSSAuthenticationError), (503, WSSConnectionError)],
)
async def test_rejections_are_translated(
    autojump_clock: trio.testing.MockClock,
    transport: Transport,
    status: int,
    error: type[Exception],
) -> None:
    async def reject(request: trio_websocket.WebSocketRequest) -> None:
        await request.reject(status, body=b"nope")

    async with trio.open_nursery() as nursery:
        opener = memory_server(nursery, reject)
        with pytest.raises(error, match=f"HTTP {status}: nope") as info:
            async with open_websocket(
                "ws://h.invalid/secret?token=abc", open_stream=opener, transport=transport
            ):
                pytest.fail("must not open")  # pragma: no cover
        nursery.cancel_scope.cancel()
    assert "token=abc" not in str(info.value)


async def test_silent_server_times_out_at_the_deadline(
    autojump_clock: trio.testing.MockClock,
    transport: Transport,
) -> None:
    async with trio.open_nursery() as nursery:
        opener = memory_server(nursery, None)
        start = trio.current_time()
        with pytest.raises(WSSConnectionError, match="longer than 3 s"):
            async with open_websocket(
                "ws://h.invalid/", open_stream=opener, connect_timeout=3, transport=transport
            ):
                pass  # pragma: no cover
        assert trio.current_time() - start == pytest.approx(3)
        nursery.cancel_scope.cancel()


async def test_refused_tcp_port_is_a_connection_error(
    autojump_clock: trio.testing.MockClock,
    transport: Transport,
) -> None:
    async def refuse(host: str, port: int, ctx: ssl.SSLContext | None) -> trio.abc.Stream:
        raise OSError(111, "Connection refused")

    with pytest.raises(WSSConnectionError, match="Connection refused"):
        async with open_websocket("ws://127.0.0.1:9/", open_stream=refuse, transport=transport):
            pass  # pragma: no cover


async def test_body_exception_passes_through_unwrapped(
    autojump_clock: trio.testing.MockClock,
    transport: Transport,
) -> None:
    class Mine(Exception):
        pass

    async with trio.open_nursery() as nursery:
        opener = memory_server(nursery, echo)
        with pytest.raises(Mine):
            async with open_websocket("ws://h.invalid/", open_stream=opener, transport=transport):
                raise Mine
        nursery.cancel_scope.cancel()


async def test_peer_close_code_and_reason_reach_us(
    autojump_clock: trio.testing.MockClock, transport: Transport
) -> None:
    async def close_4001(request: trio_websocket.WebSocketRequest) -> None:
        ws = await request.accept()
        await ws.send_message("bye")
        await ws.aclose(4001, "call ended")

    async with trio.open_nursery() as nursery:
        opener = memory_server(nursery, close_4001)
        async with open_websocket(
            "ws://h.invalid/", open_stream=opener, transport=transport
        ) as ws:
            assert await ws.get_message() == "bye"  # delivered before the close
            with pytest.raises(WSSConnectionClosed) as info:
                await ws.get_message()
            assert (info.value.code, info.value.reason) == (4001, "call ended")
            with pytest.raises(WSSConnectionClosed):
                await ws.send_message("late")
        nursery.cancel_scope.cancel()


async def test_close_to_a_dead_peer_is_bounded(
    autojump_clock: trio.testing.MockClock, transport: Transport
) -> None:
    """A peer that accepts and then never reads again: our close gives up in time."""
    client, server = trio.testing.memory_stream_pair()

    async def accept_then_freeze() -> None:
        conn = wsproto.WSConnection(wsproto.ConnectionType.SERVER)
        while not any(isinstance(e, wsproto.events.Request) for e in conn.events()):
            conn.receive_data(await server.receive_some())
        await server.send_all(conn.send(wsproto.events.AcceptConnection()))
        await trio.sleep_forever()

    async def open_stream(host: str, port: int, ctx: ssl.SSLContext | None) -> trio.abc.Stream:
        return client

    async with trio.open_nursery() as nursery:
        nursery.start_soon(accept_then_freeze)
        async with open_websocket(
            "ws://h.invalid/", open_stream=open_stream, close_timeout=1.5, transport=transport
        ):
            start = trio.current_time()
        assert trio.current_time() - start == pytest.approx(1.5)
        nursery.cancel_scope.cancel()


def test_redact_url_drops_query_and_userinfo() -> None:
    assert (
        redact_url("wss://user:pw@h.example:8443/v1/m/c1?token=t")
        == "wss://h.example:8443/v1/m/c1"
    )


async def test_invalid_url(transport: Transport) -> None:
    with pytest.raises(ValueError, match="not a ws:// or wss:// URL"):
        async with open_websocket("http://h/", transport=transport):
            pass  # pragma: no cover


@pytest.mark.parametrize(
    ("headers", "fragment"),
    [
        ([("authorization", "Bearer ")], "invalid value for HTTP header 'authorization'"),
        ([("x-api-key", "k\r\nx: y")], "invalid value for HTTP header 'x-api-key'"),
        ([("bad name", "v")], "invalid HTTP header name 'bad name'"),
    ],
)
async def test_invalid_headers_are_refused_without_showing_the_value(
    headers: list[tuple[str, str]], fragment: str
) -> None:
    with pytest.raises(ValueError, match=fragment) as info:
        async with open_websocket("ws://h.invalid/", headers=headers):
            pass  # pragma: no cover
    assert "Bearer" not in str(info.value)
