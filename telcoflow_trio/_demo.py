"""``telcoflow-trio demo``: the simulator, an agent and a few callers in one process.

The agent below is ordinary application code written against the public API; it
picks a flow by the number the caller dialled, as a real agent would pick by line.
The callers are simulator scripts. The demo checks that every call ended the way
its flow should and exits non-zero otherwise.
"""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import attrs
import trio

from . import ActiveCall, TelcoflowClient, TelcoflowClientConfig, events
from .exceptions import WSSCallClosedError, WSSCallCommandError
from .simulator import CallerScript, CallResult, SimulatorConfig, noise, open_simulator, tone

__all__ = ["add_demo_arguments", "run_demo"]


def beep(sample_rate: int, seconds: float, hz: float) -> bytes:
    """A sine tone as PCM16LE, the agent's stand-in for speech."""
    n = int(sample_rate * seconds)
    step = 2 * math.pi * hz / sample_rate
    return b"".join(
        int(8000 * math.sin(step * i)).to_bytes(2, "little", signed=True) for i in range(n)
    )


# -- the agent --------------------------------------------------------------------------


async def echo_line(call: ActiveCall) -> None:
    """Answer and play the caller back to themselves until they hang up."""
    await call.answer()
    async for chunk in call.audio_stream():
        call.send_audio(chunk)


async def transfer_line(call: ActiveCall) -> None:
    """Greet, try the callee, apologise when nobody answers, then end the call."""
    rate = call.sample_rate
    await call.answer()
    await call.write_audio(beep(rate, 0.6, 660))
    try:
        await call.connect(ring_time_seconds=3)
    except WSSCallCommandError as exc:
        if exc.error_code != "CALL_UNANSWERED":
            raise
        await call.write_audio(beep(rate, 0.6, 330))
        await call.wait_audio_sent()
        await trio.sleep(0.6)  # let the apology play out before hanging up
        await call.disconnect()


async def slow_line(call: ActiveCall) -> None:
    """Take a while to look the caller up; they may have hung up by then."""
    await trio.sleep(2.0)
    try:
        await call.answer()
    except WSSCallClosedError:
        return  # the caller gave up while ringing: nothing to do
    await call.disconnect()


async def coaching_line(call: ActiveCall) -> None:
    """Bring in the callee, coach them privately, address both, then leave them to it."""
    rate = call.sample_rate
    await call.answer()
    await call.write_audio(beep(rate, 0.4, 660))
    await call.connect(ring_time_seconds=10)
    await call.whisper()
    await call.write_audio(beep(rate, 0.5, 880))  # only the callee hears this
    await call.wait_audio_sent()
    await call.barge()
    await call.write_audio(beep(rate, 0.5, 440))  # both hear this
    await call.wait_audio_sent()
    await trio.sleep(0.5)
    await call.close()  # the agent leaves; caller and callee stay connected


@attrs.frozen
class Flow:
    name: str
    line: str
    agent: Callable[[ActiveCall], Any]
    script: Callable[[Path], CallerScript]
    #: How the simulator must see the call end.
    expect_ended_by: str


FLOWS = (
    Flow(
        "echo",
        "+18005550100",
        echo_line,
        lambda rec: CallerScript(tone(440), talk_for=3.0, hangup_after=4.0, record_dir=rec),
        "caller_hangup",
    ),
    Flow(
        "unanswered connect",
        "+18005550101",
        transfer_line,
        lambda rec: CallerScript(
            noise(7), talk_for=1.0, callee_answers_after=None, record_dir=rec
        ),
        "agent_disconnect",
    ),
    Flow(
        "early hang-up",
        "+18005550102",
        slow_line,
        lambda rec: CallerScript(hangup_before_answer_after=1.0, record_dir=rec),
        "caller_hangup",
    ),
    Flow(
        "whisper / barge",
        "+18005550103",
        coaching_line,
        lambda rec: CallerScript(
            tone(520), talk_for=2.0, callee_answers_after=1.0, hangup_after=6.0, record_dir=rec
        ),
        "agent_close",
    ),
)
_BY_LINE = {flow.line: flow for flow in FLOWS}


async def demo_agent(call: ActiveCall) -> None:
    """The demo's INCOMING_CALL handler: route by the dialled number."""
    await _BY_LINE[call.callee_number].agent(call)


# -- the show -------------------------------------------------------------------------


@attrs.define
class Row:
    index: int
    flow: Flow
    call: ActiveCall | None = None
    result: CallResult | None = None
    error: str | None = None

    @property
    def ok(self) -> bool:
        return (
            self.error is None
            and self.result is not None
            and self.result.ended_by == self.flow.expect_ended_by
        )

    def cells(self, sample_rate: int) -> list[str]:
        bytes_per_second = sample_rate * 2
        state = "ringing"
        sent = received = 0.0
        latency = "-"
        if self.call is not None:
            stats = self.call.statistics()
            state = str(stats.state)
            sent = stats.bytes_sent / bytes_per_second
            received = stats.bytes_received / bytes_per_second
            if stats.command_latencies:
                name, seconds = stats.command_latencies[-1]
                latency = f"{name} {seconds * 1000:.0f} ms"
        outcome = "..."
        if self.result is not None:
            outcome = self.result.ended_by + ("" if self.ok else " (unexpected)")
        if self.error:
            outcome = self.error
        return [
            str(self.index),
            self.flow.name,
            state,
            f"{received:5.1f} s",
            f"{sent:5.1f} s",
            latency,
            outcome,
        ]


HEADERS = ["#", "flow", "agent state", "caller audio", "agent audio", "last command", "ended by"]


def _plain_table(rows: list[list[str]]) -> str:
    widths = [max(len(r[i]) for r in [HEADERS, *rows]) for i in range(len(HEADERS))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    header = "  ".join(h.ljust(w) for h, w in zip(HEADERS, widths, strict=True))
    return "\n".join([header, "-" * len(header), *lines])


async def _render_live(rows: list[Row], rate: int, out: IO[str], done: trio.Event) -> None:
    """Redraw the table in place on a terminal; print nothing live otherwise."""
    if not out.isatty():
        await done.wait()
        return
    drawn = 0
    while True:
        text = _plain_table([row.cells(rate) for row in rows])
        if drawn:
            out.write(f"\x1b[{drawn}F\x1b[J")
        out.write(text + "\n")
        out.flush()
        drawn = text.count("\n") + 1
        if done.is_set():
            return
        with trio.move_on_after(0.25):
            await done.wait()


def _summary(rows: list[Row], rate: int, output: Path) -> str:
    lines = [_plain_table([row.cells(rate) for row in rows]), ""]
    for row in rows:
        result = row.result
        if result is None:
            continue
        first = result.first_agent_audio_after_answer
        first_text = "-" if first is None else f"{first * 1000:.0f} ms"
        commands = ", ".join(
            f"{c.name}={'ok' if c.success else c.error_code}" for c in result.commands
        )
        lines.append(
            f"call {row.index} ({row.flow.name}): {commands or 'no commands'}; first agent "
            f"audio after answer {first_text}; underruns {result.underruns}"
        )
    ok = sum(row.ok for row in rows)
    lines += ["", f"{ok}/{len(rows)} calls ended as expected; recordings in {output}/"]
    return "\n".join(lines)


async def run_demo(
    *,
    calls: int = 4,
    sample_rate: int = 24000,
    output: Path = Path("demo-output"),
    out: IO[str] = sys.stdout,
    listen: bool = True,
) -> int:
    """Run the demo; return the process exit status (0 when every call went as planned).

    ``listen=False`` keeps every connection in memory (for tests under ``MockClock``).
    """
    await trio.Path(output).mkdir(parents=True, exist_ok=True)
    rows = [Row(i + 1, FLOWS[i % len(FLOWS)]) for i in range(calls)]
    by_call: dict[str, Row] = {}
    failures: list[str] = []

    def on_handler_error(call: ActiveCall, exc: BaseException) -> None:
        row = by_call.get(call.call_id)
        if row is not None:
            row.error = f"agent error: {type(exc).__name__}: {exc}"
        failures.append(call.call_id)

    async with open_simulator(SimulatorConfig(), listen=listen) as sim:
        config = TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, sample_rate, base_url=sim.base_url
        )
        out.write(f"simulator at {sim.base_url}; agent connecting at {sample_rate} Hz\n")
        out.flush()
        open_stream = None if listen else sim.open_stream
        async with TelcoflowClient(
            config, open_stream=open_stream, on_handler_error=on_handler_error
        ) as client:

            @client.on(events.INCOMING_CALL)
            async def on_call(call: ActiveCall) -> None:
                row = next(r for r in rows if r.call is None and r.flow.line == call.callee_number)
                row.call = call
                by_call[call.call_id] = row
                await demo_agent(call)

            await client.wait_connected()
            out.write(f"agent connected; placing {calls} call{'s' * (calls != 1)}\n")
            out.flush()
            done = trio.Event()
            async with trio.open_nursery() as nursery:
                nursery.start_soon(_render_live, rows, sample_rate, out, done)
                async with trio.open_nursery() as calls_nursery:
                    for row in rows:
                        slug = "".join(c if c.isalnum() else "-" for c in row.flow.name)
                        folder = output / f"call-{row.index}-{slug}"
                        call = await sim.place_call(
                            row.flow.script(folder),
                            caller=f"+1555010{row.index:04d}",
                            callee=row.flow.line,
                        )
                        calls_nursery.start_soon(_collect, row, call.wait_result)
                        await trio.sleep(0.3)
                done.set()
    out.write("\n" + _summary(rows, sample_rate, output) + "\n")
    return 0 if all(row.ok for row in rows) and not failures else 1


async def _collect(row: Row, wait_result: Callable[[], Any]) -> None:
    with trio.move_on_after(40) as scope:
        row.result = await wait_result()
    if scope.cancelled_caught:
        row.error = "did not end within 40 s"


def add_demo_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--calls", type=int, default=4, help="number of calls (default 4)")
    parser.add_argument(
        "--sample-rate",
        type=int,
        default=24000,
        choices=(8000, 16000, 24000),
        help="audio sample rate in Hz (default 24000)",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=Path("demo-output"),
        help="folder for the WAV recordings (default ./demo-output)",
    )
