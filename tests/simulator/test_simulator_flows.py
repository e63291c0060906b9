"""The simulator's call flow model (``call_flow.setup``, per control connection)."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from telcoflow_trio.proto import CallFlowSetup, Response, SessionCreate, SessionNotify, WaMsgOut
from telcoflow_trio.simulator import SimulatorConfig, open_simulator

from .simclient import RawControl, open_control


async def set_flow(
    control: RawControl, inbound: str, outbound_call: bool = False, outbound_message: bool = False
) -> Response:
    frame = CallFlowSetup(inbound, outbound_call, False, outbound_message, "flow")
    await control.ws.send_message(frame.encode())
    response: Response = await control.expect(Response)
    assert response.req_id == "flow"
    return response


async def silent(control: RawControl, seconds: float) -> bool:
    """Whether ``control`` receives nothing for ``seconds``."""
    with trio.move_on_after(seconds):
        await control.recv()
        return False
    return True


async def test_missed_only_is_offered_calls_no_all_connection_claimed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    config = SimulatorConfig(missed_call_after=10)
    async with (
        open_simulator(config) as sim,
        open_control(sim) as agents,
        open_control(sim) as overflow,
    ):
        assert (await set_flow(overflow, "MISSED_ONLY")).ok
        taken = await sim.place_call()
        await agents.claim()  # an ALL agent takes it at once: never missed
        missed = await sim.place_call()
        notify: SessionNotify = await agents.expect(SessionNotify)
        assert notify.session_id == missed.session_id  # ... and lets this one ring
        t0 = trio.current_time()
        early = await overflow.open(missed.session_id)  # not missed yet
        assert (early.ok, early.error_code) == (False, "FORBIDDEN")
        notify = await overflow.expect(SessionNotify, limit=20)
        assert trio.current_time() - t0 == pytest.approx(10)
        assert (notify.session_id, notify.activity) == (missed.session_id, "NEW_INCOMING_CALL")
        call_in = await overflow.claim(notify)
        assert call_in.call_id == missed.call_id
        assert taken.session_id != missed.session_id


async def test_missed_only_alone_is_offered_calls_at_once(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim, open_control(sim) as overflow:
        assert (await set_flow(overflow, "MISSED_ONLY")).ok
        call = await sim.place_call()
        with trio.fail_after(0.1):  # no ALL connection: missed at once
            assert (await overflow.claim()).call_id == call.call_id


async def test_switching_flow_offers_waiting_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        assert (await set_flow(control, "NO")).ok
        call = await sim.place_call()
        assert await silent(control, 1)
        no = await control.open(call.session_id)
        assert (no.ok, no.error_code) == (False, "FORBIDDEN")
        assert "inboundCall NO" in str(no.error_content)
        assert (await set_flow(control, "ALL")).ok
        assert (await control.claim()).call_id == call.call_id


async def test_bad_inbound_call_mode_is_refused(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        response = await set_flow(control, "SOMETIMES")
        assert (response.ok, response.error_code) == (False, "INVALID_REQUEST")
        assert "'SOMETIMES'" in str(response.error_content)
        assert [c.inbound_call for c in sim._control_connections()] == ["ALL"]


async def test_outbound_refused_by_the_flow_is_forbidden(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        requests = [
            SessionCreate("TELCO", "+1777", "r1"),
            SessionCreate("WA", "+1777", "r2"),
            WaMsgOut("s", "m", "v1", {}, "r3"),
        ]
        assert (await set_flow(control, "ALL")).ok  # outboundCall/Message false
        for frame in requests:
            await control.ws.send_message(frame.encode())
            refused: Response = await control.expect(Response)
            assert (refused.req_id, refused.error_code) == (frame.req_id, "FORBIDDEN")
        assert (await set_flow(control, "ALL", outbound_call=True, outbound_message=True)).ok
        for frame in requests:  # allowed by the flow: what the simulator does without one
            await control.ws.send_message(frame.encode())
            response: Response = await control.expect(Response)
            assert response.error_code != "FORBIDDEN"
