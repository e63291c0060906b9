"""The platform side of the client benchmarks: our simulator in its own process.

It listens on ``--port`` and prints ``READY``. Then it reads commands, one per
line, from standard input:

* ``calls N`` (media): places N calls (spread over ``--ramp`` seconds) whose
  callers talk a 440 Hz tone at real time and hang up after the window. Prints
  ``WINDOW_START`` once every call has been answered plus ``--warmup``,
  ``WINDOW_END`` after ``--duration``, then ``RESULT {json}`` when the calls
  have ended: answers, underruns, agent vs caller audio, and the monotonic time
  each ``call.in`` was sent (to measure call.in -> handler in the agent).
* ``setup N K`` (control plane): places N calls, at most K ringing at once; each
  caller hangs up 0.2 s after the answer. ``RESULT`` has the answered calls per second.
* ``drop`` / ``stall``: drops every control connection, or stops answering
  control pings (a dead peer that keeps TCP open); ``RESULT`` has how long until
  the client opened a new control connection and until it answered a new call.
* ``quit``.

Every wait here is bounded; the process ends on ``quit`` or end of input.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable

import attrs
import trio

from telcoflow_trio.proto import CallState
from telcoflow_trio.simulator import CallerScript, SimulatorConfig, open_simulator, silence, tone

LIVE = (CallState.ANSWERED, CallState.CONNECTED)


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class CallInLog:
    """A frame log that keeps only when each ``call.in`` went out (by ``clock``)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.sent: dict[str, float] = {}
        self.clock = clock

    def __call__(self, connection: str, direction: str, frame: str | bytes) -> None:
        if direction == "out" and type(frame) is str and '"call.in"' in frame:
            self.sent[json.loads(frame)["callId"]] = self.clock()


async def media(sim, log: CallInLog, n: int, args: argparse.Namespace) -> dict[str, object]:
    # A safety net: the calls are hung up right after the window.
    hangup = n / args.arrivals + args.ramp + 15 + args.warmup + args.duration
    script = CallerScript(audio=tone(440), hangup_after=hangup)
    calls = []
    ramp = max(args.ramp, n / args.arrivals)  # calls arrive at most --arrivals per second
    for _ in range(n):
        calls.append(await sim.place_call(script))
        await trio.sleep(ramp / n)
    deadline = trio.current_time() + 15
    answered = 0
    while trio.current_time() < deadline:
        answered = sum(1 for c in calls if c.state in LIVE)
        if answered == n:
            break
        await trio.sleep(0.05)
    ok = answered == n
    if ok:
        await trio.sleep(args.warmup)
        say("WINDOW_START")
        await trio.sleep(args.duration)
        say("WINDOW_END")
    for c in calls:
        await c.hang_up()
    results = []
    with trio.move_on_after(15):
        results = [await c.wait_result() for c in calls]
    expected = sum(r.caller_audio_seconds for r in results)
    return {
        "calls": n,
        "answered": answered,
        "all_answered": ok,
        "underruns": sum(r.underruns for r in results),
        "calls_with_underruns": sum(1 for r in results if r.underruns),
        "caller_audio_seconds": round(expected, 2),
        "agent_audio_seconds": round(sum(r.agent_audio_seconds for r in results), 2),
        "ended_by": dict(statistics_counts(r.ended_by for r in results)),
        "call_in_sent": {r.call_id: log.sent.get(r.call_id) for r in results},
        "simulator": attrs.asdict(sim.statistics()),
    }


def statistics_counts(values) -> dict[str, int]:
    counts: dict[str, int] = {}
    for v in values:
        counts[v] = counts.get(v, 0) + 1
    return counts


async def serving_again(sim, since: float, total_before: int) -> dict[str, object]:
    """After a fault at ``since`` (monotonic): when the client reconnected and answered a call."""
    reconnected = answered = None
    deadline = trio.current_time() + 90
    while trio.current_time() < deadline:
        if sim.statistics().control_connections_total > total_before:
            reconnected = time.monotonic() - since
            break
        await trio.sleep(0.01)
    if reconnected is not None:
        call = await sim.place_call(CallerScript(audio=silence(), hangup_after=0.5))
        with trio.move_on_after(30):
            while call.state not in LIVE and not call.ended:  # noqa: ASYNC110
                await trio.sleep(0.005)
        if call.state in LIVE:
            answered = time.monotonic() - since
        await call.hang_up()
    return {
        "reconnected_after": None if reconnected is None else round(reconnected, 3),
        "answering_after": None if answered is None else round(answered, 3),
    }


async def setup_rate(sim, n: int, in_flight: int) -> dict[str, object]:
    """N calls, at most ``in_flight`` ringing at once; each caller hangs up 0.2 s after the answer.

    Closed loop, so a client that bounds its concurrent claims (ours: 64) or its
    event bus (the SDK: about 50 calls) is measured at its rate, not flooded.
    """
    script = CallerScript(audio=silence(), hangup_after=0.2)
    gate = trio.Semaphore(in_flight)
    latencies: list[float] = []
    unanswered: list[object] = []

    async def one() -> None:
        async with gate:
            call = await sim.place_call(script)
            with trio.move_on_after(10):
                while call.state not in LIVE and not call.ended:  # noqa: ASYNC110
                    await trio.sleep(0.001)
            if call.state in LIVE:
                latencies.append(trio.current_time() - call.placed_at)
            else:
                unanswered.append(call)
                await call.hang_up()

    start = trio.current_time()
    with trio.move_on_after(120):
        async with trio.open_nursery() as nursery:
            for _ in range(n):
                nursery.start_soon(one)
    took = trio.current_time() - start
    return {
        "calls": n,
        "in_flight": in_flight,
        "answered": len(latencies),
        "seconds": round(took, 3),
        "calls_per_second": round(len(latencies) / took, 1) if took else None,
        "answer_p50_ms": round(statistics.median(latencies) * 1000, 2) if latencies else None,
    }


async def main(args: argparse.Namespace) -> None:
    log = CallInLog()
    config = SimulatorConfig(underrun_max_gap=0.2, transport=args.transport)
    async with open_simulator(config, listen=True, port=args.port, frame_log=log) as sim:
        say("READY")
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if not line or line.strip() == "quit":
                return
            cmd, *rest = line.split()
            if cmd == "calls":
                say("RESULT " + json.dumps(await media(sim, log, int(rest[0]), args)))
            elif cmd == "setup":
                say("RESULT " + json.dumps(await setup_rate(sim, int(rest[0]), int(rest[1]))))
            elif cmd == "drop":
                before = sim.statistics().control_connections_total
                at = time.monotonic()
                sim.faults.drop_control()
                say("RESULT " + json.dumps(await serving_again(sim, at, before)))
            elif cmd == "stall":
                before = sim.statistics().control_connections_total
                at = time.monotonic()
                sim.faults.stall_pings(True)
                try:
                    result = await serving_again(sim, at, before)
                finally:
                    sim.faults.stall_pings(False)
                say("RESULT " + json.dumps(result))
            else:
                say("RESULT " + json.dumps({"error": f"unknown command {cmd!r}"}))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--ramp", type=float, default=1.0)
    parser.add_argument("--arrivals", type=float, default=50.0, help="most new calls per second")
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=4.0)
    parser.add_argument("--transport", choices=("trio-websocket", "lean"), default="lean")
    trio.run(main, parser.parse_args())
