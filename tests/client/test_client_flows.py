"""Telcoflow 1.0.0 features: isolated channel audio, ``call.error``, call flow setup."""

from __future__ import annotations

import enum
from typing import Any

import pytest
import trio
import trio.testing

from telcoflow_trio import (
    ActiveCall,
    CallErrorCode,
    CallErrorInfo,
    CallState,
    InboundCallMode,
    _client,
    _control,
    events,
)
from telcoflow_trio.exceptions import WSSConnectionError, WSSInvalidRequest
from telcoflow_trio.simulator import CallerScript, SimulatorConfig, tone
from telcoflow_trio.simulator._audio import mix
from telcoflow_trio.simulator._server import Simulator
from tests.simulator.simclient import open_control

from .conftest import open_pair


async def take(stream: Any, n: int) -> list[bytes]:
    out: list[bytes] = []
    async for chunk in stream:
        out.append(chunk)
        if len(out) == n:
            break
    return out


# -- isolated channel audio ------------------------------------------------------------


async def test_isolated_channels_carry_each_leg(autojump_clock: trio.testing.MockClock) -> None:
    script = CallerScript(audio=tone(440), callee_audio=tone(1000), callee_answers_after=0.5)
    got: dict[int, list[bytes]] = {0: [], 1: [], 2: []}

    async def collect(stream: Any, into: list[bytes]) -> None:
        async for chunk in stream:
            into.append(chunk)

    async def handler(call: ActiveCall) -> None:
        async with trio.open_nursery() as nursery:
            for channel, chunks in got.items():
                nursery.start_soon(collect, call.audio_stream(channel), chunks)
            await call.answer()
            await trio.sleep(0.5)
            await call.connect()
            await trio.sleep(0.5)
            await call.close()

    async with open_pair(handler=handler, audio_mode="isolated") as (sim, _, _):
        simulated = await sim.place_call(script)
        with trio.fail_after(30):
            await simulated.wait_result()
    mixed, caller, callee = got[0], got[1], got[2]
    assert len(mixed) == len(caller) > len(callee) >= 20  # 20 ms frames, both legs
    alone = len(mixed) - len(callee)
    assert mixed[:alone] == caller[:alone]  # alone on the line: the mix is the caller
    assert any(any(c) for c in callee)
    assert callee[0] != caller[alone]
    assert mixed[alone:] == [mix(a, b) for a, b in zip(caller[alone:], callee, strict=True)]


async def test_mixed_mode_has_only_channel_0(autojump_clock: trio.testing.MockClock) -> None:
    counts: list[int] = []

    async def handler(call: ActiveCall) -> None:
        leg = call.audio_stream(1)
        await call.answer()
        await take(call.audio_stream(), 5)
        await call.close()
        counts.append(len([c async for c in leg]))  # ends with the call, never blocks
        done.set()

    done = trio.Event()
    async with open_pair(handler=handler) as (sim, _, _):
        await sim.place_call(CallerScript(audio=tone(440)))
        with trio.fail_after(30):
            await done.wait()
    assert counts == [0]


@pytest.mark.parametrize("bad", [-1, 256, True, "1"])
async def test_audio_stream_rejects_a_bad_channel(
    autojump_clock: trio.testing.MockClock, bad: Any
) -> None:
    errors: list[str] = []

    async def handler(call: ActiveCall) -> None:
        with pytest.raises(ValueError, match="channel_id") as info:
            call.audio_stream(bad)
        errors.append(str(info.value))

    async with open_pair(handler=handler) as (sim, _, _):
        simulated = await sim.place_call(CallerScript())
        with trio.fail_after(30):
            await simulated.wait_result()
    assert len(errors) == 1


async def test_isolated_legs_are_bounded_when_unread(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stats: list[Any] = []

    async def handler(call: ActiveCall) -> None:
        await call.answer()
        await trio.sleep(2)  # 100 frames on channels 0 and 1, nobody reading
        stats.append(call.statistics())
        await call.close()

    async with open_pair(handler=handler, audio_mode="isolated", inbound_queue_chunks=10) as (
        sim,
        _,
        _,
    ):
        simulated = await sim.place_call(CallerScript(audio=tone(440)))
        with trio.fail_after(30):
            await simulated.wait_result()
    assert stats[0].inbound_dropped_chunks >= 2 * 85  # both channels kept at most 10


# -- call.error ------------------------------------------------------------------------


async def test_scripted_call_errors_reach_call_handlers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = CallerScript(call_errors=[(2, "OTHER_ERROR"), (1, CallErrorCode.TTS_SESSION_ERROR)])
    seen: list[tuple[float, CallErrorInfo, CallState]] = []

    async def handler(call: ActiveCall) -> None:
        @call.on(events.CALL_ERROR)
        def on_error(info: CallErrorInfo) -> None:
            seen.append((trio.current_time() - answered, info, call.state))

        await call.answer()
        answered = trio.current_time()
        await trio.sleep(3)
        assert call.state is CallState.ANSWERED  # call.error does not end the call
        await call.close()

    async with open_pair(handler=handler) as (sim, _, _):
        simulated = await sim.place_call(script)
        with trio.fail_after(30):
            result = await simulated.wait_result()
    assert result.ended_by == "agent_close"
    assert [(round(t, 1), i.error_code, s) for t, i, s in seen] == [
        (1.0, "TTS_SESSION_ERROR", CallState.ANSWERED),
        (2.0, "OTHER_ERROR", CallState.ANSWERED),
    ]
    assert seen[0][1].error_message == "scripted call error"


@pytest.mark.parametrize(
    ("errors", "match"),
    [([(-1, "X")], "non-negative"), ([(1, "")], "not an error code"), ([1], "pairs")],
)
def test_call_errors_script_is_checked(errors: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CallerScript(call_errors=errors)


# -- call flow setup -------------------------------------------------------------------


def sim_flows(sim: Simulator) -> list[str]:
    """The inboundCall rule of each control connection the simulator has."""
    return [control.inbound_call for control in sim._control_connections()]


async def test_call_flow_no_then_all(autojump_clock: trio.testing.MockClock) -> None:
    calls: list[ActiveCall] = []

    async def handler(call: ActiveCall) -> None:
        calls.append(call)
        await call.answer()
        await call.close()

    async with open_pair(handler=handler) as (sim, client, _):
        await client.setup_call_flow(inbound_call=InboundCallMode.NO, outbound_call=True)
        assert sim_flows(sim) == ["NO"]
        simulated = await sim.place_call()
        await trio.sleep(5)
        assert (calls, sim.statistics().calls_unclaimed) == ([], 1)  # not offered
        await client.setup_call_flow(inbound_call="ALL")  # offers the waiting call
        with trio.fail_after(5):
            result = await simulated.wait_result()
    assert result.ended_by == "agent_close"
    assert len(calls) == 1


async def test_call_flow_is_restored_before_claims_resume(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    claimed_at: list[float] = []
    wire: list[str] = []  # each control request sent and answered, in order
    real_request = _control.ControlConnection.request

    async def request(self: Any, build: Any) -> Any:
        kind = type(build("")).__name__
        wire.append(f"> {kind}")
        try:
            return await real_request(self, build)
        finally:
            wire.append(f"< {kind}")

    monkeypatch.setattr(_control.ControlConnection, "request", request)

    async def handler(call: ActiveCall) -> None:
        claimed_at.append(trio.current_time() - t0)
        await call.answer()
        await call.close()

    config = SimulatorConfig(missed_call_after=10)
    async with (
        open_pair(config, handler=handler) as (sim, client, _),
        open_control(sim),  # takes ALL calls (but claims none): ours are missed after 10 s
    ):
        await client.setup_call_flow(inbound_call=InboundCallMode.MISSED_ONLY)
        t0 = trio.current_time()
        simulated = await sim.place_call()
        wire.clear()
        assert sim.faults.drop_control() == 2
        # Our new connection hears of the waiting call at once, while its flow
        # is the server's default (ALL): a claim then would win the call now.
        # The claim waits for the restored flow, so is refused; the call comes
        # when it is missed.
        await trio.sleep(1)
        assert client.statistics().reconnects == 1
        async with open_control(sim):  # an ALL connection again
            with trio.fail_after(30):
                await simulated.wait_result()
            assert sorted(sim_flows(sim)) == ["ALL", "MISSED_ONLY"]
    assert wire[:3] == ["> CallFlowSetup", "< CallFlowSetup", "> SessionOpen"]
    assert claimed_at == [pytest.approx(10, abs=0.1)]


async def test_call_flow_refused_raises_with_the_servers_message(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Modes(enum.StrEnum):  # a mode the client accepts but the server does not
        ALL = "ALL"
        SOMETIMES = "SOMETIMES"

    async with open_pair() as (sim, client, _):
        await client.setup_call_flow(inbound_call="NO")
        monkeypatch.setattr(_client, "InboundCallMode", Modes)
        with pytest.raises(WSSInvalidRequest, match=r"INVALID_REQUEST.*'SOMETIMES'") as info:
            await client.setup_call_flow(inbound_call="SOMETIMES")
        assert info.value.error_code == "INVALID_REQUEST"
        assert sim_flows(sim) == ["NO"]  # the accepted flow stays
        assert client._call_flow is not None
        assert client._call_flow.inbound_call == "NO"


async def test_call_flow_arguments_are_checked(autojump_clock: trio.testing.MockClock) -> None:
    async with open_pair() as (_, client, _):
        with pytest.raises(ValueError, match="inbound_call must be one of ALL, MISSED_ONLY, NO"):
            await client.setup_call_flow(inbound_call="SOME")
        with pytest.raises(TypeError, match="outbound_message must be a bool, got int"):
            await client.setup_call_flow(outbound_message=1)  # type: ignore[arg-type]
        await client.disconnect()
        with pytest.raises(WSSConnectionError, match="not connected"):
            await client.setup_call_flow()
