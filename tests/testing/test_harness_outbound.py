"""The test kit with outbound calls: script the callee, place the call, read the report."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from telcoflow_trio import ActiveCall
from telcoflow_trio.testing import CallerScript, make_tone, open_agent_test, tone


async def say_hello(call: ActiveCall) -> None:
    await call.write_audio(make_tone(500, 1.0, call.sample_rate))
    await call.wait_audio_sent()


async def test_wait_dialled_and_the_report(autojump_clock: trio.testing.MockClock) -> None:
    async with open_agent_test() as agent:
        agent.sim.expect_callee("+15550100", CallerScript(tone(300), answers_after=2.0))

        async def dial() -> None:
            async with agent.client.place_call("+15550100") as call:
                await say_hello(call)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(dial)
            dialled = await agent.wait_dialled("+15550100")
            assert dialled.outbound
            report = await agent.wait_call(dialled)
    report.assert_ended_by("agent_close")
    report.assert_agent_audio(min_seconds=0.95, max_seconds=1.05, tone=500)
    assert report.result.answered_at == pytest.approx(report.result.placed_at + 2.0)


async def test_wait_dialled_times_out(autojump_clock: trio.testing.MockClock) -> None:
    async with open_agent_test(call_timeout=5) as agent:
        with pytest.raises(AssertionError, match=r"no call to \+1555 within 5 s"):
            await agent.wait_dialled("+1555")
