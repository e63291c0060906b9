"""WhatsApp sessions end to end: client <-> simulator in memory, under the autojump clock."""

from __future__ import annotations

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from telcoflow_trio import ChannelType, IncomingMessage, MessageErrorCode, events
from telcoflow_trio._session import _OFFERS_KEPT
from telcoflow_trio.exceptions import (
    WrongChannelError,
    WSSChannelNotConfigured,
    WSSMessageError,
    WSSQuotaExceeded,
    WSSSessionError,
)
from telcoflow_trio.simulator import SimulatorConfig

from .conftest import CREATE_REFUSALS, open_pair


async def test_create_send_receive_close(autojump_clock: MockClock) -> None:
    async with open_pair() as (sim, client, _):
        session = await client.create_session(ChannelType.WA, "+15550100")
        assert (session.channel, session.remote_address, session.created) == (
            "WA",
            "+15550100",
            True,
        )
        assert client.get_session(session.id) is session
        ack = await session.send_message({"type": "text", "text": {"body": "hello"}})
        assert ack["status"] == "accepted"
        user = sim.wa.get(session.id)
        assert user is not None
        assert user.initiator == "SDK"
        (got,) = await user.wait_received(1)
        assert got.data == {"type": "text", "text": {"body": "hello"}}
        assert got.api_version == "v1"
        assert len(got.client_msg_id) == 36
        await sim.wa.send_from_user("+15550100", "hi back")
        with trio.fail_after(5):
            message = await session.receive_message()
        assert message.sender == "+15550100"
        assert message.session is session
        assert message.content == {"type": "text", "text": {"body": "hi back"}}
        await session.close()
        assert session.closed
        assert session.close_reason == "SDK_REQUEST"
        assert user.state == "CLOSED"
        assert client.get_session(session.id) is None
        # the iterator ends once the session is closed and read
        assert [m async for m in session.messages()] == []
        with pytest.raises(WSSMessageError) as info:
            await session.send_message({"text": "late"})
        assert info.value.error_code is MessageErrorCode.SESSION_NOT_OPEN


async def test_create_existing_session_is_claimed_again(
    autojump_clock: MockClock,
) -> None:
    async with open_pair() as (sim, client, _):
        first = await client.create_session("WA", "15550100")
        assert await client.create_session("WA", "15550100") is first
    async with open_pair() as (sim, client, _):
        await sim.wa.send_from_user("+15550111", "before")  # the user wrote first
        again = await client.create_session("WA", "+15550111")
        assert again.created is False
        with trio.fail_after(5):
            assert (await again.receive_message()).content["text"] == {"body": "before"}


@pytest.mark.parametrize("address", ["", "   ", "abc", "+12", "+1555010012345678", 15550100])
async def test_bad_address(address: object, autojump_clock: MockClock) -> None:
    async with open_pair() as (_, client, _):
        with pytest.raises(ValueError, match="remote_address"):
            await client.create_session(ChannelType.WA, address)  # type: ignore[arg-type]


async def test_unknown_channel(autojump_clock: MockClock) -> None:
    async with open_pair() as (_, client, _):
        with pytest.raises(ValueError, match="unknown channel 'SMS'"):
            await client.create_session("SMS", "+15550100")


@pytest.mark.parametrize(("code", "exc"), CREATE_REFUSALS)
async def test_server_refusals(
    code: str, exc: type[WSSSessionError], autojump_clock: MockClock
) -> None:
    async with open_pair() as (sim, client, _):
        sim.faults.refuse_creates(code, f"refused by an injected fault ({code})")
        with pytest.raises(exc, match=code) as info:
            await client.create_session(ChannelType.WA, "+15550100")
        assert type(info.value) is exc
        assert info.value.error_code == code
        assert info.value.error_content == {"message": f"refused by an injected fault ({code})"}


async def test_natural_refusals(autojump_clock: MockClock) -> None:
    async with open_pair(SimulatorConfig(wa_enabled=False)) as (_, client, _):
        with pytest.raises(WSSChannelNotConfigured, match="no WhatsApp channel"):
            await client.create_session(ChannelType.WA, "+15550100")
    async with open_pair(SimulatorConfig(max_wa_sessions=1)) as (_, client, _):
        await client.create_session(ChannelType.WA, "+15550100")
        with pytest.raises(WSSQuotaExceeded, match="1 WA sessions are open"):
            await client.create_session(ChannelType.WA, "+15550101")


async def test_send_message_on_telco_session_is_wrong_channel(
    autojump_clock: MockClock,
) -> None:
    async with open_pair() as (_sim, client, _):
        session = await client.create_session(ChannelType.WA, "+15550100")
        session.channel = ChannelType.TELCO  # as a TELCO session would be
        with pytest.raises(WrongChannelError, match="needs a WA session"):
            await session.send_message({"text": "x"})
        assert isinstance(WrongChannelError("x"), WSSSessionError)


@pytest.mark.parametrize("code", list(MessageErrorCode))
async def test_every_message_error_code(code: MessageErrorCode, autojump_clock: MockClock) -> None:
    async with open_pair() as (sim, client, _):
        session = await client.create_session(ChannelType.WA, "+15550100")
        sim.faults.fail_wa_messages(code)
        with pytest.raises(WSSMessageError, match=code.value) as info:
            await session.send_message({"text": "x"})
        assert info.value.error_code is code
        sim.faults.fail_wa_messages(None)
        await session.send_message({"text": "y"})


async def test_natural_message_errors(autojump_clock: MockClock) -> None:
    async with open_pair(SimulatorConfig(wa_max_unacked=1)) as (sim, client, _):
        session = await client.create_session(ChannelType.WA, "+15550100")
        with pytest.raises(WSSMessageError) as info:
            await session.send_message({})
        assert info.value.error_code is MessageErrorCode.INVALID_PAYLOAD
        sim.faults.delay_wa_acks(3)
        codes: list[object] = []

        async def send() -> None:
            try:
                await session.send_message({"text": "one"})
                codes.append("ok")
            except WSSMessageError as exc:
                codes.append(exc.error_code)

        t0 = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(send)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(send)
        assert sorted(map(str, codes)) == ["OVERFLOW", "ok"]
        assert trio.current_time() - t0 == pytest.approx(3)


async def test_session_closed_under_the_sender(autojump_clock: MockClock) -> None:
    async with open_pair() as (sim, client, _):
        session = await client.create_session(ChannelType.WA, "+15550100")
        sim.faults.delay_wa_acks(2)
        async with trio.open_nursery() as nursery:

            async def close_soon() -> None:
                await trio.sleep(1)
                sim.wa.close(session.id)

            nursery.start_soon(close_soon)
            with pytest.raises(WSSMessageError) as info:
                await session.send_message({"text": "x"})
        assert info.value.error_code is MessageErrorCode.SESSION_NOT_OPEN
        with trio.fail_after(5):
            await session.wait_closed()
        assert session.close_reason == "FORCE_CLOSE"
        assert sim.wa.get(session.id).received == type(sim.wa.get(session.id).received)()  # type: ignore[union-attr]


async def test_incoming_message_handler_claims_and_answers(
    autojump_clock: MockClock,
) -> None:
    async with open_pair() as (sim, client, _):
        seen: list[IncomingMessage] = []

        @client.on(events.INCOMING_MESSAGE)
        async def on_message(message: IncomingMessage) -> None:
            seen.append(message)
            if message.content["text"]["body"] == "boom":
                raise RuntimeError("handler bug")
            await message.session.send_message({"echo": message.content})

        user = await sim.wa.send_from_user("+15550123", "ping")
        with trio.fail_after(5):
            await user.wait_received(1)
            await sim.wa.send_from_user("+15550123", "boom")
            await sim.wa.send_from_user("+15550123", "pong")
            await user.wait_received(2)
        assert [m.content["text"]["body"] for m in seen] == ["ping", "boom", "pong"]
        assert [r.data["echo"]["text"]["body"] for r in user.received] == ["ping", "pong"]
        assert user.initiator == "CONNECTOR"
        assert client.statistics().handler_errors == 1
        with pytest.raises(ValueError, match="already registered"):
            client.on(events.INCOMING_MESSAGE)(on_message)


async def test_no_handler_no_claim(autojump_clock: MockClock) -> None:
    async with open_pair() as (sim, _client, _):
        user = await sim.wa.send_from_user("+15550123", "anyone?")
        await trio.sleep(1)
        assert not user.claimed


async def test_handler_registered_after_the_offer_claims_it(autojump_clock: MockClock) -> None:
    """Offers declined for lack of a handler are claimed when the handler comes, at once."""
    async with open_pair() as (sim, client, _):
        early = await sim.wa.send_from_user("+15550123", "anyone?")
        gone = await sim.wa.send_from_user("+15550124", "never mind")
        await trio.sleep(1)
        sim.wa.close(gone.session_id)  # closed before the handler came: not claimed
        await trio.sleep(1)
        assert not early.claimed
        seen: list[str] = []

        @client.on(events.INCOMING_MESSAGE)
        def on_message(message: IncomingMessage) -> None:
            seen.append(message.content["text"]["body"])

        t0 = trio.current_time()
        with trio.fail_after(5):
            await early.wait_claimed()
        assert trio.current_time() - t0 < 0.1  # not at the user's next message
        await trio.sleep(1)
        assert seen == ["anyone?"]
        assert client.get_session(gone.session_id) is None
        assert client._wa._offers == {}


async def test_offers_kept_without_a_handler_are_bounded(autojump_clock: MockClock) -> None:
    async with open_pair() as (sim, client, _):
        for n in range(_OFFERS_KEPT + 2):
            await sim.wa.send_from_user(f"+1555010{n:04d}", "hi")
        await trio.sleep(1)
        assert len(client._wa._offers) == _OFFERS_KEPT
        oldest = sim.wa.find("+15550100000")
        assert oldest is not None
        assert oldest.session_id not in client._wa._offers  # the oldest went first


async def test_sessions_claimed_again_after_reconnect(
    autojump_clock: MockClock,
) -> None:
    async with open_pair() as (sim, client, _):
        session = await client.create_session(ChannelType.WA, "+15550100")
        gone = await client.create_session(ChannelType.WA, "+15550101")
        sim.faults.drop_control()
        sim.wa.close(gone.id)  # closed while we were away: lost in the reconnect
        await sim.wa.send_from_user("+15550100", "while away")
        with trio.fail_after(30):
            message = await session.receive_message()
            await gone.wait_closed()
        assert message.content["text"]["body"] == "while away"
        assert client.statistics().reconnects == 1
        await session.send_message({"text": "still here"})
        assert len(sim.wa.get(session.id).received) == 1  # type: ignore[union-attr]


async def test_inbox_is_bounded(autojump_clock: MockClock) -> None:
    async with open_pair() as (sim, client, _):
        session = await client.create_session(ChannelType.WA, "+15550100")
        session._inbox = type(session._inbox)(maxlen=2)
        for n in range(3):
            await sim.wa.send_from_user("+15550100", str(n))
        await trio.sleep(1)
        assert session.messages_dropped == 1
        got = [(await session.receive_message()).content["text"]["body"] for _ in range(2)]
        assert got == ["1", "2"]


async def test_client_exit_ends_readers(autojump_clock: MockClock) -> None:
    async with open_pair() as (_sim, client, _):
        session = await client.create_session(ChannelType.WA, "+15550100")
    assert session.closed
    assert session.close_reason == "CLIENT_CLOSED"
    with pytest.raises(trio.EndOfChannel):
        await session.receive_message()


async def test_close_of_a_session_gone_on_the_platform_is_immediate(
    autojump_clock: MockClock,
) -> None:
    async with open_pair() as (sim, client, _):
        session = await client.create_session(ChannelType.WA, "+15550100")
        sim.wa._sessions.pop(session.id)  # the platform forgot it, without a word
        t0 = trio.current_time()
        await session.close()
        assert trio.current_time() == t0
        assert session.close_reason == "NOT_FOUND"
