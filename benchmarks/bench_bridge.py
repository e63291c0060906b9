"""Bridge benchmark: our StreamConnector and its peers on the same real-time load, one run.

Set-up (perf-anchors.md): ``loadgen (core 1) -> bridge (core 0) -> echo (core 1)``,
every leg a loopback WebSocket. For each bridge:

* **idle memory**: a fresh process, one call as warm-up, RSS0, then ``--idle-calls``
  connected calls with no traffic; per call = (RSS_N - RSS0) / N.
* **CPU per frame** at a fixed number of paced calls (``--cpu-calls``): the
  bridge's utime+stime over the window (/proc/PID/stat) divided by the frames
  that came back in it. Each frame is four WebSocket messages at the bridge.
* **max calls**: the most paced calls whose median p99 added latency (p99 RTT
  minus the loadgen->echo baseline p99) stays under 20 ms with no lost frame,
  no error and at least 98 % delivered. The search starts from what the CPU at
  ``--cpu-calls`` predicts (about 75 % of a core), steps until it brackets the
  knee and bisects to ``--resolution``. Each point: a fresh bridge process,
  ``--repeats`` runs, median.

A run whose window saw more than ``--max-foreign`` % of a core used by other
processes is repeated once and the figure is kept in the record.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from functools import partial
from typing import Any

from _proc import (
    HERE,
    Children,
    all_cpu,
    foreign_cpu_pct,
    free_port,
    rss_kib,
    wait_port,
    wait_quiet,
)
from _report import fmt, machine, markdown_table, median, noisy, verdict_table, write_json
from _search import find_max

PY = sys.executable
BRIDGE_CORE = {0}
LOAD_CORE = {1}
P99_LIMIT_MS = 20.0

#: name -> (script and arguments under benchmarks/bridges, label for tables)
BRIDGES: dict[str, tuple[list[str], str]] = {
    "ours_trio": (["ours_trio.py"], "ours: StreamConnector, plain trio (default: lean transport)"),
    "ours_trio_tw": (
        ["ours_trio.py", "--transport", "trio-websocket"],
        "ours: StreamConnector, plain trio, transport='trio-websocket'",
    ),
    "ours_hypercorn": (
        ["ours_hypercorn.py"],
        "ours: StreamConnector, FastAPI on Hypercorn trio (default: lean remote leg)",
    ),
    "ours_hypercorn_tw": (
        ["ours_hypercorn.py", "--transport", "trio-websocket"],
        "ours: StreamConnector, FastAPI on Hypercorn trio, trio-websocket remote leg",
    ),
    "relay_hypercorn": (
        ["relay_hypercorn.py"],
        "hand-written trio relay, FastAPI on Hypercorn trio (same stack)",
    ),
    "trio_relay": (["trio_relay.py"], "hand-written trio-websocket relay, plain trio"),
    "teler_asyncio": (
        ["teler_app.py", "--loop", "asyncio"],
        "teler 1.0.0 StreamConnector, FastAPI + uvicorn, asyncio",
    ),
    "teler_uvloop": (
        ["teler_app.py", "--loop", "uvloop"],
        "teler 1.0.0 StreamConnector, FastAPI + uvicorn, uvloop",
    ),
    "ws_relay_uvloop": (
        ["ws_relay.py", "--loop", "uvloop"],
        "floor: hand-written websockets relay, uvloop",
    ),
    "ws_relay_asyncio": (
        ["ws_relay.py", "--loop", "asyncio"],
        "hand-written websockets relay, asyncio",
    ),
}
DEFAULT_BRIDGES = [
    "ours_trio",
    "ours_trio_tw",
    "ours_hypercorn",
    "ours_hypercorn_tw",
    "relay_hypercorn",
    "teler_asyncio",
    "teler_uvloop",
    "ws_relay_uvloop",
]


def cpu_pct(
    pid: int, before: dict[int, float], after: dict[int, float], seconds: float
) -> float | None:
    """CPU % of ``pid`` between two :func:`all_cpu` snapshots ``seconds`` apart."""
    if pid not in before or pid not in after:
        return None
    return round(100.0 * (after[pid] - before[pid]) / seconds, 1)


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.children = Children()
        self.echo_port = free_port()
        self.echo = self.children.start(
            [PY, str(HERE / "load" / "echo_server.py"), "--port", str(self.echo_port)], LOAD_CORE
        )
        wait_port(self.echo_port, self.echo)
        self.remote = f"ws://127.0.0.1:{self.echo_port}/"
        self.baseline: dict[int, float] = {}
        self.runs: list[dict[str, Any]] = []

    # -- one loadgen run --------------------------------------------------------------

    def loadgen(
        self, url: str, calls: int, bridge: subprocess.Popen[bytes] | None, **opts: Any
    ) -> dict[str, Any]:
        a = self.args
        argv = [
            PY,
            str(HERE / "load" / "loadgen.py"),
            "--url",
            url,
            "--calls",
            str(calls),
            "--rate",
            str(opts.get("rate", a.rate)),
            "--warmup",
            str(opts.get("warmup", a.warmup)),
            "--duration",
            str(opts.get("duration", a.duration)),
            "--drain",
            "3",
        ]
        for attempt in range(2):
            proc = self.children.start(argv, LOAD_CORE, stdout=subprocess.PIPE)
            ours = {self.echo.pid, proc.pid} | ({bridge.pid} if bridge else set())
            marks: dict[str, tuple[float, dict[int, float]]] = {}
            result: dict[str, Any] | None = None
            assert proc.stdout is not None
            deadline = time.monotonic() + 120
            for raw in proc.stdout:
                line = raw.decode().strip()
                if line in ("WINDOW_START", "WINDOW_END"):
                    marks[line] = (time.monotonic(), all_cpu())
                elif line.startswith("RESULT "):
                    import json

                    result = json.loads(line[7:])
                if time.monotonic() > deadline:
                    break
            self.children.stop(proc)
            if result is None or len(marks) != 2:
                raise RuntimeError(f"loadgen gave no result for {url} with {calls} calls")
            (t0, c0), (t1, c1) = marks["WINDOW_START"], marks["WINDOW_END"]
            seconds = t1 - t0
            pct = partial(cpu_pct, before=c0, after=c1, seconds=seconds)
            result["window_seconds"] = round(seconds, 3)
            result["loadgen_cpu_pct"] = pct(proc.pid)
            result["echo_cpu_pct"] = pct(self.echo.pid)
            result["foreign_cpu_pct"] = round(foreign_cpu_pct(c0, c1, ours, seconds), 1)
            if bridge is not None:
                cpu = pct(bridge.pid)
                result["bridge_cpu_pct"] = cpu
                frames = result["received_in_window"]
                result["cpu_us_per_frame"] = (
                    round(cpu / 100 * seconds / frames * 1e6, 1) if cpu and frames else None
                )
                result["bridge_rss_kib"] = rss_kib(bridge.pid)
            if result["foreign_cpu_pct"] <= a.max_foreign or attempt == 1:
                result["attempt"] = attempt + 1
                return result
            log(f"    noisy window ({result['foreign_cpu_pct']} % foreign CPU): repeating")
            wait_quiet(a.max_foreign, 3, ours)
        raise AssertionError("unreachable")

    # -- bridges ----------------------------------------------------------------------

    def start_bridge(self, name: str) -> tuple[subprocess.Popen[bytes], str]:
        script, *extra = BRIDGES[name][0]
        port = free_port()
        proc = self.children.start(
            [
                PY,
                str(HERE / "bridges" / script),
                "--port",
                str(port),
                "--remote",
                self.remote,
                *extra,
            ],
            BRIDGE_CORE,
        )
        wait_port(port, proc)
        url = f"ws://127.0.0.1:{port}/media-stream"
        # Warm-up: one short call, so imports and first-use costs are paid.
        self.loadgen(url, 1, proc, warmup=0.2, duration=0.5)
        return proc, url

    def point(self, name: str, calls: int) -> dict[str, Any]:
        """``--repeats`` runs of ``calls`` paced calls on a fresh bridge; the median verdict."""
        a = self.args
        wait_quiet(a.max_foreign, 3, {self.echo.pid})
        proc, url = self.start_bridge(name)
        try:
            runs = []
            for _ in range(a.repeats):
                run = self.loadgen(url, calls, proc)
                run["bridge"] = name
                runs.append(run)
                self.runs.append(run)
        finally:
            self.children.stop(proc)
        base = self.baseline_p99(calls)
        p99 = median([r["rtt_p99_ms"] for r in runs])
        added = None if p99 is None else round(p99 - base, 2)
        ok = (
            added is not None
            and added < P99_LIMIT_MS
            and all(r["lost"] == 0 and r["errors"] == 0 for r in runs)
            and all(
                r["received_in_window"] >= 0.98 * r["expected_fps"] * r["duration"] for r in runs
            )
        )
        summary = {
            "bridge": name,
            "calls": calls,
            "sustained": ok,
            "p99_ms": p99,
            "p99_added_ms": added,
            "p99_runs": [r["rtt_p99_ms"] for r in runs],
            "p50_ms": median([r["rtt_p50_ms"] for r in runs]),
            "bridge_cpu_pct": median([r.get("bridge_cpu_pct") for r in runs]),
            "cpu_us_per_frame": median([r.get("cpu_us_per_frame") for r in runs]),
            "loadgen_cpu_pct": median([r["loadgen_cpu_pct"] for r in runs]),
            "echo_cpu_pct": median([r["echo_cpu_pct"] for r in runs]),
            "lost": sum(r["lost"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "sched_lag_p99_ms": median([r["sched_lag_p99_ms"] for r in runs]),
            "foreign_cpu_pct": max(r["foreign_cpu_pct"] for r in runs),
        }
        log(
            f"  {name:20s} {calls:4d} calls: p99 {fmt(p99, 2)} ms (added {fmt(added, 2)}), "
            f"cpu {fmt(summary['bridge_cpu_pct'])} %, "
            f"{fmt(summary['cpu_us_per_frame'])} us/frame, "
            f"lost {summary['lost']}, errors {summary['errors']}, load side "
            f"{fmt(summary['loadgen_cpu_pct'])}+{fmt(summary['echo_cpu_pct'])} % -> "
            f"{'ok' if ok else 'FAIL'}"
        )
        return summary

    def baseline_p99(self, calls: int) -> float:
        """The loadgen->echo p99 at ``calls`` (measured once per size, then reused)."""
        if calls not in self.baseline:
            run = self.loadgen(self.remote, calls, None, warmup=0.5, duration=2.0)
            self.baseline[calls] = run["rtt_p99_ms"] or 0.0
            run["bridge"] = "baseline"
            self.runs.append(run)
        return self.baseline[calls]

    def idle_memory(self, name: str) -> dict[str, Any]:
        a = self.args
        proc, url = self.start_bridge(name)
        try:
            time.sleep(0.5)
            rss0 = rss_kib(proc.pid)
            argv = [PY, str(HERE / "load" / "loadgen.py"), "--url", url, "--mode", "idle"]
            argv += ["--calls", str(a.idle_calls), "--hold", "4"]
            gen = self.children.start(argv, LOAD_CORE, stdout=subprocess.PIPE)
            assert gen.stdout is not None
            connected = 0
            rss_n = None
            for raw in gen.stdout:
                line = raw.decode().strip()
                if line.startswith("CONNECTED"):
                    connected = int(line.split()[1])
                    time.sleep(2.5)
                    rss_n = rss_kib(proc.pid)
            self.children.stop(gen)
        finally:
            self.children.stop(proc)
        per_call = (rss_n - rss0) / connected if rss0 and rss_n and connected else None
        log(
            f"  {name:20s} idle: {connected} calls, RSS {rss0} -> {rss_n} KiB: "
            f"{fmt(per_call)} KiB/call"
        )
        return {
            "bridge": name,
            "calls": connected,
            "rss0_kib": rss0,
            "rss_kib": rss_n,
            "kib_per_call": per_call,
        }

    def max_calls(
        self, name: str, first: dict[str, Any]
    ) -> tuple[int | None, int | None, list[dict[str, Any]]]:
        return find_max(
            first,
            lambda n: self.point(name, n),
            max_probes=self.args.max_probes,
            resolution=self.args.resolution,
            cpu_key="bridge_cpu_pct",
        )


def run(args: argparse.Namespace) -> dict[str, Any]:
    bench = Bench(args)
    try:
        names = args.bridges
        summaries = []
        for name in names:
            log(f"bridge {name}: {BRIDGES[name][1]}")
            idle = bench.idle_memory(name) if args.idle_calls else None
            first = bench.point(name, args.cpu_calls)
            good, bad, points = bench.max_calls(name, first)
            summaries.append(
                {
                    "bridge": name,
                    "label": BRIDGES[name][1],
                    "max_calls": good,
                    "first_failing": bad,
                    "at_cpu_calls": first,
                    "points": points,
                    "idle": idle,
                }
            )
    finally:
        bench.children.stop_all()
    return {
        "benchmark": "bridge",
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "func"},
        "baseline_p99_ms": bench.baseline,
        "bridges": summaries,
        "runs": bench.runs,
    }


TABLE_HEADER = (
    "bridge",
    "max calls (p99 added < 20 ms)",
    "first failing",
    "CPU/frame at N calls (µs)",
    "CPU % at N calls",
    "p99 at N calls (ms)",
    "idle KiB/call",
)


def table_rows(result: dict[str, Any]) -> list[list[str]]:
    rows = []
    for s in result["bridges"]:
        at = s["at_cpu_calls"]
        rows.append(
            [
                s["label"],
                fmt(s["max_calls"]),
                fmt(s["first_failing"]),
                fmt(at["cpu_us_per_frame"]),
                fmt(at["bridge_cpu_pct"]),
                fmt(at["p99_ms"], 2),
                fmt(s["idle"]["kib_per_call"] if s["idle"] else None),
            ]
        )
    return rows


def targets(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """The issue's bridge targets, checked on this run's figures."""
    by = {s["bridge"]: s for s in result["bridges"]}
    out: list[tuple[str, str, bool | None]] = []

    def calls(name: str) -> int | None:
        return by[name]["max_calls"] if name in by else None

    def cpu(name: str) -> float | None:
        return by[name]["at_cpu_calls"]["cpu_us_per_frame"] if name in by else None

    teler = calls("teler_uvloop")
    for ours in ("ours_trio", "ours_trio_tw"):
        if calls(ours) is not None and teler:
            ratio = calls(ours) / teler
            out.append(
                (f"{ours} calls / teler_uvloop calls >= 1.5", f"{ratio:.2f}x", ratio >= 1.5)
            )
    ref = cpu("relay_hypercorn")
    for ours in ("ours_hypercorn", "ours_hypercorn_tw"):
        if cpu(ours) is not None and ref:
            over = cpu(ours) / ref - 1
            out.append(
                (
                    f"{ours} CPU/frame at most 5 % over relay_hypercorn",
                    f"{over * 100:+.1f} % ({cpu(ours)} vs {ref} µs)",
                    over <= 0.05,
                )
            )
    teler_idle = by.get("teler_asyncio", {}).get("idle") or {}
    for ours in ("ours_trio", "ours_trio_tw", "ours_hypercorn"):
        idle = (by.get(ours) or {}).get("idle") or {}
        if idle.get("kib_per_call") is not None and teler_idle.get("kib_per_call"):
            out.append(
                (
                    f"{ours} idle memory per call < teler's",
                    f"{idle['kib_per_call']:.1f} vs {teler_idle['kib_per_call']:.1f} KiB",
                    idle["kib_per_call"] < teler_idle["kib_per_call"],
                )
            )
    return out


def markdown(result: dict[str, Any]) -> str:
    """The section of ``docs/performance.md`` for one run at one sample rate."""
    s = result["settings"]
    baseline = ", ".join(
        f"{ms:.2f} ms at {n}"
        for n, ms in sorted(result["baseline_p99_ms"].items(), key=lambda kv: int(kv[0]))
    )
    return "\n".join(
        [
            f"### Bridge, {s['rate'] // 1000} kHz",
            "",
            f"Run {result['machine']['date']}. 20 ms frames, {s['repeats']} run(s) of "
            f"{s['duration']:g} s per point; the CPU and p99 columns at N = {s['cpu_calls']} "
            f"paced calls; idle memory with {s['idle_calls']} connected calls. Baseline p99 "
            f"(load generator straight to the echo): {baseline}.",
            "",
            markdown_table(TABLE_HEADER, table_rows(result)),
            noisy(result, "bridges", "bridge"),
            verdict_table(targets(result)),
        ]
    )


def add_arguments(parser: argparse.ArgumentParser, quick: bool) -> None:
    parser.add_argument(
        "--bridges", default=",".join(DEFAULT_BRIDGES), type=lambda s: s.split(",")
    )
    parser.add_argument("--rate", type=int, choices=(8000, 16000), default=8000)
    parser.add_argument("--repeats", type=int, default=1 if quick else 3)
    parser.add_argument("--duration", type=float, default=2.0 if quick else 2.5)
    parser.add_argument("--warmup", type=float, default=0.5 if quick else 0.75)
    parser.add_argument("--cpu-calls", type=int, default=40)
    parser.add_argument("--idle-calls", type=int, default=100 if quick else 200)
    parser.add_argument("--max-probes", type=int, default=2 if quick else 7)
    parser.add_argument("--resolution", type=float, default=0.1)
    parser.add_argument("--max-foreign", type=float, default=8.0)
    parser.add_argument(
        "--label",
        default="",
        help="a side run: write results/bridge-RATE-LABEL-STAMP.json only, not the latest",
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true")
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    add_arguments(parser, quick)
    args = parser.parse_args(argv)
    for name in args.bridges:
        if name not in BRIDGES:
            parser.error(f"unknown bridge {name!r}; known: {', '.join(BRIDGES)}")
    result = run(args)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    if args.label:
        write_json(f"bridge-{args.rate}-{args.label}-{stamp}.json", result)
    else:
        write_json(f"bridge-{args.rate}-{stamp}.json", result)
        write_json(f"bridge-{args.rate}-latest.json", result)
    print(markdown(result))
    return result


Check = Callable[[dict[str, Any]], list[tuple[str, str, bool | None]]]

if __name__ == "__main__":
    main()
