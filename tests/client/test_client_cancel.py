"""Cancellation and failure of the 1.0.0-surface operations, at each of their waits.

Each operation is slowed at every step it waits on (the platform's answer to
``session.create``, ``session.open``, ``wa.msg.out``, ``call_flow.setup``, the
callee's ring, a media or REST connection being opened) and then, in the
middle of each step: cancelled by its caller, cut off by a control drop, or
overtaken by the client's shutdown. What must hold every time: the operation
ends promptly with ``Cancelled`` or a clear :class:`WSSError`, no task and no
entry of the client's tables is left behind, the platform is not left with a
call nobody will end, and the client's next operation works.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from telcoflow_trio import (
    ActiveCall,
    CallOffer,
    CallState,
    IncomingMessage,
    Session,
    TelcoflowClient,
    events,
    proto,
)
from telcoflow_trio.exceptions import WSSCallClosedError, WSSConnectionError, WSSError
from telcoflow_trio.simulator import CallerScript, Simulator, SimulatorConfig, open_simulator

from .conftest import Opener, client_config, client_tasks

NUMBER = "+15550100"

#: Every slowed step takes this long; the operations' timelines below follow from it.
STEP = 1.0


@attrs.define
class SlowOpener:
    """The test opener, ``delay`` seconds slower per connection (media and REST ones)."""

    opener: Opener
    delay: float = 0.0

    async def __call__(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        if self.delay:
            await trio.sleep(self.delay)
        return await self.opener(host, port, ssl_context)


@attrs.define
class Slow:
    sim: Simulator
    opener: SlowOpener


def delay_frames(sim: Simulator, monkeypatch: pytest.MonkeyPatch, *kinds: type) -> None:
    """The simulator handles control frames of ``kinds`` :data:`STEP` seconds late."""
    handle = sim._on_control_frame

    def late(control: Any, frame: object) -> None:
        if not isinstance(frame, kinds):
            handle(control, frame)
            return

        async def later() -> None:
            await trio.sleep(STEP)
            if control.alive:
                handle(control, frame)

        sim._spawn(later)

    monkeypatch.setattr(sim, "_on_control_frame", late)


@asynccontextmanager
async def open_slow_sim() -> AsyncIterator[Slow]:
    async with open_simulator(SimulatorConfig(), listen=False) as sim:
        yield Slow(sim, SlowOpener(Opener(sim)))


@asynccontextmanager
async def open_client(slow: Slow, **options: Any) -> AsyncIterator[TelcoflowClient]:
    """A client whose connections but the first control one open :data:`STEP` late."""
    slow.opener.delay = 0.0
    client = TelcoflowClient(
        client_config(slow.sim, **options), open_stream=slow.opener, random_source=lambda: 0.0
    )
    async with client:
        slow.opener.delay = STEP
        yield client


@asynccontextmanager
async def open_slow(**options: Any) -> AsyncIterator[tuple[Slow, TelcoflowClient]]:
    async with open_slow_sim() as slow, open_client(slow, **options) as client:
        yield slow, client


def tables(client: TelcoflowClient) -> dict[str, int]:
    """The sizes of the client's internal tables (all 0 when nothing is in flight)."""
    control = client._control
    return {
        "dialing": len(client._dialing),
        "calls": len(client._calls),
        "by_session": len(client._by_session),
        "sessions": len(client._wa),
        "requests": len(control._requests) if control is not None else 0,
        "claims": control.claims_in_flight if control is not None else 0,
    }


EMPTY = dict.fromkeys(("dialing", "calls", "by_session", "sessions", "requests", "claims"), 0)


async def settle(
    client: TelcoflowClient, baseline: list[str], before: dict[str, int] = EMPTY
) -> None:
    """Let what was given up end (bounded), then check nothing of it is left."""
    await trio.sleep(10)
    await client.wait_connected()
    assert tables(client) == before
    assert sorted(client_tasks()) == baseline


# -- place_call ------------------------------------------------------------------------
#
# Timeline with every step slowed: session.create answered at 1 (the callee starts
# ringing), session.open at 2, the callee answers at 3 (answers_after 2), the media
# connection opens at 4, and the block runs.

PLACE_STEPS = {
    "create": 0.5,
    "open": 1.5,
    "ring": 2.5,
    "media": 3.5,
}


async def slow_place(slow: Slow, monkeypatch: pytest.MonkeyPatch) -> None:
    slow.sim.faults.delay_creates(STEP)
    delay_frames(slow.sim, monkeypatch, proto.SessionOpen)
    slow.sim.expect_callee(NUMBER, CallerScript(answers_after=2 * STEP))


async def place_and_hold(client: TelcoflowClient) -> None:
    async with client.place_call(NUMBER):
        pytest.fail("the block must not run")


async def place_again(slow: Slow, client: TelcoflowClient) -> None:
    """The client still places calls, and the platform has no call left."""
    slow.sim.faults.delay_creates(0)
    slow.sim.expect_callee(NUMBER, CallerScript(answers_after=0.5))
    async with client.place_call(NUMBER) as call:
        assert call.outbound
    await trio.sleep(1)
    assert slow.sim.statistics().calls_active == 0
    assert all(r.ended_by in ("agent_close", "server") for r in slow.sim.results())


@pytest.mark.parametrize("at", [0.0, *PLACE_STEPS.values()], ids=["now", *PLACE_STEPS])
async def test_place_call_cancelled(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, at: float
) -> None:
    with trio.fail_after(60):
        async with open_slow() as (slow, client):
            baseline = sorted(client_tasks())
            await slow_place(slow, monkeypatch)
            start = trio.current_time()
            with trio.move_on_after(at) as scope:
                await place_and_hold(client)
            assert scope.cancelled_caught
            assert trio.current_time() - start == pytest.approx(at)  # promptly
            await settle(client, baseline)
            # The platform did not keep the call we gave up on: hung up on its answer.
            assert slow.sim.statistics().calls_active == 0
            ended = [r.ended_by for r in slow.sim.results()]
            assert ended == ["agent_close"] or (at == 0 and ended == [])
            await place_again(slow, client)


@pytest.mark.parametrize("at", PLACE_STEPS.values(), ids=list(PLACE_STEPS))
async def test_place_call_control_drop(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, at: float
) -> None:
    with trio.fail_after(60):
        async with open_slow() as (slow, client):
            baseline = sorted(client_tasks())
            await slow_place(slow, monkeypatch)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_later, at, slow.sim.faults.drop_control)
                # Before the media: the platform hangs the call up with its agent's
                # control connection gone, so the media cannot open either.
                with pytest.raises(WSSError):
                    await place_and_hold(client)
            assert trio.current_time() < at + 2 * STEP
            await settle(client, baseline)
            assert slow.sim.statistics().calls_active == 0
            await place_again(slow, client)


@pytest.mark.parametrize("at", PLACE_STEPS.values(), ids=list(PLACE_STEPS))
async def test_place_call_client_shutdown(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, at: float
) -> None:
    with trio.fail_after(60):
        async with open_slow_sim() as slow:
            await slow_place(slow, monkeypatch)
            await shut_down_during(slow, at, place_and_hold)
            await trio.sleep(1)
            assert slow.sim.statistics().calls_active == 0


async def shut_down_during(
    slow: Slow,
    at: float,
    operation: Callable[[TelcoflowClient], Awaitable[object]],
    *,
    alone: bool = True,
) -> BaseException:
    """Run ``operation`` in a task of its own; leave ``async with client`` at ``at``.

    The exit is bounded (twice ``close_timeout``), the operation fails with a
    WSSError no later, and (``alone``: no other client is open) no client task
    is left."""
    outcome: list[BaseException] = []
    async with trio.open_nursery() as outer:
        async with open_client(slow) as client:
            outer.start_soon(_failing, outcome, partial(operation, client))
            await trio.sleep(at)
            closing = trio.current_time()
        assert trio.current_time() - closing <= 2 * client._config.close_timeout
    assert trio.current_time() - closing <= 2 * client._config.close_timeout
    [error] = outcome
    assert isinstance(error, WSSError), error
    assert client_tasks() == [] or not alone
    return error


async def _later(at: float, fn: Callable[[], object]) -> None:
    await trio.sleep(at)
    fn()


async def _failing(outcome: list[BaseException], fn: Callable[[], Awaitable[object]]) -> None:
    try:
        await fn()
    except (WSSError, AssertionError) as exc:
        outcome.append(exc)
    else:
        outcome.append(AssertionError("it succeeded"))


# -- the other operations ----------------------------------------------------------------
#
# Each: how to slow it down (before the test's clock starts), the operation, when each
# of its slowed steps is in flight, what a control drop does to it, and how to check
# the client still works afterwards.

TEXT = {"type": "text", "text": {"body": "hello"}}


@attrs.define
class Case:
    #: Slows the operation down; returns what ``run`` and ``again`` get.
    prepare: Callable[[Slow, TelcoflowClient, pytest.MonkeyPatch], Awaitable[Any]]
    run: Callable[[TelcoflowClient, Any], Awaitable[object]]
    #: Step name -> a time when it is in flight.
    steps: dict[str, float]
    again: Callable[[Slow, TelcoflowClient, Any], Awaitable[object]]
    #: A control drop fails it (else the operation does not use the control connection).
    drop_fails: bool = True
    #: Done, it closes the session ``prepare`` made.
    closes: bool = False


async def _wa_session(slow: Slow, client: TelcoflowClient, mp: pytest.MonkeyPatch) -> Any:
    return await client.create_session("WA", NUMBER)


async def _slow_creates(slow: Slow, client: TelcoflowClient, mp: pytest.MonkeyPatch) -> None:
    delay_frames(slow.sim, mp, proto.SessionCreate, proto.SessionOpen)


async def _create_again(slow: Slow, client: TelcoflowClient, _: object) -> None:
    session = await client.create_session("WA", NUMBER)
    await session.send_message(TEXT)
    assert client.get_session(session.id) is session


async def _slow_acks(slow: Slow, client: TelcoflowClient, mp: pytest.MonkeyPatch) -> Any:
    session = await _wa_session(slow, client, mp)
    slow.sim.faults.delay_wa_acks(STEP)
    return session


async def _send_again(slow: Slow, client: TelcoflowClient, session: Any) -> None:
    slow.sim.faults.delay_wa_acks(0)
    assert (await session.send_message(TEXT))["status"] == "accepted"


async def _close_again(slow: Slow, client: TelcoflowClient, session: Any) -> None:
    await session.close()
    assert session.close_reason == "SDK_REQUEST"
    assert client.get_session(session.id) is None


async def _nothing(slow: Slow, client: TelcoflowClient, mp: pytest.MonkeyPatch) -> None:
    await _wa_session(slow, client, mp)


async def _list_again(slow: Slow, client: TelcoflowClient, _: object) -> None:
    [info] = await client.list_sessions()
    assert info.remote_address == NUMBER


async def _slow_flow(slow: Slow, client: TelcoflowClient, mp: pytest.MonkeyPatch) -> None:
    delay_frames(slow.sim, mp, proto.CallFlowSetup)


async def _flow_again(slow: Slow, client: TelcoflowClient, _: object) -> None:
    await client.setup_call_flow(inbound_call="NO", outbound_call=True)
    assert client._call_flow is not None
    assert client._call_flow.inbound_call == "NO"


CASES = {
    "create_session": Case(
        _slow_creates,
        lambda client, _: client.create_session("WA", NUMBER),
        {"create": 0.5, "open": 1.5},
        _create_again,
    ),
    "send_message": Case(
        _slow_acks,
        lambda client, session: session.send_message(TEXT),
        {"ack": 0.5},
        _send_again,
    ),
    "session_close": Case(
        _wa_session,
        lambda client, session: session.close(),
        {"rest": 0.5},
        _close_again,
        drop_fails=False,
        closes=True,
    ),
    "list_sessions": Case(
        _nothing, lambda client, _: client.list_sessions(), {"rest": 0.5}, _list_again, False
    ),
    "close_session": Case(
        _wa_session,
        lambda client, session: client.close_session(session.id),
        {"rest": 0.5},
        _close_again,
        drop_fails=False,
        closes=True,
    ),
    "setup_call_flow": Case(
        _slow_flow,
        lambda client, _: client.setup_call_flow(inbound_call="NO", outbound_call=True),
        {"request": 0.5},
        _flow_again,
    ),
}
STEPS = [(name, step, at) for name, case in CASES.items() for step, at in case.steps.items()]
STEP_IDS = [f"{name}-{step}" for name, step, _ in STEPS]


@pytest.mark.parametrize(("name", "step", "at"), STEPS, ids=STEP_IDS)
async def test_cancelled(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    step: str,
    at: float,
) -> None:
    case = CASES[name]
    with trio.fail_after(60):
        async with open_slow() as (slow, client):
            baseline = sorted(client_tasks())
            state = await case.prepare(slow, client, monkeypatch)
            before = tables(client)
            start = trio.current_time()
            with trio.move_on_after(at) as scope:
                await case.run(client, state)
            assert scope.cancelled_caught
            assert trio.current_time() - start == pytest.approx(at)
            await settle(client, baseline, before)
            await case.again(slow, client, state)


@pytest.mark.parametrize(("name", "step", "at"), STEPS, ids=STEP_IDS)
async def test_control_drop(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    step: str,
    at: float,
) -> None:
    case = CASES[name]
    with trio.fail_after(60):
        async with open_slow() as (slow, client):
            baseline = sorted(client_tasks())
            state = await case.prepare(slow, client, monkeypatch)
            before = tables(client)
            start = trio.current_time()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_later, at, slow.sim.faults.drop_control)
                if case.drop_fails:
                    with pytest.raises(WSSConnectionError):
                        await case.run(client, state)
                    assert trio.current_time() - start == pytest.approx(at)  # at once
                else:
                    await case.run(client, state)
                    before = EMPTY if case.closes else before
            await settle(client, baseline, before)
            await case.again(slow, client, state)


@pytest.mark.parametrize(("name", "step", "at"), STEPS, ids=STEP_IDS)
async def test_client_shutdown(
    autojump_clock: trio.testing.MockClock,
    monkeypatch: pytest.MonkeyPatch,
    name: str,
    step: str,
    at: float,
) -> None:
    case = CASES[name]
    with trio.fail_after(60):
        async with open_slow_sim() as slow:
            state: list[Any] = []

            async def operation(client: TelcoflowClient) -> object:
                state.append(await case.prepare(slow, client, monkeypatch))
                await trio.sleep(1)  # the shutdown comes at 1 + at
                return await case.run(client, state[0])

            await shut_down_during(slow, 1 + at, operation)


# -- messages() -------------------------------------------------------------------------


async def test_messages_reader_cancelled_dropped_and_shut_down(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        got: list[IncomingMessage] = []

        async def read(session: Session) -> None:
            async for message in session.messages():
                got.append(message)

        async with open_slow_sim() as slow, trio.open_nursery() as outer:
            async with open_client(slow) as client:
                session = await client.create_session("WA", NUMBER)
                # Cancelled while waiting: nothing is lost, the next reader gets it.
                with trio.move_on_after(0.5) as scope:
                    await session.messages().__anext__()
                assert scope.cancelled_caught
                await slow.sim.wa.send_from_user(NUMBER, "one")
                assert (await session.receive_message()).content["text"] == {"body": "one"}
                # A control drop does not end the reader: the session is claimed again.
                outer.start_soon(read, session)
                await trio.sleep(0.5)
                slow.sim.faults.drop_control()
                await trio.sleep(5)
                await slow.sim.wa.send_from_user(NUMBER, "two")
                await trio.sleep(1)
                assert [m.content["text"] for m in got] == [{"body": "two"}]
                assert not session.closed
            # Leaving the client ended the reader (the session counts as closed).
            outer.cancel_scope.deadline = trio.current_time() + 1
        assert not outer.cancel_scope.cancelled_caught
        assert session.close_reason == "CLIENT_CLOSED"
        assert client_tasks() == []


# -- adopt_call and CALL_OFFERED ----------------------------------------------------------


async def _hold(call: ActiveCall) -> None:
    await call.wait_terminated()


@asynccontextmanager
async def open_handoff(
    slow: Slow,
) -> AsyncIterator[tuple[TelcoflowClient, trio.MemoryReceiveChannel[str]]]:
    """A client that hands every call off (its connections are not slowed)."""
    send, receive = trio.open_memory_channel[str](4)
    async with TelcoflowClient(
        client_config(slow.sim), open_stream=Opener(slow.sim), random_source=lambda: 0.0
    ) as client:

        @client.on(events.CALL_OFFERED)
        async def offered(offer: CallOffer) -> None:
            await send.send(offer.to_json())

        client.on(events.INCOMING_CALL)(_hold)
        yield client, receive


def drop_control_of(sim: Simulator, client: TelcoflowClient) -> None:
    """Drop the control connection of ``client`` only."""
    assert client._control is not None
    [ours] = [c for c in sim._control_connections() if c.sm_ws_id == client._control.sm_ws_id]
    ours.connection.abort()


@pytest.mark.parametrize("how", ["cancel", "drop", "shutdown"])
async def test_adopt_call_while_its_media_opens(
    autojump_clock: trio.testing.MockClock, how: str
) -> None:
    with trio.fail_after(60):
        async with open_slow_sim() as slow, open_handoff(slow) as (_, documents):
            ringing = await slow.sim.place_call(CallerScript())
            document = await documents.receive()
            if how == "shutdown":
                error = await shut_down_during(
                    slow,
                    0.5,
                    lambda client: client.adopt_call(document, handler=_hold),
                    alone=False,
                )
                assert isinstance(error, WSSCallClosedError), error
                # Its media opened meanwhile: the call is closed, not left ringing.
                assert (await ringing.wait_result()).ended_by == "agent_close"
            else:
                await adopt_cancelled_or_dropped(slow, how, document, ringing)
    assert client_tasks() == []


async def adopt_cancelled_or_dropped(slow: Slow, how: str, document: str, ringing: Any) -> None:
    async with open_client(slow) as client:
        baseline = sorted(client_tasks())
        if how == "cancel":
            with trio.move_on_after(0.5) as scope:
                await client.adopt_call(document, handler=_hold)
            assert scope.cancelled_caught
            await settle(client, baseline)
            stats = client.statistics()
            assert (stats.calls_total, stats.calls_ended) == (0, {})  # never taken here
            # The token was not used: adopting the call again works.
            call = await client.adopt_call(document, handler=_hold)
        else:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_later, 0.5, partial(drop_control_of, slow.sim, client))
                # The control connection is not involved.
                call = await client.adopt_call(document, handler=_hold)
        assert client.get_call(call.call_id) is call
        await ringing.hang_up()
        await call.wait_terminated()
        await settle(client, baseline)


async def test_control_drop_while_the_offer_handler_decides(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The platform takes the call back (its claimant's control went before the media)
    and offers it again: the client claims it again once its first try is over."""
    with trio.fail_after(60):
        async with open_slow_sim() as slow, open_client(slow) as client:
            served: list[ActiveCall] = []

            @client.on(events.CALL_OFFERED)
            async def offered(offer: CallOffer) -> None:
                await trio.sleep(2)  # deciding; then serve it here

            @client.on(events.INCOMING_CALL)
            async def on_call(call: ActiveCall) -> None:
                served.append(call)
                await call.answer()
                await trio.sleep_forever()

            ringing = await slow.sim.place_call(CallerScript())
            await trio.sleep(0.5)
            slow.sim.faults.drop_control()
            await trio.sleep(20)
            assert len(served) == 1, client.statistics()
            assert ringing.state is CallState.ANSWERED
            await ringing.hang_up()


# -- the call flow's re-send on a reconnect ------------------------------------------------


@pytest.mark.parametrize("how", ["drop", "shutdown"])
async def test_call_flow_restore_dropped_or_shut_down(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch, how: str
) -> None:
    def flows() -> list[str]:
        return [c.inbound_call for c in slow.sim._control_connections()]

    async def drop_and_reconnect() -> None:
        assert client._control is not None
        slow.sim.faults.drop_control()
        await client._control.wait_lost()
        await client.wait_connected()
        await trio.sleep(0.5)  # the restored call flow is in flight

    with trio.fail_after(60):
        async with open_slow_sim() as slow:
            async with open_client(slow) as client:
                baseline = sorted(client_tasks())
                await client.setup_call_flow(inbound_call="NO", outbound_call=True)
                delay_frames(slow.sim, monkeypatch, proto.CallFlowSetup)
                await drop_and_reconnect()
                assert flows() == ["ALL"]  # the server's default until it is restored
                if how == "drop":
                    await drop_and_reconnect()
                    assert client.statistics().reconnects == 2
                    await settle(client, baseline)
                    assert flows() == ["NO"]
                    slow.sim.expect_callee(NUMBER, CallerScript(answers_after=0.5))
                    async with client.place_call(NUMBER):
                        pass
                closing = trio.current_time()
            assert trio.current_time() - closing <= 2 * client._config.close_timeout
        assert client_tasks() == []
