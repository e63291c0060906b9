"""Client benchmarks: our TelcoflowClient and the official telcoflow 1.0.0 SDK on the same load.

Media: N concurrent answered calls on our simulator (its own process, core 1).
Each caller talks a tone at real time (20 ms frames); each agent (core 0) runs
the same logic: answer, then echo every chunk of caller audio back, with the
platform pulling agent audio (``buffer_request``: pull-based flow control).
Per point: a fresh simulator and agent, ``--repeats`` runs, the median.

* **CPU per frame**: the agent's utime+stime over the window divided by the
  20 ms frames echoed in it (N x window / 20 ms; one frame in, one out).
* **memory per call**: (agent RSS at the end of the window - RSS before the
  calls) / N, at ``--cpu-calls``.
* **call.in -> handler**: from the simulator sending ``call.in`` to the agent's
  handler running (both read the system-wide monotonic clock).
* **underruns**: gaps in the agent's audio as the simulator plays it out.
* **sustained calls**: the most calls with every call answered, at least 97 % of
  the caller's audio echoed back, at most 0.5 % of frames late (underruns) and
  the agent under 90 % of a core; searched like the bridge's.

Control plane (one run each): time to detect a control connection whose peer
stopped answering pings and to be answering calls again; the same after the
control connection is dropped; calls set up per second (answer, hang up).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from _proc import (
    HERE,
    Children,
    all_cpu,
    cpu_seconds,
    foreign_cpu_pct,
    free_port,
    rss_kib,
    wait_quiet,
)
from _report import (
    fmt,
    machine,
    markdown_table,
    median,
    noisy,
    verdict_table,
    write_results,
)
from _search import find_max

PY = sys.executable
#: Late agent frames (underruns) tolerated, in % of all frames. The simulator is a
#: trio program too: under load, a call's playout tick can run before the reader
#: that holds its echo, so a few underruns appear before any agent is saturated.
MAX_UNDERRUN_PCT = 0.5
AGENT_CORE = {0}
SIM_CORE = {1}

AGENTS: dict[str, tuple[list[str], str]] = {
    "ours": (["agent_ours.py"], "ours: TelcoflowClient (default: lean transport)"),
    "ours_tw": (
        ["agent_ours.py", "--transport", "trio-websocket"],
        "ours: TelcoflowClient, transport='trio-websocket'",
    ),
    "sdk": (["agent_sdk.py"], "official telcoflow 1.0.0 SDK (asyncio)"),
    "sdk_uncapped": (
        ["agent_sdk.py", "--lift-bus-cap"],
        "official telcoflow 1.0.0 SDK, its 50-call event-bus cap lifted",
    ),
    "sdk_uvloop": (["agent_sdk.py", "--loop", "uvloop"], "official telcoflow 1.0.0 SDK on uvloop"),
}
DEFAULT_AGENTS = ["ours", "ours_tw", "sdk", "sdk_uncapped"]


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Session:
    """One simulator process and one agent process, both pinned."""

    def __init__(
        self,
        children: Children,
        agent: str,
        args: argparse.Namespace,
        extra: list[str] | None = None,
    ) -> None:
        self.children = children
        port = free_port()
        self.sim = children.start(
            [
                PY,
                str(HERE / "client" / "sim_driver.py"),
                "--port",
                str(port),
                "--duration",
                str(args.duration),
                "--warmup",
                str(args.warmup),
                "--transport",
                args.sim_transport,
            ],
            SIM_CORE,
            stdout=subprocess.PIPE,
            stdin=subprocess.PIPE,
        )
        assert self.sim.stdout is not None
        if self.sim.stdout.readline().strip() != b"READY":
            raise RuntimeError("the simulator did not start")
        script, *options = AGENTS[agent][0]
        self.agent = children.start(
            [
                PY,
                str(HERE / "client" / script),
                "--url",
                f"ws://127.0.0.1:{port}",
                *options,
                *(extra or []),
            ],
            AGENT_CORE,
            stdout=subprocess.PIPE,
        )
        assert self.agent.stdout is not None
        if self.agent.stdout.readline().strip() != b"READY":
            raise RuntimeError(f"agent {agent} did not connect")
        time.sleep(0.3)

    def command(
        self,
        line: str,
        marks: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        assert self.sim.stdin is not None
        assert self.sim.stdout is not None
        self.sim.stdin.write((line + "\n").encode())
        self.sim.stdin.flush()
        for raw in self.sim.stdout:
            text = raw.decode().strip()
            if text.startswith("WINDOW") and marks is not None:
                marks[text] = (
                    time.monotonic(),
                    cpu_seconds(self.agent.pid),
                    cpu_seconds(self.sim.pid),
                    rss_kib(self.agent.pid),
                    all_cpu(),
                )
            elif text.startswith("RESULT "):
                return json.loads(text[7:])  # type: ignore[no-any-return]
        raise RuntimeError(f"the simulator ended during {line!r}")

    def close(self) -> list[str]:
        """Stop both; the agent's ``H`` lines."""
        self.children.stop(self.sim)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.agent.pid, signal.SIGTERM)
        try:
            out, _ = self.agent.communicate(timeout=5)
        except subprocess.TimeoutExpired:
            out = b""
        self.children.stop(self.agent)
        return out.decode().splitlines()


def media_run(
    children: Children, agent: str, calls: int, args: argparse.Namespace
) -> dict[str, Any]:
    session = Session(children, agent, args)
    session_pids = (session.agent.pid, session.sim.pid)
    try:
        rss0 = rss_kib(session.agent.pid)
        marks: dict[str, Any] = {}
        result = session.command(f"calls {calls}", marks)
    finally:
        lines = session.close()
    handler_at = {}
    for line in lines:
        if line.startswith("H "):
            _, call_id, t = line.split()
            handler_at[call_id] = float(t)
    call_in = result.pop("call_in_sent", {})
    delays = [
        (handler_at[c] - t) * 1000 for c, t in call_in.items() if t is not None and c in handler_at
    ]
    run: dict[str, Any] = {"agent": agent, **result}
    if "WINDOW_START" in marks and "WINDOW_END" in marks:
        (t0, a0, s0, _, all0), (t1, a1, s1, rss1, all1) = (
            marks["WINDOW_START"],
            marks["WINDOW_END"],
        )
        seconds = t1 - t0
        ours = {session_pids[0], session_pids[1]}
        run["foreign_cpu_pct"] = round(foreign_cpu_pct(all0, all1, ours, seconds), 1)
        frames = calls * seconds / 0.020
        run["window_seconds"] = round(seconds, 3)
        run["agent_cpu_pct"] = (
            round(100 * (a1 - a0) / seconds, 1) if a0 is not None and a1 is not None else None
        )
        run["sim_cpu_pct"] = (
            round(100 * (s1 - s0) / seconds, 1) if s0 is not None and s1 is not None else None
        )
        run["cpu_us_per_frame"] = (
            round((a1 - a0) / frames * 1e6, 1) if a0 is not None and a1 is not None else None
        )
        run["kib_per_call"] = round((rss1 - rss0) / calls, 1) if rss0 and rss1 else None
    run["call_in_to_handler_p50_ms"] = round(statistics.median(delays), 2) if delays else None
    run["call_in_to_handler_p99_ms"] = (
        round(sorted(delays)[int(0.99 * (len(delays) - 1))], 2) if delays else None
    )
    caller = result.get("caller_audio_seconds") or 0
    run["echoed_ratio"] = (
        round(result.get("agent_audio_seconds", 0) / caller, 3) if caller else None
    )
    frames = caller / 0.020
    run["underrun_pct"] = round(100 * result.get("underruns", 0) / frames, 3) if frames else None
    run["sustained"] = bool(
        result.get("all_answered")
        and (run["echoed_ratio"] or 0) >= 0.97
        and run["underrun_pct"] is not None
        and run["underrun_pct"] <= MAX_UNDERRUN_PCT
        and (run.get("agent_cpu_pct") or 100) <= 90
    )
    return run


def media_point(
    children: Children,
    agent: str,
    calls: int,
    args: argparse.Namespace,
    runs: list[dict[str, Any]],
) -> dict[str, Any]:
    wait_quiet(args.max_foreign, 3)
    points = []
    for _ in range(args.repeats):
        run = media_run(children, agent, calls, args)
        if (run.get("foreign_cpu_pct") or 0) > args.max_foreign:
            log(f"    noisy window ({run['foreign_cpu_pct']} % foreign CPU): repeating")
            wait_quiet(args.max_foreign, 5)
            run = media_run(children, agent, calls, args)
        points.append(run)
        runs.append(run)
    ok = sum(p["sustained"] for p in points) * 2 > len(points)  # majority of the repeats
    summary = {
        "agent": agent,
        "calls": calls,
        "sustained": ok,
        "agent_cpu_pct": median([p.get("agent_cpu_pct") for p in points]),
        "sim_cpu_pct": median([p.get("sim_cpu_pct") for p in points]),
        "cpu_us_per_frame": median([p.get("cpu_us_per_frame") for p in points]),
        "kib_per_call": median([p.get("kib_per_call") for p in points]),
        "call_in_to_handler_p50_ms": median([p["call_in_to_handler_p50_ms"] for p in points]),
        "call_in_to_handler_p99_ms": median([p["call_in_to_handler_p99_ms"] for p in points]),
        "underruns": [p.get("underruns") for p in points],
        "underrun_pct": median([p.get("underrun_pct") for p in points]),
        "echoed_ratio": median([p.get("echoed_ratio") for p in points]),
        "answered": [p.get("answered") for p in points],
        "foreign_cpu_pct": max((p.get("foreign_cpu_pct") or 0.0) for p in points),
    }
    log(
        f"  {agent:10s} {calls:4d} calls: cpu {fmt(summary['agent_cpu_pct'])} %, "
        f"{fmt(summary['cpu_us_per_frame'])} us/frame, underruns {summary['underruns']}, echoed "
        f"{fmt(summary['echoed_ratio'], 3)}, call.in->handler p50 "
        f"{fmt(summary['call_in_to_handler_p50_ms'], 2)} ms, "
        f"sim {fmt(summary['sim_cpu_pct'])} %, answered {summary['answered']}, "
        f"foreign {fmt(summary['foreign_cpu_pct'])} % -> "
        f"{'ok' if ok else 'FAIL'}"
    )
    return summary


def max_calls(
    children: Children,
    agent: str,
    first: dict[str, Any],
    args: argparse.Namespace,
    runs: list[dict[str, Any]],
) -> tuple[int | None, int | None, list[dict[str, Any]]]:
    return find_max(
        first,
        lambda n: media_point(children, agent, n, args, runs),
        max_probes=args.max_probes,
        resolution=args.resolution,
        cpu_key="agent_cpu_pct",
    )


def control_plane(children: Children, agent: str, args: argparse.Namespace) -> dict[str, Any]:
    extra = ["--heartbeat", args.heartbeat] if agent.startswith("ours") else []
    session = Session(children, agent, args, extra)
    try:
        session.command(f"setup {args.setup_calls // 10} {args.setup_in_flight}")  # warm-up
        setup = session.command(f"setup {args.setup_calls} {args.setup_in_flight}")
        time.sleep(0.5)
        drop = session.command("drop")
        time.sleep(0.5)
        stall = session.command("stall")
    finally:
        session.close()
    result = {
        "agent": agent,
        "heartbeat": args.heartbeat if agent.startswith("ours") else "30,10 (fixed in the SDK)",
        "stall_reconnected_after_s": stall["reconnected_after"],
        "stall_answering_after_s": stall["answering_after"],
        "drop_reconnected_after_s": drop["reconnected_after"],
        "drop_answering_after_s": drop["answering_after"],
        "setup": setup,
    }
    log(
        f"  {agent:10s} control: stalled pings -> serving again "
        f"{fmt(stall['answering_after'], 2)} s; "
        f"dropped -> serving again {fmt(drop['answering_after'], 2)} s; "
        f"{fmt(setup['calls_per_second'])} calls set up per second"
    )
    return result


def control_only(argv: list[str]) -> list[dict[str, Any]]:
    """Only the control-plane part, for ``run.py --control-only``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    add_arguments(parser, "--quick" in argv)
    args = parser.parse_args(argv)
    children = Children()
    try:
        return [control_plane(children, agent, args) for agent in args.agents if agent != "sdk"]
    finally:
        children.stop_all()


def run(args: argparse.Namespace) -> dict[str, Any]:
    children = Children()
    runs: list[dict[str, Any]] = []
    media = []
    control = []
    try:
        for agent in args.agents:
            log(f"client {agent}: {AGENTS[agent][1]}")
            first = media_point(children, agent, args.cpu_calls, args, runs)
            good, bad, points = max_calls(children, agent, first, args, runs)
            media.append(
                {
                    "agent": agent,
                    "label": AGENTS[agent][1],
                    "max_calls": good,
                    "first_failing": bad,
                    "at_cpu_calls": first,
                    "points": points,
                }
            )
        if not args.no_control:
            # The SDK as shipped stops answering after about 50 calls in all
            # (its event-bus cap), which would end the control-plane run early:
            # it is measured with the cap lifted.
            for agent in (a for a in args.agents if a != "sdk"):
                control.append(control_plane(children, agent, args))
    finally:
        children.stop_all()
    return {
        "benchmark": "client",
        "machine": machine(),
        "settings": vars(args),
        "media": media,
        "control": control,
        "runs": runs,
    }


MEDIA_HEADER = (
    "agent",
    "sustained calls",
    "first failing",
    "CPU/frame at N calls (µs)",
    "CPU % at N calls",
    "KiB per call",
    "call.in → handler p50 / p99 (ms)",
    "underruns at N",
    "simulator CPU % at N",
)
CONTROL_HEADER = (
    "agent",
    "heartbeat (interval, timeout s)",
    "stalled pings → answering again (s)",
    "dropped → answering again (s)",
    "calls set up per second",
)


def media_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for m in result["media"]:
        at = m["at_cpu_calls"]
        rows.append(
            [
                m["label"],
                fmt(m["max_calls"]),
                fmt(m["first_failing"]),
                fmt(at["cpu_us_per_frame"]),
                fmt(at["agent_cpu_pct"]),
                fmt(at["kib_per_call"]),
                f"{fmt(at['call_in_to_handler_p50_ms'], 2)} / "
                f"{fmt(at['call_in_to_handler_p99_ms'], 2)}",
                ",".join(str(u) for u in at["underruns"]),
                fmt(at["sim_cpu_pct"]),
            ]
        )
    return rows


def control_rows(result: dict[str, Any]) -> list[list[str]]:
    return [
        [
            AGENTS[c["agent"]][1] if c["agent"] in AGENTS else c["agent"],
            str(c["heartbeat"]),
            fmt(c["stall_answering_after_s"], 2),
            fmt(c["drop_answering_after_s"], 2),
            fmt(c["setup"]["calls_per_second"]),
        ]
        for c in result["control"]
    ]


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    by = {m["agent"]: m for m in result["media"]}
    out: list[tuple[str, str, bool | None]] = []
    for peer in ("sdk", "sdk_uncapped"):
        theirs = by.get(peer, {}).get("max_calls")
        for ours in ("ours", "ours_tw"):
            if ours in by and by[ours]["max_calls"] and theirs:
                ratio = by[ours]["max_calls"] / theirs
                out.append(
                    (f"{ours} sustained calls / {peer}'s >= 1.5", f"{ratio:.2f}x", ratio >= 1.5)
                )
        mine = by.get("ours", {}).get("at_cpu_calls", {}).get("cpu_us_per_frame")
        cpu = by.get(peer, {}).get("at_cpu_calls", {}).get("cpu_us_per_frame")
        if mine and cpu:
            out.append(
                (
                    f"ours CPU per frame vs {peer}'s (same N)",
                    f"theirs / ours = {cpu / mine:.2f} ({cpu} vs {mine} µs)",
                    None,
                )
            )
    return out


def markdown(result: dict[str, Any]) -> str:
    """The client sections of ``docs/performance.md``."""
    s = result["settings"]
    out = [
        "### Client media",
        "",
        f"Run {result['machine']['date']}. 8 kHz, {s['repeats']} run(s) of {s['duration']:g} s "
        f"per point; per-call columns at N = {s['cpu_calls']} calls; simulator transport "
        f"{s['sim_transport']!r}.",
        "",
        markdown_table(MEDIA_HEADER, media_rows(result)),
        noisy(result, "media", "agent"),
    ]
    if result["control"]:
        out += ["### Control plane", "", markdown_table(CONTROL_HEADER, control_rows(result))]
    return "\n".join([*out, verdict_table(targets(result))])


def add_arguments(parser: argparse.ArgumentParser, quick: bool) -> None:
    parser.add_argument("--agents", default=",".join(DEFAULT_AGENTS), type=lambda s: s.split(","))
    parser.add_argument("--repeats", type=int, default=1 if quick else 3)
    parser.add_argument("--duration", type=float, default=2.0 if quick else 2.5)
    parser.add_argument("--warmup", type=float, default=0.5 if quick else 0.75)
    parser.add_argument("--cpu-calls", type=int, default=40)
    parser.add_argument("--max-probes", type=int, default=2 if quick else 7)
    parser.add_argument("--resolution", type=float, default=0.1)
    parser.add_argument("--max-foreign", type=float, default=8.0)
    parser.add_argument("--sim-transport", choices=("trio-websocket", "lean"), default="lean")
    parser.add_argument(
        "--heartbeat", default="2,2", help="our client's heartbeat for the stall test"
    )
    parser.add_argument("--setup-calls", type=int, default=100 if quick else 200)
    parser.add_argument("--setup-in-flight", type=int, default=20)
    parser.add_argument("--no-control", action="store_true")
    parser.add_argument(
        "--label",
        default="",
        help="a side run: write results/client-LABEL-STAMP.json only, not the latest",
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    add_arguments(parser, quick)
    args = parser.parse_args(argv)
    for name in args.agents:
        if name not in AGENTS:
            parser.error(f"unknown agent {name!r}; known: {', '.join(AGENTS)}")
    result = run(args)
    write_results("client", result, args.label)
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
