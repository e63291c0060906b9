"""The asyncio bridge under ``asyncio.run``: a client and the simulator in the portal's
trio thread, awaited from asyncio. Real clock (two event loops in two threads); the
calls last fractions of a second and every wait is bounded."""

from __future__ import annotations

import asyncio
import concurrent.futures
import time
from collections.abc import AsyncIterator, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from telcoflow_trio import (
    ActiveCall,
    CallEvent,
    CallState,
    TelcoflowClientConfig,
    TerminationReason,
)
from telcoflow_trio.asyncio_bridge import TrioPortal, open_trio_portal
from telcoflow_trio.exceptions import WSSAuthenticationError
from telcoflow_trio.simulator import CallerScript, Simulator, SimulatorConfig, open_simulator, tone


def run(main: Coroutine[Any, Any, None], limit: float = 20) -> None:
    """``asyncio.run(main)``, bounded."""

    async def bounded() -> None:
        async with asyncio.timeout(limit):
            await main

    asyncio.run(bounded())


def config_for(sim: Simulator, **options: Any) -> TelcoflowClientConfig:
    return TelcoflowClientConfig.sandbox(
        sim.api_key, sim.connector_uuid, base_url=sim.base_url, sample_rate=8000, **options
    )


@asynccontextmanager
async def portal_with_simulator() -> AsyncIterator[tuple[TrioPortal, Simulator]]:
    async with (
        open_trio_portal() as portal,
        portal.open_context(open_simulator, SimulatorConfig()) as sim,
    ):
        yield portal, sim


def test_an_agent_in_an_asyncio_application() -> None:
    async def main() -> None:
        answered: asyncio.Queue[str] = asyncio.Queue()
        async with portal_with_simulator() as (portal, sim):

            async def echo(call: ActiveCall) -> None:  # runs on trio
                await call.answer()
                await portal.run_asyncio(answered.put, call.call_id)  # tell the app
                async for chunk in call.audio_stream():
                    await call.write_audio(chunk)

            async with portal.open_client(
                config_for(sim), echo, open_stream=sim.open_stream
            ) as agent:
                await agent.wait_connected()
                call = await portal.run(
                    sim.place_call, CallerScript(audio=tone(440), hangup_after=0.3)
                )
                assert await answered.get() == call.call_id
                result = await portal.run(call.wait_result)
                stats = await agent.statistics()
        assert result.ended_by == "caller_hangup"
        assert [c.name for c in result.commands] == ["call.answer"]
        assert result.agent_audio_seconds > 0.1  # the echo
        assert stats.calls_total == 1
        assert stats.connected

    run(main())


def test_cancellation_from_asyncio_reaches_trio_and_waits_for_it() -> None:
    log: list[str] = []

    async def slow() -> None:
        try:
            await trio.sleep(30)
        except trio.Cancelled:
            log.append("cancelled")
            with trio.CancelScope(shield=True):
                await trio.sleep(0.05)
            log.append("cleaned up")
            raise

    async def main() -> None:
        async with open_trio_portal() as portal:
            started = time.monotonic()
            with pytest.raises(TimeoutError):
                await asyncio.wait_for(portal.run(slow), 0.1)
            assert log == ["cancelled", "cleaned up"]  # before wait_for returned
            assert time.monotonic() - started < 5

    run(main())


def test_cancelling_a_trio_function_with_a_nursery_raises_cancelled_error() -> None:
    async def with_nursery() -> None:
        async with trio.open_nursery() as nursery:
            nursery.start_soon(trio.sleep_forever)
            with trio.CancelScope(shield=True):
                await trio.sleep(0.05)  # the cancellation arrives meanwhile

    async def main() -> None:
        async with open_trio_portal() as portal:
            task = asyncio.ensure_future(portal.run(with_nursery))
            await asyncio.sleep(0)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):  # not a group of trio.Cancelled
                await task

    run(main())


def test_cancelling_the_application_closes_the_calls() -> None:
    async def main() -> None:
        async with portal_with_simulator() as (portal, sim):
            ended: list[TerminationReason] = []

            async def hold(call: ActiveCall) -> None:
                call.on(CallEvent.CALL_TERMINATED)(lambda info: ended.append(info.reason))
                await call.answer()
                await trio.sleep_forever()

            async def application() -> None:
                async with portal.open_client(config_for(sim), hold, open_stream=sim.open_stream):
                    await asyncio.sleep(30)

            app = asyncio.create_task(application())
            call = await portal.run(sim.place_call, CallerScript())
            await portal.run(call.wait_state, CallState.ANSWERED)
            app.cancel()
            with pytest.raises(asyncio.CancelledError):
                await app
            # Leaving the block closed the client, which closed the call first.
            result = await portal.run(call.wait_result)
            assert result.ended_by == "agent_close"
            assert ended == [TerminationReason.CLIENT_SHUTDOWN]

    run(main())


def test_exceptions_cross_back() -> None:
    async def fails() -> None:
        await trio.lowlevel.checkpoint()
        raise KeyError("from trio")

    async def main() -> None:
        async with portal_with_simulator() as (portal, sim):
            with pytest.raises(KeyError, match="from trio"):
                await portal.run(fails)
            with pytest.raises(ZeroDivisionError):
                await portal.run_sync(lambda: 1 / 0)
            bad = TelcoflowClientConfig.sandbox(
                "wrong-key", sim.connector_uuid, base_url=sim.base_url
            )
            with pytest.raises(WSSAuthenticationError, match="HTTP 401"):
                async with portal.open_client(bad, open_stream=sim.open_stream):
                    pass

    run(main())


def test_a_client_failing_during_the_block_is_raised_by_wait_and_on_exit() -> None:
    async def main() -> None:
        async with portal_with_simulator() as (portal, sim):

            async def fail_during_the_block() -> None:
                async with portal.open_client(
                    config_for(sim), open_stream=sim.open_stream
                ) as agent:
                    await portal.run_sync(sim.faults.reject_auth)
                    await portal.run_sync(sim.faults.drop_control)
                    with pytest.raises(WSSAuthenticationError):
                        await agent.wait()

            with pytest.raises(WSSAuthenticationError):
                await fail_during_the_block()

    run(main())


def test_open_context_enters_and_leaves_in_one_trio_task() -> None:
    tasks: list[object] = []

    @asynccontextmanager
    async def resource(name: str) -> AsyncIterator[str]:
        tasks.append(trio.lowlevel.current_task())
        async with trio.open_nursery():  # would break if left by another task
            try:
                yield name
            finally:
                tasks.append(trio.lowlevel.current_task())

    async def main() -> None:
        async with open_trio_portal() as portal:
            async with portal.open_context(resource, "calls") as value:
                assert value == "calls"
            assert tasks[0] is tasks[1]
            with pytest.raises(ValueError, match="body"):
                async with portal.open_context(resource, "again"):
                    raise ValueError("body")
            assert tasks[2] is tasks[3]

    run(main())


def test_shutdown_does_not_hang_on_running_tasks() -> None:
    async def main() -> None:
        started = time.monotonic()
        async with portal_with_simulator() as (portal, sim):
            forever = asyncio.create_task(portal.run(trio.sleep_forever))
            client = portal.open_client(config_for(sim), open_stream=sim.open_stream)
            await client.__aenter__()  # never left: the portal's stop must cancel it
            await asyncio.sleep(0.05)
        assert time.monotonic() - started < 10
        with pytest.raises(concurrent.futures.CancelledError):
            await forever

    run(main())


def test_disconnect_lets_the_calls_finish_then_wait_returns() -> None:
    async def main() -> None:
        async with portal_with_simulator() as (portal, sim):

            async def answer(call: ActiveCall) -> None:
                await call.answer()
                await trio.sleep(0.3)

            async with portal.open_client(
                config_for(sim), answer, open_stream=sim.open_stream
            ) as agent:
                call = await portal.run(sim.place_call, CallerScript())
                await portal.run(call.wait_state, CallState.ANSWERED)
                await agent.disconnect()  # no new calls; this one goes on
                assert not (await agent.statistics()).connected
                await agent.wait()
                result = await portal.run(call.wait_result)
        assert result.ended_by == "agent_close"  # the handler returned after 0.3 s
        assert result.answered_at is not None
        assert result.ended_at - result.answered_at == pytest.approx(0.3, abs=0.2)

    run(main())
