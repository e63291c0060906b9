"""Calls through the simulator: control plane, media plane, commands, audio, results.

Everything runs in memory under the autojump clock, so times are exact.
"""

from __future__ import annotations

import contextlib
import wave
from pathlib import Path

import attrs
import pytest
import trio

from telcoflow_trio.proto import (
    CallIn,
    CallState,
    Response,
    SessionClosed,
    SessionNotify,
    SessionReady,
    frame_bytes,
)
from telcoflow_trio.simulator import (
    CallerScript,
    SimulatorConfig,
    noise,
    open_simulator,
    silence,
    tone,
)

from .simclient import open_control, open_media

P, A, C, D = CallState.PENDING, CallState.ANSWERED, CallState.CONNECTED, CallState.DISCONNECTED


async def test_answered_call_end_to_end(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim, sample_rate=16000) as control:
        call = await sim.place_call(
            CallerScript(tone(440), hangup_after=2.0), caller="+1555", callee="+1666"
        )
        notify: SessionNotify = await control.expect(SessionNotify)
        assert (notify.session_id, notify.channel, notify.activity) == (
            call.session_id,
            "TELCO",
            "NEW_INCOMING_CALL",
        )
        assert (notify.remote_address, notify.local_address) == ("+1555", "+1666")
        response = await control.open(notify.session_id)
        assert response.ok
        assert response.content["session"]["id"] == call.session_id
        assert response.content["session"]["channel"] == "TELCO"
        await control.ws.send_message(SessionReady(notify.session_id).encode())
        call_in: CallIn = await control.expect(CallIn)
        assert call_in.call_id == call.call_id
        assert call_in.url == f"ws://simulator.invalid/v1/media/{call.call_id}"
        assert (call_in.caller, call_in.callee, call_in.org_uuid) == ("+1555", "+1666", "sim-org")

        async with open_media(sim, call_in) as media:
            await trio.sleep(1.0)  # ringing: no audio, no pulls before the answer
            assert media.audio == {}
            assert media.requests == []
            answered = await media.command("call.answer")
            assert answered.success
            assert call.state is A
            await media.say(tone(880).frames(16000, 16000).__next__())  # 0.5 s
            result = await call.wait_result()
            terminated = await media.wait_event("call.terminated")
            closed = await media.wait_closed()
        session_closed: SessionClosed = await control.expect(SessionClosed)

    assert terminated.fields["reason"] == "CALL_TERMINATED"
    assert closed.code == 1000
    assert session_closed == SessionClosed(call.session_id, "CALL_TERMINATED")
    # 100 caller frames of 20 ms at 16 kHz, on channel 0, from the answer to the hang-up.
    assert len(media.audio[0]) == 100 * 640
    assert list(media.audio) == [0]
    assert media.requests[0].prefer_audio_frame_bytes == 640
    assert media.requests[0].requested_bytes == 3 * 640
    assert result.ended_by == "caller_hangup"
    assert result.termination_reason == "CALL_TERMINATED"
    assert result.states == ((0.0, P), (1.0, A), (3.0, D))
    assert result.answered_at == 1.0
    assert result.ended_at == 3.0
    assert result.caller_audio_seconds == pytest.approx(2.0)
    assert result.agent_audio_seconds == pytest.approx(0.5)
    assert result.agent_audio == tone(880).frames(16000, 16000).__next__()
    assert result.first_agent_audio_after_answer == 0.0
    assert result.underruns == 0
    assert result.unrequested_bytes == 0
    assert [(c.name, c.success, c.latency) for c in result.commands] == [
        ("call.answer", True, 0.0)
    ]
    assert result.final_state is D
    assert sim.results() == [attrs.evolve(result, agent_audio=b"")]


async def test_setup_sets_rate_and_isolated_legs(autojump_clock: trio.testing.MockClock) -> None:
    # The callee answers between two ticks, so no two events share an instant.
    script = CallerScript(tone(300), callee_answers_after=1.005, callee_audio=tone(500))
    async with (
        open_simulator() as sim,
        open_control(sim, sample_rate=8000, audio_mode="isolated") as control,
    ):
        call = await sim.place_call(script)
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.answer")).success
            await trio.sleep(0.1)
            assert {ch: len(pcm) for ch, pcm in media.audio.items()} == {0: 5 * 320, 1: 5 * 320}
            assert media.requests[0].prefer_audio_frame_bytes == frame_bytes(8000) == 320
            connected = await media.command("call.connect", data={"ringTimeSeconds": 5})
            assert connected.success
            assert trio.current_time() == pytest.approx(1.105)
            assert call.state is C
            before = len(media.audio[0])
            await trio.sleep(0.1)
            assert len(media.audio[2]) == 5 * 320  # the callee's leg appears once connected
            assert len(media.audio[0]) - before == 5 * 320
            await call.hang_up()
    assert call.result is not None
    assert call.result.sample_rate == 8000


async def test_session_busy_for_the_second_claim(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as first, open_control(sim) as second:
        call = await sim.place_call()
        n1: SessionNotify = await first.expect(SessionNotify)
        n2: SessionNotify = await second.expect(SessionNotify)
        assert n1.session_id == n2.session_id == call.session_id
        assert (await first.open(call.session_id)).ok
        busy = await second.open(call.session_id)
        assert not busy.ok
        assert busy.error_code == "SESSION_BUSY"
        assert busy.error_content == {"boundSmWsId": first.sm_ws_id}
        assert (await first.open(call.session_id)).ok  # the owner may ask again
        # session.ready from the loser is ignored; the owner gets call.in.
        await second.ws.send_message(SessionReady(call.session_id).encode())
        await first.ws.send_message(SessionReady(call.session_id).encode())
        call_in: CallIn = await first.expect(CallIn)
        assert call_in.call_id == call.call_id
        with trio.move_on_after(1):
            await second.recv()
            pytest.fail("the loser must get no call.in")
        await call.hang_up()
        assert await first.expect(SessionClosed) == SessionClosed(
            call.session_id, "CALL_TERMINATED"
        )
        assert (await second.open(call.session_id)).error_code == "SESSION_CLOSED"
        assert (await second.open("no-such-session")).error_code == "SESSION_NOT_FOUND"
        assert first.sm_ws_id != second.sm_ws_id


async def test_a_call_stays_with_its_worker_once_that_worker_stops_claiming(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # A draining worker closes its control connection; its live calls go on on
    # their media connections and must not be handed to another worker (which
    # would get no call.in and wait for one).
    async with (
        open_simulator() as sim,
        open_control(sim) as other,
        contextlib.AsyncExitStack() as media_stack,
    ):
        async with open_control(sim) as draining:
            call = await sim.place_call()
            await other.expect(SessionNotify)
            media = await media_stack.enter_async_context(open_media(sim, await draining.claim()))
            assert (await media.command("call.answer")).success
        await trio.sleep(1)
        assert sim.statistics().control_connections == 1
        busy = await other.open(call.session_id)
        assert (busy.ok, busy.error_code) == (False, "SESSION_BUSY")
        assert busy.error_content == {"boundSmWsId": draining.sm_ws_id}
        assert sim.statistics().calls_unclaimed == 0
        await call.hang_up()
        result = await call.wait_result()
    assert result.ended_by == "caller_hangup"


async def test_control_requests_the_simulator_does_not_serve(
    autojump_clock: trio.testing.MockClock,
) -> None:
    from telcoflow_trio.proto import CallFlowSetup, SessionCreate

    config = SimulatorConfig(outbound_calls=False)
    async with open_simulator(config) as sim, open_control(sim) as control:
        await control.ws.send_message(SessionCreate("TELCO", "+1777", "r1").encode())
        created: Response = await control.expect(Response)
        assert (created.ok, created.error_code) == (False, "CHANNEL_NOT_CONFIGURED")
        await control.ws.send_message(CallFlowSetup("NO", False, False, False, "r2").encode())
        assert (await control.expect(Response)).ok
        await sim.place_call()
        with trio.move_on_after(1):
            await control.recv()
            pytest.fail("inboundCall NO must silence notifications")


async def test_new_control_connection_hears_of_waiting_calls(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim:
        call = await sim.place_call()
        async with open_control(sim) as control:
            notify: SessionNotify = await control.expect(SessionNotify)
            assert (notify.session_id, notify.activity) == (call.session_id, "NEW_INCOMING_CALL")


async def test_invalid_commands(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call()
        async with open_media(sim, await control.claim()) as media:
            whisper = await media.command("agent.whisper")
            assert (whisper.success, whisper.error_code) == (False, "INVALID_COMMAND")
            assert "PENDING" in (whisper.error_message or "")
            unknown = await media.command("call.teleport")
            assert (unknown.success, unknown.error_code) == (False, "INVALID_COMMAND")
            assert (await media.command("call.answer")).success
            again = await media.command("call.answer")
            assert (again.success, again.error_code) == (False, "INVALID_COMMAND")
            bad_ring = await media.command("call.connect", data={"ringTimeSeconds": 0})
            assert bad_ring.error_code == "INVALID_COMMAND"
            assert "ringTimeSeconds" in (bad_ring.error_message or "")
            assert call.state is A
            await call.hang_up()
    assert call.result is not None
    codes = [c.error_code for c in call.result.commands]
    assert codes == ["INVALID_COMMAND", "INVALID_COMMAND", None] + ["INVALID_COMMAND"] * 2


async def test_connect_unanswered_at_the_ring_time(autojump_clock: trio.testing.MockClock) -> None:
    script = CallerScript(callee_answers_after=None)
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call(script)
        async with open_media(sim, await control.claim()) as media:
            t0 = trio.current_time()
            command_id = await media.send_command(
                "call.connect", timeout_ms=7000, data={"ringTimeSeconds": 7}
            )
            # While it rings, a second connect is refused and audio does not flow.
            busy = await media.command("call.connect", data={"ringTimeSeconds": 7})
            assert busy.error_code == "INVALID_COMMAND"
            await media.wait_for(lambda: command_id in media.responses)
            response = media.responses[command_id]
            assert media.response_times[command_id] == t0 + 7
            assert (response.success, response.error_code) == (False, "CALL_UNANSWERED")
            assert call.state is P  # the call stays, still PENDING
            assert (await media.command("call.answer")).success
            await call.hang_up()


async def test_connect_from_answered_keeps_the_call_when_unanswered(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call(CallerScript(callee_answers_after=30))
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.answer")).success
            t0 = trio.current_time()
            response = await media.command(
                "call.connect", timeout_ms=20_000, data={"ringTimeSeconds": 20}
            )
            assert (response.error_code, trio.current_time() - t0) == ("CALL_UNANSWERED", 20)
            assert call.state is A
            await call.hang_up()


async def test_connected_modes_and_close(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call(CallerScript(callee_answers_after=2.5))
        async with open_media(sim, await control.claim()) as media:
            connect = await media.command(
                "call.connect", timeout_ms=10_000, data={"ringTimeSeconds": 10}
            )
            assert connect.success
            assert trio.current_time() == 2.5
            assert call.state is C
            for name in ("agent.whisper", "agent.barge", "agent.spy"):
                assert (await media.command(name)).success
            # In spy mode the agent is not heard: no more pulls.
            await trio.sleep(0.1)
            pulls = len(media.requests)
            await trio.sleep(0.5)
            assert len(media.requests) == pulls
            assert (await media.command("agent.barge")).success
            closed = await media.command("call.close")
            assert closed.success
            assert (await media.wait_event("call.terminated")).fields["reason"] == "SDK_REQUEST"
            assert (await media.wait_closed()).code == 1000
        assert await control.expect(SessionClosed) == SessionClosed(call.session_id, "SDK_REQUEST")
    result = await call.wait_result()
    assert result.ended_by == "agent_close"
    assert [s for _, s in result.states] == [P, C, D]
    assert result.answered_at == 2.5


@pytest.mark.parametrize(
    ("command", "ended_by"),
    [("call.disconnect", "agent_disconnect"), ("call.close", "agent_close")],
)
async def test_agent_ends_the_call(
    autojump_clock: trio.testing.MockClock, command: str, ended_by: str
) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call()
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.answer")).success
            assert (await media.command(command)).success
            await media.wait_closed()
    result = await call.wait_result()
    assert (result.ended_by, result.termination_reason) == (ended_by, "SDK_REQUEST")


async def test_decline_while_pending(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call()
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.close")).success
            await media.wait_closed()
    result = await call.wait_result()
    assert [s for _, s in result.states] == [P, D]
    assert result.answered_at is None
    assert result.caller_audio_seconds == 0


async def test_server_side_timeout(autojump_clock: trio.testing.MockClock) -> None:
    config = SimulatorConfig(command_latency=5.0)
    async with open_simulator(config) as sim, open_control(sim) as control:
        call = await sim.place_call(CallerScript(callee_answers_after=None))
        async with open_media(sim, await control.claim()) as media:
            t0 = trio.current_time()
            timed_out = await media.command("call.answer", timeout_ms=2000)
            assert (timed_out.success, timed_out.error_code) == (False, "TIMEOUT")
            assert trio.current_time() - t0 == 2.0
            assert call.state is P
            t0 = trio.current_time()
            connect = await media.command(
                "call.connect", timeout_ms=3000, data={"ringTimeSeconds": 10}
            )
            assert (connect.error_code, trio.current_time() - t0) == ("TIMEOUT", 3.0)
            t0 = trio.current_time()
            assert (await media.command("call.answer", timeout_ms=10_000)).success
            assert trio.current_time() - t0 == 5.0
            await call.hang_up()


async def test_a_pending_command_fails_when_the_call_ends(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call(CallerScript(callee_answers_after=None))
        async with open_media(sim, await control.claim()) as media:
            command_id = await media.send_command(
                "call.connect", timeout_ms=60_000, data={"ringTimeSeconds": 60}
            )
            await trio.sleep(1)
            await call.hang_up()
            await media.wait_closed()
            assert media.responses[command_id].error_code == "CALL_TERMINATED"
            assert [e.event for e in media.events] == ["call.terminated"]
    result = await call.wait_result()
    assert result.commands[0].error_code == "CALL_TERMINATED"


async def test_interrupt_drops_audio_not_yet_played(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call()
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.answer")).success
            await trio.sleep(0.01)  # between ticks
            # Push 1 s at once, ignoring credit: it is held for playout.
            await media.ws.send_message(b"\x00" + bytes(32000))
            await trio.sleep(0.2)
            interrupted = await media.command("agent.interrupt")
            assert interrupted.success
            await trio.sleep(0.5)
            await call.hang_up()
    result = await call.wait_result()
    assert result.unrequested_bytes == 32000 - 3 * 640
    # Ten frames played (0.02 s to 0.2 s) before the interrupt at 0.21 s.
    assert result.interrupted_bytes == 32000 - 10 * 640


async def test_underruns_count_gaps_mid_utterance(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call()
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.answer")).success
            await trio.sleep(0.3)
            await media.say(bytes(16000))  # 0.5 s ...
            await trio.sleep(0.6)
            await media.say(bytes(16000))  # ... a 0.1 s gap: one underrun
            await trio.sleep(1.5)
            await media.say(bytes(16000))  # a pause of a second is not an underrun
            await trio.sleep(1.0)
            for _ in range(10):  # an agent slower than real time: a gap every frame
                await media.say(bytes(640))
                await trio.sleep(0.04)
            await call.hang_up()
    result = await call.wait_result()
    assert result.first_agent_audio_after_answer == pytest.approx(0.3)
    assert result.underruns == 1 + 9
    assert result.agent_audio_seconds == pytest.approx(1.5 + 0.2)


async def test_caller_hangs_up_before_answer(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call(CallerScript(hangup_before_answer_after=3.0))
        async with open_media(sim, await control.claim()) as media:
            await media.wait_event("call.terminated")
            assert trio.current_time() == 3.0
        assert await control.expect(SessionClosed) == SessionClosed(
            call.session_id, "CALL_TERMINATED"
        )
    result = await call.wait_result()
    assert (result.ended_by, result.ended_at) == ("caller_hangup", 3.0)


async def test_unanswered_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator(SimulatorConfig(unanswered_timeout=5.0)) as sim:
        call = await sim.place_call()  # nobody is connected
        result = await call.wait_result()
    assert (result.ended_by, result.ended_at) == ("unanswered_timeout", 5.0)


async def test_caller_hangs_up_when_the_agent_goes_quiet(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call(CallerScript(hangup_after_agent_silent=1.0))
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.answer")).success
            await trio.sleep(0.5)
            await media.say(bytes(32000))  # 1 s of agent audio, from 0.5 s to 1.5 s
            await media.wait_closed()
    result = await call.wait_result()
    assert result.ended_by == "caller_hangup"
    assert result.ended_at == pytest.approx(1.5 + 1.0, abs=0.021)


async def test_talk_for_then_silence(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call(CallerScript(noise(7, 0.5), talk_for=0.2, hangup_after=0.4))
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.answer")).success
            await media.wait_closed()
    audio = bytes(media.audio[0])
    assert len(audio) == 20 * 640
    assert audio[: 10 * 640].count(0) < 1000
    assert audio[10 * 640 :] == bytes(10 * 640)
    assert (await call.wait_result()).caller_audio_seconds == pytest.approx(0.4)


async def test_recordings(autojump_clock: trio.testing.MockClock, tmp_path: Path) -> None:
    script = CallerScript(tone(440), hangup_after=1.0, record_dir=tmp_path / "rec")
    async with open_simulator() as sim, open_control(sim, sample_rate=24000) as control:
        call = await sim.place_call(script)
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.answer")).success
            agent = tone(1000).frames(24000, 24000).__next__()  # 0.5 s
            await media.say(agent)
            result = await call.wait_result()
    assert result.recordings == (tmp_path / "rec" / "caller.wav", tmp_path / "rec" / "agent.wav")
    with wave.open(str(result.recordings[0])) as caller_wav:
        assert (caller_wav.getframerate(), caller_wav.getnframes()) == (24000, 24000)
        assert caller_wav.readframes(24000) == bytes(media.audio[0])
    with wave.open(str(result.recordings[1])) as agent_wav:
        assert agent_wav.getnframes() == 24000  # time-aligned with the caller
        played = agent_wav.readframes(24000)
    assert played.find(agent) % frame_bytes(24000) == 0


async def test_many_concurrent_calls(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        calls = [
            await sim.place_call(CallerScript(silence(), hangup_after=1.0 + i / 10))
            for i in range(20)
        ]
        notifies = [await control.expect(SessionNotify) for _ in calls]
        async with trio.open_nursery() as nursery:
            for notify in notifies:
                call_in = await control.claim(notify)

                async def agent(call_in: CallIn = call_in) -> None:
                    async with open_media(sim, call_in) as media:
                        assert (await media.command("call.answer")).success
                        await media.say(bytes(6400))
                        await media.wait_closed()

                nursery.start_soon(agent)
        results = [await call.wait_result() for call in calls]
    assert {r.ended_by for r in results} == {"caller_hangup"}
    assert all(r.agent_audio_seconds == pytest.approx(0.2) for r in results)
    assert sim.statistics().calls_ended == 20


async def test_agent_closing_its_media_mid_call(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call(CallerScript(tone(440)))
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.answer")).success
            await media.say(bytes(64000))
            await trio.sleep(0.505)
        result = await call.wait_result()
        closed = await control.expect(SessionClosed)
    assert closed == SessionClosed(call.session_id, "FORCE_CLOSE")
    assert (result.ended_by, result.termination_reason) == ("media_lost", "FORCE_CLOSE")
    assert result.media_close_code == 1000
    assert result.ended_at == pytest.approx(0.505)
    assert sim.statistics().handler_errors == 0
