"""Bridge benchmark: our StreamConnector and teler's on the same real-time load, one run.

Set-up (perf-anchors.md): ``loadgen (core 1) -> bridge (core 0) -> echo (core 1)``,
every leg a loopback WebSocket. Every bridge is served the way its users serve
it (public API, documented set-up), in four set-ups, each with teler 1.0.0 on
uvloop and on asyncio next to ours:

1. call leg ``ws://``, remote ``ws://``;
2. remote ``wss://`` (every voice-AI endpoint is);
3. both legs ``wss://``;
4. the FastAPI sample (``examples/teler_fastapi_echo.py``) on Hypercorn's trio
   worker, against teler's own FastAPI sample (the rows of set-up 1).

TLS uses a CA and a ``127.0.0.1`` certificate made at run time with trustme
(``_tls.py``); the echo is one process serving ``ws://`` and ``wss://``. For each
bridge:

* **CPU per frame** at a fixed number of paced calls (``--cpu-calls``), measured
  ``--cpu-repeats`` times on one bridge process: the bridge's utime+stime over
  the window (/proc/PID/stat) divided by the frames that came back in it (each
  frame is four WebSocket messages at the bridge). The spread of the repeats,
  the steal time and the CPU of other processes in each window say how noisy
  the run was.
* **max calls**: the most paced calls whose median p99 added latency (p99 RTT
  minus the loadgen->echo baseline p99 on the same scheme) stays under 20 ms
  with no lost frame, no error and at least 98 % delivered. The search starts
  from what the CPU at ``--cpu-calls`` predicts (about 75 % of a core), steps
  until it brackets the knee and bisects to ``--resolution``. Each point: a
  fresh bridge process, ``--repeats`` runs, median.
* **idle memory** (``--idle-calls``, off in ``--quick``): RSS per connected call.

A run whose window saw more than ``--max-foreign`` % of a core used by other
processes is repeated once (``--noisy-retries``), and each point waits up to
``--quiet-wait`` seconds for the machine to calm down first; ``--quick`` does
neither, so it stays short on a busy machine. The figure is kept in every record.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from _proc import (
    HERE,
    Children,
    all_cpu,
    foreign_cpu_pct,
    free_port,
    rss_kib,
    steal_seconds,
    wait_port,
    wait_quiet,
)
from _report import (
    fmt,
    machine,
    markdown_table,
    median,
    noise_parts,
    noisy,
    write_results,
)
from _search import find_max
from _tls import Certs, make_certs

PY = sys.executable
BRIDGE_CORE = {0}
LOAD_CORE = {1}
P99_LIMIT_MS = 20.0
#: the layout of a result file (run.py renders only this one)
FORMAT = 2

#: set-up key -> how it reads in the tables
SETUPS = {
    "ws": "(1) call ws://, remote ws://",
    "remote_wss": "(2) call ws://, remote wss://",
    "wss": "(3) both legs wss://",
    "fastapi": "(4) FastAPI sample, ws://",
}


@dataclass(frozen=True)
class Bridge:
    """One row: a script under ``bridges/`` with its arguments, and which legs are TLS."""

    script: list[str]
    label: str
    setup: str
    call_tls: bool = False
    remote_tls: bool = False


def _in_every_setup(name: str, script: list[str], label: str) -> dict[str, Bridge]:
    return {
        name: Bridge(script, label, "ws"),
        f"{name}_remote_wss": Bridge(script, label, "remote_wss", remote_tls=True),
        f"{name}_wss": Bridge(script, label, "wss", call_tls=True, remote_tls=True),
    }


BRIDGES: dict[str, Bridge] = {
    **_in_every_setup(
        "ours_trio",
        ["ours_trio.py"],
        "ours: StreamConnector behind telcoflow_trio.ws.serve_websocket",
    ),
    "ours_hypercorn": Bridge(
        ["ours_hypercorn.py"],
        "ours: StreamConnector in the FastAPI sample, Hypercorn trio worker",
        "fastapi",
    ),
    **_in_every_setup(
        "teler_uvloop",
        ["teler_app.py", "--loop", "uvloop"],
        "teler 1.0.0 StreamConnector, FastAPI + uvicorn, uvloop",
    ),
    **_in_every_setup(
        "teler_asyncio",
        ["teler_app.py", "--loop", "asyncio"],
        "teler 1.0.0 StreamConnector, FastAPI + uvicorn, asyncio",
    ),
    # Yardsticks, not in the default run.
    "relay_hypercorn": Bridge(
        ["relay_hypercorn.py"],
        "hand-written trio relay, FastAPI on Hypercorn trio (same stack)",
        "fastapi",
    ),
    "trio_relay": Bridge(["trio_relay.py"], "hand-written trio-websocket relay, plain trio", "ws"),
    **_in_every_setup(
        "ws_relay_uvloop",
        ["ws_relay.py", "--loop", "uvloop"],
        "hand-written websockets relay, uvloop",
    ),
    "ws_relay_asyncio": Bridge(
        ["ws_relay.py", "--loop", "asyncio"], "hand-written websockets relay, asyncio", "ws"
    ),
}
#: the rows of the four set-ups, each set-up's rows together
DEFAULT_BRIDGES = [
    f"{who}{setup}"
    for setup in ("", "_remote_wss", "_wss")
    for who in ("ours_trio", "teler_uvloop", "teler_asyncio")
] + ["ours_hypercorn"]


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
        self.certs: Certs = make_certs()
        port, tls_port = free_port(), free_port()
        self.echo = self.children.start(
            [
                PY,
                str(HERE / "load" / "echo_server.py"),
                "--port",
                str(port),
                "--tls-port",
                str(tls_port),
                "--certfile",
                self.certs.certfile,
                "--keyfile",
                self.certs.keyfile,
            ],
            LOAD_CORE,
        )
        wait_port(port, self.echo)  # the echo opens its TLS port first
        #: the echo's URL, by "is it TLS"
        self.remote = {False: f"ws://127.0.0.1:{port}/", True: f"wss://127.0.0.1:{tls_port}/"}
        self.baseline: dict[str, float] = {}
        self.runs: list[dict[str, Any]] = []

    # -- one loadgen run --------------------------------------------------------------

    def loadgen_argv(self, url: str, calls: int, **opts: Any) -> list[str]:
        a = self.args
        argv = [PY, str(HERE / "load" / "loadgen.py"), "--url", url, "--calls", str(calls)]
        argv += ["--rate", str(opts.get("rate", a.rate))]
        argv += ["--warmup", str(opts.get("warmup", a.warmup))]
        argv += ["--duration", str(opts.get("duration", a.duration))]
        argv += ["--drain", str(a.drain), "--cafile", self.certs.cafile]
        return argv + [str(x) for x in opts.get("extra", ())]

    def loadgen(
        self, url: str, calls: int, bridge: subprocess.Popen[bytes] | None, **opts: Any
    ) -> dict[str, Any]:
        argv = self.loadgen_argv(url, calls, **opts)
        for attempt in range(self.args.noisy_retries + 1):
            proc = self.children.start(argv, LOAD_CORE, stdout=subprocess.PIPE)
            ours = {self.echo.pid, proc.pid} | ({bridge.pid} if bridge else set())
            marks: dict[str, tuple[float, dict[int, float], float | None]] = {}
            result: dict[str, Any] | None = None
            assert proc.stdout is not None
            deadline = time.monotonic() + 120
            for raw in proc.stdout:
                line = raw.decode().strip()
                if line in ("WINDOW_START", "WINDOW_END"):
                    marks[line] = (time.monotonic(), all_cpu(), steal_seconds())
                elif line.startswith("RESULT "):
                    result = json.loads(line[7:])
                if time.monotonic() > deadline:
                    break
            self.children.stop(proc)
            if result is None or len(marks) != 2:
                raise RuntimeError(f"loadgen gave no result for {url} with {calls} calls")
            (t0, c0, s0), (t1, c1, s1) = marks["WINDOW_START"], marks["WINDOW_END"]
            seconds = t1 - t0
            pct = partial(cpu_pct, before=c0, after=c1, seconds=seconds)
            result["window_seconds"] = round(seconds, 3)
            result["loadgen_cpu_pct"] = pct(proc.pid)
            result["echo_cpu_pct"] = pct(self.echo.pid)
            result["foreign_cpu_pct"] = round(foreign_cpu_pct(c0, c1, ours, seconds), 1)
            result["steal_pct"] = (
                round(100.0 * (s1 - s0) / seconds, 1)
                if s0 is not None and s1 is not None
                else None
            )
            if bridge is not None:
                cpu = pct(bridge.pid)
                result["bridge_cpu_pct"] = cpu
                frames = result["received_in_window"]
                result["cpu_us_per_frame"] = (
                    round(cpu / 100 * seconds / frames * 1e6, 1) if cpu and frames else None
                )
                result["bridge_rss_kib"] = rss_kib(bridge.pid)
            if (
                result["foreign_cpu_pct"] <= self.args.max_foreign
                or attempt == self.args.noisy_retries
            ):
                result["attempt"] = attempt + 1
                return result
            log(f"    noisy window ({result['foreign_cpu_pct']} % foreign CPU): repeating")
            wait_quiet(self.args.max_foreign, self.args.quiet_wait, ours)
        raise AssertionError("unreachable")

    # -- bridges ----------------------------------------------------------------------

    def bridge_argv(self, name: str, port: int) -> list[str]:
        """The bridge's command line: port, the echo on its scheme, and the TLS files."""
        bridge = BRIDGES[name]
        script, *extra = bridge.script
        argv = [PY, str(HERE / "bridges" / script), "--port", str(port)]
        argv += ["--remote", self.remote[bridge.remote_tls], *extra]
        if bridge.remote_tls:
            argv += ["--cafile", self.certs.cafile]
        if bridge.call_tls:
            argv += ["--certfile", self.certs.certfile, "--keyfile", self.certs.keyfile]
        return argv

    def start_bridge(self, name: str) -> tuple[subprocess.Popen[bytes], str]:
        port = free_port()
        proc = self.children.start(self.bridge_argv(name, port), BRIDGE_CORE)
        wait_port(port, proc)
        scheme = "wss" if BRIDGES[name].call_tls else "ws"
        url = f"{scheme}://127.0.0.1:{port}/media-stream"
        # Warm-up: one short call, so imports and first-use costs are paid.
        self.loadgen(url, 1, proc, warmup=0.1, duration=0.3)
        return proc, url

    def point(self, name: str, calls: int, repeats: int | None = None) -> dict[str, Any]:
        """``repeats`` runs of ``calls`` paced calls on a fresh bridge; the median verdict."""
        a = self.args
        if a.quiet_wait > 0:
            wait_quiet(a.max_foreign, a.quiet_wait, {self.echo.pid})
        proc, url = self.start_bridge(name)
        try:
            runs = []
            for _ in range(repeats or a.repeats):
                run = self.loadgen(url, calls, proc)
                run["bridge"] = name
                runs.append(run)
                self.runs.append(run)
        finally:
            self.children.stop(proc)
        base = self.baseline_p99(calls, BRIDGES[name].call_tls)
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
        per_frame = [r.get("cpu_us_per_frame") for r in runs]
        summary = {
            "bridge": name,
            "calls": calls,
            "sustained": ok,
            "p99_ms": p99,
            "p99_added_ms": added,
            "p99_runs": [r["rtt_p99_ms"] for r in runs],
            "p50_ms": median([r["rtt_p50_ms"] for r in runs]),
            "bridge_cpu_pct": median([r.get("bridge_cpu_pct") for r in runs]),
            "cpu_us_per_frame": median(per_frame),
            "cpu_us_per_frame_runs": per_frame,
            "cpu_spread_pct": spread_pct(per_frame),
            "loadgen_cpu_pct": median([r["loadgen_cpu_pct"] for r in runs]),
            "echo_cpu_pct": median([r["echo_cpu_pct"] for r in runs]),
            "lost": sum(r["lost"] for r in runs),
            "errors": sum(r["errors"] for r in runs),
            "sched_lag_p99_ms": median([r["sched_lag_p99_ms"] for r in runs]),
            "foreign_cpu_pct": max(r["foreign_cpu_pct"] for r in runs),
            "steal_pct": median([r["steal_pct"] for r in runs]),
        }
        log(
            f"  {name:24s} {calls:4d} calls: p99 {fmt(p99, 2)} ms (added {fmt(added, 2)}), "
            f"cpu {fmt(summary['bridge_cpu_pct'])} %, "
            f"{fmt(summary['cpu_us_per_frame'])} us/frame "
            f"(runs {', '.join(fmt(v) for v in per_frame)}), "
            f"lost {summary['lost']}, errors {summary['errors']}, load side "
            f"{fmt(summary['loadgen_cpu_pct'])}+{fmt(summary['echo_cpu_pct'])} %, "
            f"steal {fmt(summary['steal_pct'])} % -> {'ok' if ok else 'FAIL'}"
        )
        return summary

    def baseline_p99(self, calls: int, tls: bool) -> float:
        """The loadgen->echo p99 at ``calls`` on ``ws://`` or ``wss://`` (measured once)."""
        key = f"{'wss' if tls else 'ws'} {calls}"
        if key not in self.baseline:
            run = self.loadgen(self.remote[tls], calls, None)
            self.baseline[key] = run["rtt_p99_ms"] or 0.0
            run["bridge"] = f"baseline {key}"
            self.runs.append(run)
        return self.baseline[key]

    def idle_memory(self, name: str) -> dict[str, Any]:
        a = self.args
        proc, url = self.start_bridge(name)
        try:
            time.sleep(0.5)
            rss0 = rss_kib(proc.pid)
            argv = [PY, str(HERE / "load" / "loadgen.py"), "--url", url, "--mode", "idle"]
            argv += ["--calls", str(a.idle_calls), "--hold", "4", "--cafile", self.certs.cafile]
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
            f"  {name:24s} idle: {connected} calls, RSS {rss0} -> {rss_n} KiB: "
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


def spread_pct(values: list[float | None]) -> float | None:
    """(max - min) / median of the repeats, in % (``None`` with fewer than two)."""
    present = [v for v in values if v is not None]
    mid = median(present)
    if len(present) < 2 or not mid:
        return None
    return round(100.0 * (max(present) - min(present)) / mid, 1)


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    bench = Bench(args)
    try:
        summaries = []
        for name in args.bridges:
            bridge = BRIDGES[name]
            log(f"bridge {name}: {bridge.label}, {SETUPS[bridge.setup]}")
            idle = bench.idle_memory(name) if args.idle_calls else None
            first = bench.point(name, args.cpu_calls, args.cpu_repeats)
            good, bad, points = bench.max_calls(name, first)
            summaries.append(
                {
                    "bridge": name,
                    "label": bridge.label,
                    "setup": bridge.setup,
                    "call_tls": bridge.call_tls,
                    "remote_tls": bridge.remote_tls,
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
        "format": FORMAT,
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k != "func"},
        "seconds": round(time.monotonic() - started, 1),
        "baseline_p99_ms": bench.baseline,
        "bridges": summaries,
        "runs": bench.runs,
    }


ROW_HEADER = (
    "set-up",
    "bridge",
    "CPU/frame at N calls, µs: median [min-max]",
    "spread",
    "CPU % at N",
    "p99 at N (ms)",
    "load side CPU % at N",
    "max calls (p99 added < 20 ms)",
    "first failing",
    "idle KiB/call",
)


def row_cells(s: dict[str, Any]) -> list[str]:
    at = s["at_cpu_calls"]
    runs = [v for v in at["cpu_us_per_frame_runs"] if v is not None]
    span = f" [{min(runs):.0f}-{max(runs):.0f}]" if len(runs) > 1 else ""
    saturated = (at["bridge_cpu_pct"] or 0) >= 95
    return [
        SETUPS[s["setup"]],
        s["label"],
        f"{fmt(at['cpu_us_per_frame'], 0)}{span}" + (" (saturated)" if saturated else ""),
        "-" if at["cpu_spread_pct"] is None else f"{at['cpu_spread_pct']:.0f} %",
        fmt(at["bridge_cpu_pct"]),
        fmt(at["p99_ms"], 2),
        f"{fmt(at['loadgen_cpu_pct'])} + {fmt(at['echo_cpu_pct'])}",
        fmt(s["max_calls"]),
        fmt(s["first_failing"]),
        fmt(s["idle"]["kib_per_call"] if s["idle"] else None),
    ]


#: set-up -> (our row, the set-up whose teler rows it is compared with)
OURS = {
    "ws": ("ours_trio", "ws"),
    "remote_wss": ("ours_trio_remote_wss", "remote_wss"),
    "wss": ("ours_trio_wss", "wss"),
    "fastapi": ("ours_hypercorn", "ws"),
}
TELER = {"ws": "", "remote_wss": "_remote_wss", "wss": "_wss"}

SIDE_HEADER = (
    "set-up",
    "CPU/frame µs: ours / teler uvloop / teler asyncio",
    "teler uvloop ÷ ours (CPU, > 1: ours cheaper)",
    "max calls: ours / teler uvloop / teler asyncio",
    "ours ÷ teler uvloop (calls)",
)


def side_by_side(result: dict[str, Any]) -> list[list[str]]:
    """One line per set-up: our row against teler's on uvloop and on asyncio."""
    by = {s["bridge"]: s for s in result["bridges"]}
    rows = []
    for setup, (ours, teler_setup) in OURS.items():
        names = [ours] + [f"teler_{loop}{TELER[teler_setup]}" for loop in ("uvloop", "asyncio")]
        if not any(n in by for n in names):
            continue
        cpu = [by[n]["at_cpu_calls"]["cpu_us_per_frame"] if n in by else None for n in names]
        calls = [by[n]["max_calls"] if n in by else None for n in names]
        rows.append(
            [
                SETUPS[setup],
                " / ".join(fmt(v, 0) for v in cpu),
                f"{cpu[1] / cpu[0]:.2f}" if cpu[0] and cpu[1] else "-",
                " / ".join(fmt(v) for v in calls),
                f"{calls[0] / calls[1]:.2f}" if calls[0] and calls[1] else "-",
            ]
        )
    return rows


def noise(result: dict[str, Any]) -> str:
    """How noisy the run was: the repeats' spread, steal time and other processes' CPU."""
    fixed = [s["at_cpu_calls"] for s in result["bridges"]]
    spreads = [p["cpu_spread_pct"] for p in fixed if p["cpu_spread_pct"] is not None]
    steal = [r["steal_pct"] for r in result["runs"] if r.get("steal_pct") is not None]
    foreign = [r["foreign_cpu_pct"] for r in result["runs"]]
    parts = noise_parts(
        f"CPU/frame spread of the {result['settings']['cpu_repeats']} repeats at N",
        spreads,
        steal,
        foreign,
    )
    return ("Noise: " + "; ".join(parts) + ".\n") if parts else ""


def markdown(result: dict[str, Any]) -> str:
    """The section of ``docs/performance.md`` for one run at one sample rate."""
    s = result["settings"]
    baseline = ", ".join(f"{ms:.2f} ms at {key}" for key, ms in result["baseline_p99_ms"].items())
    return "\n".join(
        [
            f"### Bridge, {s['rate'] // 1000} kHz",
            "",
            f"Run {result['machine']['date']}. 20 ms frames; CPU columns at N = {s['cpu_calls']} "
            f"paced calls, {s['cpu_repeats']} runs of {s['duration']:g} s on one bridge process; "
            f"capacity points {s['repeats']} run(s) each, at most {s['max_probes']} probes"
            + (f"; idle memory with {s['idle_calls']} connected calls" if s["idle_calls"] else "")
            + f". Baseline p99 (load generator straight to the echo): {baseline}.",
            "",
            markdown_table(SIDE_HEADER, side_by_side(result)),
            markdown_table(ROW_HEADER, [row_cells(b) for b in result["bridges"]]),
            noise(result),
            noisy(result, "bridges", "bridge"),
        ]
    )


def add_arguments(parser: argparse.ArgumentParser, quick: bool) -> None:
    parser.add_argument(
        "--bridges", default=",".join(DEFAULT_BRIDGES), type=lambda s: s.split(",")
    )
    parser.add_argument("--rate", type=int, choices=(8000, 16000), default=8000)
    parser.add_argument("--repeats", type=int, default=1 if quick else 3)
    parser.add_argument("--duration", type=float, default=0.8 if quick else 2.5)
    parser.add_argument("--warmup", type=float, default=0.3 if quick else 0.75)
    parser.add_argument(
        "--drain", type=float, default=1.0 if quick else 3.0, help="wait for late replies"
    )
    parser.add_argument("--cpu-calls", type=int, default=60)
    parser.add_argument("--cpu-repeats", type=int, default=3)
    parser.add_argument("--idle-calls", type=int, default=0 if quick else 200)
    parser.add_argument("--max-probes", type=int, default=1 if quick else 7)
    parser.add_argument("--resolution", type=float, default=0.1)
    parser.add_argument("--max-foreign", type=float, default=8.0)
    parser.add_argument("--noisy-retries", type=int, default=0 if quick else 1)
    parser.add_argument("--quiet-wait", type=float, default=0.0 if quick else 3.0)
    parser.add_argument(
        "--label",
        default="",
        help="a side run: write results/bridge-RATE-LABEL-STAMP.json only, not the latest",
    )


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="every row briefly (< 3 min)")
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    add_arguments(parser, quick)
    args = parser.parse_args(argv)
    for name in args.bridges:
        if name not in BRIDGES:
            parser.error(f"unknown bridge {name!r}; known: {', '.join(BRIDGES)}")
    result = run(args)
    write_results(f"bridge-{args.rate}", result, args.label)
    print(markdown(result))
    log(f"bridge benchmark at {args.rate} Hz: {result['seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
