"""StreamConnector's Teler-compatible construction, validation and socket adapters."""

from __future__ import annotations

import functools
from collections.abc import Mapping
from typing import Any

import pytest
import trio

import telcoflow_trio.streams as streams
from telcoflow_trio.exceptions import StreamBridgeError, WSSConnectionClosed
from telcoflow_trio.streams import (
    AsgiWebSocket,
    HandlerResult,
    StreamConnector,
    StreamOp,
    StreamType,
    as_message_stream,
    relay,
)


def test_teler_names_and_values() -> None:
    assert (StreamType.UNIDIRECTIONAL, StreamType.BIDIRECTIONAL) == (0, 1)
    assert (StreamOp.RELAY, StreamOp.PASS, StreamOp.STOP) == (0, 1, 2)
    assert streams.StreamBridgeError is StreamBridgeError
    for name in ("StreamConnector", "StreamOp", "StreamType", "StreamHandler"):
        assert name in streams.__all__


async def test_teler_positional_construction_and_defaults() -> None:
    async def handler(message: str | bytes) -> HandlerResult:
        return message, StreamOp.PASS

    connector = StreamConnector(StreamType.BIDIRECTIONAL, "wss://ai.test/a", handler)
    assert connector.remote_url == "wss://ai.test/a"
    assert connector.call_stream_handler is handler
    assert connector.remote_stream_handler is relay
    assert await relay("x") == ("x", StreamOp.RELAY)  # a plain function: no staticmethod trap
    assert StreamConnector(1, "ws://a.test").stream_type is StreamType.BIDIRECTIONAL  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({}, ValueError, "remote_url is a required parameter"),
        ({"remote_url": "http://ai.test/x?key=SECRET"}, ValueError, "'http://ai.test/x'"),
        ({"remote_url": "ws://"}, ValueError, "ws:// or wss:// URL"),
        (
            {"remote_url": "ws://a.test", "stream_type": 7},
            ValueError,
            "7 is not a valid StreamType",
        ),
        (
            {"remote_url": "ws://a.test", "call_stream_handler": "relay"},
            TypeError,
            "got a str, which is not callable",
        ),
        ({"remote_url": "ws://a.test", "connect_timeout": 0}, ValueError, "connect_timeout"),
        ({"remote_url": "ws://a.test", "send_timeout": -1}, ValueError, "send_timeout"),
    ],
)
def test_bad_arguments_are_named(
    kwargs: dict[str, Any], error: type[Exception], words: str
) -> None:
    with pytest.raises(error, match=words) as info:
        StreamConnector(**kwargs)
    assert "SECRET" not in str(info.value)


def test_options_are_normalised_and_revalidated_on_assignment() -> None:
    connector = StreamConnector(
        remote_url="ws://a.test",
        headers={"Authorization": "Bearer x"},
        subprotocols=["v1"],
        ping_interval=None,
        send_timeout=None,
    )
    assert connector.headers == (("Authorization", "Bearer x"),)
    assert connector.subprotocols == ("v1",)
    connector.remote_url = "wss://b.test/agent"
    with pytest.raises(ValueError, match="remote_url"):
        connector.remote_url = ""


def plain_handler(message: str | bytes) -> HandlerResult:
    return message, StreamOp.RELAY


async def context_handler(message: str | bytes, context: object, tag: str) -> HandlerResult:
    return message, StreamOp.RELAY


class AsyncCallable:
    async def __call__(self, message: str | bytes) -> HandlerResult:
        return message, StreamOp.RELAY


class SyncCallable:
    def __call__(self, message: str | bytes) -> HandlerResult:
        return message, StreamOp.RELAY

    async def method(self, message: str | bytes) -> HandlerResult:
        return message, StreamOp.RELAY


@pytest.mark.parametrize(
    "handler",
    [
        relay,
        AsyncCallable(),
        SyncCallable().method,
        functools.partial(context_handler, tag="x"),
        functools.partial(AsyncCallable()),
    ],
    ids=["async-def", "async-call-object", "async-method", "partial", "partial-of-object"],
)
def test_async_handlers_are_accepted(handler: Any) -> None:
    connector = StreamConnector(
        remote_url="ws://a.test",
        call_stream_handler=handler,
        remote_stream_handler=handler,
        on_open=handler,
    )
    assert connector.call_stream_handler is handler


@pytest.mark.parametrize(
    ("handler", "words"),
    [
        (plain_handler, "got the plain (non-async) function 'plain_handler'"),
        (lambda m: relay(m), "got the plain (non-async) function '<lambda>'"),
        (SyncCallable(), "got a SyncCallable whose __call__ is not async"),
        (
            functools.partial(plain_handler),
            "got a functools.partial of the plain (non-async) function 'plain_handler'",
        ),
    ],
    ids=["def", "lambda", "sync-call-object", "partial-of-def"],
)
@pytest.mark.parametrize("field", ["call_stream_handler", "remote_stream_handler", "on_open"])
def test_plain_handlers_are_refused_at_construction(handler: Any, words: str, field: str) -> None:
    with pytest.raises(TypeError) as info:
        StreamConnector(remote_url="ws://a.test", **{field: handler})
    message = str(info.value)
    assert message.startswith(f"{field} must be an async callable, async (")
    assert words in message
    connector = StreamConnector(remote_url="ws://a.test")
    with pytest.raises(TypeError, match="must be an async callable"):
        setattr(connector, field, handler)  # assignment is checked too


class FakeAsgi:
    """The ASGI message level of a Starlette WebSocket, scripted."""

    def __init__(self, *incoming: Mapping[str, Any]) -> None:
        self.incoming = list(incoming)
        self.sent: list[Mapping[str, Any]] = []
        self.fail_sends = False

    async def receive(self) -> Mapping[str, Any]:
        await trio.lowlevel.checkpoint()
        return self.incoming.pop(0)

    async def send(self, message: Mapping[str, Any]) -> None:
        await trio.lowlevel.checkpoint()
        if self.fail_sends:
            raise OSError("connection reset")
        self.sent.append(message)


async def test_asgi_adapter_messages_and_close() -> None:
    asgi = FakeAsgi(
        {"type": "websocket.receive", "text": "hi", "bytes": None},
        {"type": "websocket.receive", "bytes": b"\x00\x01"},
        {"type": "websocket.disconnect", "code": 1001, "reason": "bye"},
    )
    socket = as_message_stream(asgi)
    assert isinstance(socket, AsgiWebSocket)
    assert await socket.get_message() == "hi"
    assert await socket.get_message() == b"\x00\x01"
    await socket.send_message("out")
    await socket.send_message(b"\x02")
    for _ in range(2):  # the close is remembered
        with pytest.raises(WSSConnectionClosed) as info:
            await socket.get_message()
        assert (info.value.code, info.value.reason) == (1001, "bye")
    with pytest.raises(WSSConnectionClosed):
        await socket.send_message("late")
    await socket.aclose(1000)  # the peer is gone: nothing to send
    assert asgi.sent == [
        {"type": "websocket.send", "text": "out"},
        {"type": "websocket.send", "bytes": b"\x02"},
    ]


async def test_asgi_adapter_close_once_and_failed_send() -> None:
    asgi = FakeAsgi()
    socket = AsgiWebSocket(asgi)
    await socket.aclose(1011, "bridge error")
    await socket.aclose(1000)
    assert asgi.sent == [{"type": "websocket.close", "code": 1011, "reason": "bridge error"}]
    with pytest.raises(WSSConnectionClosed):
        await socket.get_message()

    broken = FakeAsgi()
    broken.fail_sends = True
    socket = AsgiWebSocket(broken)
    with pytest.raises(WSSConnectionClosed) as info:
        await socket.send_message("x")
    assert info.value.code == 1006


async def test_asgi_adapter_refusing_an_unexpected_message_is_our_close() -> None:
    socket = AsgiWebSocket(FakeAsgi({"type": "http.request"}))
    with pytest.raises(WSSConnectionClosed) as info:
        await socket.get_message()
    assert (info.value.code, info.value.by_peer) == (1002, False)
    assert info.value.reason == "unexpected ASGI message 'http.request'"


def test_unsupported_socket_is_named() -> None:
    with pytest.raises(TypeError, match="got int"):
        as_message_stream(42)
