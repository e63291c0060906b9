"""Hostile input against the client and the simulator: a corpus, then a fuzzer.

The only acceptable outcomes are the documented ones:

* the client counts and logs a malformed frame and goes on
  (``statistics().malformed_frames``), ignores a well-formed frame it has no
  use for, and closes a connection whose message is over
  ``max_message_size`` with 1009 (then reconnects, or ends the call as
  ``media_lost``);
* the simulator answers a malformed request it can correlate with an error
  response (``INVALID_REQUEST`` / ``INVALID_COMMAND``), closes a connection
  that sent one it cannot with 1008 (1003 for binary on the control plane),
  ignores bad agent audio, and closes with 1009 when a message is too large.

Nothing hangs (every test runs under ``trio.fail_after``), no exception other
than the documented ones escapes, the simulator's ``handler_errors`` stays 0
and everything either peer sends decodes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from contextlib import AsyncExitStack
from typing import Any

import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings, strategies as st

from telcoflow_trio import ActiveCall, TelcoflowClient, TerminationReason, events, proto
from telcoflow_trio.exceptions import (
    BufferClosedError,
    RemoteProtocolError,
    WSSCallClosedError,
    WSSConnectionClosed,
    WSSConnectionError,
)
from telcoflow_trio.simulator import (
    CONTROL_PATH,
    CallerScript,
    SimulatorConfig,
    open_simulator,
    tone,
)
from telcoflow_trio.simulator._connection import salvage_field
from telcoflow_trio.ws._transport import WebSocket

from .conftest import (
    CLIENT_TRANSPORTS,
    ScriptedServer,
    claim_call,
    client_config,
    client_tasks,
    open_raw_control,
    open_raw_media,
)
from .corpus import (
    COMMON,
    CONTROL_TO_CLIENT,
    CONTROL_TO_SERVER,
    MEDIA_TO_CLIENT,
    MEDIA_TO_SERVER,
    messages,
    oversized,
)

pytestmark = pytest.mark.reliability

Decoder = Callable[[str | bytes], Any]
Case = tuple[str, str | bytes]

#: Hypothesis runs: deterministic, no example database, bounded.
FUZZ = settings(
    max_examples=40,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROBE_SESSION = "probe-session"
on_each_transport = pytest.mark.parametrize("transport", CLIENT_TRANSPORTS)
#: The simulator's WebSocket implementations (``SimulatorConfig.transport``).
on_each_server = pytest.mark.parametrize("server", ["trio-websocket", "lean"])


def cases(entries: list[Case]) -> pytest.MarkDecorator:
    return pytest.mark.parametrize(("name", "message"), entries, ids=[n for n, _ in entries])


def malformed(decode: Decoder, message: str | bytes) -> bool:
    """The oracle: whether the protocol decoder refuses ``message``."""
    try:
        decode(message)
    except RemoteProtocolError as exc:
        error = str(exc)
    else:
        return False
    assert error, "a protocol error must say what was wrong"
    return True


def salvageable(message: str | bytes, key: str, *, nested: bool) -> str | None:
    """The string ``key`` the simulator can still answer a malformed ``message`` with."""
    return salvage_field(message, key, nested=nested) if isinstance(message, str) else None


def run_with_clock(fn: Callable[..., Any], *args: Any) -> None:
    """One hypothesis example: a fresh trio run under an autojumping ``MockClock``."""
    trio.run(fn, *args, clock=trio.testing.MockClock(autojump_threshold=0))


# -- the client's control plane, from a scripted server -------------------------------------


class ControlScript:
    """The server side of a control connection: ``setup``, the hostile messages (before
    or after ``setup.done``, first connection only), then a probe notification the
    client must still claim."""

    def __init__(self, hostile: list[str | bytes], *, before_setup: bool = False) -> None:
        self.hostile = hostile
        self.before_setup = before_setup
        self.connections = 0
        self.claimed = trio.Event()

    async def __call__(self, ws: WebSocket) -> None:
        if ws.path != CONTROL_PATH:
            return  # a media connection of a hostile call.in: close it (1000)
        self.connections += 1
        hostile = self.hostile if self.connections == 1 else []
        setup = proto.decode_control(await ws.get_message())
        assert isinstance(setup, proto.Setup), setup
        if self.before_setup:
            for message in hostile:
                await ws.send_message(message)
        await ws.send_message(proto.SetupDone(f"sm-{self.connections}").encode())
        if not self.before_setup:
            for message in hostile:
                await ws.send_message(message)
        await ws.send_message(proto.SessionNotify(PROBE_SESSION).encode())
        while True:
            frame = proto.decode_control(await ws.get_message())
            if isinstance(frame, proto.SessionOpen):
                refusal = proto.Response(frame.req_id, False, None, "SESSION_NOT_FOUND")
                await ws.send_message(refusal.encode())
                if frame.session_id == PROBE_SESSION:
                    self.claimed.set()


def ignore_call(call: ActiveCall) -> None:
    """An INCOMING_CALL handler that leaves at once (the call is then closed)."""


async def run_control_script(
    script: ControlScript, **options: Any
) -> tuple[TelcoflowClient, ScriptedServer]:
    """Connect a client to ``script``, wait for the probe claim, close the client."""
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, script)
            client = TelcoflowClient(client_config(**options), open_stream=server.open_stream)
            client.on(events.INCOMING_CALL)(ignore_call)
            async with client:
                await script.claimed.wait()
    assert client_tasks() == []
    assert server.errors == []
    return client, server


@on_each_transport
@pytest.mark.parametrize("before_setup", [False, True], ids=["after-setup", "before-setup"])
@cases(COMMON + CONTROL_TO_CLIENT)
async def test_client_control_plane_ignores_hostile_frames(
    name: str,
    message: str | bytes,
    before_setup: bool,
    transport: str,
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = ControlScript([message], before_setup=before_setup)
    client, server = await run_control_script(script, transport=transport)
    stats = client.statistics()
    assert (stats.connects, stats.reconnects) == (1, 0), "the connection must continue"
    assert stats.malformed_frames == malformed(proto.decode_control, message)
    assert (CONTROL_PATH, 1000) in server.closes  # closed properly when the client left


@on_each_transport
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
async def test_client_control_oversized_frame_closes_1009_then_reconnects(
    binary: bool, transport: str, autojump_clock: trio.testing.MockClock
) -> None:
    script = ControlScript([oversized(4096, binary)])
    client, server = await run_control_script(script, max_message_size=4096, transport=transport)
    assert client.statistics().reconnects == 1
    assert [code for path, code in server.closes if path == CONTROL_PATH] == [1009, 1000]


@on_each_transport
async def test_client_first_connection_with_oversized_frame_fails_cleanly(
    transport: str, autojump_clock: trio.testing.MockClock
) -> None:
    script = ControlScript([oversized(4096)], before_setup=True)
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            server = ScriptedServer(nursery, script)
            client = TelcoflowClient(
                client_config(max_message_size=4096, transport=transport),
                open_stream=server.open_stream,
            )
            with pytest.raises(WSSConnectionError):
                async with client:
                    pytest.fail("the first connection must fail")
    assert server.closes == [(CONTROL_PATH, 1009)]
    assert client_tasks() == []


@on_each_transport
@pytest.mark.parametrize("when", ["at-once", "after-the-request"])
async def test_client_opening_fails_at_once_when_the_server_hangs_up(
    when: str, transport: str, autojump_clock: trio.testing.MockClock
) -> None:
    async def hang_up(server: trio.abc.Stream) -> None:
        if when == "after-the-request":
            await server.receive_some()
        await server.aclose()

    async with trio.open_nursery() as nursery:

        async def open_stream(host: str, port: int, context: Any) -> trio.abc.Stream:
            client, server = trio.testing.memory_stream_pair()
            nursery.start_soon(hang_up, server)
            return client

        config = client_config(connect_timeout=10, transport=transport)
        client = TelcoflowClient(config, open_stream=open_stream)
        started = trio.current_time()
        with pytest.raises(WSSConnectionError) as info:
            async with client:
                pytest.fail("there is no server")
        # Not after connect_timeout: the broken stream ends the opening.
        assert trio.current_time() - started < 1, info.value
        assert "took longer" not in str(info.value)
    assert client_tasks() == []


@on_each_transport
@FUZZ
@given(hostile=st.lists(messages(), min_size=1, max_size=6))
def test_fuzz_client_control_plane(hostile: list[str | bytes], transport: str) -> None:
    async def example() -> None:
        client, _ = await run_control_script(ControlScript(hostile), transport=transport)
        stats = client.statistics()
        assert (stats.connects, stats.reconnects) == (1, 0)
        assert stats.malformed_frames == sum(malformed(proto.decode_control, m) for m in hostile)

    run_with_clock(example)


# -- the client's media plane, from the simulator's faults --------------------------------


async def run_media_case(
    hostile: list[str | bytes], **options: Any
) -> tuple[ActiveCall, dict[str, Any]]:
    """A call whose agent echoes the caller; the simulator injects ``hostile`` on its
    media connection, then the agent proves the call still works with a command."""
    answered, injected, finished = trio.Event(), trio.Event(), trio.Event()
    seen: list[ActiveCall] = []
    outcome: dict[str, Any] = {}

    async def agent(call: ActiveCall) -> None:
        seen.append(call)
        await call.answer()
        answered.set()
        async with trio.open_nursery() as nursery:

            async def echo() -> None:
                with contextlib.suppress(BufferClosedError):  # the call ended
                    async for chunk in call.audio_stream():
                        call.send_audio(chunk)

            nursery.start_soon(echo)
            await injected.wait()
            await trio.sleep(0.5)
            try:
                await call.clear_send_audio_buffer()  # agent.interrupt: a round trip
                outcome["probe"] = "ok"
            except WSSCallClosedError:
                outcome["probe"] = "closed"
            outcome["malformed"] = call.statistics().malformed_frames
            nursery.cancel_scope.cancel()
        finished.set()

    with trio.fail_after(60):
        async with open_simulator(SimulatorConfig(frame_ms=100)) as sim:
            client = TelcoflowClient(client_config(sim, **options), open_stream=sim.open_stream)
            client.on(events.INCOMING_CALL)(agent)
            async with client:
                simulated = await sim.place_call(CallerScript(tone(440)))
                await answered.wait()
                for message in hostile:
                    try:
                        await sim.faults.send_media(simulated.call_id, message)
                    except (LookupError, WSSConnectionClosed):
                        break  # the call ended under the previous message
                injected.set()
                await finished.wait()
                outcome["result"] = await simulated.wait_result()
                outcome["termination"] = await seen[0].wait_terminated()
            assert sim.statistics().handler_errors == 0
    assert client_tasks() == []
    return seen[0], outcome


async def test_a_flood_of_malformed_media_frames_logs_one_error_line(
    caplog: pytest.LogCaptureFixture, autojump_clock: trio.testing.MockClock
) -> None:
    _, outcome = await run_media_case(["{not json"] * 200)
    assert outcome["malformed"] == 200  # every one counted
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert [r.getMessage().split(": ")[1] for r in errors] == ["ignoring a malformed media frame"]


@on_each_transport
@cases(COMMON + MEDIA_TO_CLIENT)
async def test_client_media_plane_ignores_hostile_frames(
    name: str, message: str | bytes, transport: str, autojump_clock: trio.testing.MockClock
) -> None:
    _, outcome = await run_media_case([message], transport=transport)
    assert outcome["probe"] == "ok", "the call must go on"
    assert outcome["termination"].reason is TerminationReason.HANDLER_RETURNED
    assert outcome["result"].ended_by == "agent_close"
    assert outcome["malformed"] == malformed(proto.decode_media, message)


@on_each_transport
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
async def test_client_media_oversized_frame_closes_1009_and_ends_the_call(
    binary: bool, transport: str, autojump_clock: trio.testing.MockClock
) -> None:
    _, outcome = await run_media_case(
        [oversized(4096, binary)], max_message_size=4096, transport=transport
    )
    assert outcome["probe"] == "closed"
    assert outcome["termination"].reason is TerminationReason.MEDIA_LOST
    assert (outcome["result"].ended_by, outcome["result"].media_close_code) == (
        "media_lost",
        1009,
    )


@on_each_transport
@FUZZ
@given(hostile=st.lists(messages(), min_size=1, max_size=6))
def test_fuzz_client_media_plane(hostile: list[str | bytes], transport: str) -> None:
    async def example() -> None:
        _, outcome = await run_media_case(hostile, transport=transport)
        reason = outcome["termination"].reason
        frames = [proto.decode_media(m) for m in hostile if not malformed(proto.decode_media, m)]
        ended = any(
            isinstance(f, proto.CallEventFrame) and f.event == "call.terminated" for f in frames
        )
        if ended:  # the server said the call is over: a documented way to end it
            assert reason in (
                TerminationReason.SERVER,
                TerminationReason.SESSION_CLOSED,
                TerminationReason.CALLER_HANGUP,
            )
        else:
            assert outcome["probe"] == "ok"
            assert reason is TerminationReason.HANDLER_RETURNED
            assert outcome["malformed"] == sum(malformed(proto.decode_media, m) for m in hostile)

    run_with_clock(example)


# -- the simulator, from a raw client ------------------------------------------------------


async def send_each(ws: WebSocket, messages: list[str | bytes]) -> None:
    """Send ``messages`` in order, stopping quietly if the peer closes meanwhile."""
    try:
        for message in messages:
            await ws.send_message(message)
    except WSSConnectionClosed:
        pass  # the reader sees how


async def read_until(
    ws: WebSocket, decode: Decoder, done: Callable[[Any], bool]
) -> tuple[list[Any], WSSConnectionClosed | None]:
    """Frames received until one is ``done`` or the connection closes (and how)."""
    received: list[Any] = []
    while True:
        try:
            message = await ws.get_message()
        except WSSConnectionClosed as exc:
            return received, exc
        frame = decode(message)  # whatever the simulator sends must decode
        received.append(frame)
        if done(frame):
            return received, None


def errors_for(received: list[Any], key: str) -> list[str | None]:
    return [
        getattr(f, "error_code", None)
        for f in received
        if getattr(f, "req_id", getattr(f, "command_id", None)) == key
    ]


async def check_simulator_control(
    hostile: list[str | bytes], server: str, *, as_setup: bool = False
) -> None:
    probe = '{"type":"future.request","reqId":"probe"}'
    with trio.fail_after(60):
        async with open_simulator(SimulatorConfig(transport=server)) as sim:
            async with open_raw_control(sim, setup=not as_setup) as ws:
                await send_each(ws, [*hostile, probe])
                received, closed = await read_until(
                    ws,
                    proto.decode_control,
                    lambda f: isinstance(f, proto.Response) and f.req_id == "probe",
                )
            async with open_raw_control(sim):
                pass  # the simulator still serves
            assert sim.statistics().handler_errors == 0
    bad = [m for m in hostile if malformed(proto.decode_control, m)]
    if as_setup:
        assert closed is not None, "the first frame must be a setup"
        assert (closed.code, closed.reason is not None) == (1008, True)
        return
    if closed is not None:
        unanswerable = [m for m in bad if salvageable(m, "reqId", nested=False) is None]
        assert unanswerable, f"closed ({closed}) although every bad frame could be answered"
        first = unanswerable[0]
        assert closed.code == (1003 if isinstance(first, bytes) else 1008)
        assert closed.reason is not None
        assert closed.reason.startswith("bad frame")
        return
    for message in bad:
        req_id = salvageable(message, "reqId", nested=False)
        assert req_id is not None
        assert "INVALID_REQUEST" in errors_for(received, req_id)
    assert errors_for(received, "probe") == ["INVALID_REQUEST"]


@on_each_server
@cases(COMMON + CONTROL_TO_SERVER)
async def test_simulator_control_plane_answers_or_closes_properly(
    name: str, message: str | bytes, server: str, autojump_clock: trio.testing.MockClock
) -> None:
    await check_simulator_control([message], server)


@on_each_server
@cases(COMMON)
async def test_simulator_refuses_a_bad_first_frame(
    name: str, message: str | bytes, server: str, autojump_clock: trio.testing.MockClock
) -> None:
    await check_simulator_control([message], server, as_setup=True)


async def check_simulator_media(hostile: list[str | bytes], server: str) -> None:
    probe = proto.Command("probe", "call.answer", 5000).encode()
    with trio.fail_after(60):
        async with open_simulator(SimulatorConfig(frame_ms=100, transport=server)) as sim:
            async with open_raw_control(sim) as control:
                simulated = await sim.place_call(CallerScript(hangup_after=30))
                async with open_raw_media(sim, await claim_call(control)) as media:
                    await send_each(media, [*hostile, probe])
                    received, closed = await read_until(
                        media,
                        proto.decode_media,
                        lambda f: isinstance(f, proto.CommandResponse) and f.command_id == "probe",
                    )
                await simulated.wait_result()
            assert sim.statistics().handler_errors == 0
    text_bad = [m for m in hostile if isinstance(m, str) and malformed(proto.decode_media, m)]
    if closed is not None and closed.code == 1000:
        # A hostile command ended the call: the simulator said so first.
        assert any(isinstance(f, proto.CallEventFrame) for f in received), received
        return
    if closed is not None:
        unanswerable = [m for m in text_bad if salvageable(m, "command_id", nested=True) is None]
        assert unanswerable, f"closed ({closed}) although every bad frame could be answered"
        assert closed.code == 1008
        return
    for message in text_bad:
        command_id = salvageable(message, "command_id", nested=True)
        assert command_id is not None
        assert "INVALID_COMMAND" in errors_for(received, command_id)
    responses = [f for f in received if isinstance(f, proto.CommandResponse)]
    assert responses[-1].command_id == "probe"


@on_each_server
@cases(COMMON + MEDIA_TO_SERVER)
async def test_simulator_media_plane_answers_ignores_or_closes_properly(
    name: str, message: str | bytes, server: str, autojump_clock: trio.testing.MockClock
) -> None:
    await check_simulator_media([message], server)


@on_each_server
@pytest.mark.parametrize("binary", [False, True], ids=["text", "binary"])
@pytest.mark.parametrize("plane", ["control", "media"])
async def test_simulator_closes_1009_on_oversized_frames(
    plane: str, binary: bool, server: str, autojump_clock: trio.testing.MockClock
) -> None:
    limit = 4096
    with trio.fail_after(60):
        async with (
            open_simulator(SimulatorConfig(max_message_size=limit, transport=server)) as sim,
            AsyncExitStack() as stack,
        ):
            ws = await stack.enter_async_context(open_raw_control(sim))
            decode: Decoder = proto.decode_control
            if plane == "media":
                await sim.place_call()
                call_in = await claim_call(ws)
                ws = await stack.enter_async_context(open_raw_media(sim, call_in))
                decode = proto.decode_media
            await ws.send_message(oversized(limit, binary))
            _, closed = await read_until(ws, decode, lambda f: False)
            assert closed is not None
            assert closed.code == 1009
        assert sim.statistics().handler_errors == 0


@on_each_server
@FUZZ
@given(hostile=st.lists(messages(), min_size=1, max_size=6))
def test_fuzz_simulator_control_plane(hostile: list[str | bytes], server: str) -> None:
    run_with_clock(check_simulator_control, hostile, server)


@on_each_server
@FUZZ
@given(hostile=st.lists(messages(), min_size=1, max_size=6))
def test_fuzz_simulator_media_plane(hostile: list[str | bytes], server: str) -> None:
    run_with_clock(check_simulator_media, hostile, server)
