"""Soak: one client handling calls back to back for 30 virtual minutes, sampled.

Three caller "lines" each place a call as soon as the previous one ended; the
agent answers and echoes, and ends half of the calls itself. Every virtual
minute the test counts the live objects of the library's and the transport's
per-call classes and the tasks; over the last ten minutes ``tracemalloc`` also
measures the memory still held that the library, trio and the WebSocket
stack allocated. Nothing may grow: object and task counts stay within what
three live calls need, and the traced memory ends where it started, give or
take a small slack (a leak of even a few hundred bytes per call shows).
"""

from __future__ import annotations

import contextlib
import gc
import logging
import math
import random
import tracemalloc
from collections import Counter
from collections.abc import Iterator

import attrs
import pytest
import trio
import trio.testing
import trio_websocket
import wsproto

from telcoflow_trio import ActiveCall, TelcoflowClient, events
from telcoflow_trio._media import AudioStream, InboundAudio, MediaConnection
from telcoflow_trio.exceptions import BufferClosedError, BufferFullError, WSSCallError
from telcoflow_trio.simulator import CallerScript, SimulatorConfig, open_simulator, tone
from telcoflow_trio.simulator._call import SimulatedCall
from telcoflow_trio.simulator._connection import Connection
from telcoflow_trio.ws._transport import WebSocket

from .conftest import all_tasks, client_config, client_tasks

pytestmark = pytest.mark.reliability

SOAK_SECONDS = 30 * 60
TRACED_FROM = 22 * 60
LINES = 3
SAMPLE_EVERY = 60.0
#: Traced samples skipped while bounded caches (results kept, trio's own) fill.
WARM_UP_SAMPLES = 2
#: Classes whose instances live exactly as long as a call or a connection.
PER_CALL_CLASSES = (
    ActiveCall,
    MediaConnection,
    InboundAudio,
    AudioStream,
    SimulatedCall,
    Connection,
    WebSocket,
    trio_websocket.WebSocketConnection,
    wsproto.WSConnection,
)
#: Where traced allocations count: the library and the stack under it.
TRACED = ("*/telcoflow_trio/*", "*/trio/*", "*/trio_websocket/*", "*/wsproto/*", "*/h11/*")


@attrs.frozen
class Sample:
    at: float
    objects: Counter[str]
    tasks: int
    client_tasks: int
    calls_done: int
    traced: int | None


def census() -> Counter[str]:
    """Live instances of :data:`PER_CALL_CLASSES` (after a full collection)."""
    gc.collect()
    counts: Counter[str] = Counter()
    for obj in gc.get_objects():
        if isinstance(obj, PER_CALL_CLASSES):
            counts[type(obj).__name__] += 1
    return counts


def traced_bytes() -> int | None:
    if not tracemalloc.is_tracing():
        return None
    snapshot = tracemalloc.take_snapshot().filter_traces(
        [tracemalloc.Filter(True, pattern) for pattern in TRACED]
    )
    return sum(stat.size for stat in snapshot.statistics("filename"))


@contextlib.contextmanager
def library_logs_at_warning() -> Iterator[None]:
    # Log records kept by pytest's capture would keep library-allocated
    # arguments alive and look like growth; the chaos run scans DEBUG lines.
    logger = logging.getLogger("telcoflow_trio")
    level = logger.level
    logger.setLevel(logging.WARNING)
    try:
        yield
    finally:
        logger.setLevel(level)


async def agent(call: ActiveCall) -> None:
    r = random.Random(call.caller_number)
    with contextlib.suppress(WSSCallError, BufferClosedError):
        await call.answer()
        with trio.move_on_after(r.uniform(2, 25)):
            async for chunk in call.audio_stream():
                with contextlib.suppress(BufferFullError):
                    call.send_audio(chunk)
        if r.random() < 0.5:  # else the caller hangs up
            await call.disconnect()


async def test_soak_no_growth(autojump_clock: trio.testing.MockClock) -> None:
    samples: list[Sample] = []
    try:
        with library_logs_at_warning(), trio.fail_after(SOAK_SECONDS + 120):
            await soak(samples)
    finally:
        tracemalloc.stop()

    # Per-call objects and tasks: bounded by the calls in progress, at every sample.
    for s in samples:
        for name, count in s.objects.items():
            assert count <= 3 * LINES + 4, f"t={s.at:.0f}: {count} live {name}: {s.objects}"
        assert s.client_tasks <= 8 * LINES + 4, f"t={s.at:.0f}: {s.client_tasks} client tasks"
        assert s.tasks <= samples[0].tasks + 8 * LINES, f"t={s.at:.0f}: {s.tasks} tasks"
    # Memory: what the first traced minutes hold is all the last ones may hold.
    traced = [s for s in samples if s.traced is not None][WARM_UP_SAMPLES:]
    assert len(traced) >= 6
    start, end = traced[: len(traced) // 2], traced[len(traced) // 2 :]
    calls = end[-1].calls_done - start[0].calls_done
    assert calls >= 50
    ceiling = max(s.traced or 0 for s in start)
    worst = max(s.traced or 0 for s in end)
    assert worst <= ceiling + 32 * 1024, (
        f"traced memory grew from {ceiling} to {worst} bytes over {calls} calls"
    )


async def soak(samples: list[Sample]) -> None:
    sim_config = SimulatorConfig(frame_ms=1000, max_finished_calls=16, keep_agent_audio_seconds=1)
    calls_done = 0
    async with open_simulator(sim_config) as sim:
        client = TelcoflowClient(
            client_config(sim, heartbeat_interval=20.0), open_stream=sim.open_stream
        )
        client.on(events.INCOMING_CALL)(agent)
        async with client, trio.open_nursery() as nursery:
            start = trio.current_time()
            end = start + SOAK_SECONDS

            async def line(number: int) -> None:
                nonlocal calls_done
                r = random.Random(number)
                index = 0
                while trio.current_time() < end:
                    script = CallerScript(tone(300 + 100 * number), hangup_after=r.uniform(4, 30))
                    call = await sim.place_call(script, caller=f"+1{number}{index:08d}")
                    await call.wait_result()
                    calls_done += 1
                    index += 1

            for number in range(LINES):
                nursery.start_soon(line, number)
            at = start
            while trio.current_time() < end:
                at += SAMPLE_EVERY
                # Half a millisecond off the simulator's tick grid (its timer
                # wakes on whole milliseconds), so no frame is in flight when
                # the sample counts: a frame of a second of audio is 48 KB.
                await trio.sleep_until(math.floor(at * 1000) / 1000 + 0.0005)
                if trio.current_time() - start >= TRACED_FROM and not tracemalloc.is_tracing():
                    tracemalloc.start()
                samples.append(
                    Sample(
                        trio.current_time() - start,
                        census(),
                        all_tasks(),
                        len(client_tasks()),
                        calls_done,
                        traced_bytes(),
                    )
                )
        stats = client.statistics()
    assert calls_done >= SOAK_SECONDS / 30 * LINES  # really back to back
    assert (stats.calls_total, stats.calls_failed, stats.handler_errors) == (calls_done, 0, 0)
