"""``run --workers 4`` under many calls: spread, drain of one worker, ``kill -9`` of one.

The reduced form of ``benchmarks/bench_scale.py``: real worker processes against
a simulator on loopback, every call carrying paced audio both ways (the echo
agent). Which worker holds a call comes from the worker's own log line
(``call ID from ...``, tagged ``worker-N``). Every wait is for a line or a call
state, every assertion counts calls; nothing depends on how fast the processes run.
"""

from __future__ import annotations

import os
import signal
from collections import Counter

import trio

from telcoflow_trio.simulator import CallerScript, SimulatedCall, Simulator, open_simulator, tone
from telcoflow_trio.simulator._model import CallState

from .test_run_command import Run, environ

WORKERS = 4
MAX_CALLS = 10  # per worker: 40 calls fill the four exactly
CALL_LINE = r"worker-(\d+) INFO \S+ \[call [^\]]*\]: call {} from "


async def place(sim: Simulator, n: int) -> list[SimulatedCall]:
    """``n`` ringing calls (a 440 Hz caller, echoed back), once all are answered."""
    calls = [await sim.place_call(CallerScript(tone(440))) for _ in range(n)]
    for call in calls:
        await call.wait_state(CallState.ANSWERED)
    return calls


async def holders(run: Run, calls: list[SimulatedCall]) -> dict[str, int]:
    """The worker index that took each call, by call id (from its ``call ... from`` line)."""
    return {c.call_id: int((await run.wait_for(CALL_LINE.format(c.call_id)))[1]) for c in calls}


async def hang_up(calls: list[SimulatedCall]) -> list[str]:
    for call in calls:
        await call.hang_up()
    return [(await call.wait_result()).ended_by for call in calls]


async def test_four_workers_spread_calls_drain_one_and_survive_kill_9() -> None:
    with trio.fail_after(40):
        async with open_simulator(listen=True) as sim:
            run = await Run.start(
                "agent:on_call",
                "--server", sim.base_url,
                "--connector-uuid", sim.connector_uuid,
                "--workers", str(WORKERS),
                "--max-calls", str(MAX_CALLS),
                "--sample-rate", "8000",
                "--drain-timeout", "600",
                env=environ(TELCOFLOW_API_KEY=sim.api_key),
            )  # fmt: skip
            await run.wait_for(rf"all {WORKERS} workers ready")
            pids = {
                i: int((await run.wait_for(rf"worker {i} ready: pid (\d+)"))[1])
                for i in range(WORKERS)
            }

            # 40 calls, at most 10 per worker: each takes exactly 10, none is lost.
            calls = await place(sim, WORKERS * MAX_CALLS)
            holder = await holders(run, calls)
            assert Counter(holder.values()) == {i: MAX_CALLS for i in range(WORKERS)}
            of = {i: [c for c in calls if holder[c.call_id] == i] for i in range(WORKERS)}

            # Drain worker 0 (SIGTERM to it alone): it claims nothing more, its calls go on.
            os.kill(pids[0], signal.SIGTERM)
            await run.wait_for(rf"worker 0: taking no new calls; {MAX_CALLS} live call\(s\)")
            # Worker 0 keeps 5 live calls (room for 5 more), the others 7 (room for 3).
            freed = of[0][:5] + [c for i in (1, 2, 3) for c in of[i][:3]]
            assert await hang_up(freed) == ["caller_hangup"] * len(freed)
            new = await place(sim, 9)
            new_holder = await holders(run, new)
            assert Counter(new_holder.values()) == {1: 3, 2: 3, 3: 3}  # none to worker 0
            assert sim.statistics().calls_unclaimed == 0
            # Its last calls end as the caller hangs up; then it exits and is restarted.
            mark = len(run.lines)
            assert await hang_up(of[0][5:]) == ["caller_hangup"] * 5
            await run.wait_for(r"worker 0: drained: no live calls", mark)
            await run.wait_for(r"worker 0 ready: pid", mark)

            # kill -9 worker 1: exactly its calls end, media lost; the supervisor restarts it.
            live = [c for c in calls + new if not c.ended]
            killed = [c for c in live if {**holder, **new_holder}[c.call_id] == 1]
            assert len(killed) == MAX_CALLS
            mark = len(run.lines)
            os.kill(pids[1], signal.SIGKILL)
            results = [await c.wait_result() for c in killed]
            assert {(r.ended_by, r.termination_reason) for r in results} == {
                ("media_lost", "FORCE_CLOSE")
            }
            await run.wait_for(r"worker 1 exited with signal SIGKILL; restarting", mark)
            await run.wait_for(r"worker 1 ready: pid", mark)
            others = [c for c in live if c not in killed]
            assert len(others) == 2 * MAX_CALLS
            assert not any(c.ended for c in others)
            assert await hang_up(others) == ["caller_hangup"] * len(others)

            stats = sim.statistics()
            assert stats.calls_placed == WORKERS * MAX_CALLS + 9
            assert stats.calls_abandoned_unclaimed == 0
            run.signal(signal.SIGTERM)
            assert await run.finish() == 0, run.output
