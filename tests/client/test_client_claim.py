"""Claiming calls among several workers: load-aware vs first-come, max_calls, statistics.

Every test runs the simulator and 2-4 clients in one trio run under MockClock.
Each client reaches the simulator through a :class:`Distant` link whose sends
take a fixed time (its network distance): under first-come the nearest worker
wins every race; under the load-aware policy the calls spread.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from telcoflow_trio import ActiveCall, ClaimPolicy, TelcoflowClient, events, proto
from telcoflow_trio.simulator import CallerScript, SimulatorConfig, open_simulator
from telcoflow_trio.simulator._server import Simulator

from .conftest import client_config
from .test_client_wire import FakeControl, config as wire_config

RINGING = CallerScript(hangup_before_answer_after=100)


class Distant(trio.abc.Stream):
    """A stream whose every send takes ``latency`` seconds (the way to the platform)."""

    def __init__(self, inner: trio.abc.Stream, latency: float) -> None:
        self.inner = inner
        self.latency = latency

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await trio.sleep(self.latency)
        await self.inner.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.inner.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


async def hold(call: ActiveCall) -> None:
    """A handler that keeps the call (never answers) until the caller hangs up."""
    await call.wait_terminated()


@asynccontextmanager
async def open_workers(
    latencies: Sequence[float], sim_config: SimulatorConfig | None = None, **options: Any
) -> AsyncIterator[tuple[Simulator, list[TelcoflowClient]]]:
    """The simulator and one connected worker per latency (all with ``hold``)."""
    async with open_simulator(sim_config or SimulatorConfig(), listen=False) as sim:

        def opener(latency: float) -> Any:
            async def open_stream(
                host: str, port: int, ssl_context: ssl.SSLContext | None
            ) -> trio.abc.Stream:
                return Distant(await sim.open_stream(host, port, ssl_context), latency)

            return open_stream

        async with AsyncExitStack() as stack:
            clients = []
            for latency in latencies:
                client = TelcoflowClient(
                    client_config(sim, **options), open_stream=opener(latency)
                )
                client.on(events.INCOMING_CALL)(hold)
                clients.append(await stack.enter_async_context(client))
            yield sim, clients


async def place(sim: Simulator, n: int, every: float = 0.5) -> None:
    for _ in range(n):
        await sim.place_call(RINGING)
        await trio.sleep(every)


def spread(clients: list[TelcoflowClient]) -> list[int]:
    return [c.statistics().calls_active for c in clients]


@pytest.mark.parametrize("n_workers", [2, 3, 4])
async def test_load_aware_claiming_spreads_calls_evenly(
    autojump_clock: trio.testing.MockClock, n_workers: int
) -> None:
    latencies = [0.002 * i for i in range(n_workers)]  # 2 ms apart
    with trio.fail_after(60):
        async with open_workers(latencies, max_calls=20) as (sim, clients):
            await place(sim, 10 * n_workers)
            counts = spread(clients)
            stats = [c.statistics() for c in clients]
            sim_stats = sim.statistics()
    assert sum(counts) == 10 * n_workers
    assert max(counts) / min(counts) <= 1.25, counts
    # Every call was raced by every worker: one winner, the others answered BUSY.
    assert sum(s.sessions_busy for s in stats) == (n_workers - 1) * 10 * n_workers
    assert sim_stats.sessions_busy == sum(s.sessions_busy for s in stats)
    assert sum(s.sessions_claimed for s in stats) == 10 * n_workers
    assert sim_stats.calls_unclaimed == 0


@pytest.mark.parametrize(
    ("max_calls", "counts", "busy", "full"),
    [
        (None, [30, 0, 0], [0, 30, 30], [0, 0, 0]),  # the nearest takes every call
        (20, [20, 10, 0], [0, 20, 30], [10, 0, 0]),  # until it is full, then the next
    ],
)
async def test_first_come_gives_the_calls_to_the_nearest_worker(
    autojump_clock: trio.testing.MockClock,
    max_calls: int | None,
    counts: list[int],
    busy: list[int],
    full: list[int],
) -> None:
    latencies = [0.0, 0.002, 0.004]
    with trio.fail_after(60):
        async with open_workers(latencies, max_calls=max_calls, claim_policy="first_come") as (
            sim,
            clients,
        ):
            await place(sim, 30)
            stats = [c.statistics() for c in clients]
    assert [s.calls_active for s in stats] == counts
    assert [s.sessions_busy for s in stats] == busy
    assert [s.sessions_full for s in stats] == full


@pytest.mark.parametrize("policy", ["first_come", "load_aware"])
async def test_max_calls_holds_under_a_burst_and_unclaimed_calls_are_counted(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, policy: str
) -> None:
    """Four calls at once at a worker with room for two: claims in flight count too."""
    script = CallerScript(hangup_before_answer_after=5)
    with trio.fail_after(60):
        async with open_workers([0.001], max_calls=2, claim_policy=policy) as (sim, (client,)):
            for _ in range(4):
                await sim.place_call(script)
            await trio.sleep(1)
            stats = client.statistics()
            waiting = sim.statistics()
            assert (stats.calls_active, stats.sessions_full, stats.claiming) == (2, 2, False)
            assert (waiting.calls_unclaimed, waiting.calls_abandoned_unclaimed) == (2, 0)
            await trio.sleep(10)  # every caller hung up
            ended = sim.statistics()
            after = client.statistics()
    assert (ended.calls_unclaimed, ended.calls_abandoned_unclaimed) == (0, 2)
    assert after.calls_ended == {"caller_hangup": 2}
    assert after.claiming  # below max again
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_an_idle_worker_claims_at_once(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        async with open_workers([0.0]) as (sim, (client,)):
            await sim.place_call(RINGING)
            await trio.sleep(1)
            idle = client.statistics().claim_latency
            await sim.place_call(RINGING)  # now one call is active: a delay
            await trio.sleep(1)
            loaded = client.statistics().claim_latency
    assert (idle.count, idle.max) == (1, 0.0)
    policy = ClaimPolicy()
    assert loaded.count == 2
    assert loaded.max == pytest.approx(policy.delay(1, None, 0.0))
    assert 0 < loaded.max < policy.max_delay


#: With one call (or claim) in progress, the next claim waits 0.5 s.
SLOW = ClaimPolicy(max_delay=1.0, half_load_calls=1)


async def delayed_claim(sim: Simulator, client: TelcoflowClient, script: CallerScript) -> None:
    """One call held, then a second one offered: its claim is waiting."""
    await sim.place_call(RINGING)
    await trio.sleep(1)
    await sim.place_call(script)
    await trio.sleep(0.1)
    assert client.statistics().claims_in_flight == 1


async def test_a_caller_hanging_up_during_the_claim_delay_costs_nothing(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # One active call makes the next claim wait 0.5 s; that caller hangs up first
    # (the simulator tells only a bound worker: the late claim is refused quietly).
    with trio.fail_after(60):
        async with open_workers([0.0], claim_policy=SLOW) as (sim, (client,)):
            await delayed_claim(sim, client, CallerScript(hangup_before_answer_after=0.2))
            await trio.sleep(2)
            stats = client.statistics()
            sim_stats = sim.statistics()
    assert (stats.sessions_claimed, stats.calls_total, stats.claims_in_flight) == (1, 1, 0)
    assert sim_stats.calls_abandoned_unclaimed == 1
    assert (sim_stats.sessions_busy, stats.sessions_busy) == (0, 0)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_delayed_claim_is_dropped_when_its_session_closes_or_is_renotified(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="telcoflow_trio")
    async with trio.open_nursery() as nursery:
        server = FakeControl(nursery)  # never sends call.in: claims stay in flight
        client = TelcoflowClient(wire_config(claim_policy=SLOW), open_stream=server.open_stream)
        client.on(events.INCOMING_CALL)(hold)
        async with client:
            ws = server.ws
            assert ws is not None
            await ws.send_message(proto.SessionNotify("s-1", "TELCO").encode())  # at once
            await trio.sleep(0.01)
            await ws.send_message(proto.SessionNotify("s-2", "TELCO").encode())  # waits 0.5 s
            await ws.send_message(proto.SessionNotify("s-3", "TELCO").encode())  # waits 2/3 s
            await trio.sleep(0.1)
            await ws.send_message(proto.SessionClosed("s-2", "CALL_TERMINATED").encode())
            await ws.send_message(proto.SessionNotify("s-3", "TELCO").encode())  # a duplicate
            await trio.sleep(2)
    opens = [(round(t, 3), f.session_id) for t, f in server.frames(proto.SessionOpen)]
    assert opens == [(0, "s-1"), (round(0.01 + 2 / 3, 3), "s-3")]
    assert any("dropping the delayed claim" in r.getMessage() for r in caplog.records)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_a_delayed_claim_is_cancelled_with_the_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with open_workers([0.0], claim_policy=SLOW) as (sim, (client,)):
            await delayed_claim(sim, client, RINGING)
        # Leaving the block mid-delay ended the claim with the connection.
        assert client.statistics().claims_in_flight == 0
        assert client.statistics().sessions_claimed == 1


async def test_a_lagging_loop_delays_claims(autojump_clock: trio.testing.MockClock) -> None:
    """A blocked event loop (a clock jump without a checkpoint) is seen, then forgotten."""
    with trio.fail_after(60):
        async with open_workers([0.0]) as (sim, (client,)):
            await trio.sleep(0.05)
            autojump_clock.jump(0.3)  # 300 ms of CPU-bound work, no checkpoint
            await trio.sleep(0.01)
            lag = client.statistics().loop_lag
            assert lag >= 0.2
            await sim.place_call(RINGING)
            await trio.sleep(0.5)
            first = client.statistics().claim_latency
            await trio.sleep(3)
            assert client.statistics().loop_lag < ClaimPolicy().lag_tolerance
    assert first.count == 1
    assert first.max > 0.5 * ClaimPolicy().max_delay  # 300 ms of lag is a heavy load


async def test_first_come_measures_no_lag(autojump_clock: trio.testing.MockClock) -> None:
    with trio.fail_after(60):
        async with open_workers([0.0], claim_policy=ClaimPolicy.first_come()) as (_, (client,)):
            await trio.sleep(0.05)
            autojump_clock.jump(0.3)
            await trio.sleep(0.5)
            assert client.statistics().loop_lag == 0.0


@pytest.mark.parametrize("policy", ["first_come", "load_aware"])
async def test_a_full_worker_claims_a_still_ringing_call_when_room_frees_up(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture, policy: str
) -> None:
    """Offers declined at max_calls are kept; when a call ends the newest is tried
    first, one that hung up meanwhile is skipped quietly, and the next is claimed."""
    with trio.fail_after(60):
        async with open_workers([0.0], max_calls=1, claim_policy=policy) as (sim, (client,)):
            first = await sim.place_call(CallerScript(hangup_before_answer_after=3))
            await trio.sleep(0.5)
            ringing = await sim.place_call(RINGING)
            await trio.sleep(0.5)
            await sim.place_call(CallerScript(hangup_before_answer_after=1))  # newest, leaves
            await trio.sleep(1)
            assert client.statistics().sessions_full == 2
            await first.wait_result()
            await trio.sleep(0.5)
            stats = client.statistics()
            sim_stats = sim.statistics()
            assert [c.call_id for c in client._calls.values()] == [ringing.call_id]
    assert (stats.calls_total, stats.calls_active, stats.sessions_full) == (2, 1, 2)
    assert (sim_stats.calls_unclaimed, sim_stats.calls_abandoned_unclaimed) == (0, 1)
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]
