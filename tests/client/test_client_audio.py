"""Audio both ways: pull-based sending, bounded receiving (spec D items 1-4, 8, 14)."""

from __future__ import annotations

import itertools
from collections.abc import Callable
from typing import Any

import pytest
import trio
import trio.testing

from telcoflow_trio import ActiveCall, events, proto
from telcoflow_trio.exceptions import BufferFullError, WSSCallCommandTimeoutError
from telcoflow_trio.simulator import CallerScript, SimulatorConfig, tone
from telcoflow_trio.ws._connection import LeanWebSocket
from telcoflow_trio.ws._transport import WebSocket

from .conftest import open_pair

RATE = 24000
MS = RATE * 2 // 1000  # bytes per millisecond at 24 kHz


def pcm(ms: int, value: int = 1000) -> bytes:
    """``ms`` milliseconds of a distinctive, non-silent PCM16LE pattern."""
    samples = ms * RATE // 1000
    return b"".join(((value + i) % 30000).to_bytes(2, "little") for i in range(samples))


@pytest.fixture
def sent_frames(monkeypatch: pytest.MonkeyPatch) -> list[tuple[float, int]]:
    """(time, bytes of PCM) of every audio frame the client sends."""
    frames: list[tuple[float, int]] = []

    def watch(cls: Any, is_client: Callable[[Any], bool]) -> None:
        real = cls.send_message

        async def send_message(self: Any, message: str | bytes) -> None:
            if isinstance(message, bytes) and is_client(self):
                assert message[0] == 0
                frames.append((trio.current_time(), len(message) - 1))
            await real(self, message)

        monkeypatch.setattr(cls, "send_message", send_message)

    watch(WebSocket, lambda ws: ws._conn.is_client)
    watch(LeanWebSocket, lambda ws: ws._client)
    return frames


async def one_call(handler: Any, script: CallerScript | None = None, **kw: Any) -> Any:
    """Place one call; return its result once our handler is done too."""
    async with open_pair(handler=handler, **kw) as (sim, client, _):
        simulated = await sim.place_call(script or CallerScript())
        result = await simulated.wait_result()
        await client.disconnect()
        with trio.fail_after(5):
            await client.run_forever()  # returns once the call's handler is done
        return result


async def test_echo_round_trip(autojump_clock: trio.testing.MockClock) -> None:
    stats: list[Any] = []

    async def handler(call: ActiveCall) -> None:
        await call.answer()
        async for chunk in call.audio_stream():
            call.send_audio(chunk)
        stats.append(call.statistics())

    result = await one_call(handler, CallerScript(audio=tone(440), hangup_after=2))
    assert result.caller_audio_seconds == 2
    assert result.agent_audio_seconds == pytest.approx(2, abs=0.1)
    caller = b"".join(itertools.islice(tone(440).frames(RATE, 960), 100))
    caller = caller[: len(result.agent_audio)]
    assert result.agent_audio == caller  # what we heard is what we played back
    assert result.underruns == 0
    assert result.unrequested_bytes == 0  # never sent without credit
    (s,) = stats
    assert s.frames_received == 100
    assert s.bytes_received == 2 * RATE * 2
    assert s.frames_sent > 0
    assert s.bytes_sent == len(result.agent_audio)


async def test_d3_d4_frames_follow_the_preference_and_no_tail_is_stuck(
    autojump_clock: trio.testing.MockClock, sent_frames: list[tuple[float, int]]
) -> None:
    utterance = pcm(250) + pcm(1)[:6]  # 250 ms plus 3 samples: not a whole frame

    async def handler(call: ActiveCall) -> None:
        await call.answer()
        call.send_audio(utterance)
        with trio.fail_after(1):
            await call.wait_audio_sent()  # the tail went out without more audio
        assert call.get_send_audio_buffer_size() == 0
        await trio.sleep(1)

    # The server prefers 10 ms frames (480 bytes at 24 kHz).
    result = await one_call(handler, sim_config=SimulatorConfig(frame_ms=10))
    sizes = [size for _, size in sent_frames]
    assert sum(sizes) == len(utterance)
    assert all(size % 2 == 0 and size <= 480 for size in sizes)
    assert sizes.count(480) == len(sizes) - 1  # only the last frame is short
    assert result.agent_audio == utterance


async def test_d2_stale_credit_is_capped_and_sending_is_paced(
    autojump_clock: trio.testing.MockClock, sent_frames: list[tuple[float, int]]
) -> None:
    async with open_pair(max_send_credit_ms=200) as (sim, client, _):
        started = trio.Event()
        written_at: list[float] = []

        @client.on(events.INCOMING_CALL)
        async def on_call(call: ActiveCall) -> None:
            await call.answer()
            started.set()
            await trio.sleep(5)  # silent while the server keeps asking
            written_at.append(trio.current_time())
            call.send_audio(pcm(3000))
            await call.wait_audio_sent()

        simulated = await sim.place_call(CallerScript(hangup_after=10))
        await started.wait()
        stale = proto.BufferRequest(9600, 960).encode()  # 200 ms each
        for _ in range(50):
            await sim.faults.send_media(simulated.call_id, stale)
            await trio.sleep(0.1)
        await simulated.wait_result()
    burst = sum(size for t, size in sent_frames if t == written_at[0])
    assert burst <= 200 * MS + 3 * 960  # the cap, plus the simulator's own request
    last = max(t for t, _ in sent_frames)
    assert last - written_at[0] > 2.5  # the rest followed the server's pace


async def test_write_audio_waits_for_room(autojump_clock: trio.testing.MockClock) -> None:
    data = pcm(1000)

    async def handler(call: ActiveCall) -> None:
        await call.answer()
        t = trio.current_time()
        await call.write_audio(data)  # 48000 bytes through a 1024-byte buffer
        assert trio.current_time() - t > 0.9
        await call.wait_audio_sent()
        with pytest.raises(BufferFullError):
            call.send_audio(bytes(2048))
        await trio.sleep(0.5)

    result = await one_call(handler, buffer_size=1024)
    assert result.agent_audio == data  # in order, nothing lost


async def test_clear_send_audio_buffer_interrupts(autojump_clock: trio.testing.MockClock) -> None:
    dropped: list[int] = []

    async def handler(call: ActiveCall) -> None:
        await call.answer()
        call.send_audio(pcm(5000))
        await trio.sleep(1)
        dropped.append(await call.clear_send_audio_buffer())
        assert call.get_send_audio_buffer_size() == 0
        await call.wait_audio_sent()  # nothing left: returns at once
        await trio.sleep(1)

    result = await one_call(handler)
    assert [c.name for c in result.commands] == ["call.answer", "agent.interrupt", "call.close"]
    assert all(c.success for c in result.commands)
    assert dropped[0] > 3900 * MS  # about 4 s were still queued locally
    assert result.agent_audio_seconds < 1.1


async def test_d1_unread_caller_audio_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    async def handler(call: ActiveCall) -> None:
        await call.answer()
        await trio.sleep(10)  # nobody reads audio_stream() for 500 frames
        stats = call.statistics()
        assert stats.frames_received == 500
        assert stats.inbound_dropped_chunks == 450
        assert stats.inbound_dropped_bytes == 450 * 960
        # Commands were not held up by the unread audio.
        t = trio.current_time()
        await call.clear_send_audio_buffer()
        assert trio.current_time() == t
        stream = call.audio_stream()  # gets the newest 50 chunks, then live audio
        chunks = [await stream.__anext__() for _ in range(51)]
        assert len(chunks) == 51

    await one_call(handler, CallerScript(audio=tone(300)), inbound_queue_chunks=50)


async def test_d8_d14_two_readers_opened_before_answer(
    autojump_clock: trio.testing.MockClock,
) -> None:
    counts: list[int] = []

    async def handler(call: ActiveCall) -> None:
        async def read() -> None:
            n = 0
            async for _ in call.audio_stream():
                n += 1
            counts.append(n)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(read)
            nursery.start_soon(read)
            await trio.testing.wait_all_tasks_blocked()
            await call.answer()
        # after the end, a new reader ends at once instead of hanging
        with trio.fail_after(1):
            assert [c async for c in call.audio_stream()] == []

    await one_call(handler, CallerScript(audio=tone(500), hangup_after=1))
    assert counts == [50, 50]


async def test_underruns_counted_when_the_agent_is_late(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stats: list[Any] = []

    async def handler(call: ActiveCall) -> None:
        await call.answer()
        for _ in range(5):
            call.send_audio(pcm(100))
            await trio.sleep(0.3)  # 200 ms late every time
        stats.append(call.statistics())

    result = await one_call(handler)
    assert stats[0].underruns >= 4
    assert stats[0].bytes_sent == 5 * 100 * MS
    assert result.agent_audio_seconds == pytest.approx(0.5)


async def test_d13_clear_buffer_fails_like_every_other_command(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair() as (sim, client, _):
        done = trio.Event()

        @client.on(events.INCOMING_CALL)
        async def on_call(call: ActiveCall) -> None:
            call.send_audio(pcm(100))
            assert await call.clear_send_audio_buffer() == 100 * MS  # PENDING: local only
            await call.answer()
            call.send_audio(pcm(1000))
            sim.faults.drop_responses(True)
            t = trio.current_time()
            with pytest.raises(WSSCallCommandTimeoutError):
                await call.clear_send_audio_buffer()
            assert trio.current_time() - t == 15
            assert call.get_send_audio_buffer_size() == 0  # cleared all the same
            sim.faults.drop_responses(False)
            done.set()

        simulated = await sim.place_call(CallerScript())
        await done.wait()
        result = await simulated.wait_result()
    assert [c.name for c in result.commands][:2] == ["call.answer", "agent.interrupt"]


async def test_audio_queued_before_answer_plays_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    greeting = pcm(300)

    async def handler(call: ActiveCall) -> None:
        call.send_audio(greeting)  # before answering: no credit yet, nothing sent
        await trio.sleep(1)
        assert call.get_send_audio_buffer_size() == len(greeting)
        await call.answer()
        await call.wait_audio_sent()
        await trio.sleep(0.5)

    result = await one_call(handler)
    assert result.first_agent_audio_after_answer == 0
    assert result.agent_audio == greeting
