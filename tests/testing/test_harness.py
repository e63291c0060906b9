"""open_agent_test, used the way a user tests an agent: scripted callers, reports, faults."""

from __future__ import annotations

import time

import pytest
import trio
import trio.testing

from telcoflow_trio import ActiveCall, CallState, TerminationReason
from telcoflow_trio.exceptions import WSSCallClosedError
from telcoflow_trio.simulator import SimulatorConfig
from telcoflow_trio.testing import (
    AgentHandlerError,
    CallerScript,
    contains_tone,
    make_tone,
    open_agent_test,
    tone,
)

GREETING_HZ = 660


async def greeter(call: ActiveCall) -> None:
    """The agent of the docs: answers, greets, listens for 2 s, hangs up."""
    await call.answer()
    await call.write_audio(make_tone(GREETING_HZ, 1.0, call.sample_rate))
    await call.wait_audio_sent()
    with trio.move_on_after(2.0):
        async for _ in call.audio_stream():
            pass
    await call.disconnect()


async def echo(call: ActiveCall) -> None:
    await call.answer()
    async for chunk in call.audio_stream():
        await call.write_audio(chunk)


async def test_agent_answers_talks_and_hangs_up(autojump_clock: trio.testing.MockClock) -> None:
    async with open_agent_test(greeter, sample_rate=8000) as agent:
        report = await agent.place_call(CallerScript(audio=tone(440)))

    report.assert_commands("call.answer", "call.disconnect")
    report.assert_states("PENDING", "ANSWERED", "DISCONNECTED")
    report.assert_ended_by("agent_disconnect")
    report.assert_agent_audio(min_seconds=1.0, max_seconds=1.1, tone=GREETING_HZ)
    report.assert_no_handler_errors()
    assert report.termination is not None
    assert report.termination.reason is TerminationReason.DISCONNECTED
    assert report.agent_statistics is not None
    assert report.agent_statistics.frames_received > 0  # it heard the caller
    # Answered at once; the greeting was all sent 60 ms before it finished playing
    # (the platform pulls 3 frames ahead); then 2 s of listening.
    assert report.result.answered_at is not None
    assert report.result.ended_at - report.result.answered_at == pytest.approx(2.94)


async def test_heartbeat_timeout_in_milliseconds(autojump_clock: trio.testing.MockClock) -> None:
    wall = time.perf_counter()
    async with open_agent_test(greeter, heartbeat_interval=30.0, heartbeat_timeout=10.0) as agent:
        agent.faults.stall_pings()  # the platform stops answering pings
        reconnected_at = await agent.wait_connection_attempts(2)
        await agent.client.wait_connected()
        assert agent.client.statistics().reconnects == 1
    # The ping at 30 s is never answered; at 40 s the connection is declared dead
    # and the client reconnects after its first backoff step, 0.5 s.
    assert reconnected_at == pytest.approx(40.5)
    assert time.perf_counter() - wall < 1.0  # 40 s of virtual time


async def test_echo_agent_returns_the_callers_audio(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_agent_test(echo, sample_rate=16000) as agent:
        report = await agent.place_call(
            CallerScript(audio=tone(440), talk_for=2.0, hangup_after=3.0)
        )
    report.assert_commands("call.answer")
    report.assert_ended_by("caller_hangup")
    report.assert_agent_audio(min_seconds=2.9, tone=440)
    assert report.sample_rate == 16000
    assert report.termination is not None
    assert report.termination.reason is TerminationReason.CALLER_HANGUP
    assert not contains_tone(report.agent_audio, GREETING_HZ, 16000)


async def test_handler_errors_fail_the_call_and_the_test(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def broken(call: ActiveCall) -> None:
        await call.answer()
        raise KeyError("no such prompt")

    with pytest.raises(AgentHandlerError, match="no such prompt") as caught:
        async with open_agent_test(broken) as agent:
            await agent.place_call()
    assert isinstance(caught.value.__cause__, KeyError)
    assert caught.value.report is agent.reports[0]
    [(call_id, error)] = caught.value.errors
    assert error is caught.value.__cause__
    # The client closed the call after the handler raised.
    [result] = agent.sim.results()
    assert result.call_id == call_id
    assert [c.name for c in result.commands] == ["call.answer", "call.close"]


async def test_handler_errors_can_be_inspected_instead(
    autojump_clock: trio.testing.MockClock,
) -> None:
    seen: list[BaseException] = []

    async def broken(call: ActiveCall) -> None:
        raise RuntimeError("boom")

    async with open_agent_test(
        broken, raise_handler_errors=False, on_handler_error=lambda call, exc: seen.append(exc)
    ) as agent:
        report = await agent.place_call()
    [error] = report.handler_errors
    assert seen == [error]
    assert report.termination is not None
    assert report.termination.reason is TerminationReason.HANDLER_FAILED
    report.assert_commands("call.close")
    with pytest.raises(AssertionError, match="handlers raised") as caught:
        report.assert_no_handler_errors()
    assert caught.value.__cause__ is error


async def test_unwaited_handler_errors_are_raised_on_exit(
    autojump_clock: trio.testing.MockClock,
) -> None:
    def sync_broken(call: ActiveCall) -> None:
        raise ValueError("sync handler")

    async def without_waiting_for_the_call() -> None:
        async with open_agent_test(sync_broken) as agent:
            call = await agent.start_call()
            await call.wait_result()

    with pytest.raises(AgentHandlerError, match="sync handler"):
        await without_waiting_for_the_call()


async def test_assertion_helpers_say_what_happened(autojump_clock: trio.testing.MockClock) -> None:
    async with open_agent_test(greeter, sample_rate=8000) as agent:
        report = await agent.place_call()
    with pytest.raises(
        AssertionError, match=r"sent \['call.answer', 'call.disconnect'\], expected"
    ):
        report.assert_commands("call.answer")
    with pytest.raises(AssertionError, match="states were"):
        report.assert_states(CallState.PENDING, CallState.CONNECTED, CallState.DISCONNECTED)
    with pytest.raises(
        AssertionError, match="ended by 'agent_disconnect', expected 'caller_hangup'"
    ):
        report.assert_ended_by("caller_hangup")
    with pytest.raises(AssertionError, match="expected >= 5"):
        report.assert_agent_audio(min_seconds=5)
    with pytest.raises(AssertionError, match=r"expected <= 0\.5"):
        report.assert_agent_audio(max_seconds=0.5)
    with pytest.raises(AssertionError, match=r"a 440 Hz tone carries 0\.0%"):
        report.assert_agent_audio(tone=440)


async def test_a_call_that_never_ends_fails_after_call_timeout(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def waits_forever(call: ActiveCall) -> None:
        await call.answer()
        await trio.sleep_forever()

    async with open_agent_test(waits_forever, call_timeout=30) as agent:
        with pytest.raises(
            AssertionError, match=r"\(ANSWERED\) was still waiting to end after 30"
        ):
            await agent.place_call()
        assert agent.elapsed() == pytest.approx(30)


async def test_caller_hangs_up_while_ringing(autojump_clock: trio.testing.MockClock) -> None:
    async def slow_to_answer(call: ActiveCall) -> None:
        await trio.sleep(5)
        with pytest.raises(WSSCallClosedError):
            await call.answer()

    async with open_agent_test(slow_to_answer) as agent:
        report = await agent.place_call(CallerScript(hangup_before_answer_after=1.0))
    report.assert_commands()
    report.assert_states("PENDING", "DISCONNECTED")
    report.assert_ended_by("caller_hangup")
    assert report.termination is not None
    assert report.termination.reason is TerminationReason.CALLER_HANGUP


async def test_a_command_pending_at_the_end_is_listed_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def transfer(call: ActiveCall) -> None:
        await call.answer()
        with pytest.raises(WSSCallClosedError):
            await call.connect(60)  # still ringing when the caller hangs up

    async with open_agent_test(transfer) as agent:
        report = await agent.place_call(CallerScript(callee_answers_after=None, hangup_after=2))
    report.assert_commands("call.answer", "call.connect")
    connect = report.result.commands[-1]
    assert (connect.success, connect.error_code, connect.latency) == (False, "CALL_TERMINATED", 2)


async def test_drive_a_call_live_and_inject_faults(autojump_clock: trio.testing.MockClock) -> None:
    async with open_agent_test(echo) as agent:
        call = await agent.start_call(CallerScript(audio=tone(440)))
        await call.wait_state(CallState.ANSWERED)
        active = await agent.wait_agent_call(call)
        assert agent.agent_call(call.call_id) is active
        await trio.sleep(1.0)
        assert active.state is CallState.ANSWERED
        agent.faults.drop_media(call.call_id)
        report = await agent.wait_call(call)
    report.assert_ended_by("media_lost")
    assert report.termination is not None
    assert report.termination.reason is TerminationReason.MEDIA_LOST
    assert agent.reports == [report]


async def test_network_down_then_back(autojump_clock: trio.testing.MockClock) -> None:
    async with open_agent_test(echo) as agent:
        agent.network_down = True
        agent.faults.drop_control()
        # Refused at 0.5, 1.25 and 2.375 s (0.5 s * 1.5 ** n, no jitter by default).
        assert await agent.wait_connection_attempts(4) == pytest.approx(2.375)
        agent.network_down = False
        await agent.client.wait_connected()
        assert agent.connection_attempts == pytest.approx([0, 0.5, 1.25, 2.375, 4.0625])
        report = await agent.place_call(CallerScript(hangup_after=1.0))
    report.assert_ended_by("caller_hangup")


async def test_a_running_simulator_can_be_shared(autojump_clock: trio.testing.MockClock) -> None:
    from telcoflow_trio.simulator import open_simulator

    async with open_simulator(SimulatorConfig(command_latency=0.25)) as sim:
        async with open_agent_test(greeter, simulator=sim) as agent:
            assert agent.sim is sim
            report = await agent.place_call()
        assert sim.results()[-1].call_id == report.call_id
        for command in report.result.commands:
            assert command.latency == pytest.approx(0.25)


async def test_describe_lists_every_call(autojump_clock: trio.testing.MockClock) -> None:
    async with open_agent_test(echo) as agent:
        assert agent.describe() == "no calls"
        report = await agent.place_call(CallerScript(hangup_after=0.5))
        live = await agent.start_call()
        await live.wait_state(CallState.ANSWERED)
        text = agent.describe()
    assert f"call {report.call_id}: commands=['call.answer']" in text
    assert f"call {live.call_id}: still active, state ANSWERED" in text
    assert "ended_by='caller_hangup'" in text


async def test_without_a_handler_nobody_takes_the_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_agent_test(call_timeout=10) as agent:
        call = await agent.start_call(CallerScript(hangup_before_answer_after=5))
        with pytest.raises(AssertionError, match=r"was not given call .* within 10 s"):
            await agent.wait_agent_call(call)
        report = await agent.wait_call(call)
        with pytest.raises(ValueError, match="count must be at least 1"):
            await agent.wait_connection_attempts(0)
    assert report.termination is None
    assert report.sample_rate is None  # nobody claimed it
    report.assert_ended_by("caller_hangup")
    with pytest.raises(AssertionError, match="agent=never got the call"):
        report.assert_agent_audio(min_seconds=1)
