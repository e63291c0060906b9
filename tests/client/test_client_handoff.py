"""Cross-node handoff: CALL_OFFERED and CallOffer.to_json on one client,
adopt_call on another; the simulator's one-use, time-bounded media tokens."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio
import trio.testing

from telcoflow_trio import (
    ActiveCall,
    CallOffer,
    CallState,
    TelcoflowClient,
    TerminationReason,
    events,
    proto,
)
from telcoflow_trio.exceptions import WSSCallError, WSSCallStateError
from telcoflow_trio.simulator import CallerScript, Simulator, SimulatorConfig, open_simulator

from .conftest import Opener, client_config, client_tasks

HANDOFF_KEYS = {"channel", "id", "caller", "callee", "session_url", "session_token"}


async def hold(call: ActiveCall) -> None:
    """An INCOMING_CALL handler that keeps the call until the client closes."""
    await trio.sleep_forever()


@asynccontextmanager
async def open_client(sim: Simulator, **options: Any) -> AsyncIterator[TelcoflowClient]:
    async with TelcoflowClient(
        client_config(sim, **options), open_stream=Opener(sim), random_source=lambda: 0.0
    ) as client:
        yield client


@asynccontextmanager
async def open_handing_off(
    sim: Simulator,
) -> AsyncIterator[tuple[TelcoflowClient, trio.MemoryReceiveChannel[str]]]:
    """A client that hands every call off; the documents arrive on the channel."""
    send, receive = trio.open_memory_channel[str](4)
    async with open_client(sim) as client:

        @client.on(events.CALL_OFFERED)
        async def offered(offer: CallOffer) -> None:
            await send.send(offer.to_json())

        @client.on(events.INCOMING_CALL)
        async def on_call(call: ActiveCall) -> None:
            raise AssertionError("a handed-off call must not be served here")

        yield client, receive


async def test_a_handed_off_call_is_served_by_the_adopter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(30):
        async with (
            open_simulator(SimulatorConfig(), listen=False) as sim,
            open_handing_off(sim) as (a, documents),
            open_client(sim) as b,
        ):
            simulated = await sim.place_call(
                CallerScript(hangup_after=2.0), caller="+1", callee="+2"
            )
            document = await documents.receive()
            fields = json.loads(document)
            assert set(fields) == HANDOFF_KEYS | {"sample_rate", "audio_mode"}
            assert (fields["channel"], fields["sample_rate"], fields["audio_mode"]) == (
                "TELCO",
                24000,
                "mixed",
            )
            await trio.sleep(0.5)
            # A let go: nothing open there, the session is still claimed by A.
            assert a.statistics().calls_active == 0
            assert a.statistics().calls_ended == {"handed_off": 1}
            assert sim.statistics().media_connections == 0
            assert simulated.state is CallState.PENDING

            played: list[int] = []

            async def serve(call: ActiveCall) -> None:
                await call.answer()
                call.send_audio(b"\x01\x00" * 1600)
                async for chunk in call.audio_stream():
                    played.append(len(chunk))

            # An adopter whose audio is not the claimer's is refused before
            # it uses the token, which stays good for the right one.
            async with open_client(sim, sample_rate=8000) as narrow:
                with pytest.raises(ValueError, match=r"has sample_rate 24000 .* has 8000"):
                    await narrow.adopt_call(document, handler=serve)
                assert narrow.statistics().calls_total == 0
            assert sim.statistics().media_connections == 0
            call = await b.adopt_call(document, handler=serve)
            assert (call.call_id, call.caller_number, call.callee_number) == (
                simulated.call_id,
                "+1",
                "+2",
            )
            info = await call.wait_terminated()
            assert info.reason is TerminationReason.CALLER_HANGUP
            result = await simulated.wait_result()
            assert result.answered_at is not None
            assert result.agent_audio_seconds > 0
            assert played
            assert b.statistics().calls_total == 1
            assert b.get_call(call.call_id) is None
    assert client_tasks() == []


async def test_offer_not_taken_serves_the_call_here(
    autojump_clock: trio.testing.MockClock,
) -> None:
    offers: list[CallOffer] = []
    served: list[int] = []
    with trio.fail_after(30):
        async with open_simulator(SimulatorConfig(), listen=False) as sim, open_client(sim) as c:

            @c.on(events.CALL_OFFERED)
            def offered(offer: CallOffer) -> None:
                assert sim.statistics().media_connections == 0
                offers.append(offer)

            @c.on(events.INCOMING_CALL)
            async def on_call(call: ActiveCall) -> None:
                served.append(sim.statistics().media_connections)
                await call.answer()

            simulated = await sim.place_call(CallerScript())
            result = await simulated.wait_result()
    assert served == [1]
    assert result.ended_by == "agent_close"
    assert not offers[0].handed_off
    assert offers[0].id == offers[0].call_id == simulated.call_id
    with pytest.raises(WSSCallStateError, match="only allowed inside the CALL_OFFERED"):
        offers[0].to_json()


async def test_an_offer_handler_that_raises_leaves_the_call_here(
    autojump_clock: trio.testing.MockClock,
) -> None:
    errors: list[BaseException] = []
    served: list[str] = []
    with trio.fail_after(30):
        async with (
            open_simulator(SimulatorConfig(), listen=False) as sim,
            TelcoflowClient(
                client_config(sim),
                open_stream=Opener(sim),
                on_handler_error=lambda call, exc: errors.append(exc),
            ) as c,
        ):

            @c.on(events.CALL_OFFERED)
            def offered(offer: CallOffer) -> None:
                offer.to_json()
                raise OSError("the queue is gone")

            @c.on(events.INCOMING_CALL)
            def on_call(call: ActiveCall) -> None:
                served.append(call.call_id)

            simulated = await sim.place_call(CallerScript())
            await simulated.wait_result()
            await trio.sleep(0.1)
            assert c.statistics().handler_errors == 1
    assert served == [simulated.call_id]
    assert [type(e) for e in errors] == [OSError]


async def test_a_used_or_expired_token_is_refused_at_the_adopter(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(60):
        async with (
            open_simulator(SimulatorConfig(token_ttl=5), listen=False) as sim,
            open_handing_off(sim) as (_, documents),
            open_client(sim) as b,
            open_client(sim) as c,
        ):
            simulated = await sim.place_call(CallerScript())
            document = await documents.receive()
            first = await b.adopt_call(document, handler=hold)
            with pytest.raises(ValueError, match="already handled by this client"):
                await b.adopt_call(document, handler=hold)
            with pytest.raises(WSSCallError, match="already used") as caught:
                await c.adopt_call(document, handler=hold)
            assert caught.value.__cause__ is not None
            token = json.loads(document)["session_token"]
            assert token not in f"{caught.value} {caught.value.__cause__} {first!r}"
            assert c.statistics().calls_failed == 1
            assert c.statistics().calls_active == 0
            await simulated.hang_up()
            assert (await first.wait_terminated()).reason is TerminationReason.CALLER_HANGUP
            with pytest.raises(WSSCallError, match="no such call"):
                await c.adopt_call(document, handler=hold)

            late = await sim.place_call(CallerScript())
            late_document = await documents.receive()
            await trio.sleep(6)
            with pytest.raises(WSSCallError, match="expired"):
                await b.adopt_call(late_document, handler=hold)
            await late.hang_up()


async def test_the_token_is_revoked_when_the_claimant_leaves_before_media(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(30):
        async with open_simulator(SimulatorConfig(), listen=False) as sim, open_client(sim) as b:
            async with open_handing_off(sim) as (_, documents):
                simulated = await sim.place_call(CallerScript())
                document = await documents.receive()
            # The claiming client closed: the simulator offers the call again.
            with pytest.raises(WSSCallError, match="invalid or revoked"):
                await b.adopt_call(document, handler=hold)
            assert simulated.state is CallState.PENDING
            await simulated.hang_up()


async def test_shutdown_ends_adopted_calls_and_offers_in_progress(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with trio.fail_after(30):
        async with open_simulator(SimulatorConfig(), listen=False) as sim:
            async with open_handing_off(sim) as (_, documents):
                simulated = await sim.place_call(CallerScript())
                document = await documents.receive()
                async with open_client(sim) as b:
                    call = await b.adopt_call(document, handler=hold)
                assert call.termination is not None
                assert call.termination.reason is TerminationReason.CLIENT_SHUTDOWN
                assert (await simulated.wait_result()).ended_by == "agent_close"

            # The client closes while its CALL_OFFERED handler still decides.
            async with open_client(sim) as slow:
                deciding = trio.Event()

                @slow.on(events.CALL_OFFERED)
                async def offered(offer: CallOffer) -> None:
                    deciding.set()
                    await trio.sleep_forever()

                slow.on(events.INCOMING_CALL)(hold)
                ringing = await sim.place_call(CallerScript())
                await deciding.wait()
            assert slow.statistics().calls_ended == {"client_shutdown": 1}
            await ringing.hang_up()
    assert client_tasks() == []


async def test_adopt_call_refuses_bad_use(autojump_clock: trio.testing.MockClock) -> None:
    async with open_simulator(SimulatorConfig(), listen=False) as sim:
        client = TelcoflowClient(client_config(sim), open_stream=Opener(sim))
        document = proto.encode_handoff(proto.CallIn("s", "c", "", "", "ws://h/m", "t" * 40))
        with pytest.raises(RuntimeError, match="async with"):
            await client.adopt_call(document, handler=hold)
        async with client:
            with pytest.raises(ValueError, match="needs handler="):
                await client.adopt_call(document)
            with pytest.raises(ValueError, match="'channel' must be 'TELCO'"):
                await client.adopt_call({**json.loads(document), "channel": "WA"})
            isolated = {**json.loads(document), "audio_mode": "isolated"}
            with pytest.raises(ValueError, match="call c has audio_mode 'isolated'"):
                await client.adopt_call(isolated, handler=hold)
            register = client.on(events.CALL_OFFERED)
            register(print)
            with pytest.raises(ValueError, match=r"a handler for call\.offered is already"):
                register(print)


def test_offer_repr_hides_the_token() -> None:
    call_in = proto.CallIn("s", "call-1", "+1", "+2", "ws://h/m", "s3cr3t-token")
    offer = CallOffer(call_in, 16000, "mixed")
    document = offer.to_json()
    assert "s3cr3t-token" in document
    assert "s3cr3t-token" not in repr(offer)
    assert repr(offer) == "<CallOffer call-1 handed off>"
