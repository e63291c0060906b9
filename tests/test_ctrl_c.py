"""Ctrl+C (a real SIGINT) stops every command cleanly: exit 130, one line, no traceback.

Each command runs as ``python -m telcoflow_trio`` in a subprocess, on the real clock
and loopback sockets; the signal is sent once the command has printed a line
saying how far it got, never after a sleep.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from functools import partial
from pathlib import Path

import pytest
import trio

import telcoflow_trio
from telcoflow_trio._command import run_command
from telcoflow_trio.simulator import open_simulator

pytestmark = pytest.mark.skipif(sys.platform == "win32", reason="SIGINT cannot be sent there")

ROOT = Path(telcoflow_trio.__file__).parents[1]  # this telcoflow_trio, not another


async def _read_until(stream: trio.abc.ReceiveStream, seen: bytearray, text: bytes) -> None:
    while text not in seen:
        chunk = await stream.receive_some()
        assert chunk, f"the command exited before printing {text!r}: {bytes(seen)!r}"
        seen += chunk


async def _read_all(stream: trio.abc.ReceiveStream, seen: bytearray) -> None:
    while chunk := await stream.receive_some():
        seen += chunk


async def interrupt(*argv: str, ready: list[bytes], stdin: bytes = b"") -> tuple[int, str]:
    """Run the command, send SIGINT once each text of ``ready`` was printed in turn,
    and return its exit status and stderr; ``stdin`` is sent after the first text."""
    command = [sys.executable, "-m", "telcoflow_trio", *argv]
    out, err = bytearray(), bytearray()
    with trio.fail_after(40):
        async with trio.open_nursery() as nursery:
            process: trio.Process = await nursery.start(
                partial(
                    trio.run_process,
                    command,
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.PIPE,
                    check=False,
                    cwd=ROOT,
                )
            )
            assert process.stdin is not None
            assert process.stdout is not None
            assert process.stderr is not None
            nursery.start_soon(_read_all, process.stderr, err)
            for number, text in enumerate(ready):
                await _read_until(process.stdout, out, text)
                if number == 0 and stdin:
                    await process.stdin.send_all(stdin)
            nursery.start_soon(_read_all, process.stdout, out)  # it must never block on a write
            process.send_signal(signal.SIGINT)
            status = await process.wait()
            nursery.cancel_scope.cancel()
    return status, err.decode()


@pytest.mark.parametrize(
    "ready",
    [
        pytest.param([b"simulator at "], id="agent-connecting"),
        pytest.param([b"placing 4 calls"], id="placing-calls"),
    ],
)
async def test_ctrl_c_stops_the_demo(ready: list[bytes], tmp_path: Path) -> None:
    status, err = await interrupt("demo", "--output", str(tmp_path), ready=ready)
    assert (status, err) == (130, "telcoflow-trio demo: interrupted\n")


async def test_ctrl_c_stops_simulate_with_a_call_in_progress() -> None:
    status, err = await interrupt(
        "simulate",
        "--port",
        "0",
        ready=[b"type 'help'", b" placed "],
        stdin=b"call tone 440 hangup=30\n",
    )
    assert (status, err) == (130, "telcoflow-trio simulate: interrupted\n")


async def test_ctrl_c_stops_a_call() -> None:
    async with open_simulator(listen=True) as sim:
        server = ["--server", sim.base_url, "--api-key", sim.api_key]
        argv = ["call", *server, "--connector-uuid", sim.connector_uuid]
        status, err = await interrupt(*argv, ready=[b"placed call "])
    assert (status, err) == (130, "telcoflow-trio call: interrupted\n")


def test_keyboard_interrupt_from_a_task_comes_out_bare() -> None:
    # As trio raises it for a SIGINT before the watcher listens: inside a nursery.
    async def interrupted_in_a_task() -> None:
        async def interrupt() -> None:
            raise KeyboardInterrupt

        async with trio.open_nursery() as nursery:
            nursery.start_soon(interrupt)
            await trio.sleep_forever()

    with pytest.raises(KeyboardInterrupt) as info:
        run_command("test", interrupted_in_a_task)
    assert type(info.value) is KeyboardInterrupt
    assert info.value.__suppress_context__  # no group in its traceback
