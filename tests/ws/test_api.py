"""The public WebSocket API (telcoflow_trio.ws) over loopback, server and client in one run."""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial

import pytest
import trio
import trio.testing
import trustme

from telcoflow_trio.exceptions import WSSConnectionClosed, WSSConnectionError
from telcoflow_trio.streams import BridgeEnd, BridgeResult, CloseInfo, StreamConnector
from telcoflow_trio.ws import (
    CloseReason,
    ConnectionClosed,
    ConnectionRejected,
    ConnectionTimeout,
    HandshakeError,
    WebSocketConnection,
    WebSocketRequest,
    connect_websocket_url,
    open_websocket,
    open_websocket_url,
    serve_websocket,
    serve_websocket_stream,
)
from telcoflow_trio.ws._transport import open_websocket as transport_websocket

Handler = Callable[[WebSocketRequest], Awaitable[None]]


@asynccontextmanager
async def serving(
    handler: Handler, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[int]:
    """``serve_websocket`` on 127.0.0.1 for the block; yields its port."""
    async with trio.open_nursery() as nursery:
        server = await nursery.start(serve_websocket, handler, "127.0.0.1", 0, ssl_context)
        yield server.port
        nursery.cancel_scope.cancel()


async def echo(request: WebSocketRequest) -> None:
    ws = await request.accept()
    while True:
        await ws.send_message(await ws.get_message())


async def test_accept_with_subprotocol_and_headers_both_ways() -> None:
    seen: list[WebSocketRequest] = []

    async def handler(request: WebSocketRequest) -> None:
        seen.append(request)
        ws = await request.accept(subprotocol="v2", extra_headers=[(b"x-served-by", b"test")])
        assert ws.subprotocol == "v2"
        assert ws.path == "/calls?id=7"
        while True:
            await ws.send_message(await ws.get_message())

    with trio.fail_after(10):
        async with (
            serving(handler) as port,
            open_websocket_url(
                f"ws://127.0.0.1:{port}/calls?id=7",
                subprotocols=["v1", "v2"],
                extra_headers=[("x-api-key", "k-1"), (b"authorization", b"Bearer t")],
            ) as ws,
        ):
            assert isinstance(ws, WebSocketConnection)
            assert ws.is_client
            assert ws.subprotocol == "v2"
            assert (b"x-served-by", b"test") in ws.response_headers
            assert ws.handshake_headers is ws.response_headers
            assert (b"x-api-key", b"k-1") in ws.request_headers
            await ws.send_message("héllo")
            assert await ws.get_message() == "héllo"
            await ws.send_message(b"\x00\x01")
            assert await ws.get_message() == b"\x00\x01"
            got: list[str | bytes] = []

            async def read() -> None:  # pongs are seen while a task reads
                got.append(await ws.get_message())

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                await ws.ping()
                await ws.ping(b"hb-1")
                await ws.send_message("after the pings")
            assert got == ["after the pings"]
    (request,) = seen
    assert request.path == "/calls?id=7"
    assert request.subprotocols == ["v1", "v2"]
    assert request.proposed_subprotocols == ("v1", "v2")
    assert (b"x-api-key", b"k-1") in request.headers
    assert (b"authorization", b"Bearer t") in request.headers
    assert ws.closed == CloseReason(1000, None)


async def test_reject_reaches_the_client_with_status_headers_and_body() -> None:
    async def handler(request: WebSocketRequest) -> None:
        await request.reject(403, body=b"no such key", extra_headers=[("x-why", "key")])

    with trio.fail_after(10):
        async with serving(handler) as port:
            with pytest.raises(ConnectionRejected) as info:
                async with open_websocket("127.0.0.1", port, "/", use_ssl=False):
                    pytest.fail("the rejected connection opened")
    assert info.value.status_code == 403
    assert info.value.body == b"no such key"
    assert (b"x-why", b"key") in info.value.headers
    assert isinstance(info.value, HandshakeError)
    assert isinstance(info.value, WSSConnectionError)


async def test_a_handler_exception_ends_only_its_connection(
    caplog: pytest.LogCaptureFixture,
) -> None:
    calls = 0

    async def handler(request: WebSocketRequest) -> None:
        nonlocal calls
        calls += 1
        ws = await request.accept()
        message = await ws.get_message()
        if message == "fail":
            raise RuntimeError("handler bug")
        await ws.send_message(message)

    with trio.fail_after(10), caplog.at_level(logging.ERROR, "telcoflow_trio.ws"):
        async with serving(handler) as port:
            url = f"ws://127.0.0.1:{port}/agent?token=secret-in-query"
            async with open_websocket_url(url) as first:
                await first.send_message("fail")
                with pytest.raises(ConnectionClosed) as info:
                    await first.get_message()
                assert info.value.reason == CloseReason(1011, None)
                assert info.value.reason.name == "INTERNAL_ERROR"
            async with open_websocket_url(url) as second:  # the server still serves
                await second.send_message("ok")
                assert await second.get_message() == "ok"
    assert calls == 2
    (record,) = [r for r in caplog.records if r.exc_info]
    assert "handler bug" in str(record.exc_info[1])  # type: ignore[index]
    assert "/agent" in record.getMessage()
    assert "secret-in-query" not in record.getMessage()


async def test_a_handler_that_neither_accepts_nor_rejects_answers_500() -> None:
    async def handler(request: WebSocketRequest) -> None:
        pass

    with trio.fail_after(10):
        async with serving(handler) as port:
            with pytest.raises(ConnectionRejected) as info:
                await connect_websocket_url(None, f"ws://127.0.0.1:{port}/")
    assert info.value.status_code == 500


async def test_close_codes_and_reasons_reach_the_other_side() -> None:
    closes: list[ConnectionClosed] = []

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            await ws.get_message()
        except ConnectionClosed as exc:
            closes.append(exc)
            raise  # a ConnectionClosed ends the handler quietly

    with trio.fail_after(10):
        async with serving(handler) as port:
            ws = await connect_websocket_url(None, f"ws://127.0.0.1:{port}/")
            with pytest.raises(ValueError, match="1005"):
                await ws.aclose(1005)
            await ws.aclose(4001, "call ended")
            assert ws.closed == CloseReason(4001, "call ended")
            with pytest.raises(ConnectionClosed):
                await ws.send_message("late")
    (exc,) = closes
    assert exc.reason == CloseReason(4001, "call ended")
    assert exc.reason.name == "PRIVATE_RESERVED"
    assert (exc.code, exc.reason.code, exc.reason.reason) == (4001, 4001, "call ended")
    assert isinstance(exc, WSSConnectionClosed)


@pytest.mark.parametrize(
    ("code", "name"),
    [
        (1000, "NORMAL_CLOSURE"),
        (1009, "MESSAGE_TOO_BIG"),
        (1006, "ABNORMAL_CLOSURE"),
        (2000, "RFC_RESERVED"),
        (3001, "IANA_RESERVED"),
        (4000, "PRIVATE_RESERVED"),
        (999, "INVALID_CODE"),
    ],
)
def test_close_reason_names(code: int, name: str) -> None:
    assert CloseReason(code, None).name == name


async def test_connecting_to_a_listener_that_never_answers_times_out(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """TCP is accepted (by the kernel backlog) and the upgrade never answered."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    port = listener.getsockname()[1]
    start = trio.current_time()
    with listener, trio.fail_after(30), pytest.raises(ConnectionTimeout, match="longer than 5 s"):
        await connect_websocket_url(None, f"ws://127.0.0.1:{port}/", connect_timeout=5)
    assert trio.current_time() - start == pytest.approx(5)


async def test_a_refused_port_is_a_handshake_error_with_the_os_error_as_cause() -> None:
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    with trio.fail_after(10), pytest.raises(HandshakeError) as info:
        await connect_websocket_url(None, f"ws://127.0.0.1:{port}/")
    assert isinstance(info.value.__cause__, OSError)


def test_url_errors_are_value_errors() -> None:
    with pytest.raises(ValueError, match="ws:// or wss://"):
        open_websocket_url("http://127.0.0.1/")
    with pytest.raises(ValueError, match="wss://"):
        open_websocket_url("ws://127.0.0.1/", ssl.create_default_context())


async def test_invalid_headers_are_refused_before_connecting() -> None:
    with pytest.raises(ValueError, match="value not shown"):
        await connect_websocket_url(None, "ws://127.0.0.1:9/", extra_headers=[("x-key", "a\nb")])


async def test_tls_server_and_client() -> None:
    ca = trustme.CA()
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(server_context)
    client_context = ssl.create_default_context()
    ca.configure_trust(client_context)
    with trio.fail_after(10):
        async with (
            serving(echo, server_context) as port,
            open_websocket_url(f"wss://127.0.0.1:{port}/tls", client_context) as ws,
        ):
            await ws.send_message("over tls")
            assert await ws.get_message() == "over tls"
        async with serving(echo, server_context) as port:
            with pytest.raises(HandshakeError):  # the default context does not trust our CA
                await connect_websocket_url(None, f"wss://127.0.0.1:{port}/")


async def test_bridge_stream_takes_a_served_connection_as_is() -> None:
    """A call accepted by serve_websocket, bridged to a remote served the same way."""
    results: list[BridgeResult] = []
    bridged = trio.Event()

    async def call_side(request: WebSocketRequest) -> None:
        ws = await request.accept()
        results.append(await StreamConnector(remote_url=remote_url).bridge_stream(ws))
        bridged.set()

    with trio.fail_after(10):
        async with serving(echo) as remote_port, serving(call_side) as call_port:
            remote_url = f"ws://127.0.0.1:{remote_port}/remote"
            async with open_websocket_url(f"ws://127.0.0.1:{call_port}/call") as teler:
                await teler.send_message('{"type": "start"}')
                assert await teler.get_message() == '{"type": "start"}'
                await teler.aclose(1000, "hung up")
            await bridged.wait()
    (result,) = results
    assert result.end is BridgeEnd.CALL_CLOSED
    assert result.call_close == CloseInfo(1000, "hung up", by_peer=True)


async def test_serve_websocket_stream_serves_a_stream_of_its_own() -> None:
    """An in-memory stream, served like a listener's: the handler, then the close."""

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        message = await ws.get_message()
        if message == "fail":
            raise RuntimeError("handler bug")
        await ws.send_message(message)  # then returns: closed with 1000

    async with trio.open_nursery() as nursery:

        async def opener(host: str, port: int, ssl_context: object) -> trio.abc.Stream:
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(serve_websocket_stream, handler, server)
            return client

        with trio.fail_after(10):
            for message, code in (("hello", 1000), ("fail", 1011)):
                url = "ws://memory.invalid/x"
                async with transport_websocket(url, open_stream=opener) as ws:
                    await ws.send_message(message)
                    if code == 1000:
                        assert await ws.get_message() == "hello"
                    with pytest.raises(WSSConnectionClosed) as info:
                        await ws.get_message()
                    assert info.value.code == code


async def test_ping_with_no_reader_returns_on_loopback() -> None:
    """As with trio-websocket, ping() needs no task in get_message(): it reads for itself."""
    with trio.fail_after(10):
        async with serving(echo) as port, open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            await ws.send_message("before the ping")
            await ws.ping(b"hb-1")  # the echo comes first: kept for get_message
            await ws.ping()
            assert await ws.get_message() == "before the ping"
            await ws.send_message("after")
            assert await ws.get_message() == "after"


async def test_pong_gate_holds_back_pongs_while_it_returns_false() -> None:
    answering = False

    async def handler(request: WebSocketRequest) -> None:
        ws = await request.accept()
        ws.pong_gate = lambda: answering
        while True:
            await ws.send_message(await ws.get_message())

    with trio.fail_after(10):
        async with serving(handler) as port, open_websocket_url(f"ws://127.0.0.1:{port}/") as ws:
            pinged = trio.Event()

            async def ping() -> None:
                await ws.ping(b"first")
                pinged.set()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(ping)
                await trio.testing.wait_all_tasks_blocked()
                # The echo comes after the server read the ping: any pong is in front of it.
                await ws.send_message("after the ping")
                assert await ws.get_message() == "after the ping"
                await trio.testing.wait_all_tasks_blocked()
                assert not pinged.is_set()
                answering = True
                nursery.start_soon(ws.ping, b"second")  # its pong answers both pings
                await trio.testing.wait_all_tasks_blocked()
                await ws.send_message("again")
                assert await ws.get_message() == "again"
                await pinged.wait()


@pytest.mark.parametrize("plain_http", [False, True])
async def test_plain_http_requests_reach_the_handler_only_when_asked(plain_http: bool) -> None:
    """``plain_http``: a request without ``Upgrade`` is the handler's to answer with respond()."""
    seen: list[tuple[str, str, bool]] = []

    async def handler(request: WebSocketRequest) -> None:
        seen.append((request.method, request.path, request.upgrade))
        with pytest.raises(RuntimeError, match="plain HTTP"):
            await request.accept()
        await request.respond(200, b'{"ok":true}', [("Content-Type", "application/json")])

    client, server = trio.testing.memory_stream_pair()
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                partial(serve_websocket_stream, handler, server, plain_http=plain_http)
            )
            await client.send_all(
                b"POST /api/x?y=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 0\r\n\r\n"
            )
            answer = b""
            while chunk := await client.receive_some():
                answer += chunk
    if plain_http:
        assert seen == [("POST", "/api/x?y=1", False)]
        assert answer.startswith(b"HTTP/1.1 200 ")
        assert answer.endswith(b'\r\n\r\n{"ok":true}')
    else:
        assert seen == []
        assert answer.startswith(b"HTTP/1.1 400 ")
