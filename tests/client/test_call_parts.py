"""Pieces of the client that need no server: audio queues, validation, termination."""

from __future__ import annotations

import gc
import logging

import pytest
import trio
import trio.testing

import telcoflow_trio
from telcoflow_trio import (
    ActiveCall,
    CallState,
    TelcoflowClient,
    TelcoflowClientConfig,
    TerminationReason,
    events,
)
from telcoflow_trio._media import InboundAudio, MediaConnection
from telcoflow_trio._throttle import ThrottledLog
from telcoflow_trio.exceptions import (
    BufferClosedError,
    BufferFullError,
    WSSCallClosedError,
    WSSCallStateError,
)
from telcoflow_trio.proto import CallIn


def make_config(**options: object) -> TelcoflowClientConfig:
    return TelcoflowClientConfig.sandbox(
        "key", "connector", base_url="ws://127.0.0.1:9", **options
    )


async def no_stream(host: str, port: int, ssl_context: object) -> trio.abc.Stream:
    raise AssertionError("no connection expected")


def make_call(**options: object) -> ActiveCall:
    call_in = CallIn("s1", "c1", "+100", "+200", "ws://127.0.0.1:9/media", "secret-token")
    return ActiveCall(call_in, make_config(**options), open_stream=no_stream)


async def collect(stream: object) -> list[bytes]:
    return [chunk async for chunk in stream]  # type: ignore[attr-defined]


def test_exports() -> None:
    for name in telcoflow_trio.__all__:
        assert hasattr(telcoflow_trio, name), name
    assert telcoflow_trio.events is events
    assert {"TelcoflowClient", "ActiveCall", "TelcoflowClientConfig"} <= set(
        telcoflow_trio.__all__
    )


async def test_inbound_backlog_is_bounded_drop_oldest(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbound = InboundAudio(max_chunks=3)
    for i in range(5):
        inbound.push(bytes([i, i]))
    assert (inbound.dropped_chunks, inbound.dropped_bytes) == (2, 4)
    stream = inbound.open_stream()  # the first reader takes over the backlog
    inbound.end()
    assert await collect(stream) == [b"\x02\x02", b"\x03\x03", b"\x04\x04"]


async def test_inbound_fan_out_and_slow_reader_drops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbound = InboundAudio(max_chunks=2)
    fast, slow = inbound.open_stream(), inbound.open_stream()
    received: list[bytes] = []
    inbound.push(b"a1")
    received.append(await fast.__anext__())
    inbound.push(b"b2")
    received.append(await fast.__anext__())
    inbound.push(b"c3")
    inbound.end()
    received += await collect(fast)
    assert received == [b"a1", b"b2", b"c3"]
    assert await collect(slow) == [b"b2", b"c3"]  # the oldest chunk was dropped
    assert inbound.dropped_chunks == 1


async def test_d8_audio_stream_restartable_and_ends_after_the_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    inbound = InboundAudio(max_chunks=10)
    first = inbound.open_stream()
    inbound.push(b"11")
    assert await first.__anext__() == b"11"
    await first.aclose()
    inbound.push(b"22")  # nobody reading: kept in the backlog
    second = inbound.open_stream()
    inbound.end()
    assert await collect(second) == [b"22"]
    with trio.fail_after(1):  # a reader opened after the end never blocks
        assert await collect(inbound.open_stream()) == []


async def test_dropped_reader_is_forgotten(autojump_clock: trio.testing.MockClock) -> None:
    inbound = InboundAudio(max_chunks=10)
    stream = inbound.open_stream()
    del stream
    gc.collect()
    inbound.push(b"xx")
    assert await collect_after_end(inbound) == [b"xx"]  # went to the backlog


async def collect_after_end(inbound: InboundAudio) -> list[bytes]:
    stream = inbound.open_stream()
    inbound.end()
    return await collect(stream)


async def test_reader_waits_then_wakes(autojump_clock: trio.testing.MockClock) -> None:
    inbound = InboundAudio(max_chunks=10)
    stream = inbound.open_stream()
    got: list[bytes] = []

    async def read() -> None:
        got.extend(await collect(stream))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(read)
        await trio.testing.wait_all_tasks_blocked()
        inbound.push(b"ab")
        await trio.testing.wait_all_tasks_blocked()
        assert got == []  # still iterating
        inbound.end()
    assert got == [b"ab"]


@pytest.mark.parametrize("ring", [0, 121, -5, 1.5, True, "60", None])
async def test_connect_ring_time_validated(
    ring: object, autojump_clock: trio.testing.MockClock
) -> None:
    call = make_call()
    with pytest.raises(ValueError, match="ring_time_seconds"):
        await call.connect(ring)  # type: ignore[arg-type]


async def test_illegal_command_raises_before_sending(
    autojump_clock: trio.testing.MockClock,
) -> None:
    call = make_call()
    assert call.state is CallState.PENDING
    # The media connection is not even open: the state check must come first.
    for command in (call.whisper, call.barge, call.spy):
        with pytest.raises(WSSCallStateError, match="PENDING"):
            await command()


async def test_send_audio_contract(autojump_clock: trio.testing.MockClock) -> None:
    call = make_call(buffer_size=8)
    with pytest.raises(ValueError, match="whole 2-byte samples"):
        call.send_audio(b"abc")
    call.send_audio(b"123456")
    assert call.get_send_audio_buffer_size() == 6
    with pytest.raises(BufferFullError):
        call.send_audio(b"7890")
    assert call.get_send_audio_buffer_size() == 6  # all or nothing
    assert await call.clear_send_audio_buffer() == 6  # PENDING: local only
    assert call.get_send_audio_buffer_size() == 0


async def test_termination_is_exactly_once_and_closes_everything(
    autojump_clock: trio.testing.MockClock,
) -> None:
    call = make_call()
    seen: list[object] = []
    call.on(events.CALL_TERMINATED)(lambda info: seen.append(info))
    stream = call.audio_stream()
    call._terminate(TerminationReason.MEDIA_LOST, "network", "gone")
    call._terminate(TerminationReason.SERVER, "server")
    info = await call.wait_terminated()
    assert (info.reason, info.who, info.detail) == (
        TerminationReason.MEDIA_LOST,
        "network",
        "gone",
    )
    assert call.terminated
    assert call.state is CallState.DISCONNECTED
    assert await collect(stream) == []
    with pytest.raises(BufferClosedError):
        call.send_audio(b"\x00\x00")
    with pytest.raises(BufferClosedError):
        await call.write_audio(b"\x00\x00")
    with pytest.raises(WSSCallClosedError):
        await call.answer()
    await call.close()  # idempotent
    await call.disconnect()
    await call._dispatch_events()
    assert seen == [info]


async def test_event_registration_validated(autojump_clock: trio.testing.MockClock) -> None:
    call = make_call()
    with pytest.raises(ValueError, match="not a call event"):
        call.on("call.bogus")
    with pytest.raises(ValueError, match="not a call event"):
        call.on(events.INCOMING_CALL)
    client = TelcoflowClient(make_config())
    with pytest.raises(ValueError, match="not a client event"):
        client.on(events.CALL_TERMINATED)
    client.on(events.INCOMING_CALL)(lambda call: None)
    with pytest.raises(ValueError, match="already registered"):
        client.on(events.INCOMING_CALL)(lambda call: None)


async def test_connect_needs_the_context_manager(autojump_clock: trio.testing.MockClock) -> None:
    client = TelcoflowClient(make_config(), open_stream=no_stream)
    with pytest.raises(RuntimeError, match="async with"):
        await client.connect()


def test_repr_hides_the_token() -> None:
    call = make_call()
    assert "secret-token" not in repr(call)
    assert "secret-token" not in repr(call._call_in)


async def test_throttled_log_writes_once_per_interval_and_counts_the_rest(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    log = ThrottledLog(logging.getLogger("test.throttle"), logging.WARNING, interval=10)
    for i in range(5):
        log("bad frame %d", i)
    await trio.sleep(10)
    log("bad frame %d", 5)
    log("bad frame %d", 6)
    assert [r.getMessage() for r in caplog.records] == [
        "bad frame 0",
        "bad frame 5 (4 more like it since the last report)",
    ]
    assert log.suppressed == 1


class FakeWS:
    """A media socket whose ``send_message_nowait`` answers from a script."""

    def __init__(self, *answers: str) -> None:
        self.answers = list(answers)  # "take" or "no"; then "take"
        self.sent: list[tuple[str, bytes]] = []

    def send_message_nowait(self, message: bytes) -> bool:
        if (self.answers.pop(0) if self.answers else "take") == "no":
            return False
        self.sent.append(("nowait", message))
        return True

    async def send_message(self, message: bytes) -> None:
        await trio.lowlevel.checkpoint()
        self.sent.append(("task", message))


def media_with(ws: FakeWS, credit: int) -> MediaConnection:
    media = make_call()._media
    media._ws = ws  # type: ignore[assignment]
    media.credit.grant(credit, 4)
    return media


@pytest.mark.parametrize(
    ("audio", "answers", "expected"),
    [
        (b"abcdefgh", (), ["nowait", "nowait"]),  # two frames from the writing task
        (b"abcdefgh", ("no",), ["task", "task"]),  # the sender sends them, in order, whole
        (b"abcdefgh", ("take", "no"), ["nowait", "task"]),  # the sender sends the rest
    ],
    ids=["socket-takes-all", "socket-refuses", "socket-takes-one"],
)
async def test_agent_audio_leaves_from_the_writing_task_when_the_socket_takes_it(
    autojump_clock: trio.testing.MockClock,
    audio: bytes,
    answers: tuple[str, ...],
    expected: list[str],
) -> None:
    ws = FakeWS(*answers)
    media = media_with(ws, credit=8)
    media.write_nowait(audio)  # frames of 4 bytes
    if expected[0] == "nowait":
        assert ws.sent[0] == ("nowait", b"\x00abcd")  # before any checkpoint
    async with trio.open_nursery() as nursery:
        nursery.start_soon(media._send, ws)
        await media.wait_sent()
        await trio.testing.wait_all_tasks_blocked()
        nursery.cancel_scope.cancel()
    assert [how for how, _ in ws.sent] == expected
    assert b"".join(m[1:] for how, m in ws.sent if m) == audio
    assert media.counters.frames_sent == len(audio) // 4
    assert media.credit.available == 8 - len(audio)


async def test_credit_arriving_sends_queued_audio_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ws = FakeWS()
    media = media_with(ws, credit=0)
    media.write_nowait(b"abcd")
    assert ws.sent == []  # no credit: stays queued
    media.credit.grant(4, 4)
    media._send_or_wake()  # what the reader does on a buffer_request
    assert ws.sent == [("nowait", b"\x00abcd")]
    assert len(media.outgoing) == 0
