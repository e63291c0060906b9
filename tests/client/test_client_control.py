"""The control connection: setup, auth, heartbeat, backoff, claims, reconnects."""

from __future__ import annotations

import logging
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket

from telcoflow_trio import TelcoflowClient, events, proto
from telcoflow_trio._control import ControlConnection
from telcoflow_trio.exceptions import WSSAuthenticationError, WSSConnectionError, WSSError
from telcoflow_trio.proto import BackoffPolicy
from telcoflow_trio.simulator import CallerScript, open_simulator
from telcoflow_trio.ws._connection import LeanWebSocket
from telcoflow_trio.ws._transport import WebSocket

from .conftest import client_config, client_tasks, open_pair


async def test_connects_with_setup_and_context_manager(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair() as (sim, client, opener):
        stats = client.statistics()
        assert (stats.connected, stats.connects, stats.reconnects) == (True, 1, 0)
        assert sim.statistics().control_connections == 1
        assert opener.attempts == [0.0]
        await client.wait_connected()
    assert sim.statistics().control_connections == 0  # closed on exit


@pytest.mark.parametrize("checkpoints", range(4))
async def test_a_cancellation_while_entering_leaves_nothing_behind(
    autojump_clock: trio.testing.MockClock, checkpoints: int
) -> None:
    # Cancelled at each of the first checkpoints of __aenter__, before connect():
    # the shielded background task must end too, or the exit waits for ever.
    # (Repeated: trio varies the order tasks of one batch run in.)
    async with open_simulator() as sim:
        for _ in range(10):
            with trio.fail_after(5), trio.CancelScope() as scope:

                async def cancel_soon(scope: trio.CancelScope = scope) -> None:
                    for _ in range(checkpoints):
                        await trio.lowlevel.checkpoint()
                    scope.cancel()

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cancel_soon)
                    async with TelcoflowClient(client_config(sim), open_stream=sim.open_stream):
                        await trio.sleep_forever()
            assert scope.cancelled_caught
        assert sim.statistics().control_connections == 0


async def test_d21_auth_rejected_at_start_is_not_retried(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim:
        sim.faults.reject_auth(True)
        client = TelcoflowClient(client_config(sim), open_stream=sim.open_stream)
        with pytest.raises(WSSAuthenticationError, match="401"):
            async with client:
                pytest.fail("the body must not run")
        assert sim.statistics().auth_rejections == 1
        await trio.sleep(60)
        assert sim.statistics().auth_rejections == 1
        assert client_tasks() == []


async def test_auth_rejected_on_reconnect_ends_run_forever(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair() as (sim, client, opener):
        await trio.sleep(5)
        sim.faults.reject_auth(True)
        sim.faults.drop_control()
        with pytest.raises(WSSAuthenticationError):
            await client.run_forever()
        assert opener.now() == 5.5  # one backoff step, then no retry
        assert opener.attempts == [0.0, 5.5]
        assert sim.statistics().auth_rejections == 1
        with pytest.raises(WSSAuthenticationError):
            await client.wait_connected()


async def test_heartbeat_unique_pings_and_dead_connection(
    monkeypatch: pytest.MonkeyPatch,
    autojump_clock: trio.testing.MockClock,
) -> None:
    payloads: list[bytes] = []
    for cls in (WebSocket, LeanWebSocket):

        async def ping(self: Any, payload: bytes, real: Any = cls.ping) -> None:
            payloads.append(payload)
            await real(self, payload)

        monkeypatch.setattr(cls, "ping", ping)
    async with open_pair(heartbeat_interval=30, heartbeat_timeout=10) as (sim, client, opener):
        await trio.sleep(95)
        assert opener.attempts == [0.0]  # pings answered: nothing happens
        assert len(payloads) == 3
        sim.faults.stall_pings(True)
        await trio.sleep(100)
        # Ping at 120, dead at 130, reconnect 0.5 s later; the backoff is reset by
        # setup.done, so the next death (ping 160.5, dead 170.5) waits 0.5 s again.
        assert opener.attempts == [0.0, 130.5, 171.0]
        assert client.statistics().reconnects == 2
        assert len(set(payloads)) == len(payloads)  # unique payloads


async def test_backoff_exact_delays_with_jitter_and_reset_after_setup(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair(random_source=lambda: 0.5) as (sim, client, opener):
        opener.refuse = 3
        sim.faults.drop_control()
        await trio.sleep(1)
        assert not client.statistics().connected
        await client.wait_connected()
        # 0.5, 0.75, 1.125, 1.6875 s, each +10 % (jitter 0.2 * 0.5).
        assert opener.attempts == pytest.approx([0.0, 0.55, 1.375, 2.6125, 4.46875])
        assert opener.now() == pytest.approx(4.46875)
        sim.faults.drop_control()
        await trio.sleep(0.1)
        await client.wait_connected()
        assert opener.attempts[-1] == pytest.approx(4.46875 + 0.55)  # reset after setup.done


async def test_d23_run_forever_surfaces_a_permanent_failure(
    autojump_clock: trio.testing.MockClock,
) -> None:
    policy = BackoffPolicy(max_attempts=3, jitter=0)
    async with open_pair(reconnect=policy) as (sim, client, opener):
        opener.down = True
        sim.faults.drop_control()
        with pytest.raises(WSSConnectionError, match="after 3 attempts"):
            await client.run_forever()
        assert opener.attempts == pytest.approx([0.0, 0.5, 1.25, 2.375])
        assert opener.now() == pytest.approx(2.375)


async def serve_silently(stream: trio.abc.Stream) -> None:
    """A WebSocket server that accepts and then never answers (no setup.done)."""
    async with trio.open_nursery() as nursery:
        request = await trio_websocket.wrap_server_stream(nursery, stream)
        ws = await request.accept()
        try:
            while True:
                await ws.get_message()
        except trio_websocket.ConnectionClosed:
            pass
        nursery.cancel_scope.cancel()


async def test_d18_setup_timeout_leaves_nothing_behind_and_keeps_backoff(
    autojump_clock: trio.testing.MockClock,
) -> None:
    t0 = trio.current_time()
    async with open_simulator() as sim:
        silent = True
        attempts: list[float] = []

        async def opener(host: str, port: int, ctx: object) -> trio.abc.Stream:
            attempts.append(trio.current_time() - t0)
            if silent:
                client_end, server_end = trio.testing.memory_stream_pair()
                nursery.start_soon(serve_silently, server_end)
                return client_end
            return await sim.open_stream(host, port, None)

        async with trio.open_nursery() as nursery:
            client = TelcoflowClient(
                client_config(sim, setup_timeout=10), open_stream=opener, random_source=lambda: 0
            )
            with pytest.raises(WSSConnectionError, match=r"no setup\.done within 10 s"):
                async with client:
                    pass
            assert trio.current_time() - t0 == 10
            assert client_tasks() == []
            await trio.testing.wait_all_tasks_blocked()
            assert len(nursery.child_tasks) == 0  # the silent server saw its socket close

            # Connected once, then every reconnect hits a silent server: the
            # backoff keeps growing because it is reset only by setup.done.
            silent = False
            async with client:
                silent = True
                sim.faults.drop_control()
                await trio.sleep(25)
                silent = False
                await client.wait_connected()
            assert attempts == pytest.approx([0, 10, 10.5, 21.25, 32.375, 44.0625])


async def test_d19_pending_requests_fail_at_once_when_the_socket_drops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair() as (sim, client, opener):
        control = client._control
        assert control is not None

        async def unanswered() -> None:
            # session.ready carrying a reqId: the server never answers it.
            with pytest.raises(WSSConnectionError, match="lost"):
                await control.request(
                    lambda req_id: proto.UnknownFrame(
                        "session.ready", {"sessionId": "nope", "reqId": req_id}
                    )
                )
            assert opener.now() == 3.0  # not after request_timeout (30 s)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(unanswered)
            await trio.sleep(3)
            sim.faults.drop_control()
        with pytest.raises(WSSConnectionError, match="not open"):
            await control.request(lambda req_id: proto.SessionOpen("x", req_id))


async def test_session_busy_is_skipped_quietly(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    caplog.set_level(logging.DEBUG, logger="telcoflow_trio")
    handled: list[str] = []

    async def handler(call: object) -> None:
        handled.append(str(call))
        await trio.sleep(1)

    async with open_pair(handler=handler) as (sim, first, _):
        second = TelcoflowClient(client_config(sim), open_stream=sim.open_stream)
        second.on(events.INCOMING_CALL)(handler)
        async with second:
            call = await sim.place_call(CallerScript())
            result = await call.wait_result()
            await trio.sleep(0.1)
            stats = [first.statistics(), second.statistics()]
    assert len(handled) == 1
    assert result.ended_by == "agent_close"
    assert sorted(s.sessions_busy for s in stats) == [0, 1]
    assert sum(s.calls_total for s in stats) == 1
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING]


async def test_no_handler_means_calls_are_not_claimed(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair() as (sim, client, _):
        call = await sim.place_call(CallerScript(hangup_before_answer_after=5))
        result = await call.wait_result()
        assert client.statistics().sessions_claimed == 0
        assert (result.ended_by, result.commands) == ("caller_hangup", ())


async def test_rebroadcast_notify_for_a_held_call_makes_no_second_call(
    autojump_clock: trio.testing.MockClock,
) -> None:
    calls: list[str] = []
    release = trio.Event()

    async def handler(call: object) -> None:
        calls.append(str(call))
        await release.wait()

    async with open_pair(handler=handler) as (sim, client, _):
        simulated = await sim.place_call(CallerScript())
        await trio.sleep(1)
        notify = proto.SessionNotify(simulated.session_id, "TELCO", activity="RESUME")
        call_in = proto.CallIn(
            simulated.session_id, simulated.call_id, "a", "b", sim.base_url + "/x", "t"
        )
        for _ in range(2):
            await sim.faults.send_control(notify.encode())
            await sim.faults.send_control(call_in.encode())
        sim.faults.drop_control()  # and again on a new control connection
        await client.wait_connected()
        await sim.faults.send_control(notify.encode())
        await sim.faults.send_control(call_in.encode())
        await trio.sleep(1)
        assert len(calls) == 1
        stats = client.statistics()
        assert (stats.calls_total, stats.sessions_claimed, stats.calls_active) == (1, 1, 1)
        release.set()
        await simulated.wait_result()


async def test_malformed_and_unknown_control_frames_are_ignored(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair() as (sim, client, _):
        for raw in ("not json", b"\x00\x01", "[1]", '{"type": "x.future"}', '{"type":"response"}'):
            await sim.faults.send_control(raw)
        await trio.sleep(1)
        stats = client.statistics()
        assert (stats.connected, stats.reconnects) == (True, 0)
        assert stats.malformed_frames == 4


async def test_d24_call_in_without_a_claim_is_not_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_pair(handler=lambda call: None) as (sim, client, _):
        frame = proto.CallIn("s-x", "c-x", "a", "b", sim.base_url + "/v1/media/c-x", "bad")
        await sim.faults.send_control(frame.encode())
        await trio.sleep(1)
        stats = client.statistics()
        # Taken up (and failed only because the simulator refuses the token).
        assert (stats.calls_total, stats.calls_failed) == (1, 1)


async def test_disconnect_then_run_forever_returns_after_calls_end(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def handler(call: object) -> None:
        await trio.sleep(10)

    async with open_pair(handler=handler) as (sim, client, opener):
        simulated = await sim.place_call(CallerScript())
        await trio.sleep(1)
        await client.disconnect()
        assert not client.statistics().connected
        await trio.testing.wait_all_tasks_blocked()  # the simulator's side of the close
        assert sim.statistics().control_connections == 0
        await client.run_forever()  # returns once the call in progress ended
        assert opener.now() == 10
        assert (await simulated.wait_result()).ended_by == "agent_close"
        await client.connect()  # and it can connect again
        assert client.statistics().connected
        await client.disconnect()
        with pytest.raises(WSSConnectionError, match="not connected"):
            await client.wait_connected()


async def test_background_bug_surfaces_as_one_library_error(
    monkeypatch: pytest.MonkeyPatch, autojump_clock: trio.testing.MockClock
) -> None:
    async def broken_heartbeat(self: object, ws: object) -> None:
        await trio.sleep(1)
        raise RuntimeError("a bug in the heartbeat")

    monkeypatch.setattr(ControlConnection, "_heartbeat", broken_heartbeat)
    with pytest.raises(WSSError, match="failed in the background") as info:
        async with open_pair() as (_, client, _):
            await client.run_forever()
    group = info.value.__cause__
    assert isinstance(group, BaseExceptionGroup)
    assert group.subgroup(RuntimeError) is not None
    assert client_tasks() == []


async def test_run_forever_without_the_context_manager(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim:
        client = TelcoflowClient(client_config(sim), open_stream=sim.open_stream)
        with trio.move_on_after(5):
            await client.run_forever()  # opens (and then closes) the client itself
        assert sim.statistics().control_connections_total == 1
        assert client_tasks() == []
