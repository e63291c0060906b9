"""Outbound calls on the wire: ``session.create`` TELCO, then open, ready, and
``call.in`` only once the callee answers (the 1.0.0 SDK has no answered event)."""

from __future__ import annotations

import io

import pytest
import trio
import trio.testing

from telcoflow_trio.proto import CallIn, Response, SessionClosed, SessionCreate, SessionReady
from telcoflow_trio.simulator import CallerScript, SimulatorConfig, open_simulator

from .simclient import open_control


async def test_call_in_comes_when_the_callee_answers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        sim.expect_callee("+15550100", CallerScript(answers_after=3.0))
        t0 = trio.current_time()
        await control.ws.send_message(SessionCreate("TELCO", "+15550100", "c1").encode())
        created: Response = await control.expect(Response)
        assert created.ok
        assert created.req_id == "c1"
        assert isinstance(created.content, dict)
        assert created.content["created"] is True
        session_id = created.content["sessionId"]
        opened = await control.open(session_id)
        assert opened.ok
        assert isinstance(opened.content, dict)
        session = opened.content["session"]
        assert (session["remoteAddress"], session["localAddress"]) == ("+15550100", "+15550199")
        await control.ws.send_message(SessionReady(session_id).encode())
        call_in: CallIn = await control.expect(CallIn)
        assert trio.current_time() - t0 == 3.0  # not before the answer
        assert (call_in.session_id, call_in.caller, call_in.callee) == (
            session_id,
            "+15550199",
            "+15550100",
        )
        call = sim.get_call(call_in.call_id)
        assert call is not None
        assert call.outbound
        assert str(call.state) == "ANSWERED"
        assert sim.statistics().calls_outbound == 1


async def test_unanswered_call_closes_its_session(autojump_clock: trio.testing.MockClock) -> None:
    config = SimulatorConfig(outbound_ring_timeout=7.0)
    async with open_simulator(config) as sim, open_control(sim) as control:
        sim.expect_callee("+15550100", CallerScript(answers_after=None))
        await control.ws.send_message(SessionCreate("TELCO", "+15550100", "c1").encode())
        created: Response = await control.expect(Response)
        assert isinstance(created.content, dict)
        session_id = created.content["sessionId"]
        assert (await control.open(session_id)).ok
        await control.ws.send_message(SessionReady(session_id).encode())
        closed: SessionClosed = await control.expect(SessionClosed, limit=10)
        assert (closed.session_id, closed.reason) == (session_id, "CALL_TERMINATED")
        result = sim.results()[0]
        assert (result.ended_by, result.outbound, result.answered_at) == (
            "unanswered_timeout",
            True,
            None,
        )


async def test_bad_address_is_an_invalid_request(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        await control.ws.send_message(SessionCreate("TELCO", "not a number", "c1").encode())
        refused: Response = await control.expect(Response)
        assert (refused.ok, refused.error_code) == (False, "INVALID_REQUEST")
        assert refused.error_content == {
            "message": "remoteAddress 'not a number' is not a phone number"
        }
        assert sim.statistics().calls_outbound == 0


async def test_console_scripts_and_answers_outbound_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from telcoflow_trio.simulator._cli import _Console

    out = io.StringIO()
    async with open_simulator() as sim, open_control(sim) as control:
        console = _Console(sim, out)
        sim.add_observer(console.observe)
        await console.command("callee", ["+15550100", "tone", "300", "pickup=never"])
        await console.command("callee", ["+15550111", "reject", "pickup=1"])
        for number, req in (("+15550100", "a"), ("+15550111", "b")):
            await control.ws.send_message(SessionCreate("TELCO", number, req).encode())
            created: Response = await control.expect(Response)
            assert created.ok
        [ringing, declining] = sim.active_calls()
        assert ringing.script.answers_after is None
        assert declining.script.rejects
        await console.command("answer", ["#1"])
        assert str(ringing.state) == "ANSWERED"
        with pytest.raises(ValueError, match="not a ringing outbound call"):
            await console.command("reject", ["#1"])
        closed: SessionClosed = await control.expect(SessionClosed)
        assert closed.session_id == declining.session_id
        assert (await declining.wait_result()).ended_by == "callee_rejected"
        await console.command("delay-creates", ["1.5"])
        await console.command("refuse-creates", ["FORBIDDEN"])
        assert sim.faults.create_delay == 1.5
        assert sim.faults.create_refusal == ("FORBIDDEN", "refused by a fault")
        await console.command("refuse-creates", ["off"])
        assert sim.faults.create_refusal is None
        await console.command("close-session", ["#1", "CALL_TERMINATED"])
        assert (await ringing.wait_result()).termination_reason == "CALL_TERMINATED"
    text = out.getvalue()
    assert "#1 dialled by the agent +15550199 -> +15550100" in text
    assert "ok: answer #1" in text
    assert "#2 ended by callee_rejected" in text
