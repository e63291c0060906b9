"""open_memory_server: an in-memory far end for bridges, used as a user would."""

from __future__ import annotations

import ssl

import pytest
import trio
import trio.testing

from telcoflow_trio import ActiveCall
from telcoflow_trio.exceptions import (
    StreamBridgeError,
    WSSAuthenticationError,
    WSSConnectionClosed,
)
from telcoflow_trio.streams import bridge_call
from telcoflow_trio.testing import CallerScript, open_agent_test, open_memory_server, tone
from telcoflow_trio.ws._transport import WebSocket


async def test_agent_bridged_to_an_in_memory_voice_ai(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with open_memory_server() as voice_ai:  # it echoes

        async def agent(call: ActiveCall) -> None:
            await call.answer()
            await bridge_call(call, voice_ai.url + "/ai?lang=en", open_stream=voice_ai.open_stream)

        async with open_agent_test(agent, sample_rate=8000) as harness:
            report = await harness.place_call(
                CallerScript(audio=tone(440), talk_for=1.0, hangup_after=2.0)
            )
    report.assert_commands("call.answer")
    report.assert_ended_by("caller_hangup")
    report.assert_agent_audio(min_seconds=1.9, tone=440)
    assert voice_ai.paths == ["/ai?lang=en"]
    assert voice_ai.errors == []


async def test_handler_errors_close_1011_and_are_kept(
    autojump_clock: trio.testing.MockClock,
) -> None:
    async def picky(ws: WebSocket) -> None:
        if await ws.get_message() != "hello":
            raise ValueError("expected hello")
        await ws.send_message("hi " + ws.path)

    async with open_memory_server(picky) as server:
        async with server.connect("/greet") as ws:
            await ws.send_message("hello")
            assert await ws.get_message() == "hi /greet"
            with pytest.raises(WSSConnectionClosed) as closed:
                await ws.get_message()
            assert closed.value.code == 1000
        async with server.connect() as ws:
            await ws.send_message(b"garbage")
            with pytest.raises(WSSConnectionClosed) as closed:
                await ws.get_message()
            assert (closed.value.code, closed.value.reason) == (1011, "handler error")
        [error] = server.errors
        assert str(error) == "expected hello"
        assert server.active == 0


async def test_rejected_upgrades_fail_the_bridge(autojump_clock: trio.testing.MockClock) -> None:
    async with open_memory_server() as server:
        server.reject_with = 401
        with pytest.raises(WSSAuthenticationError, match="HTTP 401"):
            async with server.connect():
                pass

        async def agent(call: ActiveCall) -> None:
            await call.answer()
            with pytest.raises(StreamBridgeError) as failed:
                await bridge_call(call, server.url, open_stream=server.open_stream)
            raise failed.value

        async with open_agent_test(agent, raise_handler_errors=False) as harness:
            report = await harness.place_call()
        [error] = report.handler_errors
        assert isinstance(error, StreamBridgeError)
        assert isinstance(error.__cause__, WSSAuthenticationError)
        report.assert_commands("call.answer", "call.close")


async def test_tls_and_use_after_close_are_refused(autojump_clock: trio.testing.MockClock) -> None:
    async with open_memory_server() as server:
        with pytest.raises(ConnectionRefusedError, match="no TLS"):
            await server.open_stream("x", 443, ssl.create_default_context())
    with pytest.raises(ConnectionRefusedError, match="shut down"):
        await server.open_stream("x", 80, None)


async def test_leaving_the_block_cancels_handlers(autojump_clock: trio.testing.MockClock) -> None:
    async def slow(ws: WebSocket) -> None:
        await trio.sleep_forever()

    with trio.fail_after(5):
        async with open_memory_server(slow) as server, server.connect() as ws:
            await ws.send_message("anyone?")
            await trio.testing.wait_all_tasks_blocked()
            assert server.active == 1
    assert server.active == 0


async def test_the_tests_own_error_passes_unchanged(
    autojump_clock: trio.testing.MockClock,
) -> None:
    with pytest.raises(KeyError):
        async with open_memory_server():
            raise KeyError("mine")
