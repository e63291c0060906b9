"""The supervisor's rules under ``MockClock``, with trio tasks standing in for worker processes."""

from __future__ import annotations

import itertools
import logging
import signal
from collections.abc import Awaitable, Callable

import attrs
import pytest
import trio
import trio.testing

from telcoflow_trio.proto import BackoffPolicy
from telcoflow_trio.runner._supervisor import RestartPolicy, Supervisor, WorkerSlot
from telcoflow_trio.runner._worker import EXIT_FATAL

_pids = itertools.count(1000)

#: No jitter: exact delays 0.25, 0.5, 1.0 ...
POLICY = RestartPolicy(
    backoff=BackoffPolicy(initial=0.25, factor=2.0, max_delay=30.0, jitter=0.0),
    start_failures=4,  # not the default: the test counts four
    stop_grace=10.0,
)


@attrs.define(eq=False)
class FakeWorker:
    """A worker process: records the signals it gets; ``kill`` ends it with -9."""

    index: int
    pid: int = attrs.field(factory=lambda: next(_pids))
    signals: list[int] = attrs.field(factory=list)
    killed: bool = False
    _changed: trio.Event = attrs.field(factory=trio.Event)

    def send_signal(self, sig: int) -> None:
        self.signals.append(sig)
        self._changed.set()

    def kill(self) -> None:
        self.killed = True
        self._changed.set()

    async def wait_signals(self, count: int) -> None:
        while len(self.signals) < count and not self.killed:
            self._changed = trio.Event()
            await self._changed.wait()


Behaviour = Callable[[WorkerSlot, FakeWorker], Awaitable[int]]


async def crash_at_start(slot: WorkerSlot, worker: FakeWorker) -> int:
    await trio.sleep(0.1)
    return 1


async def serve_and_drain(slot: WorkerSlot, worker: FakeWorker) -> int:
    """Ready after 0.1 s; drains in 2 s on the first signal, stops at once on a second."""
    await trio.sleep(0.1)
    slot.ready()
    await worker.wait_signals(1)
    with trio.move_on_after(2.0):
        await worker.wait_signals(2)
        return 130
    return 0


async def ignore_signals(slot: WorkerSlot, worker: FakeWorker) -> int:
    slot.ready()
    while not worker.killed:
        await worker.wait_signals(len(worker.signals) + 1)
    return -signal.SIGKILL


@attrs.define
class Fleet:
    """A launch function: worker ``i`` behaves as ``behaviours[i]`` (one per launch, the
    last one repeated); every launch is recorded with its virtual start time."""

    behaviours: dict[int, list[Behaviour]]
    launches: list[tuple[int, float, FakeWorker]] = attrs.field(factory=list)

    async def launch(self, slot: WorkerSlot) -> int:
        worker = FakeWorker(slot.index)
        attempt = sum(1 for index, _, _ in self.launches if index == slot.index)
        self.launches.append((slot.index, trio.current_time(), worker))
        plan = self.behaviours[slot.index]
        slot.started(worker)
        return await plan[min(attempt, len(plan) - 1)](slot, worker)

    def of(self, index: int) -> list[tuple[float, FakeWorker]]:
        return [(when, worker) for i, when, worker in self.launches if i == index]


def supervisor(fleet: Fleet, workers: int, drain_timeout: float = 5.0) -> Supervisor:
    return Supervisor(
        fleet.launch,
        workers,
        drain_timeout=drain_timeout,
        policy=POLICY,
        random_source=lambda: 0.0,
    )


async def run(sup: Supervisor, *signals: tuple[float, int]) -> int:
    """``sup.run()``'s status; each ``(at, signum)`` is sent ``at`` seconds after the start."""
    send, receive = trio.open_memory_channel[int](len(signals))
    result: list[int] = []

    async def supervise() -> None:
        result.append(await sup.run(receive))

    start = trio.current_time()
    with trio.fail_after(600):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(supervise)
            for at, signum in signals:
                await trio.sleep_until(start + at)
                await send.send(signum)
    return result[0]


async def test_start_up_failures_in_a_row_give_up_and_drain_the_others(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = Fleet({0: [crash_at_start], 1: [serve_and_drain]})
    assert await run(supervisor(fleet, 2)) == 1
    # Four starts, 0.1 s each, with 0.25, 0.5 and 1.0 s between them.
    starts = [when for when, _ in fleet.of(0)]
    assert starts == pytest.approx([0.0, 0.35, 0.95, 2.05])
    # The healthy worker was drained (one SIGTERM), not killed, and not restarted.
    [(_, healthy)] = fleet.of(1)
    assert healthy.signals == [signal.SIGTERM]
    assert not healthy.killed
    assert trio.current_time() == pytest.approx(2.15 + 2.0)
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == ["worker 0 failed at start-up 4 times in a row (last: status 1); giving up"]


async def test_a_worker_that_was_ready_is_restarted_with_the_backoff_reset(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def crash_after_a_while(slot: WorkerSlot, worker: FakeWorker) -> int:
        slot.ready()
        await trio.sleep(60)
        return 1

    fleet = Fleet({0: [crash_after_a_while] * 5 + [serve_and_drain]})
    assert await run(supervisor(fleet, 1), (5 * 60.25 + 1, signal.SIGTERM)) == 0
    starts = [when for when, _ in fleet.of(0)]
    # Never "in a row" at start-up: each restart waits the first delay, 0.25 s.
    assert starts == pytest.approx([i * 60.25 for i in range(6)])


async def test_first_signal_drains_all_second_stops_at_once(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "telcoflow_trio.runner")
    fleet = Fleet({0: [serve_and_drain], 1: [serve_and_drain], 2: [serve_and_drain]})
    sup = supervisor(fleet, 3)
    assert await run(sup, (1, signal.SIGINT), (2, signal.SIGINT)) == 130
    assert "all 3 workers ready" in caplog.messages
    assert trio.current_time() == pytest.approx(2.0)  # not the 2 s drain: at once
    assert len(fleet.launches) == 3
    for _, _, worker in fleet.launches:
        assert worker.signals == [signal.SIGINT, signal.SIGINT]


async def test_drained_workers_exit_0_and_are_not_restarted(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet({0: [serve_and_drain], 1: [crash_at_start, serve_and_drain]})
    # At 0.2 s worker 1 has crashed (at 0.1) and waits 0.25 s to restart.
    assert await run(supervisor(fleet, 2), (0.2, signal.SIGTERM)) == 0
    assert trio.current_time() == pytest.approx(2.2)
    assert len(fleet.of(1)) == 1  # its restart was called off


async def test_a_worker_that_does_not_stop_is_killed_after_drain_timeout_and_grace(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    fleet = Fleet({0: [ignore_signals], 1: [serve_and_drain]})
    assert await run(supervisor(fleet, 2, drain_timeout=5.0), (1, signal.SIGTERM)) == 1
    assert trio.current_time() == pytest.approx(1 + 5.0 + 10.0)
    [(_, stubborn)] = fleet.of(0)
    [(_, healthy)] = fleet.of(1)
    assert stubborn.killed
    assert not healthy.killed
    assert any("did not stop in time: killing it" in m for m in caplog.messages)


async def test_a_fatal_worker_is_not_restarted(autojump_clock: trio.testing.MockClock) -> None:
    async def fatal(slot: WorkerSlot, worker: FakeWorker) -> int:
        await trio.sleep(0.5)
        return EXIT_FATAL

    fleet = Fleet({0: [fatal], 1: [serve_and_drain]})
    assert await run(supervisor(fleet, 2)) == 1
    assert len(fleet.of(0)) == 1
    assert fleet.of(1)[0][1].signals == [signal.SIGTERM]


async def test_after_a_second_signal_a_stuck_worker_is_killed_after_the_grace(
    autojump_clock: trio.testing.MockClock,
) -> None:
    fleet = Fleet({0: [ignore_signals]})
    sup = supervisor(fleet, 1, drain_timeout=100.0)
    assert await run(sup, (1, signal.SIGTERM), (2, signal.SIGTERM)) == 130
    assert trio.current_time() == pytest.approx(2 + 10.0)  # not 1 + 100 + 10
    assert fleet.of(0)[0][1].killed


async def test_a_worker_ended_by_the_stop_signal_while_starting_is_no_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def still_starting(slot: WorkerSlot, worker: FakeWorker) -> int:
        await worker.wait_signals(1)  # no handler yet: the signal's default action
        return -worker.signals[0]

    fleet = Fleet({0: [serve_and_drain], 1: [still_starting]})
    assert await run(supervisor(fleet, 2), (1, signal.SIGTERM)) == 0


async def test_a_worker_that_cannot_be_spawned_counts_as_a_start_up_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def cannot_spawn(slot: WorkerSlot) -> int:
        raise BlockingIOError("Resource temporarily unavailable")

    sup = Supervisor(cannot_spawn, 1, drain_timeout=5.0, policy=POLICY, random_source=lambda: 0)
    assert await run(sup) == 1
    assert trio.current_time() == pytest.approx(0.25 + 0.5 + 1.0)
