"""Scale: many calls with paced audio over ``telcoflow-trio run --workers 4``.

The simulator runs in its own process (``client/scale_driver.py``); the agent
is the echo of ``client/agent_ours.py`` served by the public command, ``python
-m telcoflow_trio run agent_ours:on_call --workers 4``. Two runs, one per claim
policy (``first_come``, then ``load_aware``), each placing ``--calls`` calls
(8 kHz, a 440 Hz caller echoed back at real time) and holding them for
``--hold`` seconds. Measured:

* calls per worker (from each worker's ``call ID from ...`` log line) and the
  ratio of the busiest worker's to the idlest's;
* claim latency at the simulator, from the offer (``session.notify``) to the
  ``call.in`` its winner's ``session.ready`` brought: p50, p99, max;
* underruns (playout gaps of agent audio) per call, as the simulator saw them.

The ``load_aware`` run then drains worker 0 (``SIGTERM`` to it alone) and places
``--calls / 10`` more calls (none may go to worker 0; its calls must end as
their callers hang up), and ``kill -9``s worker 1 (exactly its calls must end
``media_lost``, the others stay up, the supervisor restarts it). Every offered
call must be claimed by some worker.

Loopback only; every wait is bounded, and every process is stopped on exit.
``python benchmarks/bench_scale.py [--calls 200] [--hold 10] [--quick]``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from _proc import HERE, Children, all_cpu, foreign_cpu_pct, free_port
from _report import fmt, machine, markdown_table, verdict_table, write_results

from telcoflow_trio.simulator import DEFAULT_API_KEY, DEFAULT_CONNECTOR_UUID

CLIENT = HERE / "client"
WORKERS = 4
#: The issue's target for the calls-per-worker spread under load-aware claiming.
TARGET_SPREAD = 1.25
CALL_LINE = re.compile(r"worker-(\d+) INFO \S+ \[call [^\]]*\]: call (\S+) from ")
WAIT = 60.0  # seconds, for any one line or answer


def uptime() -> str:
    try:
        return subprocess.run(
            ["uptime"], capture_output=True, text=True, check=False
        ).stdout.strip()
    except OSError:
        return " ".join(f"{x:.2f}" for x in os.getloadavg())


class Lines:
    """A process's output, read line by line by a thread; waits are bounded."""

    def __init__(self, proc: subprocess.Popen[bytes], stream: Any) -> None:
        self.proc = proc
        self.lines: list[str] = []
        self._changed = threading.Condition()
        threading.Thread(target=self._pump, args=(stream,), daemon=True).start()

    def _pump(self, stream: Any) -> None:
        try:
            for raw in stream:
                with self._changed:
                    self.lines.append(raw.decode(errors="replace").rstrip("\n"))
                    self._changed.notify_all()
        except (OSError, ValueError):  # closed by Children.stop
            pass
        with self._changed:
            self.lines.append("")  # end of output
            self._changed.notify_all()

    def wait_for(self, pattern: str, since: int = 0, timeout: float = WAIT) -> re.Match[str]:
        """The first line from line ``since`` on that matches ``pattern``."""
        deadline = time.monotonic() + timeout
        seen = since
        with self._changed:
            while True:
                for line in self.lines[seen:]:
                    if match := re.search(pattern, line):
                        return match
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or (self.proc.poll() is not None and self.lines[-1:] == [""]):
                    tail = "\n".join(self.lines[-20:])
                    raise RuntimeError(f"no line matched {pattern!r} in {timeout} s:\n{tail}")
                self._changed.wait(left)

    def holders(self, ids: list[str], timeout: float = WAIT) -> dict[str, int]:
        """The worker that took each call, by id, once every one of them has said so."""
        deadline = time.monotonic() + timeout
        wanted = set(ids)
        with self._changed:
            while True:
                found = {
                    m[2]: int(m[1])
                    for line in self.lines
                    if (m := CALL_LINE.search(line)) and m[2] in wanted
                }
                left = deadline - time.monotonic()
                if len(found) == len(wanted) or left <= 0:
                    return found
                self._changed.wait(left)


class Simulator:
    """``client/scale_driver.py`` in its own process: one command, one ``RESULT`` line."""

    def __init__(self, children: Children, args: argparse.Namespace) -> None:
        self.port = free_port()
        self.proc = children.start(
            [
                sys.executable,
                str(CLIENT / "scale_driver.py"),
                "--port", str(self.port),
                "--arrivals", str(args.arrivals),
            ],
            None,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env={**os.environ, "PYTHONPATH": f"{HERE.parent}{os.pathsep}{CLIENT}"},
        )  # fmt: skip
        assert self.proc.stdout is not None
        self.out = Lines(self.proc, self.proc.stdout)
        self.out.wait_for(r"^READY$")

    def close(self, children: Children) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"quit\n")
        self.proc.stdin.flush()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(10)
        children.stop(self.proc)

    def command(self, line: str) -> Any:
        assert self.proc.stdin is not None
        mark = len(self.out.lines)
        self.proc.stdin.write(line.encode() + b"\n")
        self.proc.stdin.flush()
        return json.loads(self.out.wait_for(r"^RESULT (.*)$", mark, timeout=120)[1])


class Runner:
    """``python -m telcoflow_trio run agent_ours:on_call --workers 4`` against the simulator."""

    def __init__(self, children: Children, sim: Simulator, policy: str) -> None:
        self.children = children
        self.proc = children.start(
            [
                sys.executable, "-m", "telcoflow_trio", "run", "agent_ours:on_call",
                "--server", f"ws://127.0.0.1:{sim.port}",
                "--connector-uuid", DEFAULT_CONNECTOR_UUID,
                "--workers", str(WORKERS),
                "--sample-rate", "8000",
                "--claim-policy", policy,
                "--drain-timeout", "120",
            ],
            None,
            stderr=subprocess.PIPE,
            cwd=CLIENT,
            env={
                **{k: v for k, v in os.environ.items() if not k.startswith("TELCOFLOW_")},
                "TELCOFLOW_API_KEY": DEFAULT_API_KEY,
                "PYTHONPATH": f"{HERE.parent}{os.pathsep}{CLIENT}",
            },
        )  # fmt: skip
        self.log = Lines(self.proc, self.proc.stderr)
        started = time.monotonic()
        self.log.wait_for(rf"all {WORKERS} workers ready")
        self.ready_after = time.monotonic() - started
        self.pids = {
            i: int(self.log.wait_for(rf"worker {i} ready: pid (\d+)")[1]) for i in range(WORKERS)
        }

    def pids_now(self) -> set[int]:
        """The supervisor and its workers (for the foreign-CPU figure)."""
        try:
            text = Path(f"/proc/{self.proc.pid}/task/{self.proc.pid}/children").read_text()
        except OSError:
            return {self.proc.pid}
        return {self.proc.pid, *map(int, text.split())}

    def stop(self) -> int | None:
        """SIGTERM (drain), then the exit status (``None``: it had to be killed)."""
        self.proc.send_signal(signal.SIGTERM)
        try:
            status = self.proc.wait(WAIT)
        except subprocess.TimeoutExpired:
            status = None
        self.children.stop(self.proc)
        return status


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def spread(holder: dict[str, int]) -> dict[str, Any]:
    counts = Counter(holder.values())
    per_worker = [counts.get(i, 0) for i in range(WORKERS)]
    low = min(per_worker)
    return {
        "per_worker": per_worker,
        "max_over_min": round(max(per_worker) / low, 3) if low else None,
    }


def latency(claim_ms: dict[str, float]) -> dict[str, float | None]:
    values = list(claim_ms.values())
    return {
        "p50_ms": percentile(values, 0.5),
        "p99_ms": percentile(values, 0.99),
        "max_ms": max(values) if values else None,
    }


def audio(outcomes: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    done = [o for o in outcomes.values() if o is not None]
    gaps = sum(o["underruns"] for o in done)
    caller = sum(o["caller_s"] for o in done)
    return {
        "calls_with_underruns": sum(1 for o in done if o["underruns"]),
        "underruns": gaps,
        "underruns_per_call_minute": round(60 * gaps / caller, 1) if caller else None,
        "caller_audio_s": round(caller, 1),
        "agent_audio_s": round(sum(o["agent_s"] for o in done), 1),
    }


def ended_by(outcomes: dict[str, dict[str, Any] | None]) -> dict[str, int]:
    return dict(Counter(o["ended_by"] if o else "not ended" for o in outcomes.values()))


def run_policy(
    children: Children, args: argparse.Namespace, policy: str, faults: bool
) -> dict[str, Any]:
    sim = Simulator(children, args)
    runner = Runner(children, sim, policy)
    ready = f"workers ready after {runner.ready_after:.1f} s"
    print(f"{policy}: {ready}; placing {args.calls} calls", file=sys.stderr)
    placed = sim.command(f"place {args.calls}")
    holder = runner.log.holders(placed["ids"])
    ours = runner.pids_now() | {sim.proc.pid}
    before, started = all_cpu(), time.monotonic()
    time.sleep(args.hold)  # the calls talk at real time: this is the window measured
    foreign = foreign_cpu_pct(before, all_cpu(), ours, time.monotonic() - started)
    result: dict[str, Any] = {
        "policy": policy,
        "calls": args.calls,
        "answered": placed["answered"],
        "claimed": len(holder),
        "spread": spread(holder),
        "claim_latency": latency(placed["claim_ms"]),
        "foreign_cpu_pct": round(foreign, 1),
        "loadavg_during": os.getloadavg()[0],
    }
    outcomes: dict[str, Any] = {}
    all_ids = list(placed["ids"])
    if faults:
        result["drain"], result["kill"] = fault_steps(sim, runner, holder, args, outcomes, all_ids)
    final = sim.command("hangup all")
    outcomes.update(final["calls"])
    result["audio"] = audio(outcomes)
    result["ended_by"] = ended_by(outcomes)
    result["all_ended"] = len(outcomes) == len(all_ids)
    stats = sim.command("stats")
    result["simulator"] = stats
    result["none_lost"] = (
        stats["calls_abandoned_unclaimed"] == 0
        and stats["calls_placed"] == len(all_ids)
        and len(runner.log.holders(all_ids, timeout=1)) == len(all_ids)
    )
    result["runner_exit"] = runner.stop()
    noted = [line for line in runner.log.lines if " WARNING " in line or " ERROR " in line]
    result["runner_warnings"] = noted[:20]
    sim.close(children)
    return result


def fault_steps(
    sim: Simulator,
    runner: Runner,
    holder: dict[str, int],
    args: argparse.Namespace,
    outcomes: dict[str, Any],
    all_ids: list[str],
) -> tuple[dict[str, Any], dict[str, Any]]:
    log = runner.log
    # Drain worker 0: SIGTERM to it alone.
    mark = len(log.lines)
    os.kill(runner.pids[0], signal.SIGTERM)
    live = int(log.wait_for(r"worker 0: taking no new calls; (\d+) live", mark)[1])
    extra = max(args.calls // 10, WORKERS)
    placed = sim.command(f"place {extra}")
    all_ids += placed["ids"]
    new_holder = log.holders(placed["ids"])
    drained = [i for i, w in holder.items() if w == 0]
    hung = sim.command("hangup " + ",".join(drained))
    outcomes.update(hung["calls"])
    log.wait_for(r"worker 0: drained: no live calls", mark)
    restarted = log.wait_for(r"worker 0 ready: pid (\d+)", mark)
    runner.pids[0] = int(restarted[1])
    drain = {
        "live_when_drained": live,
        "new_calls": extra,
        "new_answered": placed["answered"],
        "new_per_worker": spread(new_holder)["per_worker"],
        "new_to_drained_worker": sum(1 for w in new_holder.values() if w == 0),
        "new_claim_latency": latency(placed["claim_ms"]),
        "drained_calls_ended_by": ended_by(hung["calls"]),
    }
    # kill -9 worker 1.
    everyone = {**holder, **new_holder}
    killed = [i for i, w in everyone.items() if w == 1]
    mark = len(log.lines)
    at = time.monotonic()
    os.kill(runner.pids[1], signal.SIGKILL)
    gone = sim.command("ended " + ",".join(killed))
    ended_after = time.monotonic() - at
    outcomes.update(gone["calls"])
    log.wait_for(r"worker 1 ready: pid (\d+)", mark)
    kill = {
        "calls_of_killed_worker": len(killed),
        "ended_by": ended_by(gone["calls"]),
        "all_ended_after_s": round(ended_after, 2),
        "restarted_after_s": round(time.monotonic() - at, 2),
        "others_still_live": gone["live"],
        "others_expected_live": sum(1 for i, w in everyone.items() if w not in (0, 1)),
    }
    return drain, kill


def run(args: argparse.Namespace) -> dict[str, Any]:
    children = Children()
    load_before = uptime()
    started = time.monotonic()
    try:
        runs = [
            run_policy(children, args, "first_come", faults=False),
            run_policy(children, args, "load_aware", faults=True),
        ]
    finally:
        children.stop_all()
    return {
        "machine": machine(),
        "settings": {
            "calls": args.calls,
            "hold_s": args.hold,
            "arrivals_per_s": args.arrivals,
            "workers": WORKERS,
            "sample_rate": 8000,
            "quick": args.quick,
        },
        "uptime_before": load_before,
        "uptime_after": uptime(),
        "seconds": round(time.monotonic() - started, 1),
        "runs": runs,
    }


def verdicts(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """The issue's targets, with what this run measured."""
    aware = next(r for r in result["runs"] if r["policy"] == "load_aware")
    first = next(r for r in result["runs"] if r["policy"] == "first_come")
    d, k = aware["drain"], aware["kill"]
    ratio = aware["spread"]["max_over_min"]
    offered = aware["calls"] + d["new_calls"]
    claimed = aware["claimed"] + d["new_answered"]
    new_per_worker = " / ".join(map(str, d["new_per_worker"]))
    others = f"{k['others_still_live']} of {k['others_expected_live']}"
    return [
        (
            f"calls per worker max/min <= {TARGET_SPREAD} (load_aware)",
            f"{fmt(ratio, 2)} (first_come: {fmt(first['spread']['max_over_min'], 2)})",
            ratio is not None and ratio <= TARGET_SPREAD,
        ),
        (
            "every offered call claimed by some worker",
            f"{claimed} of {offered}; abandoned unclaimed: "
            f"{aware['simulator']['calls_abandoned_unclaimed']}",
            aware["none_lost"] and first["none_lost"],
        ),
        (
            "drain of worker 0: no new call to it, its calls end normally",
            f"{d['new_calls']} new calls: {d['new_to_drained_worker']} to it (per worker "
            f"{new_per_worker}); its {d['live_when_drained']} calls: "
            f"{d['drained_calls_ended_by']}",
            d["new_to_drained_worker"] == 0
            and d["new_answered"] == d["new_calls"]
            and d["drained_calls_ended_by"] == {"caller_hangup": d["live_when_drained"]},
        ),
        (
            "kill -9 of worker 1: its calls end media_lost, the others untouched, restarted",
            f"its {k['calls_of_killed_worker']} calls: {k['ended_by']} within "
            f"{k['all_ended_after_s']} s; others live {others}; ready again after "
            f"{k['restarted_after_s']} s",
            k["ended_by"] == {"media_lost": k["calls_of_killed_worker"]}
            and k["others_still_live"] == k["others_expected_live"],
        ),
    ]


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    rows = []
    for r in result["runs"]:
        lat, a = r["claim_latency"], r["audio"]
        rows.append(
            [
                r["policy"],
                f"{r['answered']}/{r['calls']}",
                " / ".join(map(str, r["spread"]["per_worker"])),
                fmt(r["spread"]["max_over_min"], 2),
                f"{fmt(lat['p50_ms'])} / {fmt(lat['p99_ms'])} / {fmt(lat['max_ms'])}",
                f"{a['calls_with_underruns']} ({fmt(a['underruns_per_call_minute'])})",
                fmt(r["foreign_cpu_pct"], 0),
            ]
        )
    out = [
        "### Scale: `run --workers 4`",
        "",
        f"Run {result['machine']['date']}. {s['calls']} calls at 8 kHz (a 440 Hz caller, "
        f"echoed back at real time), placed at {s['arrivals_per_s']:g}/s and held "
        f"{s['hold_s']:g} s, over {s['workers']} workers of `telcoflow-trio run`; the "
        "simulator in its own process. Claim latency: offer to `call.in`, at the "
        f"simulator. Machine load: `{result['uptime_before']}` before, "
        f"`{result['uptime_after']}` after.",
        "",
        markdown_table(
            (
                "claim policy",
                "answered",
                "calls per worker",
                "max/min",
                "claim p50 / p99 / max (ms)",
                "calls with underruns (gaps per call-minute)",
                "other processes' CPU %",
            ),
            rows,
        ),
    ]
    out.append(verdict_table(verdicts(result)))
    return "\n".join(out)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="40 calls held 3 s")
    parser.add_argument("--calls", type=int, default=None, help="calls per run (default 200)")
    parser.add_argument("--hold", type=float, default=None, help="seconds (default 10)")
    parser.add_argument("--arrivals", type=float, default=40.0, help="new calls per second")
    parser.add_argument(
        "--label", default="", help="a side run: write results/scale-LABEL-STAMP.* only"
    )
    args, _ = parser.parse_known_args(argv)
    args.calls = args.calls or (40 if args.quick else 200)
    args.hold = args.hold if args.hold is not None else (3.0 if args.quick else 10.0)
    if args.calls < WORKERS * 4:
        parser.error(f"--calls must be at least {WORKERS * 4}")
    result = run(args)
    path = write_results("scale", result, args.label)
    text = markdown(result)
    path.with_suffix(".md").write_text(text + "\n")
    print(text)
    return result


if __name__ == "__main__":
    main()
