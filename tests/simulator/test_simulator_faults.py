"""Every fault the simulator can inject, each observed from the client's side."""

from __future__ import annotations

import json
import os

import pytest
import trio
import trio.testing

from telcoflow_trio.exceptions import WSSAuthenticationError, WSSConnectionClosed
from telcoflow_trio.proto import (
    CallState,
    SessionClosed,
    SessionNotify,
    UnknownFrame,
    decode_control,
)
from telcoflow_trio.simulator import CallerScript, SimulatorConfig, open_simulator
from telcoflow_trio.ws._poller import current_poller

from .simclient import open_control, open_media


async def test_drop_control_then_resume(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim:
        call = await sim.place_call()
        async with open_control(sim) as control:
            await control.open((await control.expect(SessionNotify)).session_id)
            assert sim.faults.drop_control() == 1
            with pytest.raises(WSSConnectionClosed) as info:
                await control.recv()
            assert info.value.code == 1006  # dropped: no close handshake
        assert sim.statistics().control_connections == 0
        # The claim died with the connection: a new one is told to RESUME.
        async with open_control(sim) as again:
            notify: SessionNotify = await again.expect(SessionNotify)
            assert (notify.session_id, notify.activity) == (call.session_id, "RESUME")
            assert (await again.open(call.session_id)).ok


async def test_stall_pings(autojump_clock: trio.testing.MockClock) -> None:
    # trio-websocket: its reader task sees pongs while this test reads nothing.
    async with open_simulator() as sim, open_control(sim, transport="trio-websocket") as control:
        with trio.fail_after(1):
            await control.ws.ping(b"p1")  # answered
        sim.faults.stall_pings()
        with trio.move_on_after(10) as stalled:
            await control.ws.ping(b"p2")
        assert stalled.cancelled_caught
        # The connection itself still works, only pongs are gone.
        call = await sim.place_call()
        assert (await control.expect(SessionNotify)).session_id == call.session_id
        sim.faults.stall_pings(False)
        with trio.fail_after(1):
            await control.ws.ping(b"p3")


async def test_drop_media(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call()
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.answer")).success
            await trio.sleep(1)
            sim.faults.drop_media(call.call_id)
            assert (await media.wait_closed()).code == 1006
            assert media.events == []  # no call.terminated: the connection just died
            # Nobody hung up: the platform closes the session.
            closed = await control.expect(SessionClosed)
    assert closed == SessionClosed(call.session_id, "FORCE_CLOSE")
    result = await call.wait_result()
    assert (result.ended_by, result.termination_reason) == ("media_lost", "FORCE_CLOSE")
    assert (result.ended_at, result.media_close_code) == (1.0, None)
    with pytest.raises(LookupError):
        sim.faults.drop_media(call.call_id)


async def test_delay_and_drop_responses(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call()
        async with open_media(sim, await control.claim()) as media:
            sim.faults.delay_responses(2.5)
            t0 = trio.current_time()
            assert (await media.command("call.answer")).success
            assert trio.current_time() - t0 == 2.5
            sim.faults.delay_responses(0)
            sim.faults.drop_responses()
            command_id = await media.send_command("agent.interrupt")
            await trio.sleep(5)
            assert command_id not in media.responses
            sim.faults.drop_responses(False)
            assert (await media.command("agent.interrupt")).success
            await call.hang_up()
    result = await call.wait_result()
    assert [(c.name, c.latency) for c in result.commands] == [
        ("call.answer", 2.5),
        ("agent.interrupt", None),
        ("agent.interrupt", 0.0),
    ]


async def test_raw_frames_to_clients(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call()
        notify = await control.expect(SessionNotify)
        assert await sim.faults.send_control('{"type":"surprise","x":1}') == 1
        assert await control.expect(UnknownFrame) == UnknownFrame(
            "surprise", {"type": "surprise", "x": 1}
        )
        await sim.faults.send_control("not json")
        with pytest.raises(Exception, match="not valid JSON"):
            decode_control(await control.ws.get_message())
        async with open_media(sim, await control.claim(notify)) as media:
            await sim.faults.send_media(call.call_id, b"\x07abcd")
            await sim.faults.call_error(call.call_id)
            await sim.faults.call_error(call.call_id, "OTHER", "it broke")
            await media.wait_for(lambda: len(media.events) == 2)
            assert media.audio[7] == b"abcd"
            assert [e.fields for e in media.events] == [
                {"error_code": "TTS_SESSION_ERROR"},
                {"error_code": "OTHER", "error_message": "it broke"},
            ]
            assert call.state is CallState.PENDING  # call.error does not end the call
    with pytest.raises(LookupError):
        await sim.faults.call_error("no-such-call")


async def test_oversized_control_frame_closes_the_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator() as sim, open_control(sim, max_message_size=1000) as control:
        await sim.faults.send_control(json.dumps({"type": "x", "pad": "y" * 5000}))
        with pytest.raises(WSSConnectionClosed) as info:
            await control.recv()
        assert info.value.code == 1009
        await trio.sleep(1)
        assert sim.statistics().control_connections == 0


async def test_reject_auth(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim:
        sim.faults.reject_auth()
        with pytest.raises(WSSAuthenticationError, match="401"):
            async with open_control(sim):
                pass
        sim.faults.reject_auth(False)
        async with open_control(sim) as control:
            assert control.sm_ws_id
        assert sim.statistics().auth_rejections == 1


async def test_slow_buffer_requests(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as control:
        call = await sim.place_call()
        with pytest.raises(ValueError, match="at least 1"):
            sim.faults.slow_buffer_requests(0.5)
        sim.faults.slow_buffer_requests(2)
        async with open_media(sim, await control.claim()) as media:
            assert (await media.command("call.answer")).success
            await media.say(bytes(64000))  # 2 s of agent audio
            await trio.sleep(1.005)
            # Half speed: 25 frames played in a second, so 3 + 25 frames pulled.
            assert media.sent == (3 + 25) * 640
            await call.hang_up()


async def test_slow_consumer_control_connection_is_dropped(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_simulator(SimulatorConfig(control_outbox_frames=2)) as sim:
        async with open_control(sim) as control:
            # Queue more than the outbox holds without giving the writer a turn.
            for control_conn in sim._control_connections():
                for n in range(5):
                    control_conn.send_nowait(f'{{"type":"x{n}"}}')
            with pytest.raises(WSSConnectionClosed):
                await control.read_until_closed()
        assert sim.statistics().control_connections == 0
        assert sim.statistics().handler_errors == 0


async def test_unclaimed_call_survives_its_claimer(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator() as sim, open_control(sim) as first, open_control(sim) as second:
        call = await sim.place_call(CallerScript())
        await first.claim()
        await second.expect(SessionNotify)
        first_conn = next(c for c in sim._control_connections() if c.sm_ws_id == first.sm_ws_id)
        first_conn.connection.abort()
        resumed: SessionNotify = await second.expect(SessionNotify)
        assert (resumed.session_id, resumed.activity) == (call.session_id, "RESUME")
        assert (await second.open(call.session_id)).ok


@pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")
@pytest.mark.parametrize("transport", ["lean", "trio-websocket"])
async def test_drop_control_over_tcp_ends_the_connection_at_once(transport: str) -> None:
    """Loopback TCP: the client sees the drop at once (its heartbeat would take
    many seconds) and the simulator holds no descriptor of the connection."""
    current_poller()  # the run's epoll set exists before the count
    async with open_simulator(SimulatorConfig(transport=transport), listen=True) as sim:
        before = len(os.listdir("/proc/self/fd"))
        async with open_control(sim, transport="lean", open_stream=None) as control:
            # Something may keep the dropped WebSocket alive; here the test does.
            held = [served.connection.ws for served in sim._control_connections()]
            assert sim.faults.drop_control() == 1
            with trio.fail_after(5), pytest.raises(WSSConnectionClosed) as info:
                await control.read_until_closed()
            assert info.value.code == 1006
        await trio.testing.wait_all_tasks_blocked()
        assert sim.statistics().control_connections == 0
        assert len(os.listdir("/proc/self/fd")) == before
        assert len(held) == 1
