"""Who ended a call, and why: exact on both sides, for each way a call can end.

Each test runs one way through the test kit and checks the platform's record
(``ended_by`` and the wire reason, ``termination_reason``) and what the agent
was told (:class:`~telcoflow_trio.TerminationInfo` reason and party).
"""

from __future__ import annotations

import ssl

import pytest
import trio
import trio.testing

from telcoflow_trio import ActiveCall, TerminationReason
from telcoflow_trio.exceptions import WSSCallCommandTimeoutError
from telcoflow_trio.simulator import SimulatorConfig, open_simulator
from telcoflow_trio.testing import CallerScript, CallReport, open_agent_test
from telcoflow_trio.ws._transport import Transport

R = TerminationReason


def ends(report: CallReport) -> tuple[str, str, TerminationReason, str]:
    """``(ended_by, termination_reason, agent's reason, agent's party)``."""
    assert report.termination is not None, "the agent never got the call"
    result, info = report.result, report.termination
    return result.ended_by, result.termination_reason, info.reason, info.who


async def answer_and_hold(call: ActiveCall) -> None:
    await call.answer()
    await call.wait_terminated()


async def never_answer(call: ActiveCall) -> None:
    await call.wait_terminated()


async def test_caller_hangs_up_before_the_answer(autojump_clock: trio.testing.MockClock) -> None:
    async with open_agent_test(never_answer) as agent:
        call = await agent.start_call()
        await agent.wait_agent_call(call)
        await trio.sleep(1)
        await call.hang_up()  # still ringing
        report = await agent.wait_call(call)
    assert ends(report) == ("caller_hangup", "CALL_TERMINATED", R.CALLER_HANGUP, "caller")
    report.assert_states("PENDING", "DISCONNECTED")


async def test_caller_hangs_up_after_the_answer(autojump_clock: trio.testing.MockClock) -> None:
    async with open_agent_test(answer_and_hold) as agent:
        report = await agent.place_call(CallerScript(hangup_after=2))
    assert ends(report) == ("caller_hangup", "CALL_TERMINATED", R.CALLER_HANGUP, "caller")


async def test_caller_gives_up_ringing(autojump_clock: trio.testing.MockClock) -> None:
    async with open_agent_test(
        never_answer, simulator=SimulatorConfig(unanswered_timeout=30)
    ) as agent:
        report = await agent.place_call()
    assert ends(report) == ("unanswered_timeout", "CALL_TERMINATED", R.CALLER_HANGUP, "caller")
    assert report.result.ended_at - report.result.placed_at == 30


@pytest.mark.parametrize(
    ("command", "ended_by", "reason"),
    [("close", "agent_close", R.CLOSED), ("disconnect", "agent_disconnect", R.DISCONNECTED)],
)
async def test_agent_hangs_up(
    autojump_clock: trio.testing.MockClock, command: str, ended_by: str, reason: R
) -> None:
    async def hangs_up(call: ActiveCall) -> None:
        await call.answer()
        await getattr(call, command)()

    async with open_agent_test(hangs_up) as agent:
        report = await agent.place_call()
    assert ends(report) == (ended_by, "SDK_REQUEST", reason, "agent")


async def test_handler_returns(autojump_clock: trio.testing.MockClock) -> None:
    async def returns(call: ActiveCall) -> None:
        await call.answer()

    async with open_agent_test(returns) as agent:
        report = await agent.place_call()
    assert ends(report) == ("agent_close", "SDK_REQUEST", R.HANDLER_RETURNED, "agent")


async def test_handler_raises(autojump_clock: trio.testing.MockClock) -> None:
    async def raises(call: ActiveCall) -> None:
        await call.answer()
        raise LookupError("no prompt")

    async with open_agent_test(raises, raise_handler_errors=False) as agent:
        report = await agent.place_call()
    assert ends(report) == ("agent_close", "SDK_REQUEST", R.HANDLER_FAILED, "agent")
    assert [type(e) for e in report.handler_errors] == [LookupError]


async def test_agent_side_drops_the_media_connection(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with open_agent_test(answer_and_hold) as agent:
        opened: list[trio.abc.Stream] = []
        sim_open = agent.sim.open_stream

        async def keep(host: str, port: int, context: ssl.SSLContext | None) -> trio.abc.Stream:
            stream = await sim_open(host, port, context)
            opened.append(stream)
            return stream

        monkeypatch.setattr(agent.sim, "open_stream", keep)
        call = await agent.start_call()
        await agent.wait_agent_call(call)
        await trio.sleep(1)
        [media] = opened  # the control connection was opened before the patch
        await trio.aclose_forcefully(media)  # the agent's network drops it
        report = await agent.wait_call(call)
    assert ends(report) == ("media_lost", "FORCE_CLOSE", R.MEDIA_LOST, "network")
    assert report.result.media_close_code == 1006  # no close handshake


@pytest.mark.parametrize("transport", ["lean", "trio-websocket"])
async def test_platform_drops_the_media_connection(
    autojump_clock: trio.testing.MockClock, transport: Transport
) -> None:
    # The agent hears of it twice at the same instant, on two sockets: its media
    # connection breaks and session.closed comes; the media connection decides,
    # whichever comes first (several calls, so both orders are likely seen).
    async with open_agent_test(
        answer_and_hold, simulator=SimulatorConfig(transport=transport), transport=transport
    ) as agent:
        for _ in range(8):
            call = await agent.start_call()
            await agent.wait_agent_call(call)
            await trio.sleep(1)
            agent.faults.drop_media(call.call_id)
            report = await agent.wait_call(call)
            assert ends(report) == ("media_lost", "FORCE_CLOSE", R.MEDIA_LOST, "network")
            assert report.result.media_close_code is None  # the platform's side dropped it


async def test_control_lost_then_the_caller_hangs_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_agent_test(answer_and_hold) as agent:
        call = await agent.start_call()
        await agent.wait_agent_call(call)
        agent.network_down = True
        agent.faults.drop_control()  # no session.closed can reach the agent now
        await trio.sleep(1)
        await call.hang_up()
        report = await agent.wait_call(call)
        agent.network_down = False
    assert ends(report) == ("caller_hangup", "CALL_TERMINATED", R.CALLER_HANGUP, "caller")


async def test_server_ends_the_call(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_agent_test(answer_and_hold, simulator=sim) as agent:
        call = await agent.start_call()
        await agent.wait_agent_call(call)
        await trio.sleep(1)
        await sim.aclose()  # the platform shuts down, ending every call
        report = await agent.wait_call(call)
    assert ends(report) == ("server", "FORCE_CLOSE", R.SERVER, "server")


async def test_agent_close_times_out_then_takes_effect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def closes_slowly(call: ActiveCall) -> None:
        await call.answer()
        agent.faults.delay_responses(20)  # beyond the client's 10 + 5 s
        with pytest.raises(WSSCallCommandTimeoutError):
            await call.close()
        await call.wait_terminated()  # the platform carried it out after all

    async with open_agent_test(closes_slowly) as agent:
        report = await agent.place_call()
    assert ends(report) == ("agent_close", "SDK_REQUEST", R.CLOSED, "agent")
    assert report.termination is not None
    assert report.termination.when - report.result.placed_at == 20


async def test_caller_hangs_up_while_the_agent_hangs_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def disconnects(call: ActiveCall) -> None:
        await call.answer()
        await trio.sleep(1)
        await call.disconnect()  # takes a second; the caller is quicker

    config = SimulatorConfig(command_latency=1.0)
    async with open_agent_test(disconnects, simulator=config) as agent:
        report = await agent.place_call(CallerScript(hangup_after=1.5))
    assert ends(report) == ("caller_hangup", "CALL_TERMINATED", R.CALLER_HANGUP, "caller")
    report.assert_commands("call.answer", "call.disconnect")
    assert report.result.commands[-1].error_code == "CALL_TERMINATED"
