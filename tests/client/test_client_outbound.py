"""Outbound calls: ``client.place_call`` against the simulator, every way it can go."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
import trio.testing

from telcoflow_trio import ActiveCall, CallState, TelcoflowClient, TerminationReason
from telcoflow_trio.exceptions import (
    BufferClosedError,
    WSSCallNotAnswered,
    WSSChannelNotConfigured,
    WSSConnectionError,
    WSSQuotaExceeded,
    WSSSessionAlreadyExists,
    WSSSessionError,
)
from telcoflow_trio.simulator import CallerScript, SimulatorConfig, open_simulator, tone
from telcoflow_trio.simulator._call import SimulatedCall

from .conftest import CREATE_REFUSALS, client_config, client_tasks, open_pair

NUMBER = "+15550100"


def watch_placed(sim: object) -> list[SimulatedCall]:
    placed: list[SimulatedCall] = []

    def observer(call: SimulatedCall, event: str) -> None:
        if event == "placed" and call.outbound:
            placed.append(call)

    sim.add_observer(observer)  # type: ignore[attr-defined]
    return placed


async def test_answered_call_carries_audio_both_ways(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    script = CallerScript(audio=tone(440), answers_after=2.0, record_dir=tmp_path)
    async with open_pair() as (sim, client, opener):
        sim.expect_callee(NUMBER, script)
        placed = watch_placed(sim)
        async with client.place_call(NUMBER) as call:
            assert opener.now() == pytest.approx(2.0, abs=0.05)  # entered on the answer
            assert call.outbound
            assert call.state is CallState.ANSWERED
            assert call.callee_number == NUMBER
            assert call.caller_number == sim.config.outbound_caller_id
            assert client.get_call(call.call_id) is call
            call.send_audio(b"\x01\x02" * (call.sample_rate // 2))  # 0.5 s
            heard = 0
            async for chunk in call.audio_stream():
                heard += len(chunk)
                if heard >= call.sample_rate:  # 0.5 s of the callee's tone
                    break
            await call.wait_audio_sent()
        assert call.termination is not None
        assert call.termination.reason is TerminationReason.HANDLER_RETURNED
        result = await placed[0].wait_result()
        stats = client.statistics()
    assert client_tasks() == []
    assert result.outbound
    assert result.callee == NUMBER
    assert result.ended_by == "agent_close"
    assert result.answered_at == pytest.approx(result.placed_at + 2.0)
    assert result.agent_audio.startswith(b"\x01\x02" * 100)
    assert result.agent_audio_seconds >= 0.5
    assert {p.name for p in result.recordings} == {"caller.wav", "agent.wav"}
    assert stats.calls_outbound == 1
    assert stats.calls_outbound_unanswered == 0
    assert stats.calls_ended == {"handler_returned": 1}
    assert sim.statistics().calls_outbound == 1
    assert sim.statistics().calls_placed == 0


async def test_callee_hangs_up(autojump_clock: trio.testing.MockClock) -> None:
    async with open_pair() as (sim, client, _):
        sim.expect_callee(NUMBER, CallerScript(answers_after=0.5, hangup_after=3.0))
        async with client.place_call(NUMBER) as call:
            info = await call.wait_terminated()
    assert info.reason is TerminationReason.CALLEE_HANGUP
    assert info.who == "callee"
    assert client_tasks() == []


async def test_the_test_kit_answers(autojump_clock: trio.testing.MockClock) -> None:
    async with open_pair() as (sim, client, opener):
        sim.expect_callee(NUMBER, CallerScript(answers_after=None))
        placed = watch_placed(sim)

        async def answer_later() -> None:
            await trio.sleep(5)
            await placed[0].answer()
            with pytest.raises(RuntimeError, match="not a ringing outbound call"):
                await placed[0].answer()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(answer_later)
            async with client.place_call(NUMBER) as call:
                assert opener.now() == pytest.approx(5.0, abs=0.05)
                assert call.state is CallState.ANSWERED


@pytest.mark.parametrize(
    ("script", "ended_by"),
    [
        (CallerScript(answers_after=3.0, rejects=True), "callee_rejected"),
        (CallerScript(answers_after=None), "unanswered_timeout"),
    ],
)
async def test_declined_or_unanswered_ends_with_the_reason(
    autojump_clock: trio.testing.MockClock, script: CallerScript, ended_by: str
) -> None:
    config = SimulatorConfig(outbound_ring_timeout=20.0)
    async with open_pair(config) as (sim, client, _):
        sim.expect_callee(NUMBER, script)
        placed = watch_placed(sim)
        with pytest.raises(WSSCallNotAnswered, match="ended before it was answered") as caught:
            async with client.place_call(NUMBER):
                pytest.fail("the block must not run")
        assert caught.value.reason == "CALL_TERMINATED"
        assert (await placed[0].wait_result()).ended_by == ended_by
        stats = client.statistics()
    assert stats.calls_outbound_unanswered == 1
    assert stats.calls_active == 0
    assert client_tasks() == []


async def test_our_ring_timeout_gives_up_and_a_late_answer_is_hung_up(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair() as (sim, client, opener):
        sim.expect_callee(NUMBER, CallerScript(answers_after=15.0))
        placed = watch_placed(sim)
        with pytest.raises(WSSCallNotAnswered, match="not answered within 10 s") as caught:
            async with client.place_call(NUMBER, ring_timeout=10):
                pass
        assert caught.value.reason is None
        assert opener.now() == pytest.approx(10.0, abs=0.05)
        result = await placed[0].wait_result()
        assert result.ended_by == "agent_close"  # answered at 15 s, closed at once
        assert result.answered_at == pytest.approx(result.placed_at + 15.0)
        await trio.sleep(1)
        stats = client.statistics()
    assert stats.calls_active == 0
    assert stats.calls_outbound_unanswered == 1
    assert client_tasks() == []


async def test_session_closed_while_ringing(autojump_clock: trio.testing.MockClock) -> None:
    async with open_pair() as (sim, client, _):
        sim.expect_callee(NUMBER, CallerScript(answers_after=None))
        placed = watch_placed(sim)

        async def close_it() -> None:
            await trio.sleep(2)
            sim.faults.close_session(placed[0].call_id)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(close_it)
            with pytest.raises(WSSCallNotAnswered) as caught:
                async with client.place_call(NUMBER):
                    pass
        assert caught.value.reason == "FORCE_CLOSE"
    assert client_tasks() == []


@pytest.mark.parametrize(("code", "exc"), [*CREATE_REFUSALS, ("SOMETHING_NEW", WSSSessionError)])
async def test_server_codes_raise_the_named_exception(
    autojump_clock: trio.testing.MockClock, code: str, exc: type[WSSSessionError]
) -> None:
    async with open_pair() as (sim, client, _):
        sim.faults.refuse_creates(code, "the platform says no")
        with pytest.raises(exc, match=rf"{code} \(the platform says no\)") as caught:
            async with client.place_call(NUMBER):
                pass
        assert type(caught.value) is exc
        assert caught.value.error_code == code
        assert client.statistics().calls_outbound == 0
    assert client_tasks() == []


async def test_simulator_policies_refuse(autojump_clock: trio.testing.MockClock) -> None:
    async with open_pair(SimulatorConfig(outbound_calls=False)) as (_, client, _):
        with pytest.raises(WSSChannelNotConfigured, match="not enabled"):
            async with client.place_call(NUMBER):
                pass
    config = SimulatorConfig(max_outbound_calls=1)
    async with open_pair(config) as (sim, client, _):
        sim.expect_callee(NUMBER, CallerScript(answers_after=0.0))
        async with client.place_call(NUMBER):
            with pytest.raises(WSSSessionAlreadyExists) as caught:
                async with client.place_call(NUMBER):
                    pass
            assert caught.value.session_id
            with pytest.raises(WSSQuotaExceeded, match="1 outbound calls are active"):
                async with client.place_call("+15550111"):
                    pass


@pytest.mark.parametrize("address", ["", "12", "+1 555 0100", "abc", "+1234567890123456", "0x12"])
async def test_malformed_address_raises_before_sending(
    autojump_clock: trio.testing.MockClock, address: str
) -> None:
    async with open_pair() as (sim, client, _):
        with pytest.raises(ValueError, match="remote_address must be a phone number"):
            async with client.place_call(address):
                pass
        with pytest.raises(ValueError, match="ring_timeout"):
            async with client.place_call(NUMBER, ring_timeout=0):
                pass
        assert sim.statistics().calls_outbound == 0
        assert sim.statistics().malformed_frames == 0


async def test_slow_create_ack_and_not_connected(autojump_clock: trio.testing.MockClock) -> None:
    async with open_pair() as (sim, client, opener):
        sim.faults.delay_creates(4.0)
        sim.expect_callee(NUMBER, CallerScript(answers_after=1.0))
        async with client.place_call(NUMBER):
            assert opener.now() == pytest.approx(5.0, abs=0.05)
        sim.faults.delay_creates(60.0)  # past request_timeout
        with pytest.raises(WSSConnectionError, match="no response to SessionCreate"):
            async with client.place_call(NUMBER):
                pass
        await client.disconnect()
        with pytest.raises(WSSConnectionError, match="not connected"):
            async with client.place_call(NUMBER):
                pass
    assert client_tasks() == []


async def test_control_lost_while_ringing(autojump_clock: trio.testing.MockClock) -> None:
    async with open_pair() as (sim, client, _):
        sim.expect_callee(NUMBER, CallerScript(answers_after=None))
        placed = watch_placed(sim)

        async def drop() -> None:
            await trio.sleep(1)
            sim.faults.drop_control()

        async with trio.open_nursery() as nursery:
            nursery.start_soon(drop)
            with pytest.raises(WSSConnectionError, match="lost while the call"):
                async with client.place_call(NUMBER):
                    pass
        # The platform hangs up a call whose agent went away before the media.
        assert (await placed[0].wait_result()).ended_by == "server"
    assert client_tasks() == []


async def test_client_shutdown_closes_the_call_in_the_block(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim:
        sim.expect_callee(NUMBER, CallerScript(answers_after=0.0))
        placed = watch_placed(sim)
        client = TelcoflowClient(client_config(sim), open_stream=sim.open_stream)
        seen: list[ActiveCall] = []
        async with client:

            async def hold() -> None:
                async with client.place_call(NUMBER) as call:
                    seen.append(call)
                    await trio.sleep_forever()

            client._nursery.start_soon(hold)  # type: ignore[union-attr]
            await trio.sleep(1)
        assert seen[0].termination is not None
        assert seen[0].termination.reason is TerminationReason.CLIENT_SHUTDOWN
        assert (await placed[0].wait_result()).ended_by == "agent_close"
    assert client_tasks() == []


async def test_declined_before_our_session_open(autojump_clock: trio.testing.MockClock) -> None:
    async with open_pair() as (sim, client, _):
        sim.expect_callee(NUMBER, CallerScript(answers_after=0.0, rejects=True))
        with pytest.raises(WSSCallNotAnswered) as caught:
            async with client.place_call(NUMBER):
                pass
        assert caught.value.reason == "CALL_TERMINATED"
    assert client_tasks() == []


async def test_answered_before_our_session_ready(autojump_clock: trio.testing.MockClock) -> None:
    async with open_pair() as (sim, client, opener):
        sim.expect_callee(NUMBER, CallerScript(answers_after=0.0))
        async with client.place_call(NUMBER) as call:
            assert opener.now() < 0.1
            assert call.state is CallState.ANSWERED


async def test_the_softphone_answers(autojump_clock: trio.testing.MockClock) -> None:
    from telcoflow_trio.simulator._softphone import SoftphoneCall, run_softphone

    async with open_pair() as (sim, client, _):
        got: list[SoftphoneCall] = []

        async def softphone() -> None:
            got.append(
                await run_softphone(
                    sim.base_url,
                    open_stream=sim.open_stream,
                    answer=NUMBER,
                    hangup_after=2.0,
                    extra={"answersAfter": 0.5},
                )
            )

        async with trio.open_nursery() as nursery:
            nursery.start_soon(softphone)
            await trio.testing.wait_all_tasks_blocked()
            assert NUMBER in sim._callee_scripts  # the softphone waits for the call
            async with client.place_call(NUMBER) as call:
                await call.write_audio(b"\x07\x00" * call.sample_rate)  # 1 s
                info = await call.wait_terminated()
        assert info.reason is TerminationReason.CALLEE_HANGUP
        [phone] = got
    assert phone.result["endedBy"] == "callee_hangup"
    assert phone.result["outbound"] is True
    assert phone.sample_rate == call.sample_rate
    assert b"\x07\x00" * 100 in phone.agent_audio  # it heard the agent
    assert NUMBER not in sim._callee_scripts


async def test_session_closed_under_a_live_outbound_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair() as (sim, client, _):
        sim.expect_callee(NUMBER, CallerScript(answers_after=0.5))
        async with client.place_call(NUMBER) as call:
            await trio.sleep(1)
            sim.faults.close_session(call.call_id)
            info = await call.wait_terminated()
            with pytest.raises(BufferClosedError):
                call.send_audio(b"\0\0")
        assert info.reason is TerminationReason.SERVER
        assert client.statistics().calls_ended == {"server": 1}
    assert client_tasks() == []
