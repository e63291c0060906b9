"""One worker's life in process: the simulator in memory, signals from a channel, ``MockClock``."""

from __future__ import annotations

import logging
import re
import signal
from typing import Any

import pytest
import trio
import trio.testing

from telcoflow_trio import TelcoflowClient
from telcoflow_trio.exceptions import WSSAuthenticationError, WSSConnectionError
from telcoflow_trio.runner._options import RunSettings
from telcoflow_trio.runner._target import SetupError, load_target
from telcoflow_trio.runner._worker import EXIT_FATAL, _failure_status, serve_worker
from telcoflow_trio.simulator import CallerScript, Simulator, open_simulator, tone
from telcoflow_trio.simulator._model import CallState


def settings_for(sim: Simulator, target: str = "agent:on_call", **changes: Any) -> RunSettings:
    values: dict[str, Any] = {
        "target": target,
        "server": sim.base_url,
        "api_key": sim.api_key,
        "connector_uuid": sim.connector_uuid,
        "sample_rate": 16000,
        "workers": 1,
        "max_calls": None,
        "claim_policy": "first_come",
        "drain_timeout": 30.0,
        "metrics_host": "127.0.0.1",
        "metrics_port": None,
        "log_level": "INFO",
    }
    return RunSettings(**{**values, **changes})


class Worker:
    """``serve_worker`` in a task: ``signal()`` sends it a signal, ``status`` is its result."""

    def __init__(self, sim: Simulator, settings: RunSettings) -> None:
        self.sim = sim
        self.settings = settings
        self._send, self._receive = trio.open_memory_channel[int](4)
        self.ready = trio.Event()
        self.done = trio.Event()
        self.client: TelcoflowClient | None = None
        self.status: int | None = None

    def _on_ready(self, client: TelcoflowClient) -> None:
        self.client = client
        self.ready.set()

    async def run(self) -> None:
        try:
            self.status = await serve_worker(
                self.settings,
                load_target(self.settings.target),
                self._receive,
                on_ready=self._on_ready,
                open_stream=self.sim.open_stream,
            )
        finally:
            self.done.set()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self._send.send_nowait(signum)


async def test_drain_lets_a_live_call_end_and_claims_no_new_one(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, "telcoflow_trio.runner")
    async with open_simulator() as sim, trio.open_nursery() as nursery:
        worker = Worker(sim, settings_for(sim, drain_timeout=30.0))
        nursery.start_soon(worker.run)
        await worker.ready.wait()
        call = await sim.place_call(CallerScript(tone(440), hangup_after=5.0))
        await call.wait_state(CallState.ANSWERED)
        signalled = trio.current_time()
        worker.signal()
        # Until the worker has let go of the control plane (virtual time: exact).
        while sim.statistics().control_connections:  # noqa: ASYNC110
            await trio.sleep(0.01)
        late = await sim.place_call(CallerScript(tone(440), hangup_before_answer_after=2.0))
        result = await call.wait_result()
        await worker.done.wait()
        late_result = await late.wait_result()
    assert worker.status == 0
    assert result.ended_by == "caller_hangup"
    assert trio.current_time() - signalled < 6  # it ended when the caller hung up
    assert late_result.answered_at is None  # nobody claimed the call placed while draining
    assert worker.client is not None
    assert worker.client.statistics().calls_total == 1
    assert "worker 0: drained: no live calls" in caplog.messages


async def test_drain_timeout_ends_the_calls_still_live(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim, trio.open_nursery() as nursery:
        worker = Worker(sim, settings_for(sim, target="agent:setup", drain_timeout=10.0))
        nursery.start_soon(worker.run)
        await worker.ready.wait()
        calls = [await sim.place_call(CallerScript(tone(440))) for _ in range(3)]
        for call in calls:
            await call.wait_state(CallState.ANSWERED)
        signalled = trio.current_time()
        worker.signal(signal.SIGINT)
        await worker.done.wait()
        stopped = trio.current_time() - signalled
        results = [await call.wait_result() for call in calls]
    assert worker.status == 0
    assert 10.0 <= stopped < 10.5
    assert [r.ended_by for r in results] == ["agent_close"] * 3
    assert worker.client is not None
    assert worker.client.statistics().calls_ended == {"client_shutdown": 3}


async def test_a_second_signal_ends_the_calls_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim, trio.open_nursery() as nursery:
        worker = Worker(sim, settings_for(sim, drain_timeout=30.0))
        nursery.start_soon(worker.run)
        await worker.ready.wait()
        call = await sim.place_call(CallerScript(tone(440)))
        await call.wait_state(CallState.ANSWERED)
        worker.signal()
        await trio.sleep(1.0)
        second = trio.current_time()
        worker.signal()
        await worker.done.wait()
        result = await call.wait_result()
    assert worker.status == 130
    assert trio.current_time() - second < 0.5
    assert result.ended_by == "agent_close"


async def test_a_signal_during_start_up_stops_without_serving(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim:
        worker = Worker(sim, settings_for(sim))
        worker.signal()
        with trio.fail_after(5):
            await worker.run()
    assert worker.status == 0
    assert not worker.ready.is_set()


async def test_rejected_credentials_raise_one_fatal_error(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim:
        worker = Worker(sim, settings_for(sim, api_key="not-the-key"))
        with pytest.raises(WSSAuthenticationError) as info:
            await worker.run()
    assert _failure_status(info.value, 0) == EXIT_FATAL


async def test_an_unreachable_platform_fails_the_worker(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim:
        await sim.aclose()  # refuses connections from now on
        worker = Worker(sim, settings_for(sim))
        with pytest.raises(WSSConnectionError):
            await worker.run()


@pytest.mark.parametrize(
    ("target", "message"),
    [
        ("agent:registers_nothing", "registered no INCOMING_CALL handler"),
        ("agent:fails", "agent:fails(client) raised RuntimeError: no database"),
    ],
)
async def test_a_failing_setup_is_fatal(
    autojump_clock: trio.testing.MockClock, target: str, message: str
) -> None:
    async with open_simulator() as sim:
        worker = Worker(sim, settings_for(sim, target=target))
        with pytest.raises(SetupError, match=re.escape(message)) as info:
            await worker.run()
    assert _failure_status(info.value, 0) == EXIT_FATAL


async def test_a_metrics_port_in_use_fails_the_worker_with_one_line(
    autojump_clock: trio.testing.MockClock,
) -> None:
    taken = trio.socket.socket()
    with taken:
        await taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        async with open_simulator() as sim:
            worker = Worker(sim, settings_for(sim, metrics_port=port))
            with pytest.raises(OSError, match=r"(?i)address already in use") as info:
                await worker.run()
    assert not worker.ready.is_set()
    assert _failure_status(info.value, 0) == 1
