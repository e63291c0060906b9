"""The client under ``anyio.run(main, backend="trio")``, inside anyio task groups.

Each test is a plain function that calls ``anyio.run`` with trio's MockClock, as
an application would call it (no test plugin runs these).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any

import anyio
import pytest
import sniffio
import trio.testing
from anyio.abc import TaskStatus
from anyio.streams.memory import MemoryObjectSendStream

from telcoflow_trio import (
    ActiveCall,
    CallEvent,
    TelcoflowClient,
    TelcoflowClientConfig,
    TerminationReason,
    events,
)
from telcoflow_trio.exceptions import WSSAuthenticationError
from telcoflow_trio.simulator import CallerScript, Simulator, open_simulator, tone


def run_with_mock_clock(main: Callable[[], Awaitable[Any]]) -> Any:
    clock = trio.testing.MockClock(autojump_threshold=0)
    return anyio.run(main, backend="trio", backend_options={"clock": clock})


def config_for(sim: Simulator, **options: Any) -> TelcoflowClientConfig:
    return TelcoflowClientConfig.sandbox(
        sim.api_key, sim.connector_uuid, base_url=sim.base_url, sample_rate=8000, **options
    )


def test_client_in_an_anyio_task_group() -> None:
    libraries: list[str] = []

    async def handle(call: ActiveCall, answered: MemoryObjectSendStream[str]) -> None:
        libraries.append(sniffio.current_async_library())
        await call.answer()
        await answered.send(call.call_id)  # an anyio stream, from a trio handler
        async for chunk in call.audio_stream():
            await call.write_audio(chunk)

    async def agent(
        sim: Simulator,
        answered: MemoryObjectSendStream[str],
        *,
        task_status: TaskStatus[TelcoflowClient],
    ) -> None:
        async with TelcoflowClient(config_for(sim), open_stream=sim.open_stream) as client:
            client.on(events.INCOMING_CALL)(partial(handle, answered=answered))
            task_status.started(client)
            await client.run_forever()

    async def main() -> None:
        send, receive = anyio.create_memory_object_stream[str](8)
        with send, receive:
            async with open_simulator() as sim, anyio.create_task_group() as tg:
                client = await tg.start(agent, sim, send)
                with anyio.fail_after(60):
                    calls = [
                        await sim.place_call(CallerScript(audio=tone(440), hangup_after=2 + n))
                        for n in range(3)
                    ]
                    answered = {await receive.receive() for _ in calls}
                    results = [await call.wait_result() for call in calls]
                assert client.statistics().calls_total == 3
                tg.cancel_scope.cancel()  # stops run_forever; the client closes cleanly
        assert answered == {call.call_id for call in calls}
        assert [r.ended_by for r in results] == ["caller_hangup"] * 3
        assert [r.agent_audio_seconds for r in results] == pytest.approx([2, 3, 4], abs=0.1)

    run_with_mock_clock(main)
    assert libraries == ["trio"] * 3


def test_an_anyio_deadline_shuts_the_client_down_mid_call() -> None:
    async def main() -> None:
        ended: list[TerminationReason] = []
        async with open_simulator() as sim:

            async def hold(call: ActiveCall) -> None:
                call.on(CallEvent.CALL_TERMINATED)(lambda info: ended.append(info.reason))
                await call.answer()
                await anyio.sleep_forever()

            async with TelcoflowClient(config_for(sim), open_stream=sim.open_stream) as client:
                client.on(events.INCOMING_CALL)(hold)
                call = await sim.place_call()
                with anyio.move_on_after(30) as scope:
                    await client.run_forever()
                assert scope.cancelled_caught
            result = await call.wait_result()
        assert result.ended_by == "agent_close"
        assert result.ended_at == pytest.approx(30)
        assert ended == [TerminationReason.CLIENT_SHUTDOWN]

    run_with_mock_clock(main)


def test_errors_in_anyio_task_groups() -> None:
    async def main() -> None:
        async with open_simulator() as sim:
            # The library's failure: one WSSError (raised by tg.start(), then
            # wrapped by the task group like any exception leaving its body).
            bad = TelcoflowClientConfig.sandbox("wrong", sim.connector_uuid, base_url=sim.base_url)

            async def agent(*, task_status: TaskStatus[None]) -> None:
                async with TelcoflowClient(bad, open_stream=sim.open_stream):
                    task_status.started()

            with pytest.RaisesGroup(pytest.RaisesExc(WSSAuthenticationError, match="HTTP 401")):
                async with anyio.create_task_group() as tg:
                    await tg.start(agent)

            # Your own exception passes through the client unchanged; the task
            # group then wraps it, as anyio task groups do.
            with pytest.RaisesGroup(KeyError):
                async with (
                    anyio.create_task_group() as tg,
                    TelcoflowClient(config_for(sim), open_stream=sim.open_stream),
                ):
                    tg.start_soon(anyio.sleep_forever)
                    raise KeyError("mine")

    run_with_mock_clock(main)
