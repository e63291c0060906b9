"""Calls against the simulator: commands, events, termination on every path."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.lowlevel
import trio.testing

from telcoflow_trio import (
    ActiveCall,
    CallState,
    TelcoflowClient,
    TerminationInfo,
    TerminationReason,
    events,
    proto,
)
from telcoflow_trio.exceptions import (
    BufferClosedError,
    WSSCallClosedError,
    WSSCallCommandError,
    WSSCallCommandTimeoutError,
    WSSCallStateError,
)
from telcoflow_trio.simulator import CallerScript, Simulator, SimulatorConfig, open_simulator, tone

from .conftest import all_tasks, client_config, client_tasks, open_pair

Handler = Callable[[ActiveCall], Awaitable[Any]]


async def run_call(
    handler: Handler,
    script: CallerScript | None = None,
    sim_config: SimulatorConfig | None = None,
    **options: Any,
) -> tuple[Any, ActiveCall, float]:
    """Place one call, handle it with ``handler``; return (result, call, t0)."""
    seen: list[ActiveCall] = []

    async def wrapped(call: ActiveCall) -> None:
        seen.append(call)
        await handler(call)

    async with open_pair(sim_config, handler=wrapped, **options) as (sim, _, opener):
        simulated = await sim.place_call(script or CallerScript())
        result = await simulated.wait_result()
        await seen[0].wait_terminated()
    assert client_tasks() == []
    return result, seen[0], opener.t0


async def test_media_is_open_before_the_handler_runs(
    autojump_clock: trio.testing.MockClock,
) -> None:
    media_at_start: list[int] = []

    async with open_pair() as (sim, client, _):

        @client.on(events.INCOMING_CALL)
        async def on_call(call: ActiveCall) -> None:
            media_at_start.append(sim.statistics().media_connections)
            assert client.get_call(call.call_id) is call
            assert (call.caller_number, call.callee_number) == ("+1", "+2")
            assert call.id == call.call_id
            assert call.state is CallState.PENDING

        simulated = await sim.place_call(CallerScript(), caller="+1", callee="+2")
        await simulated.wait_result()
        await trio.sleep(0.1)
        assert client.get_call(simulated.call_id) is None
    assert media_at_start == [1]


async def test_answer_events_and_illegal_commands(autojump_clock: trio.testing.MockClock) -> None:
    fired: list[str] = []

    async def handler(call: ActiveCall) -> None:
        call.on(events.CALL_ANSWERED)(lambda: fired.append("answered"))
        await call.answer()
        assert call.state is CallState.ANSWERED
        with pytest.raises(WSSCallStateError, match="ANSWERED"):
            await call.answer()
        with pytest.raises(WSSCallStateError):
            await call.spy()
        await trio.sleep(1)

    result, call, _ = await run_call(handler)
    assert fired == ["answered"]
    assert [c.name for c in result.commands] == ["call.answer", "call.close"]  # nothing else sent
    assert call.termination is not None
    assert call.termination.reason is TerminationReason.HANDLER_RETURNED
    assert [name for name, _ in call.statistics().command_latencies] == [
        "call.answer",
        "call.close",
    ]


async def test_connect_rings_then_conference_commands(
    autojump_clock: trio.testing.MockClock,
) -> None:
    times: list[float] = []

    async def handler(call: ActiveCall) -> None:
        t = trio.current_time()
        await call.connect(30)  # positional
        times.append(trio.current_time() - t)
        assert call.state is CallState.CONNECTED
        for command in (call.whisper, call.spy, call.barge):
            await command()
        await call.close()
        assert call.termination is not None
        assert call.termination.reason is TerminationReason.CLOSED

    result, _, _ = await run_call(handler, CallerScript(callee_answers_after=2.5))
    assert times == [2.5]
    assert [c.name for c in result.commands] == [
        "call.connect",
        "agent.whisper",
        "agent.spy",
        "agent.barge",
        "call.close",
    ]
    assert result.commands[0].data == {"ringTimeSeconds": 30}
    assert result.ended_by == "agent_close"


async def test_call_unanswered_leaves_the_call_active(
    autojump_clock: trio.testing.MockClock,
) -> None:
    failures: list[BaseException] = []

    async def handler(call: ActiveCall) -> None:
        call.on(events.CALL_CONNECT_FAILED)(failures.append)
        await call.answer()
        t = trio.current_time()
        with pytest.raises(WSSCallCommandError) as info:
            await call.connect(ring_time_seconds=7)
        assert trio.current_time() - t == 7  # the ring time, exactly
        assert info.value.error_code == "CALL_UNANSWERED"
        assert call.state is CallState.ANSWERED
        await call.disconnect()

    result, call, _ = await run_call(handler, CallerScript(callee_answers_after=None))
    assert result.ended_by == "agent_disconnect"
    assert len(failures) == 1
    assert isinstance(failures[0], WSSCallCommandError)
    assert call.termination is not None
    assert call.termination.reason is TerminationReason.DISCONNECTED


async def test_command_timeouts_at_exact_deadlines(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair() as (sim, client, _):
        done = trio.Event()

        @client.on(events.INCOMING_CALL)
        async def on_call(call: ActiveCall) -> None:
            sim.faults.drop_responses(True)
            t = trio.current_time()
            with pytest.raises(WSSCallCommandTimeoutError):
                await call.answer()
            assert trio.current_time() - t == 15  # command timeout 10 + grace 5
            t = trio.current_time()
            with pytest.raises(WSSCallCommandTimeoutError):
                await call.connect(20)
            assert trio.current_time() - t == 25  # ring time 20 + grace 5
            sim.faults.drop_responses(False)
            done.set()

        simulated = await sim.place_call(CallerScript(callee_answers_after=None))
        await done.wait()
        await simulated.wait_result()


async def test_server_side_timeout_error(autojump_clock: trio.testing.MockClock) -> None:
    async def handler(call: ActiveCall) -> None:
        t = trio.current_time()
        with pytest.raises(WSSCallCommandTimeoutError, match="server timed out"):
            await call.answer()
        assert trio.current_time() - t == 10  # the server's own deadline
        assert call.state is CallState.PENDING

    await run_call(handler, sim_config=SimulatorConfig(command_latency=12))


async def test_d7_event_handler_may_await_a_command(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair() as (sim, client, _):
        closed_at: list[float] = []

        @client.on(events.INCOMING_CALL)
        async def on_call(call: ActiveCall) -> None:
            @call.on(events.CALL_ERROR)
            async def on_error(info: Any) -> None:
                assert info.error_code == "TTS_SESSION_ERROR"
                await call.close()  # would deadlock if run inside the reader
                closed_at.append(trio.current_time())

            await call.answer()
            await call.wait_terminated()

        simulated = await sim.place_call(CallerScript())
        await trio.sleep(1)
        t = trio.current_time()
        await sim.faults.call_error(simulated.call_id)
        result = await simulated.wait_result()
        await trio.sleep(0.1)
        assert closed_at == [t]
        assert result.ended_by == "agent_close"


async def test_d15_handlers_with_and_without_arguments(
    autojump_clock: trio.testing.MockClock,
) -> None:
    got: list[object] = []

    async def handler(call: ActiveCall) -> None:
        call.on(events.CALL_TERMINATED)(lambda: got.append("no-arg"))
        call.on(events.CALL_TERMINATED)(lambda info: got.append(info))

        @call.on(events.CALL_TERMINATED)
        async def async_handler(info: TerminationInfo) -> None:
            await trio.sleep(1)
            got.append(info.reason)

        await call.answer()
        await call.wait_terminated()

    _, call, _ = await run_call(handler, CallerScript(hangup_after=1))
    assert got == ["no-arg", call.termination, TerminationReason.CALLER_HANGUP]


async def test_d26_handler_error_is_contained_and_reported(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    reported: list[tuple[str, BaseException]] = []

    async def hook(call: ActiveCall, exc: BaseException) -> None:
        await trio.lowlevel.checkpoint()
        reported.append((call.call_id, exc))

    async with open_pair(on_handler_error=hook) as (sim, client, _):

        @client.on(events.INCOMING_CALL)
        async def on_call(call: ActiveCall) -> None:
            await call.answer()
            if call.caller_number == "+bad":
                raise ZeroDivisionError("bug in the app")
            async for _ in call.audio_stream():
                pass

        good = await sim.place_call(CallerScript(hangup_after=5), caller="+good")
        bad = await sim.place_call(CallerScript(), caller="+bad")
        bad_result, good_result = await bad.wait_result(), await good.wait_result()
        assert client.statistics().connected
        assert client.statistics().handler_errors == 1
    assert bad_result.ended_by == "agent_close"  # close semantics
    assert good_result.ended_by == "caller_hangup"  # the other call went on
    assert [(cid, type(e)) for cid, e in reported] == [(bad.call_id, ZeroDivisionError)]
    logged = [r for r in caplog.records if r.exc_info and bad.call_id in r.getMessage()]
    assert len(logged) == 1


async def test_d10_pre_answer_hangup_terminates(autojump_clock: trio.testing.MockClock) -> None:
    async def handler(call: ActiveCall) -> None:
        info = await call.wait_terminated()
        assert (info.reason, info.who) == (TerminationReason.CALLER_HANGUP, "caller")

    result, call, t0 = await run_call(handler, CallerScript(hangup_before_answer_after=4))
    assert result.ended_by == "caller_hangup"
    assert call.termination is not None
    assert call.termination.when - t0 == 4


async def test_d5_d6_d20_media_loss_after_a_control_reconnect(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair() as (sim, client, _):
        events_seen: list[TerminationInfo] = []
        chunks: list[int] = []

        @client.on(events.INCOMING_CALL)
        async def on_call(call: ActiveCall) -> None:
            call.on(events.CALL_TERMINATED)(events_seen.append)
            await call.answer()

            async def read() -> None:
                async for chunk in call.audio_stream():
                    chunks.append(len(chunk))

            async with trio.open_nursery() as nursery:
                nursery.start_soon(read)
                t = trio.current_time()
                with pytest.raises(WSSCallClosedError):
                    await call.connect(60)  # pending when the media drops
                assert trio.current_time() - t == 4  # at once, not after 65 s
            with pytest.raises(BufferClosedError):
                call.send_audio(b"\x00\x00")
            with pytest.raises(WSSCallClosedError):
                await call.whisper()  # D6: a library error, not a raw socket one

        simulated = await sim.place_call(CallerScript(callee_answers_after=None))
        await trio.sleep(2)
        sim.faults.drop_control()  # the call goes on without its control connection
        await trio.sleep(2)
        stats = client.statistics()
        assert (stats.connects, stats.reconnects, stats.calls_active) == (2, 1, 1)
        frames_before = len(chunks)
        sim.faults.drop_media(simulated.call_id)
        result = await simulated.wait_result()
        await trio.sleep(0.1)
    assert result.ended_by == "media_lost"
    assert [(e.reason, e.who) for e in events_seen] == [(TerminationReason.MEDIA_LOST, "network")]
    assert frames_before > 150  # audio kept flowing across the control reconnect
    assert len(chunks) == frames_before  # and the stream ended with the media


async def test_d11_close_before_answer_tells_the_server(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def handler(call: ActiveCall) -> None:
        pass  # returns at once: the call is declined with call.close

    result, call, t0 = await run_call(handler)
    assert (result.ended_by, result.ended_at - t0) == ("agent_close", 0)
    assert call.termination is not None
    assert call.termination.reason is TerminationReason.HANDLER_RETURNED


async def test_a_handler_that_returns_ends_the_call_and_says_so(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="telcoflow_trio._call")

    async def callback_style(call: ActiveCall) -> None:
        await call.answer()  # 1.0.0 style: answer, then return and let callbacks run

    result, call, t0 = await run_call(callback_style, CallerScript(hangup_after=10))
    assert (result.ended_by, result.ended_at - t0) == ("agent_close", 0)  # hung up at once
    [line] = [r for r in caplog.records if "handler returned" in r.getMessage()]
    assert line.levelno == logging.DEBUG
    assert line.getMessage() == (
        f"call {call.call_id}: the INCOMING_CALL handler returned, so the call ends "
        "(call.close); to keep a call, await call.wait_terminated() in the handler"
    )


async def test_no_handler_returned_line_when_the_call_ended_first(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="telcoflow_trio._call")

    async def holds(call: ActiveCall) -> None:
        await call.answer()
        await call.wait_terminated()

    result, _, _ = await run_call(holds, CallerScript(hangup_after=1))
    assert result.ended_by == "caller_hangup"
    assert not [r for r in caplog.records if "handler returned" in r.getMessage()]


async def test_d9_call_terminated_closes_the_media_socket(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def handler(call: ActiveCall) -> None:
        await call.answer()
        await trio.sleep_forever()  # the app does nothing more: we close anyway

    async with open_pair(handler=handler) as (sim, _, _):
        simulated = await sim.place_call(CallerScript())
        await trio.sleep(1)
        # A call.terminated the simulator does not act on itself.
        terminated = proto.CallEventFrame("call.terminated", {"reason": "CALL_TERMINATED"})
        await sim.faults.send_media(simulated.call_id, terminated.encode())
        result = await simulated.wait_result()
    assert result.ended_by == "media_lost"  # the simulator saw our close...
    assert result.media_close_code == 1000  # ...a normal one


async def test_session_closed_waits_for_the_media_connection_a_bounded_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def hold(call: ActiveCall) -> None:
        await call.answer()
        await call.wait_terminated()

    async with open_pair(handler=hold) as (sim, client, opener):
        simulated = await sim.place_call(CallerScript())
        await trio.sleep(1)
        call = client.get_call(simulated.call_id)
        assert call is not None
        # A session.closed the simulator does not act on: the media connection
        # stays open and says nothing, so the client goes by the session's reason
        # once close_timeout (2 s) has passed, and closes the media itself.
        closed = proto.SessionClosed(simulated.session_id, "FORCE_CLOSE")
        await sim.faults.send_control(closed.encode())
        info = await call.wait_terminated()
        result = await simulated.wait_result()
    assert (info.reason, info.who, info.detail) == (
        TerminationReason.SERVER,
        "server",
        "FORCE_CLOSE",
    )
    assert info.when - opener.t0 == 3
    assert (result.ended_by, result.media_close_code) == ("media_lost", 1000)


async def test_d12_server_hangup_after_answer(autojump_clock: trio.testing.MockClock) -> None:
    async def handler(call: ActiveCall) -> None:
        await call.answer()
        count = 0
        async for _ in call.audio_stream():
            count += 1
        assert count == 150  # 3 s of 20 ms frames, then the stream ended
        with pytest.raises(BufferClosedError):
            call.send_audio(b"\x00\x00")  # D12

    result, call, t0 = await run_call(handler, CallerScript(audio=tone(440), hangup_after=3))
    assert call.termination is not None
    assert (call.termination.reason, call.termination.who) == (
        TerminationReason.CALLER_HANGUP,
        "caller",
    )
    assert call.termination.when - t0 == 3
    assert result.ended_by == "caller_hangup"


async def test_client_shutdown_ends_calls_gracefully(
    autojump_clock: trio.testing.MockClock,
) -> None:
    infos: list[TerminationInfo] = []
    async with open_pair() as (sim, client, opener):

        @client.on(events.INCOMING_CALL)
        async def on_call(call: ActiveCall) -> None:
            call.on(events.CALL_TERMINATED)(infos.append)
            await call.answer()
            await trio.sleep_forever()

        simulated = await sim.place_call(CallerScript())
        await trio.sleep(1)
    assert opener.now() == 1  # the close was answered at once: no waiting
    assert [(i.reason, i.who) for i in infos] == [(TerminationReason.CLIENT_SHUTDOWN, "client")]
    result = simulated.result
    assert result is not None
    assert result.ended_by == "agent_close"


async def test_outside_cancellation_still_ends_calls_properly(
    autojump_clock: trio.testing.MockClock,
) -> None:
    infos: list[TerminationInfo] = []
    async with open_simulator() as sim:
        t0 = trio.current_time()
        with trio.move_on_after(3):  # like Ctrl-C around run_forever()
            async with TelcoflowClient(client_config(sim), open_stream=sim.open_stream) as client:

                @client.on(events.INCOMING_CALL)
                async def on_call(call: ActiveCall) -> None:
                    call.on(events.CALL_TERMINATED)(infos.append)
                    await call.answer()
                    await trio.sleep_forever()

                simulated = await sim.place_call(CallerScript())
                await client.run_forever()
        assert trio.current_time() - t0 == 3  # no close handshake had to time out
        assert client_tasks() == []
        result = await simulated.wait_result()
    assert [i.reason for i in infos] == [TerminationReason.CLIENT_SHUTDOWN]
    assert result.ended_by == "agent_close"  # the platform was told


async def test_entered_while_cancelled_the_client_unwinds(
    autojump_clock: trio.testing.MockClock,
) -> None:
    # Ctrl+C just as a program opens its client: the entry must give up, not hang
    # (a shielded background task started under a cancelled caller never ended).
    entered = trio.Event()
    client: TelcoflowClient | None = None

    async def open_cancelled(sim: Simulator) -> None:
        nonlocal client
        with trio.CancelScope() as scope:
            scope.cancel()
            client = TelcoflowClient(client_config(sim), open_stream=sim.open_stream)
            async with client:
                pytest.fail("the body must not run")
        assert scope.cancelled_caught
        entered.set()

    async with open_simulator() as sim, trio.open_nursery() as nursery:
        nursery.start_soon(open_cancelled, sim)
        with trio.move_on_after(10):
            await entered.wait()
        if not entered.is_set():
            assert client is not None
            client._background_scope.cancel()  # unstick it, so that the test can fail
            pytest.fail("async with TelcoflowClient(...) hung under a cancelled scope")
    assert client_tasks() == []
    assert sim.statistics().control_connections == 0


async def test_d22_no_task_outlives_the_client(autojump_clock: trio.testing.MockClock) -> None:
    baseline = all_tasks()

    async def handler(call: ActiveCall) -> None:
        await call.answer()
        call.on(events.CALL_TERMINATED)(lambda: None)
        async for _ in call.audio_stream():
            pass

    async with open_pair(handler=handler) as (sim, client, _):
        first = await sim.place_call(CallerScript(hangup_after=1))
        second = await sim.place_call(CallerScript())
        await trio.sleep(0.5)
        sim.faults.drop_control()
        sim.faults.drop_media(second.call_id)
        await first.wait_result()
        await client.wait_connected()
        await sim.place_call(CallerScript())  # still in progress at exit
        await trio.sleep(0.5)
        assert client.statistics().calls_active == 1
    assert client_tasks() == []
    await trio.testing.wait_all_tasks_blocked()
    assert all_tasks() == baseline


async def test_user_exception_from_the_body_propagates_unchanged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(KeyError, match="mine"):
        async with open_pair():
            raise KeyError("mine")
    assert client_tasks() == []


async def test_no_secrets_in_logs(
    autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    tokens: list[str] = []

    async def handler(call: ActiveCall) -> None:
        tokens.append(call._call_in.token)
        await call.answer()
        await trio.sleep(1)

    await run_call(handler, sim_config=SimulatorConfig(api_key="very-secret-key"))
    text = "\n".join(r.getMessage() for r in caplog.records)
    assert "very-secret-key" not in text
    assert tokens
    assert tokens[0] not in text


@pytest.mark.parametrize("error", [BufferClosedError, WSSCallClosedError])
async def test_hang_up_mid_response_is_an_end_not_a_handler_failure(
    autojump_clock: trio.testing.MockClock, error: type[Exception]
) -> None:
    """A chunk still in hand when the caller hangs up: ``send_audio`` raises, as
    0.24 documents; the handler stops there and nothing is reported as a failure."""
    failures: list[BaseException] = []
    ended: list[ActiveCall] = []

    async def echo_late(call: ActiveCall) -> None:
        await call.answer()
        async for chunk in call.audio_stream():
            await call.wait_terminated()  # the caller hangs up while we hold a chunk
            ended.append(call)
            if error is BufferClosedError:
                call.send_audio(chunk)
            else:
                await call.spy()

    async with open_pair(handler=echo_late, on_handler_error=lambda c, e: failures.append(e)) as (
        sim,
        client,
        _,
    ):
        placed = await sim.place_call(CallerScript(tone(440), hangup_after=1.0))
        await placed.wait_result()
        await trio.testing.wait_all_tasks_blocked()
        assert client.statistics().handler_errors == 0
    assert failures == []
    [call] = ended
    assert call.termination is not None
    assert call.termination.reason is TerminationReason.CALLER_HANGUP
