"""The simulator's WhatsApp side for operators: console commands, ``telcoflow-trio wa``."""

from __future__ import annotations

import argparse
import io
import socket
from functools import partial

import pytest
import trio

from telcoflow_trio import IncomingMessage, TelcoflowClient, TelcoflowClientConfig, events
from telcoflow_trio.simulator import SimulatorConfig, open_simulator
from telcoflow_trio.simulator._cli import add_wa_arguments, run_simulate, run_wa, wa_main

from .test_simulator_cli import simulate_args


def wa_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_wa_arguments(parser)
    return parser.parse_args(list(argv))


def echo_client(sim: object) -> TelcoflowClient:
    config = TelcoflowClientConfig.sandbox(
        sim.api_key,  # type: ignore[attr-defined]
        sim.connector_uuid,  # type: ignore[attr-defined]
        base_url=sim.base_url,  # type: ignore[attr-defined]
    )
    client = TelcoflowClient(config)

    @client.on(events.INCOMING_MESSAGE)
    async def echo(message: IncomingMessage) -> None:
        await message.session.send_message({"type": "text", "text": message.content["text"]})

    return client


@pytest.mark.parametrize("transport", ["lean", "trio-websocket"])
async def test_wa_command_gets_the_agents_reply(transport: str) -> None:
    out = io.StringIO()
    config = SimulatorConfig(transport=transport)
    with trio.fail_after(20):
        async with open_simulator(config, listen=True) as sim, echo_client(sim):
            args = wa_args("--server", sim.base_url, "--from", "+15550142", "hello agent")
            result = await run_wa(args, out=out)
            assert result["replies"] == [{"type": "text", "text": {"body": "hello agent"}}]
            session = sim.wa.find("+15550142")
            assert session is not None
            assert result["sessionId"] == session.session_id
            bad = wa_args("--server", sim.base_url, "--from", "nobody", "--wait", "0", "x")
            with pytest.raises(Exception, match="INVALID_REQUEST: not a phone number"):
                await run_wa(bad, out=out)
    assert 'agent: {"type": "text"' in out.getvalue()


def test_wa_command_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = str(free.getsockname()[1])
    assert wa_main(wa_args("--server", f"ws://127.0.0.1:{port}", "hi")) == 1
    err = capsys.readouterr().err
    assert err.startswith("telcoflow-trio wa: could not reach")
    assert err.count("\n") == 1


async def test_console_wa_commands() -> None:
    args = simulate_args("--port", "0", "--api-key", "key-123456", "--connector-uuid", "u")
    # Unbuffered: a send returns once the console has finished the line before.
    send, receive = trio.open_memory_channel[str](0)
    out = io.StringIO()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            sim = await nursery.start(
                partial(run_simulate, args, out=out, read_line=receive.receive)
            )
            async with echo_client(sim):
                await send.send("wa +15550177 hi there\n")
                await send.send("calls\n")
                session = sim.wa.find("+15550177")
                assert session is not None
                await session.wait_received(1)
                for line in (
                    "wa-received +15550177",
                    "wa-fail OVERFLOW",
                    "wa-fail BOGUS",
                    "wa-delay 0.5",
                    "rest-fail 503",
                    "wa-close +15550177",
                    "wa-received +15550177",
                    "quit",
                ):
                    await send.send(line + "\n")
    text = out.getvalue()
    assert "WhatsApp +15550177 -> agent (session" in text
    assert '{"type": "text", "text": {"body": "hi there"}}' in text
    assert "ok: wa-fail OVERFLOW" in text
    assert "error: 'BOGUS' is not one of" in text
    assert "error: no open WhatsApp session with +15550177" in text
    assert (sim.faults.wa_error, sim.faults.wa_ack_delay, sim.faults.rest_status) == (
        "OVERFLOW",
        0.5,
        503,
    )
    assert session.state == "CLOSED"
