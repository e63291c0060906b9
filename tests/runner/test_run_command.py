"""``python -m telcoflow_trio run`` end to end: real processes against a simulator on loopback.

Real clock: the runner and its workers are other processes. Every step waits
for a line the runner logs (or a call state the simulator sees), never for a
time, and every test is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import trio

from telcoflow_trio.simulator import (
    CallerScript,
    SimulatedCall,
    Simulator,
    SimulatorConfig,
    open_simulator,
    tone,
)
from telcoflow_trio.simulator._model import CallState

from .conftest import HERE

REPO = HERE.parent.parent
#: Not the simulator's default: the secrets scan looks for this one in every output.
API_KEY = "runner-test-key-7f3a9c"
BOUND = 25  # seconds, for a whole test


def environ(**extra: str) -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith("TELCOFLOW_")}
    return {**base, "PYTHONPATH": str(REPO), **extra}


class Run:
    """``python -m telcoflow_trio run ARGS`` in ``tests/runner``; its standard error, as lines."""

    def __init__(self, process: trio.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._buffer = b""

    @classmethod
    async def start(cls, *args: str, env: dict[str, str]) -> Run:
        process = await trio.lowlevel.open_process(
            [sys.executable, "-m", "telcoflow_trio", "run", *args],
            cwd=HERE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        return cls(process)

    async def _read(self) -> bool:
        assert self.process.stderr is not None
        chunk = await self.process.stderr.receive_some()
        if not chunk:
            return False
        self._buffer += chunk
        *lines, self._buffer = self._buffer.split(b"\n")
        self.lines += [line.decode() for line in lines]
        return True

    async def wait_for(self, pattern: str, since: int = 0) -> re.Match[str]:
        """The first line from line ``since`` on (read so far or to come) ``pattern`` matches."""
        seen = since
        while True:
            for line in self.lines[seen:]:
                if match := re.search(pattern, line):
                    return match
            seen = len(self.lines)
            if not await self._read():
                pytest.fail(f"no line matched {pattern!r}; output:\n" + "\n".join(self.lines))

    async def finish(self) -> int:
        """Read the rest of the output; the exit status."""
        while await self._read():
            pass
        return await self.process.wait()

    def signal(self, signum: int = signal.SIGTERM) -> None:
        self.process.send_signal(signum)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)


async def serve_with_two_workers(sim: Simulator, target: str, *options: str) -> Run:
    """``run TARGET --workers 2`` against ``sim`` (the key in the environment), once ready."""
    run = await Run.start(
        target,
        "--server", sim.base_url,
        "--connector-uuid", sim.connector_uuid,
        "--workers", "2",
        *options,
        env=environ(TELCOFLOW_API_KEY=sim.api_key),
    )  # fmt: skip
    await run.wait_for(r"all 2 workers ready")
    return run


async def answered_call(sim: Simulator) -> SimulatedCall:
    call = await sim.place_call(CallerScript(tone(440)))
    await call.wait_state(CallState.ANSWERED)
    return call


def children_command_lines(pid: int) -> list[str]:
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return [Path(f"/proc/{child}/cmdline").read_bytes().decode() for child in children]


async def http_get(port: int, path: str) -> tuple[int, str]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"GET {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some():
            data += chunk
    head, _, body = data.decode().partition("\r\n\r\n")
    return int(head.split()[1]), body


async def test_two_workers_take_calls_and_sigterm_lets_live_calls_end(
    tmp_path: Path, secret_scanner: object
) -> None:
    key_file = tmp_path / "key"
    key_file.write_text(API_KEY + "\n")
    config = SimulatorConfig(api_key=API_KEY)
    with trio.fail_after(BOUND):
        async with open_simulator(config, listen=True) as sim:
            run = await Run.start(
                "agent:on_call",
                "--server", sim.base_url,
                "--connector-uuid", sim.connector_uuid,
                "--api-key-file", str(key_file),
                "--workers", "2",
                "--max-calls", "2",
                "--metrics-port", "0",
                env=environ(),
            )  # fmt: skip
            await run.wait_for(r"all 2 workers ready")
            ports = [
                int((await run.wait_for(rf"worker {i} ready: .*127\.0\.0\.1:(\d+)/metrics"))[1])
                for i in range(2)
            ]
            # Workers take at most 2 calls each: 4 calls means both took calls.
            calls = [await answered_call(sim) for _ in range(4)]
            for port in ports:
                status, metrics = await http_get(port, "/metrics")
                assert status == 200
                assert "telcoflow_client_calls_active 2.0" in metrics
            # No secret on the workers' command lines (`ps`).
            for command_line in children_command_lines(run.process.pid):
                assert "telcoflow_trio.runner" in command_line
                assert API_KEY not in command_line

            run.signal(signal.SIGTERM)
            for i in range(2):
                await run.wait_for(rf"worker {i}: taking no new calls; 2 live call\(s\)")
            for call in calls:
                await call.hang_up()
            results = [await call.wait_result() for call in calls]
            assert await run.finish() == 0, run.output
    assert [r.ended_by for r in results] == ["caller_hangup"] * 4
    assert "drained: no live calls" in run.output
    secret_scanner.check(run.output, "run's output")  # type: ignore[attr-defined]


async def test_a_second_signal_ends_the_calls_at_once() -> None:
    with trio.fail_after(BOUND):
        async with open_simulator(listen=True) as sim:
            run = await serve_with_two_workers(sim, "agent:setup", "--drain-timeout", "600")
            call = await answered_call(sim)
            run.signal(signal.SIGINT)
            await run.wait_for(r"taking no new calls; 1 live call")
            run.signal(signal.SIGINT)
            assert await run.finish() == 130, run.output
            result = await call.wait_result()
    assert result.ended_by == "agent_close"  # ended by the worker, not left to the drain
    assert "second signal (SIGINT)" in run.output


async def test_one_worker_that_cannot_connect_exits_1_with_one_line() -> None:
    with trio.fail_after(BOUND):
        run = await Run.start(
            "agent:on_call",
            "--server", "ws://127.0.0.1:9",  # discard: closed on loopback
            "--connector-uuid", "c",
            env=environ(TELCOFLOW_API_KEY=API_KEY),
        )  # fmt: skip
        assert await run.finish() == 1
    assert re.search(r"worker 0 failed: .*127\.0\.0\.1:9", run.output), run.output
    assert "Traceback" not in run.output


async def test_workers_failing_at_start_up_give_up_with_a_clear_line() -> None:
    with trio.fail_after(BOUND):
        run = await Run.start(
            "agent:on_call",
            "--server", "ws://127.0.0.1:9",
            "--connector-uuid", "c",
            "--workers", "2",
            env=environ(TELCOFLOW_API_KEY=API_KEY),
        )  # fmt: skip
        assert await run.finish() == 1
    assert re.search(r"worker \d failed at start-up 3 times in a row .*; giving up", run.output)
    assert "Traceback" not in run.output


# The other bad inputs are checked in process (test_options.py): these show the
# real command's output is the one line and nothing else.
@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        (["nowhere:on_call", "--workers", "2"], {}, "cannot import 'nowhere'"),
        (["agent:on_call"], {"TELCOFLOW_API_KEY": None}, "no API key: set $TELCOFLOW_API_KEY"),
    ],
)  # fmt: skip
async def test_bad_input_is_one_line_and_exit_2(
    args: list[str], env: dict[str, str | None], message: str
) -> None:
    values = {"TELCOFLOW_API_KEY": API_KEY, "TELCOFLOW_CONNECTOR_UUID": "c", **env}
    with trio.fail_after(BOUND):
        run = await Run.start(
            *args, env=environ(**{k: v for k, v in values.items() if v is not None})
        )
        assert await run.finish() == 2
    assert run.lines == [f"telcoflow-trio run: {run.lines[0].partition(': ')[2]}"]
    assert message in run.output
    assert API_KEY not in run.output


async def test_workers_drain_when_the_supervisor_dies() -> None:
    with trio.fail_after(BOUND):
        async with open_simulator(listen=True) as sim:
            run = await serve_with_two_workers(sim, "agent:on_call")
            call = await answered_call(sim)
            run.signal(signal.SIGKILL)
            for i in range(2):
                await run.wait_for(rf"worker {i}: the supervisor is gone: draining")
            await run.wait_for(r"taking no new calls; 1 live call")
            await call.hang_up()
            # The workers hold the pipe too: it ends when both have exited.
            assert await run.finish() == -signal.SIGKILL
            result = await call.wait_result()
    assert result.ended_by == "caller_hangup"
    assert "worker 0: stopped" in run.output
    assert "worker 1: stopped" in run.output
