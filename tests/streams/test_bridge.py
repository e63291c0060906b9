"""bridge_stream over in-memory WebSockets: relaying, and every way a bridge ends (teler.md D).

Each termination test checks that both sides end up closed with a meaningful
code and that an error, when there is one, reaches the caller.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from functools import partial

import pytest
import trio
import trio.testing

from telcoflow_trio._memory_stream import DEFAULT_CAPACITY, BoundedStream
from telcoflow_trio.exceptions import StreamBridgeError, WSSConnectionClosed
from telcoflow_trio.streams import (
    BridgeContext,
    BridgeEnd,
    CloseInfo,
    HandlerResult,
    StreamConnector,
    StreamOp,
    StreamType,
    relay,
    teler,
)
from telcoflow_trio.testing import MemoryServer, open_memory_server
from telcoflow_trio.testing.teler import open_teler_peer
from telcoflow_trio.ws._transport import TRANSPORTS, Transport, WebSocket

from .conftest import CallPair, MemoryRemote, open_call_pair, spawn

URL = "ws://ai.test/agent"
PCM = bytes(range(256)) * 5  # 1280 bytes: 80 ms at 8 kHz, 4 chunks of 20 ms


async def to_teler(message: str | bytes) -> HandlerResult:
    """Remote -> call: turn the echoed Teler audio into outbound audio; bytes pass as is."""
    if isinstance(message, bytes):
        return message, StreamOp.RELAY
    parsed = teler.parse_message(message)
    if isinstance(parsed, teler.TelerAudio):
        return teler.audio_message(parsed.pcm, parsed.message_id or 0), StreamOp.RELAY
    return None, StreamOp.PASS


#: The remote leg's WebSocket implementation; every test runs on each.
TRANSPORT: Transport = "trio-websocket"


@pytest.fixture(autouse=True, params=TRANSPORTS)
def transport(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> Transport:
    monkeypatch.setattr(sys.modules[__name__], "TRANSPORT", request.param)
    return request.param  # type: ignore[no-any-return]


def connector(remote: MemoryRemote, **options: object) -> StreamConnector:
    options.setdefault("remote_stream_handler", to_teler)
    options.setdefault("transport", TRANSPORT)
    return StreamConnector(remote_url=URL, open_stream=remote.open_stream, **options)  # type: ignore[arg-type]


async def test_echo_both_ways_then_teler_hangs_up(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    app_ws, teler_ws = call_pair
    running = spawn(nursery, lambda: connector(remote).bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        await peer.send_audio(PCM)
        await peer.wait_audio(len(PCM))
        assert bytes(peer.audio) == PCM
        assert peer.chunk_ids == [2, 3, 4, 5]
        await peer.hang_up(1000, "call over")
        result = await running.wait()
    assert result.end is BridgeEnd.CALL_CLOSED
    assert result.call_close == CloseInfo(1000, "call over", by_peer=True)
    assert result.remote_close == CloseInfo(1000, "call ended", by_peer=False)
    assert remote.closes == [(1000, "call ended")]
    # start + 4 audio each way; the echoed start is passed, not relayed
    assert result.call_to_remote.messages_in == result.call_to_remote.messages_out == 5
    assert result.remote_to_call.messages_in == 5
    assert result.remote_to_call.messages_out == 4
    assert result.call_to_remote.bytes_in == result.call_to_remote.bytes_out > len(PCM)


class Counting:
    """A handler object: an instance with an ``async def __call__``."""

    def __init__(self) -> None:
        self.seen = 0

    async def __call__(self, message: str | bytes) -> HandlerResult:
        self.seen += 1
        return message, StreamOp.RELAY


async def tagged(tags: list[str], message: str | bytes, ctx: BridgeContext) -> HandlerResult:
    tags.append(ctx.call_id or "?")
    return await to_teler(message)


async def test_handler_objects_and_partials_relay(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    app_ws, teler_ws = call_pair
    counting, tags = Counting(), list[str]()
    bridge = connector(
        remote, call_stream_handler=counting, remote_stream_handler=partial(tagged, tags)
    )
    running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        await peer.send_audio(PCM)
        await peer.wait_audio(len(PCM))
        await peer.hang_up()
    result = await running.wait()
    assert result.end is BridgeEnd.CALL_CLOSED
    assert counting.seen == 5  # start + 4 audio
    assert tags == ["call-0001"] * 5  # the context reached the partial


async def test_binary_both_ways(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    """7-bit, 16-bit and 64-bit WebSocket length fields, relayed unchanged."""
    app_ws, teler_ws = call_pair
    running = spawn(
        nursery, lambda: connector(remote, remote_stream_handler=relay).bridge_stream(app_ws)
    )
    async with open_teler_peer(teler_ws, send_start=False) as peer:
        for size in (1, 320, 65536):
            frame = bytes(range(256)) * (size // 256) + b"\xff" * (size % 256)
            await teler_ws.send_message(frame)
            await peer.wait_for(lambda frame=frame: frame in peer.received)  # type: ignore[misc]
        await teler_ws.send_message("text too")
        await peer.wait_for(lambda: bool(peer.errors))  # echoed as plain text, not Teler JSON
    result = await running.wait()
    assert result.end is BridgeEnd.CALL_CLOSED
    assert result.remote_to_call.bytes_out == 1 + 320 + 65536 + len("text too")


async def test_stop_from_call_handler_closes_both_normally(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    app_ws, teler_ws = call_pair
    seen: list[str | bytes] = []

    async def call_handler(message: str | bytes) -> HandlerResult:
        seen.append(message)
        if len(seen) == 3:
            return None, StreamOp.STOP
        return message, StreamOp.RELAY

    running = spawn(
        nursery, lambda: connector(remote, call_stream_handler=call_handler).bridge_stream(app_ws)
    )
    async with open_teler_peer(teler_ws) as peer:
        await peer.send_audio(PCM)  # start + 4 chunks; the third message stops
        assert await peer.wait_closed() == (1000, "Stream stopped by client")
    result = await running.wait()
    assert result.end is BridgeEnd.CALL_STOP
    assert result.call_close == CloseInfo(1000, "Stream stopped by client", by_peer=False)
    assert result.remote_close == CloseInfo(1000, "Stream stopped by client", by_peer=False)
    await remote.done.wait()
    assert remote.closes == [(1000, "Stream stopped by client")]
    assert result.call_to_remote.messages_out == 2


async def test_stop_from_remote_handler(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    app_ws, teler_ws = call_pair

    async def remote_handler(message: str | bytes) -> HandlerResult:
        return (None, StreamOp.STOP) if "audio" in str(message) else (None, StreamOp.PASS)

    running = spawn(
        nursery,
        lambda: connector(remote, remote_stream_handler=remote_handler).bridge_stream(app_ws),
    )
    async with open_teler_peer(teler_ws) as peer:
        await peer.send_audio(PCM)
        assert await peer.wait_closed() == (1000, "Stream stopped by client")
    result = await running.wait()
    assert result.end is BridgeEnd.REMOTE_STOP
    assert result.remote_close == CloseInfo(1000, "Stream stopped by client", by_peer=False)


async def test_remote_closes_normally(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    make_remote: Callable[..., MemoryRemote],
    call_pair: CallPair,
) -> None:
    async def say_bye(ws: WebSocket) -> None:
        await ws.get_message()
        await ws.aclose(1000, "agent done")

    remote = make_remote(say_bye)
    app_ws, teler_ws = call_pair
    running = spawn(nursery, lambda: connector(remote).bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        assert await peer.wait_closed() == (1000, "remote closed")
    result = await running.wait()
    assert result.end is BridgeEnd.REMOTE_CLOSED
    assert result.remote_close == CloseInfo(1000, "agent done", by_peer=True)
    assert result.call_close == CloseInfo(1000, "remote closed", by_peer=False)


@pytest.mark.parametrize(("code", "reason"), [(1011, "llm crashed"), (4000, None)])
async def test_remote_closes_abnormally_is_an_error(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    make_remote: Callable[..., MemoryRemote],
    call_pair: CallPair,
    code: int,
    reason: str | None,
) -> None:
    async def fail(ws: WebSocket) -> None:
        await ws.get_message()
        await ws.aclose(code, reason)

    remote = make_remote(fail)
    app_ws, teler_ws = call_pair
    running = spawn(nursery, lambda: connector(remote).bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert f"the remote closed the connection with code {code}" in str(error)
    assert isinstance(error.__cause__, WSSConnectionClosed)
    assert error.result is not None
    assert error.result.end is BridgeEnd.ERROR
    assert error.result.remote_close == CloseInfo(code, reason, by_peer=True)
    assert error.result.call_close == CloseInfo(1011, "bridge error", by_peer=False)


@pytest.mark.parametrize(
    ("returned", "words"),
    [
        (["x", StreamOp.RELAY], r"returned \['x', <StreamOp.RELAY: 0>\] \(list\)"),
        (("x", StreamOp.RELAY, 1), r"\(tuple\): expected a \(data, StreamOp\) tuple"),
        ("x", r"returned 'x' \(str\)"),
        (None, r"returned None \(NoneType\)"),
        (("x", "RELAY"), "the second item must be a StreamOp, got str"),
        (("x", 0), "the second item must be a StreamOp, got int"),
        ((123, StreamOp.RELAY), "RELAY needs str, bytes or None data, got int"),
        ((bytearray(b"x"), StreamOp.RELAY), "got bytearray"),
    ],
)
async def test_bad_handler_results_are_named(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
    returned: object,
    words: str,
) -> None:
    async def call_handler(message: str | bytes) -> object:
        return returned

    app_ws, teler_ws = call_pair
    running = spawn(
        nursery, lambda: connector(remote, call_stream_handler=call_handler).bridge_stream(app_ws)
    )
    async with open_teler_peer(teler_ws) as peer:
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert str(error).startswith("call_stream_handler returned")
    assert error.result is not None
    assert error.result.remote_close == CloseInfo(1011, "bridge error", by_peer=False)
    with pytest.raises(StreamBridgeError, match=words):
        raise error
    await remote.done.wait()
    assert remote.closes == [(1011, "bridge error")]


async def test_handler_exception_reaches_the_caller(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    async def remote_handler(message: str | bytes) -> HandlerResult:
        raise KeyError("audio_event")

    app_ws, teler_ws = call_pair
    running = spawn(
        nursery,
        lambda: connector(remote, remote_stream_handler=remote_handler).bridge_stream(app_ws),
    )
    async with open_teler_peer(teler_ws) as peer:
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert str(error) == "remote_stream_handler raised KeyError: 'audio_event'"
    assert isinstance(error.__cause__, KeyError)
    await remote.done.wait()
    assert remote.closes == [(1011, "bridge error")]


async def test_errors_on_both_sides_at_once_are_one_error(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    both_in = trio.Event()
    arrived: list[str] = []

    async def fail(side: str) -> HandlerResult:
        arrived.append(side)
        if len(arrived) == 2:
            both_in.set()  # the first one wakes up: both raise in the same instant
        else:
            await both_in.wait()
        raise ValueError(side)

    async def call_handler(message: str | bytes) -> HandlerResult:
        return await fail("call side")

    async def remote_handler(message: str | bytes) -> HandlerResult:
        return await fail("remote side")

    async def greet(ws: WebSocket) -> None:
        await ws.send_message("hello")
        await echo_forever(ws)

    app_ws, teler_ws = call_pair
    remote.handler = greet
    bridge = connector(
        remote, call_stream_handler=call_handler, remote_stream_handler=remote_handler
    )
    running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        await peer.wait_closed()
    error = await running.wait_error()
    assert "(and 1 more errors)" in str(error)
    assert isinstance(error.__cause__, ExceptionGroup)
    assert len(error.__cause__.exceptions) == 2


async def echo_forever(ws: WebSocket) -> None:
    while True:
        await ws.send_message(await ws.get_message())


async def test_teler_compat_results(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    """The README's ``({}, StreamOp.PASS)`` works; ``(None, RELAY)`` sends nothing."""
    sent: list[str | bytes] = []

    async def call_handler(message: str | bytes) -> HandlerResult:
        sent.append(message)
        if len(sent) == 1:
            return {}, StreamOp.PASS  # type: ignore[return-value]
        if len(sent) == 2:
            return None, StreamOp.RELAY
        return message, StreamOp.RELAY

    app_ws, teler_ws = call_pair
    running = spawn(
        nursery, lambda: connector(remote, call_stream_handler=call_handler).bridge_stream(app_ws)
    )
    async with open_teler_peer(teler_ws) as peer:
        await peer.send_audio(PCM)  # start (passed), chunk 1 (None), chunks 2-4 relayed
        await peer.wait_audio(len(PCM) * 3 // 4)
        await trio.sleep(1)
        assert bytes(peer.audio) == PCM[320:]
    result = await running.wait()
    assert result.call_to_remote.messages_out == 3


async def test_remote_unreachable(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    make_remote: Callable[..., MemoryRemote],
    call_pair: CallPair,
    caplog: pytest.LogCaptureFixture,
) -> None:
    remote = make_remote(refuse=True)
    app_ws, teler_ws = call_pair
    bridge = StreamConnector(
        remote_url="ws://ai.test/agent?token=SECRET", open_stream=remote.open_stream
    )
    running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert str(error) == "could not connect to the remote ws://ai.test/agent"
    assert "Connection refused" in str(error.__cause__)
    assert error.result is not None
    assert error.result.remote_close is None
    assert "SECRET" not in caplog.text + str(error) + str(error.__cause__)


async def test_connect_timeout(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, call_pair: CallPair
) -> None:
    async def never(host: str, port: int, ssl_context: object) -> trio.abc.Stream:
        await trio.sleep_forever()
        raise AssertionError

    app_ws, teler_ws = call_pair
    bridge = StreamConnector(remote_url=URL, open_stream=never, connect_timeout=3)
    start = trio.current_time()
    running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert trio.current_time() - start == pytest.approx(3)
    assert "took longer than 3 s" in str(error.__cause__)


async def test_outer_cancellation_closes_both_sides(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    app_ws, teler_ws = call_pair
    bridge = connector(remote)
    cancelled = trio.Event()

    async def run_for_a_while() -> None:
        with trio.move_on_after(5):
            await bridge.bridge_stream(app_ws)
        cancelled.set()

    async with open_teler_peer(teler_ws) as peer:
        nursery.start_soon(run_for_a_while)
        await peer.send_audio(PCM)
        await peer.wait_audio(len(PCM))
        assert await peer.wait_closed() == (1001, "going away")
        await cancelled.wait()
        assert trio.current_time() == pytest.approx(5)
    await remote.done.wait()
    assert remote.closes == [(1001, "going away")]
    assert not remote.errors


async def test_slow_remote_gets_everything_in_order_with_bounded_buffering(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    make_remote: Callable[..., MemoryRemote],
    call_pair: CallPair,
) -> None:
    """Backpressure: a remote reading 10x slower than real time loses nothing."""
    got: list[str | bytes] = []
    in_flight: list[int] = []
    all_in = trio.Event()

    async def slow(ws: WebSocket) -> None:
        while True:
            got.append(await ws.get_message())
            up = seen[0]._bridge.up
            in_flight.append(up.messages_in - up.messages_out)
            if len(got) == 41:
                all_in.set()
            await trio.sleep(0.2)

    remote = make_remote(slow, lockstep=True)
    app_ws, teler_ws = call_pair
    seen: list[BridgeContext] = []

    async def call_handler(message: str | bytes, ctx: BridgeContext) -> HandlerResult:
        seen.append(ctx)
        return message, StreamOp.RELAY

    bridge = connector(remote, call_stream_handler=call_handler, message_queue_size=1)
    running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
    pcm = bytes(range(256)) * 50  # 40 chunks of 20 ms
    async with open_teler_peer(teler_ws) as peer:
        await peer.send_audio(pcm)
        await all_in.wait()
        await peer.hang_up()
    result = await running.wait()
    assert [teler.parse_audio(m).pcm for m in got[1:]] == [
        pcm[i : i + 320] for i in range(0, len(pcm), 320)
    ]
    assert max(in_flight) <= 1  # the bridge holds at most the message it is sending
    assert result.call_to_remote.messages_out == 41


def never_read_server() -> AbstractAsyncContextManager[MemoryServer]:
    """The testing kit's memory server, with a handler that never reads."""

    async def never_reads(ws: WebSocket) -> None:
        await trio.sleep_forever()

    return open_memory_server(never_reads)


async def test_a_remote_that_never_reads_pushes_back_on_the_call_leg(
    autojump_clock: trio.testing.MockClock, call_pair: CallPair
) -> None:
    """``send_timeout=None``, no pings: nothing piles up; Teler's own sends block.

    Buffered at most: one message in the bridge, and on each leg the stream's
    64 KiB plus what trio-websocket holds (one queued message). The bridge
    then waits (it was told to) until it is cancelled, and closes within
    ``close_timeout``.
    """
    remote_streams: list[BoundedStream] = []
    contexts: list[BridgeContext] = []
    async with never_read_server() as server:

        async def opener(host: str, port: int, ssl_context: object) -> trio.abc.Stream:
            stream = await server.open_stream(host, port, None)
            assert isinstance(stream, BoundedStream)
            remote_streams.append(stream)
            return stream

        async def seen(ctx: BridgeContext) -> None:
            contexts.append(ctx)

        bridge = StreamConnector(
            remote_url=URL,
            open_stream=opener,
            transport=TRANSPORT,
            send_timeout=None,
            ping_interval=None,
            close_timeout=1,
            on_open=seen,
        )
        app_ws, teler_ws = call_pair
        samples: list[tuple[int, int, int, int]] = []
        async with open_teler_peer(teler_ws) as peer, trio.open_nursery() as nursery:
            nursery.start_soon(bridge.bridge_stream, app_ws)
            nursery.start_soon(peer.send_audio, bytes(320) * 3000)  # 60 s, paced
            for _ in range(6):
                await trio.sleep(10)
                up = contexts[0]._bridge.up
                unread_by_remote = remote_streams[0].statistics()[0]
                unread_by_bridge = app_ws._stream.statistics()[1]  # type: ignore[attr-defined]
                in_flight = up.messages_in - up.messages_out
                samples.append((up.messages_in, in_flight, unread_by_remote, unread_by_bridge))
            nursery.cancel_scope.cancel()  # e.g. the server shutting down
            cancelled_at = trio.current_time()
        assert peer.close == (1001, "going away")
        assert trio.current_time() - cancelled_at <= 1
    read_at_10s, read_at_60s = samples[0][0], samples[-1][0]
    assert read_at_60s == read_at_10s < 3000  # stalled: Teler's sends are blocked
    assert max(in_flight for _, in_flight, _, _ in samples) <= 1
    assert max(unread for *_, unread, _ in samples) <= DEFAULT_CAPACITY
    assert max(unread for *_, unread in samples) <= DEFAULT_CAPACITY


async def test_keepalive_ends_a_bridge_whose_remote_never_reads(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, call_pair: CallPair
) -> None:
    """With ``send_timeout=None`` the pings are the policy: their sends block too."""
    async with never_read_server() as server:
        bridge = StreamConnector(
            remote_url=URL,
            open_stream=server.open_stream,
            transport=TRANSPORT,
            send_timeout=None,
            ping_interval=5,
            ping_timeout=3,
            close_timeout=1,
        )
        app_ws, teler_ws = call_pair
        running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
        async with open_teler_peer(teler_ws) as peer:
            nursery.start_soon(peer.send_audio, bytes(320) * 3000)
            assert await peer.wait_closed() == (1011, "bridge error")
        error = await running.wait_error()
    assert str(error) == "the remote did not answer a ping within 3 s"
    assert trio.current_time() <= 5 + 3 + 1 + 0.01


async def test_stuck_remote_ends_the_bridge_after_send_timeout(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    make_remote: Callable[..., MemoryRemote],
    call_pair: CallPair,
) -> None:
    async def stuck(ws: WebSocket) -> None:
        await ws.get_message()
        await trio.sleep_forever()

    remote = make_remote(stuck, lockstep=True)
    app_ws, teler_ws = call_pair
    bridge = connector(remote, send_timeout=4, ping_interval=None, close_timeout=1)
    running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        start = trio.current_time()
        await peer.send_audio(bytes(3200))
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert str(error) == "a send to the remote has been blocked for over 4 s"
    assert 4 <= trio.current_time() - start <= 8 + 1


async def test_keepalive_detects_a_silent_remote(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    app_ws, teler_ws = call_pair
    bridge = connector(remote, ping_interval=5, ping_timeout=3, close_timeout=1)
    running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        await trio.sleep(60)  # idle but healthy: pings are answered
        assert peer.close is None
        remote.streams[0].frozen = True
        start = trio.current_time()
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert str(error) == "the remote did not answer a ping within 3 s"
    assert trio.current_time() - start <= 5 + 3 + 1 + 0.01


#: Data each transport refuses, sent raw by the remote: (frame bytes, close code).
REFUSED = {
    "protocol-violation": (b"\xc1\x01x", 1002),  # RSV1 set, no extension
    "invalid-utf8": (b"\x81\x02\xff\xfe", 1007),
    "oversized": (b"\x82\x7e\x07\xd0" + b"x" * 2000, 1009),  # 2000 bytes > 1000
}


@pytest.mark.parametrize("kind", REFUSED)
async def test_remote_sending_refused_data_is_closed_by_us(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    make_remote: Callable[..., MemoryRemote],
    call_pair: CallPair,
    kind: str,
) -> None:
    frame, code = REFUSED[kind]

    async def bad(ws: WebSocket) -> None:
        await ws.get_message()
        await remote.streams[0].inner.send_all(frame)
        await ws.get_message()  # until our close arrives

    remote = make_remote(bad)
    app_ws, teler_ws = call_pair
    bridge = connector(remote, max_message_size=1000, close_timeout=1)
    running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert error.result is not None
    remote_close = error.result.remote_close
    assert remote_close is not None
    assert (remote_close.code, remote_close.by_peer) == (code, False)
    assert remote_close.reason  # what was wrong, as sent to the remote
    assert str(error) == (
        f"the remote sent data we refused; we closed it with code {code}: {remote_close.reason}"
    )
    assert isinstance(error.__cause__, WSSConnectionClosed)
    assert error.result.end is BridgeEnd.ERROR
    assert error.result.call_close == CloseInfo(1011, "bridge error", by_peer=False)
    await remote.done.wait()
    assert remote.closes == [(code, remote_close.reason)]  # the remote got our close


async def test_call_sending_refused_data_is_closed_by_us(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    app_ws, teler_ws = call_pair
    running = spawn(nursery, lambda: connector(remote).bridge_stream(app_ws))
    await teler_ws._conn._stream.send_all(b"\x81\x82abcd" + bytes([0xFF ^ 0x61, 0xFE ^ 0x62]))
    with pytest.raises(WSSConnectionClosed) as info:
        await teler_ws.get_message()
    error = await running.wait_error()
    assert str(error).startswith("the call sent data we refused; we closed it with code 1007")
    assert error.result is not None
    assert error.result.call_close is not None
    assert (error.result.call_close.code, error.result.call_close.by_peer) == (1007, False)
    # trio-websocket's server drops TCP as soon as it refuses a frame, before
    # anything can send the 1007, so Teler sees the connection drop.
    assert info.value.code == 1006
    assert error.result.remote_close == CloseInfo(1011, "bridge error", by_peer=False)


async def test_remote_connection_lost(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    make_remote: Callable[..., MemoryRemote],
    call_pair: CallPair,
) -> None:
    async def drop(ws: WebSocket) -> None:
        await ws.get_message()
        await trio.aclose_forcefully(remote.streams[0])
        await trio.sleep_forever()

    remote = make_remote(drop)
    app_ws, teler_ws = call_pair
    running = spawn(nursery, lambda: connector(remote).bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        await peer.send_audio(PCM)  # both relays busy when the remote drops
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert str(error) == "the remote closed the connection with code 1006"
    assert error.result is not None
    assert error.result.end is BridgeEnd.ERROR
    assert error.result.remote_close == CloseInfo(1006, None, by_peer=True)
    assert error.result.call_close == CloseInfo(1011, "bridge error", by_peer=False)


async def test_call_media_socket_lost(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    app_ws, teler_ws = call_pair
    running = spawn(nursery, lambda: connector(remote).bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        await peer.send_audio(PCM)
        await peer.wait_audio(len(PCM))
        await trio.aclose_forcefully(teler_ws._conn._stream)  # Teler's TCP drops
    result = await running.wait()
    assert result.end is BridgeEnd.CALL_CLOSED
    assert result.call_close == CloseInfo(1006, None, by_peer=True)
    assert result.remote_close == CloseInfo(1000, "call ended", by_peer=False)
    await remote.done.wait()
    assert remote.closes == [(1000, "call ended")]


async def test_unidirectional_is_listen_only(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    heard: list[str | bytes] = []

    async def remote_handler(message: str | bytes) -> HandlerResult:
        heard.append(message)
        return message, StreamOp.RELAY

    app_ws, teler_ws = call_pair
    bridge = connector(
        remote, stream_type=StreamType.UNIDIRECTIONAL, remote_stream_handler=remote_handler
    )
    running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        await peer.send_audio(PCM)
        await trio.sleep(1)
        assert len(heard) == 5  # the remote's messages still reach its handler
        assert peer.received == []  # but nothing goes back to the call
    result = await running.wait()
    assert result.remote_to_call.messages_in == 5
    assert result.remote_to_call.messages_out == 0


async def test_handlers_know_their_call_without_shared_state(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, remote: MemoryRemote
) -> None:
    """One module-level connector, two concurrent calls, per-bridge context and chunk ids."""

    async def call_handler(message: str | bytes, ctx: BridgeContext) -> HandlerResult:
        ctx.state["messages"] = ctx.state.get("messages", 0) + 1
        return message, StreamOp.RELAY

    async def remote_handler(message: str | bytes, ctx: BridgeContext) -> HandlerResult:
        parsed = teler.parse_message(message)
        if not isinstance(parsed, teler.TelerAudio):
            return None, StreamOp.PASS
        assert ctx.start is not None
        ids = ctx.state.setdefault("ids", teler.ChunkIds())
        tagged = parsed.pcm[:-4] + ctx.call_id.encode()[-4:]  # type: ignore[union-attr]
        return teler.audio_message(tagged, ids.next()), StreamOp.RELAY

    shared = connector(
        remote, call_stream_handler=call_handler, remote_stream_handler=remote_handler
    )
    peers = {}
    async with trio.open_nursery() as calls:
        for call_id in ("call-AAAA", "call-BBBB"):
            app_ws, teler_ws = await open_call_pair(nursery)
            spawn(nursery, lambda app_ws=app_ws: shared.bridge_stream(app_ws))  # type: ignore[misc]

            async def talk(teler_ws: WebSocket = teler_ws, call_id: str = call_id) -> None:
                async with open_teler_peer(teler_ws, call_id=call_id) as peer:
                    peers[call_id] = peer
                    await peer.send_audio(PCM)
                    await peer.wait_audio(len(PCM))

            calls.start_soon(talk)
    for call_id, peer in peers.items():
        assert peer.chunk_ids == [1, 2, 3, 4]  # each call has its own ids
        for offset in range(0, len(PCM), 320):
            assert peer.audio[offset + 316 : offset + 320] == call_id.encode()[-4:]


async def test_context_and_options_reach_the_remote(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    async def on_open(ctx: BridgeContext) -> None:
        await ctx.send_to_remote('{"type": "session.update"}')

    app_ws, teler_ws = call_pair
    got: list[str | bytes] = []

    async def record(ws: WebSocket) -> None:
        while True:
            got.append(await ws.get_message())

    remote.handler = record
    bridge = connector(
        remote,
        headers={"Authorization": "Bearer t0k"},
        subprotocols=["agent.v1"],
        on_open=on_open,
    )
    running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        await peer.send_audio(PCM[:320])
        await trio.sleep(1)
    result = await running.wait()
    assert got[0] == '{"type": "session.update"}'
    assert teler.parse_message(got[1]) == teler.TelerStart(
        call_id="call-0001", stream_id="stream-0001", account_id="account-0001",
        call_app_id="app-0001", message_id=1,
    )  # fmt: skip
    request = remote.requests[0]
    assert (b"authorization", b"Bearer t0k") in request.headers
    assert request.proposed_subprotocols == ("agent.v1",)
    assert result.call_to_remote.messages_out == 3  # on_open's message counts too


async def test_on_open_failure(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    async def on_open(ctx: BridgeContext) -> None:
        raise RuntimeError("no session")

    app_ws, teler_ws = call_pair
    running = spawn(nursery, lambda: connector(remote, on_open=on_open).bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert str(error) == "on_open raised RuntimeError: no session"
    await remote.done.wait()
    assert remote.closes == [(1011, "bridge error")]


async def test_rechunked_audio_clear_and_flush_on_close(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    make_remote: Callable[..., MemoryRemote],
    call_pair: CallPair,
) -> None:
    """A voice AI's 100 ms pieces reach Teler in >= 500 ms chunks; clear; the tail is flushed."""
    piece = b"\x01\x00" * 800  # 100 ms at 8 kHz

    async def voice_ai(ws: WebSocket) -> None:
        await ws.get_message()  # start
        for _ in range(7):
            await ws.send_message(piece)
        await ws.send_message("interrupted")
        for _ in range(3):
            await ws.send_message(piece)
        await ws.send_message("bye")
        await trio.sleep_forever()

    async def remote_handler(message: str | bytes, ctx: BridgeContext) -> HandlerResult:
        out = ctx.audio_out()
        if isinstance(message, bytes):
            return out.push(message), StreamOp.RELAY
        if message == "interrupted":
            await ctx.clear_audio()
            return None, StreamOp.PASS
        return None, StreamOp.STOP

    remote = make_remote(voice_ai)
    app_ws, teler_ws = call_pair
    running = spawn(
        nursery,
        lambda: connector(remote, remote_stream_handler=remote_handler).bridge_stream(app_ws),
    )
    async with open_teler_peer(teler_ws) as peer:
        await peer.wait_closed()
    await running.wait()
    kinds = [type(m).__name__ for m in peer.received]
    assert kinds == ["TelerAudio", "TelerClear", "TelerAudio"]
    assert bytes(peer.audio) == piece * 5 + piece * 3  # 2 pieces dropped by the clear
    assert peer.chunk_ids == [1, 2]


async def test_no_per_message_logging_and_no_secrets(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="telcoflow_trio")
    app_ws, teler_ws = call_pair
    bridge = StreamConnector(remote_url=URL + "?token=SECRET", open_stream=remote.open_stream)
    running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        await peer.send_audio(bytes(320 * 50))
        await peer.wait_for(lambda: len(peer.received) == 51)
    await running.wait()
    bridge_logs = [r for r in caplog.records if r.name.startswith("telcoflow_trio.streams")]
    assert len(bridge_logs) == 2  # connected, ended
    assert "ws://ai.test/agent" in caplog.text
    assert "SECRET" not in caplog.text
    bridge.headers = (("Authorization", "Bearer SECRET"),)
    assert "SECRET" not in repr(bridge)


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="transport"):
        StreamConnector(remote_url=URL, transport="tcp")  # type: ignore[arg-type]
