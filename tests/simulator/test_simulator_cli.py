"""The ``simulate`` and ``call`` command-line front ends (over loopback, real clock, quick)."""

from __future__ import annotations

import argparse
import io
import json
import socket
from functools import partial
from pathlib import Path

import pytest
import trio

from telcoflow_trio.simulator import JsonLinesFrameLog, open_simulator, tone
from telcoflow_trio.simulator.__main__ import main as module_main
from telcoflow_trio.simulator._audio import write_wav
from telcoflow_trio.simulator._cli import (
    add_call_arguments,
    add_simulate_arguments,
    call_main,
    run_call,
    run_simulate,
    simulate_main,
)

from .simclient import open_control, open_media


def simulate_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_simulate_arguments(parser)
    return parser.parse_args(list(argv))


def call_args(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_call_arguments(parser)
    return parser.parse_args(list(argv))


async def test_simulate_console() -> None:
    args = simulate_args("--port", "0", "--api-key", "k", "--connector-uuid", "u")
    send, receive = trio.open_memory_channel[str](10)
    out, frames = io.StringIO(), io.StringIO()
    commands = [
        "help",
        "call tone 300 hangup=5 from=+1 to=+2",
        "calls",
        "stall-pings on",
        "delay-responses 0.5",
        "slow-pulls 2",
        "drop-media #1",
        "bogus",
        "call wav /no/such/file.wav",
        "hangup #1",
        "hangup #7",
        "stats",
        "quit",
    ]
    async with trio.open_nursery() as nursery:
        sim = await nursery.start(
            partial(
                run_simulate,
                args,
                out=out,
                read_line=receive.receive,
                frame_log=JsonLinesFrameLog(frames),
            )
        )
        assert (sim.api_key, sim.connector_uuid) == ("k", "u")
        async with open_control(sim, open_stream=None):
            for line in commands:
                await send.send(line + "\n")
    text = out.getvalue()
    assert f"simulator listening on {sim.base_url}" in text
    assert "place a call" in text  # help
    assert "#1 placed +1 -> +2" in text
    assert "#1 PENDING" in text  # calls
    assert "ok: stall-pings on" in text
    assert "has no media connection" in text
    assert "error: unknown command 'bogus'" in text
    assert "error: [Errno 2]" in text
    assert "#1 ended by caller_hangup" in text
    assert "error: no call #7" in text
    assert "SimulatorStatistics(control_connections=1" in text
    assert (sim.faults.pings_stalled, sim.faults.response_delay) == (True, 0.5)
    assert sim.faults.pull_rate == 0.5
    logged = [json.loads(line) for line in frames.getvalue().splitlines()]
    assert any("session.notify" in r.get("text", "") for r in logged)


async def test_call_softphone(tmp_path: Path) -> None:
    write_wav(tmp_path / "in.wav", next(tone(440).frames(16000, 8000)), 16000)
    out = io.StringIO()

    async def agent(sim: object) -> None:
        async with open_control(sim, open_stream=None) as control:  # type: ignore[arg-type]
            call_in = await control.claim()
            async with open_media(sim, call_in, open_stream=None) as media:  # type: ignore[arg-type]
                assert (await media.command("call.answer")).success
                await media.say(bytes(3200))
                await media.wait_closed()

    async with open_simulator(listen=True) as sim, trio.open_nursery() as nursery:
        nursery.start_soon(agent, sim)
        args = call_args(
            "--server",
            sim.base_url,
            "--wav",
            str(tmp_path / "in.wav"),
            "--record",
            str(tmp_path / "out.wav"),
            "--hangup-after",
            "0.3",
        )
        result = await run_call(args, out=out)
    assert result["endedBy"] == "caller_hangup"
    assert result["agentAudioSeconds"] == pytest.approx(0.1)
    assert "ANSWERED (16000 Hz)" in out.getvalue()
    assert (tmp_path / "out.wav").stat().st_size > 3200


def test_command_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        assert simulate_main(simulate_args("--port", port, "--no-console")) == 1
        assert "telcoflow-trio simulate:" in capsys.readouterr().err
    with socket.socket() as free:
        free.bind(("127.0.0.1", 0))
        port = str(free.getsockname()[1])
    assert call_main(call_args("--server", f"ws://127.0.0.1:{port}")) == 1
    assert "telcoflow-trio call:" in capsys.readouterr().err
    assert simulate_main(simulate_args("--tls-key", "k.pem")) == 1
    assert "tls_cert and tls_key go together" in capsys.readouterr().err


def test_module_entry_point_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        module_main(["--help"])
    assert info.value.code == 0
    assert "--connector-uuid" in capsys.readouterr().out
