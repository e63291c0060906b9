"""Chaos: hundreds of calls against the simulator under a seeded schedule of faults.

One client serves :data:`CALLS` calls placed at random intervals while a fault
injector, drawing from the same seed, drops control connections, stalls pings,
drops media, delays and loses command responses, slows the audio pull and
sends malformed, oversized and unknown frames on both planes. Callers hang up
at every stage (ringing, answered, while ``connect`` rings, connected); the
agent answers, echoes, reads slowly, connects, whispers and barges, disconnects,
closes, declines and fails (see :mod:`.workload`).

Invariants, for every call: it terminates exactly once with a reason
(``CALL_TERMINATED`` and ``wait_terminated`` agree); no command waits past its
deadline; only documented exceptions reach the agent; queues stay within
their documented bounds while the call lives. For the client: it is serving
again within the first backoff delay after every control drop (and within
the heartbeat bound after a ping stall); registries are empty once the calls
are over; no task is left when it exits.

Each seed runs on both WebSocket implementations (client and simulator alike).
A failure names its seed; replay it with ``--chaos-seed N`` (or
``CHAOS_SEED=N``). The seed fixes the workload, the fault schedule and, as far
as trio allows, the scheduling order.
"""

from __future__ import annotations

import contextlib
import random
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from telcoflow_trio import TelcoflowClient, events
from telcoflow_trio.exceptions import WSSConnectionClosed
from telcoflow_trio.proto import BackoffPolicy
from telcoflow_trio.simulator import Simulator, SimulatorConfig, open_simulator
from telcoflow_trio.ws._transport import Transport

from .conftest import CLIENT_TRANSPORTS, Scanner, all_tasks, client_config, client_tasks
from .corpus import COMMON, CONTROL_TO_CLIENT, MEDIA_TO_CLIENT, oversized
from .workload import Workload, caller_number

pytestmark = pytest.mark.reliability

CALLS = 300
MAX_MESSAGE = 1 << 16
BACKOFF = BackoffPolicy(initial=0.2, factor=2.0, max_delay=2.0, jitter=0.2)
#: The longest a client may be without a control connection after a drop.
SERVING_AGAIN_WITHIN = BACKOFF.initial * (1 + BACKOFF.jitter) + 0.02
HEARTBEAT_INTERVAL, HEARTBEAT_TIMEOUT = 4.0, 1.5

SMALL_CONTROL = [m for _, m in COMMON + CONTROL_TO_CLIENT if len(m) < MAX_MESSAGE]
SMALL_MEDIA = [m for _, m in COMMON + MEDIA_TO_CLIENT if len(m) < MAX_MESSAGE]


class Chaos:
    """The fault injector and the control-plane invariants."""

    def __init__(
        self, seed: int, sim: Simulator, client: TelcoflowClient, workload: Workload
    ) -> None:
        self.rng = random.Random(f"{seed}/faults")
        self.pick = random.Random(f"{seed}/targets")
        self.sim = sim
        self.client = client
        self.workload = workload
        self.injected: dict[str, int] = {}
        self.busy: set[str] = set()
        self.faults: dict[str, Callable[[trio.Nursery], Awaitable[None]]] = {
            "drop_control": self.drop_control,
            "stall_pings": self.stall_pings,
            "oversized_control": self.oversized_control,
            "bad_control": self.bad_control,
            "drop_media": self.drop_media,
            "bad_media": self.bad_media,
            "oversized_media": self.oversized_media,
            "call_error": self.call_error,
            "delay_responses": self.delay_responses,
            "drop_responses": self.drop_responses,
            "slow_pull": self.slow_pull,
        }

    async def run(self, until: trio.Event) -> None:
        """Every kind of fault once per round, in a seeded order, at seeded intervals."""
        async with trio.open_nursery() as nursery:
            while not until.is_set():
                names = sorted(self.faults)
                self.rng.shuffle(names)
                for name in names:
                    await trio.sleep(self.rng.uniform(0.1, 1.2))
                    if until.is_set():
                        break
                    self.injected[name] = self.injected.get(name, 0) + 1
                    await self.faults[name](nursery)

    def _live_call(self) -> str | None:
        # Which calls are live depends on timing: draw from a generator of its own.
        calls = sorted(c.call_id for c in self.sim.active_calls())
        return self.pick.choice(calls) if calls else None

    # -- control plane: each check finishes before the next fault --------------------

    async def _wait_serving(self, connects_before: int, within: float, what: str) -> None:
        started = trio.current_time()
        with trio.move_on_after(within):
            # Polled in 10 ms of virtual time: the client's statistics are the
            # public view of "serving again" and have no event to wait on.
            while not (  # noqa: ASYNC110
                self.client.statistics().connected
                and self.client.statistics().connects > connects_before
            ):
                await trio.sleep(0.01)
            return
        self.workload.violation(
            f"not serving again {trio.current_time() - started:.2f} s after {what} "
            f"(bound {within:g} s)"
        )

    async def drop_control(self, nursery: trio.Nursery) -> None:
        before = self.client.statistics().connects
        if self.sim.faults.drop_control():
            await self._wait_serving(before, SERVING_AGAIN_WITHIN, "a control drop")

    async def oversized_control(self, nursery: trio.Nursery) -> None:
        before = self.client.statistics().connects
        if await self.sim.faults.send_control(oversized(MAX_MESSAGE)):
            await self._wait_serving(before, SERVING_AGAIN_WITHIN, "an oversized control frame")

    async def stall_pings(self, nursery: trio.Nursery) -> None:
        # A dead connection is noticed within one ping interval plus its timeout.
        detect = HEARTBEAT_INTERVAL + HEARTBEAT_TIMEOUT + SERVING_AGAIN_WITHIN
        before = self.client.statistics().connects
        started = trio.current_time()
        stalled_for = self.rng.uniform(0.5, 1.5) * detect
        self.sim.faults.stall_pings(True)
        try:
            if stalled_for >= detect:
                await self._wait_serving(before, detect, "a ping stall")
            await trio.sleep_until(started + stalled_for)
        finally:
            self.sim.faults.stall_pings(False)
        # A ping sent during the stall may still time out: then one more reconnect.
        await trio.sleep(HEARTBEAT_TIMEOUT + SERVING_AGAIN_WITHIN)
        if not self.client.statistics().connected:
            self.workload.violation("not connected once the ping stall was over")

    async def bad_control(self, nursery: trio.Nursery) -> None:
        before = self.client.statistics()
        await self.sim.faults.send_control(self.rng.choice(SMALL_CONTROL))
        await trio.sleep(0.05)
        after = self.client.statistics()
        if after.connects != before.connects or not after.connected:
            self.workload.violation("a small hostile control frame cost the connection")

    # -- media plane -----------------------------------------------------------------

    async def _send_media(self, message: str | bytes) -> None:
        call_id = self._live_call()
        if call_id is None:
            return
        with contextlib.suppress(LookupError, WSSConnectionClosed):  # no media, or it ended
            await self.sim.faults.send_media(call_id, message)

    async def drop_media(self, nursery: trio.Nursery) -> None:
        call_id = self._live_call()
        if call_id is not None:
            with contextlib.suppress(LookupError):
                self.sim.faults.drop_media(call_id)

    async def bad_media(self, nursery: trio.Nursery) -> None:
        await self._send_media(self.rng.choice(SMALL_MEDIA))

    async def oversized_media(self, nursery: trio.Nursery) -> None:
        await self._send_media(oversized(MAX_MESSAGE, self.rng.random() < 0.5))

    async def call_error(self, nursery: trio.Nursery) -> None:
        call_id = self._live_call()
        if call_id is not None:
            with contextlib.suppress(LookupError, WSSConnectionClosed):
                await self.sim.faults.call_error(call_id, "TTS_SESSION_ERROR", "chaos")

    async def _for_a_while(
        self, nursery: trio.Nursery, name: str, on: Callable[[], None], off: Callable[[], None]
    ) -> None:
        if name in self.busy:
            return
        self.busy.add(name)
        on()

        async def later() -> None:
            await trio.sleep(self.rng.uniform(0.5, 5))
            off()
            self.busy.discard(name)

        nursery.start_soon(later)

    async def delay_responses(self, nursery: trio.Nursery) -> None:
        delay = self.rng.choice((0.3, 1.0, 2.5, 5.0))  # some beyond the client's deadline
        faults = self.sim.faults
        await self._for_a_while(
            nursery,
            "responses",
            lambda: faults.delay_responses(delay),
            lambda: faults.delay_responses(0),
        )

    async def drop_responses(self, nursery: trio.Nursery) -> None:
        faults = self.sim.faults
        await self._for_a_while(
            nursery,
            "responses",
            lambda: faults.drop_responses(True),
            lambda: faults.drop_responses(False),
        )

    async def slow_pull(self, nursery: trio.Nursery) -> None:
        factor = self.rng.uniform(1.5, 4)
        faults = self.sim.faults
        await self._for_a_while(
            nursery,
            "pull",
            lambda: faults.slow_buffer_requests(factor),
            lambda: faults.slow_buffer_requests(1),
        )


def check_bounds(client: TelcoflowClient, workload: Workload) -> None:
    """The documented memory bounds, on every live call."""
    config = client._config
    if len(client._unclaimed) > 64:
        workload.violation(f"{len(client._unclaimed)} unclaimed notifications kept")
    for record in workload.records.values():
        call = record.call
        if call.terminated:
            continue
        media = call._media
        inbound = media.inbound
        queues = [inbound._backlog] + [s._queue for r in inbound._subscribers if (s := r())]
        longest = max(len(q) for q in queues)
        if longest > config.inbound_queue_chunks:
            workload.violation(f"call {record.index}: {longest} inbound chunks queued")
        if len(media.outgoing) > config.buffer_size:
            workload.violation(f"call {record.index}: {len(media.outgoing)} bytes queued out")
        if len(call._events) > 256:
            workload.violation(f"call {record.index}: {len(call._events)} events queued")


async def monitor(client: TelcoflowClient, workload: Workload) -> None:
    while True:
        check_bounds(client, workload)
        await trio.sleep(0.25)


@pytest.mark.parametrize("transport", CLIENT_TRANSPORTS)
async def test_chaos(
    chaos_seed: int,
    transport: Transport,
    autojump_clock: trio.testing.MockClock,
    secret_scanner: Scanner,
) -> None:
    # With the seed, trio's scheduler (deterministic under the hypothesis plugin)
    # shuffles tasks the same way on every replay (best effort: a private RNG).
    getattr(trio._core._run, "_r", random.Random()).seed(chaos_seed)
    try:
        await run_chaos(chaos_seed, transport, secret_scanner)
    except BaseException as exc:
        exc.add_note(f"chaos seed {chaos_seed}: replay with --chaos-seed {chaos_seed}")
        raise


async def run_chaos(seed: int, transport: Transport, scanner: Scanner) -> None:
    baseline = all_tasks()
    sim_config = SimulatorConfig(
        frame_ms=100,
        unanswered_timeout=8,
        command_latency=0.02,
        close_timeout=1.0,
        transport=transport,  # both ends on the same WebSocket implementation
    )
    config = None
    with trio.fail_after(600):  # virtual seconds: a hang fails here, not at the timeout
        async with open_simulator(sim_config) as sim, trio.open_nursery() as watchers:
            config = client_config(
                sim,
                heartbeat_interval=HEARTBEAT_INTERVAL,
                heartbeat_timeout=HEARTBEAT_TIMEOUT,
                command_timeout=2.0,
                command_grace=1.0,
                request_timeout=4.0,
                setup_timeout=2.0,
                connect_timeout=2.0,
                inbound_queue_chunks=16,
                buffer_size=1 << 15,
                max_message_size=MAX_MESSAGE,
                reconnect=BACKOFF,
                transport=transport,
            )
            workload = Workload(seed, config, scanner.check)
            workload.nursery = watchers
            client = TelcoflowClient(
                config,
                open_stream=sim.open_stream,
                random_source=random.Random(f"{seed}/jitter").random,
                on_handler_error=workload.on_handler_error,
            )
            client.on(events.INCOMING_CALL)(workload.handle)
            placed = []
            async with client:
                chaos = Chaos(seed, sim, client, workload)
                placing_done = trio.Event()
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(chaos.run, placing_done)
                    nursery.start_soon(monitor, client, workload)
                    gaps = random.Random(f"{seed}/arrivals")
                    for index in range(CALLS):
                        # Mostly Poisson arrivals, and bursts of calls at one instant.
                        if gaps.random() < 0.8:
                            await trio.sleep(gaps.expovariate(1 / 0.2))
                        placed.append(
                            await sim.place_call(
                                workload.script(index), caller=caller_number(index)
                            )
                        )
                    placing_done.set()
                    for call in placed:
                        await call.wait_result()

                    # Calls are over on the platform; the handlers finish their sleeps.
                    def busy() -> bool:
                        return bool(workload.handlers_running or client.statistics().calls_active)

                    with trio.move_on_after(30):
                        while busy():  # noqa: ASYNC110 (polled: nothing to wait on)
                            await trio.sleep(0.5)
                    if busy():
                        workload.violation(
                            f"{client.statistics().calls_active} calls still active and "
                            f"{workload.handlers_running} handlers running 30 s after the end"
                        )
                    nursery.cancel_scope.cancel()
                stats = client.statistics()
                control = client._control
                if control is not None and (control._requests or control._claims):
                    workload.violation("control requests or claims left after the calls")
                if client._calls or client._by_session:
                    workload.violation("call registries not empty after the calls")
            left = client_tasks()
            if left:
                workload.violation(f"client tasks left after exit: {left}")
            summary = workload.check_calls()
            watchers.cancel_scope.cancel()
            sim_stats = sim.statistics()
    if all_tasks() != baseline:
        workload.violation(f"{all_tasks() - baseline} tasks left after the simulator closed")
    scanner.check(repr(config), "config repr")

    handled = len(workload.records)
    assert not workload.violations, (
        f"chaos seed {seed}: {len(workload.violations)} violation(s):\n"
        + "\n".join(workload.violations[:30])
    )
    assert stats.calls_active == 0
    assert stats.calls_total == handled + stats.calls_failed
    assert stats.handler_errors == workload.expected_handler_errors == workload.hook_errors
    assert sim_stats.handler_errors == 0
    assert sim_stats.calls_ended == CALLS
    # The run must have exercised what it claims to (else it proves little).
    assert handled > CALLS // 2
    assert stats.reconnects >= 5
    assert min(chaos.injected.values()) >= 2, chaos.injected
    malformed = stats.malformed_frames + sum(
        r.call.statistics().malformed_frames for r in workload.records.values()
    )
    assert malformed >= 1
    reasons = summary["reasons"]
    # No "server": the platform never ends a call itself here (hang-ups are the caller's).
    for reason in ("caller_hangup", "media_lost", "closed", "handler_returned"):
        assert reasons.get(reason, 0) >= 1, f"seed {seed}: no call ended {reason}: {summary}"
    assert summary["outcomes"].get("WSSCallCommandTimeoutError", 0) >= 1, summary
    assert reasons.get("client_shutdown", 0) == 0, summary
