"""The platform side of ``bench_scale.py``: our simulator in its own process.

It listens on ``--port`` and prints ``READY``, then reads commands, one per
line, from standard input, and answers each with ``RESULT {json}``:

* ``place N``: places N calls, at most ``--arrivals`` per second, whose callers
  talk a 440 Hz tone at real time until hung up (``--hold-limit`` at most);
  answers once every call is answered (or after 30 s): their ids, how many were
  answered, and each one's claim latency, from the offer (``session.notify``)
  to the ``call.in`` that the winning worker's ``session.ready`` brought.
* ``hangup all`` or ``hangup ID,ID,...``: the callers hang up; answers once
  those calls have ended (30 s at most) with how each went.
* ``ended ID,ID,...``: answers once those calls have ended (30 s at most) with
  how each went, without hanging up; ``live`` counts the other calls still up.
* ``stats``: the simulator's statistics. ``quit``.

Every wait here is bounded; the process ends on ``quit`` or end of input.
"""

from __future__ import annotations

import argparse
import json
import sys

import attrs
import trio
from sim_driver import LIVE, CallInLog, say

from telcoflow_trio.simulator import (
    CallerScript,
    SimulatedCall,
    Simulator,
    SimulatorConfig,
    open_simulator,
    tone,
)

WAIT = 30.0  # seconds, for any one command


def outcome(call: SimulatedCall) -> dict[str, object] | None:
    r = call.result
    if r is None:
        return None
    return {
        "ended_by": r.ended_by,
        "reason": r.termination_reason,
        "underruns": r.underruns,
        "caller_s": round(r.caller_audio_seconds, 2),
        "agent_s": round(r.agent_audio_seconds, 2),
    }


class Driver:
    def __init__(self, sim: Simulator, log: CallInLog, args: argparse.Namespace) -> None:
        self.sim = sim
        self.log = log
        self.args = args
        self.calls: dict[str, SimulatedCall] = {}

    def pick(self, text: str) -> list[SimulatedCall]:
        if text == "all":
            return [c for c in self.calls.values() if not c.ended]
        return [self.calls[i] for i in text.split(",") if i]

    async def place(self, n: int) -> dict[str, object]:
        script = CallerScript(audio=tone(440), hangup_after=self.args.hold_limit)
        placed = []
        for _ in range(n):
            call = await self.sim.place_call(script)
            self.calls[call.call_id] = call
            placed.append(call)
            await trio.sleep(1 / self.args.arrivals)
        with trio.move_on_after(WAIT):
            for call in placed:
                while call.state not in LIVE and not call.ended:  # noqa: ASYNC110
                    await trio.sleep(0.01)
        claim = {
            c.call_id: round((self.log.sent[c.call_id] - c.placed_at) * 1000, 2)
            for c in placed
            if c.call_id in self.log.sent
        }
        return {
            "ids": [c.call_id for c in placed],
            "answered": sum(1 for c in placed if c.state in LIVE),
            "claim_ms": claim,
        }

    async def ended(self, calls: list[SimulatedCall]) -> dict[str, object]:
        with trio.move_on_after(WAIT):
            for call in calls:
                await call.wait_result()
        chosen = {c.call_id for c in calls}
        return {
            "calls": {c.call_id: outcome(c) for c in calls},
            "live": sum(1 for c in self.calls.values() if c.call_id not in chosen and not c.ended),
        }

    async def hang_up(self, calls: list[SimulatedCall]) -> dict[str, object]:
        for call in calls:
            await call.hang_up()
        return await self.ended(calls)

    async def command(self, cmd: str, rest: list[str]) -> object:
        if cmd == "place":
            return await self.place(int(rest[0]))
        if cmd == "hangup":
            return await self.hang_up(self.pick(rest[0]))
        if cmd == "ended":
            return await self.ended(self.pick(rest[0]))
        if cmd == "stats":
            return attrs.asdict(self.sim.statistics())
        return {"error": f"unknown command {cmd!r}"}


async def main(args: argparse.Namespace) -> None:
    log = CallInLog(trio.current_time)  # the clock of SimulatedCall.placed_at
    config = SimulatorConfig(underrun_max_gap=0.2, max_finished_calls=10_000)
    async with open_simulator(config, listen=True, port=args.port, frame_log=log) as sim:
        driver = Driver(sim, log, args)
        say("READY")
        while True:
            line = await trio.to_thread.run_sync(sys.stdin.readline)
            if not line or line.strip() == "quit":
                return
            cmd, *rest = line.split()
            say("RESULT " + json.dumps(await driver.command(cmd, rest)))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--arrivals", type=float, default=40.0, help="most new calls per second")
    parser.add_argument(
        "--hold-limit", type=float, default=300.0, help="callers hang up after this at most (s)"
    )
    trio.run(main, parser.parse_args())
