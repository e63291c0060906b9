"""Outbound calls: set-up latency, calls placed per second and CPU per call, ours vs the SDK.

One simulator process (core 1) whose callees answer at once and talk a 440 Hz
tone; one dialer process at a time (core 0): ours (``TelcoflowClient.place_call``)
or the official ``telcoflow`` 1.0.0 SDK (``SessionManager.create_session``,
``session.ready``, then the voice connection its first ``send_audio`` opens).
A call is: create, wait for the answer (``call.in``), open the media, hear the
callee's first audio frame, close. Each run is a fresh simulator and a fresh
dialer that connects, places ``--warmup`` calls one at a time (imports, first
use), then ``--calls`` calls ``C`` at a time (``--concurrency``, several levels)
in the measured window. The runs of one cell (scheme, ``C``, dialer) are
repeated ``--repeats`` times, interleaved with the other dialer's (ours, sdk,
then sdk, ours, ...), so that noise falls on both sides. Per cell:

* **set-up latency** p50/p90/p99 over the calls of all repeats: ``session.create``
  sent -> the callee's first audio frame received (media connected both ways);
* **calls per second**: calls completed / wall time of the window, median of
  the repeats with their range;
* **CPU per call**: the dialer's user+sys time in the window (``getrusage``)
  / calls completed, median of the repeats.

Schemes: ``ws://`` and ``wss://`` (``--schemes``). For ``wss://`` the simulator
serves a ``127.0.0.1`` certificate of a CA made at run time with trustme
(``_tls.py``); our client trusts it with its documented ``ca_file`` option, the
SDK (which has no CA option with API keys: ``websockets.connect`` with a default
context) through ``SSL_CERT_FILE``, as a deployment trusts a private CA.

The SDK as shipped places about 50 calls in a process's life (its event bus,
abxbus with ``max_history_size=100``, never drops history and rejects new events
once full), so ``--warmup`` + ``--calls`` stays under that by default.
``sdk_uncapped`` (by name with ``--agents``) lifts that private SDK limit, for
longer runs (``--calls 200``).

Noise: the steal time (``/proc/stat``) and the CPU other processes used in each
window (``/proc/PID/stat``); a window where they used more than ``--max-foreign``
% of a core is repeated, up to 3 times (``--noisy-retries``), each run waiting
up to ``--quiet-wait`` seconds for the machine to calm down first. Needs ``telcoflow==1.0.0``
and trustme next to telcoflow_trio (``nox -s bench``'s venv). Results go to
``results/outbound-<time>.json`` and ``results/outbound-latest.{json,md}``
(``--label NAME``: ``results/outbound-NAME-<time>.json`` only).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _proc import (
    HERE,
    Children,
    all_cpu,
    foreign_cpu_pct,
    free_port,
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
    verdict_table,
    write_results,
)
from _tls import Certs, make_certs

PY = sys.executable
ROOT = HERE.parent
DIALER_CORE = {0}
SIM_CORE = {1}
TARGET = 1.5

AGENTS = {
    "ours": "ours: TelcoflowClient.place_call (lean transport)",
    "sdk": "official telcoflow 1.0.0 SDK (asyncio)",
    "sdk_uncapped": "official telcoflow 1.0.0 SDK, its 50-call event-bus cap lifted",
}


def number(i: int) -> str:
    """A number per call: two calls to one number at once would be one session."""
    return f"+1555{i:07d}"


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def cpu_now() -> float:
    """This process's user+sys seconds (all threads), at microsecond resolution."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


class Window:
    """The measured window, in step with the runner (which snapshots /proc at each mark)."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0

    def start(self) -> None:
        print("WINDOW_START", flush=True)
        sys.stdin.readline()  # the runner has taken its snapshot
        self.wall, self.cpu = time.monotonic(), cpu_now()

    def end(self) -> None:
        self.wall, self.cpu = time.monotonic() - self.wall, cpu_now() - self.cpu
        print("WINDOW_END", flush=True)
        sys.stdin.readline()


# -- the simulator process -----------------------------------------------------------


def serve(port: int, certfile: str | None, keyfile: str | None) -> None:
    import trio

    from telcoflow_trio.simulator import CallerScript, SimulatorConfig, open_simulator, tone

    async def main() -> None:
        script = CallerScript(audio=tone(440), answers_after=0.0, hangup_after=30.0)
        config = SimulatorConfig(
            callee_script=script, max_outbound_calls=10_000, tls_cert=certfile, tls_key=keyfile
        )
        async with open_simulator(config, listen=True, port=port):
            await trio.sleep_forever()

    trio.run(main)


# -- the dialers ----------------------------------------------------------------------------


def dial_ours(args: argparse.Namespace) -> dict[str, Any]:
    import trio

    from telcoflow_trio import TelcoflowClient, TelcoflowClientConfig

    latencies: list[float] = []
    errors: list[str] = []
    window = Window()

    async def one(client: TelcoflowClient, limit: trio.CapacityLimiter, i: int) -> None:
        async with limit:
            started = time.monotonic()
            try:
                async with client.place_call(number(i)) as call:
                    async for _ in call.audio_stream():
                        latencies.append(time.monotonic() - started)
                        break
            except Exception as exc:  # counted, not fatal: the table shows them
                errors.append(type(exc).__name__)

    async def batch(client: TelcoflowClient, first: int, calls: int, concurrency: int) -> None:
        limit = trio.CapacityLimiter(concurrency)
        async with trio.open_nursery() as nursery:
            for i in range(first, first + calls):
                nursery.start_soon(one, client, limit, i)

    async def main() -> None:
        config = TelcoflowClientConfig.sandbox(
            "sim-api-key",
            "sim-connector",
            base_url=args.url,
            sample_rate=16000,
            ca_file=args.cafile if args.url.startswith("wss:") else None,
        )
        with trio.fail_after(180):
            async with TelcoflowClient(config) as client:
                await batch(client, 0, args.warmup, 1)
                latencies.clear()
                window.start()
                await batch(client, args.warmup, args.calls, args.concurrency[0])
                window.end()

    trio.run(main)
    return {"latencies": latencies, "errors": errors, "wall": window.wall, "cpu": window.cpu}


def dial_sdk(args: argparse.Namespace) -> dict[str, Any]:
    from telcoflow import SessionManager, SessionManagerConfig
    from telcoflow.audio_config import CallAudioConfig
    from telcoflow.events import ChannelType

    latencies: list[float] = []
    errors: list[str] = []
    window = Window()

    async def one(sm: Any, limit: asyncio.Semaphore, i: int) -> None:
        async with limit:
            started = time.monotonic()
            try:
                session = await sm.create_session(ChannelType.TELCO, number(i))
                done = asyncio.Event()

                @session.on_incoming_call
                async def on_call(call: Any) -> None:
                    try:
                        await call.send_audio(b"\0" * 640)  # opens the voice connection
                        async for _ in call.audio_stream():
                            latencies.append(time.monotonic() - started)
                            break
                        await call.close()
                    finally:
                        done.set()

                await session.ready()
                await asyncio.wait_for(done.wait(), 30)
            except Exception as exc:  # counted, not fatal: the table shows them
                errors.append(type(exc).__name__)

    async def batch(sm: Any, first: int, calls: int, concurrency: int) -> None:
        limit = asyncio.Semaphore(concurrency)
        await asyncio.gather(*(one(sm, limit, i) for i in range(first, first + calls)))

    async def main() -> None:
        config = SessionManagerConfig.create(
            api_key="sim-api-key",
            connector_uuid="sim-connector",
            base_url=args.url,
            call_audio=CallAudioConfig(sample_rate=16000),
        )
        async with asyncio.timeout(180), SessionManager(config) as sm:
            if args.role == "sdk_uncapped":
                # abxbus keeps every event in a history capped at 100 and rejects
                # new ones once it is full: about 50 calls in a process's life.
                # This lifts the cap (a private attribute of the SDK's bus).
                sm._bus.event_history.max_history_size = None
            await batch(sm, 0, args.warmup, 1)
            latencies.clear()
            window.start()
            await batch(sm, args.warmup, args.calls, args.concurrency[0])
            window.end()

    asyncio.run(main())
    return {"latencies": latencies, "errors": errors, "wall": window.wall, "cpu": window.cpu}


# -- the runner ---------------------------------------------------------------------------------


def percentile(sorted_values: list[float], q: float) -> float | None:
    """Nearest-rank percentile ``q`` (0-1) of an ascending list."""
    if not sorted_values:
        return None
    return sorted_values[max(0, math.ceil(q * len(sorted_values)) - 1)]


def spread_pct(values: list[float]) -> float | None:
    """(max - min) / median, in %."""
    mid = median(values)
    if len(values) < 2 or not mid:
        return None
    return round(100.0 * (max(values) - min(values)) / mid, 1)


class Bench:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.children = Children()
        self.certs: Certs | None = make_certs() if "wss" in args.schemes else None
        self.env = {
            **os.environ,
            "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}",
        }
        self.me = str(Path(__file__).resolve())

    def run(self, agent: str, scheme: str, concurrency: int) -> dict[str, Any]:
        """One run (repeated once if noisy): a fresh simulator and dialer, one window."""
        a = self.args
        for attempt in range(a.noisy_retries + 1):
            record = self._run_once(agent, scheme, concurrency)
            if record["foreign_cpu_pct"] <= a.max_foreign or attempt == a.noisy_retries:
                record["attempt"] = attempt + 1
                return record
            log(f"    noisy window ({record['foreign_cpu_pct']} % foreign CPU): repeating")
        raise AssertionError("unreachable")

    def _run_once(self, agent: str, scheme: str, concurrency: int) -> dict[str, Any]:
        a = self.args
        port = free_port()
        sim_argv = [PY, self.me, "--role", "sim", "--port", str(port)]
        env = dict(self.env)
        if scheme == "wss":
            assert self.certs is not None
            sim_argv += ["--certfile", self.certs.certfile, "--keyfile", self.certs.keyfile]
            env["SSL_CERT_FILE"] = self.certs.cafile  # the SDK's only way to trust a CA
        sim = self.children.start(sim_argv, SIM_CORE, env=self.env)
        try:
            wait_port(port, sim)
            if a.quiet_wait > 0:
                wait_quiet(a.max_foreign, a.quiet_wait, {sim.pid})
            argv = [PY, self.me, "--role", agent, "--url", f"{scheme}://127.0.0.1:{port}"]
            argv += ["--calls", str(a.calls), "--concurrency", str(concurrency)]
            argv += ["--warmup", str(a.warmup)]
            if self.certs is not None:
                argv += ["--cafile", self.certs.cafile]
            dialer = self.children.start(
                argv, DIALER_CORE, stdout=subprocess.PIPE, stdin=subprocess.PIPE, env=env
            )
            assert dialer.stdout is not None
            assert dialer.stdin is not None
            marks: dict[str, tuple[float, dict[int, float], float | None]] = {}
            data: dict[str, Any] | None = None
            for raw in dialer.stdout:
                line = raw.decode().strip()
                if line in ("WINDOW_START", "WINDOW_END"):
                    marks[line] = (time.monotonic(), all_cpu(), steal_seconds())
                    dialer.stdin.write(b"go\n")
                    dialer.stdin.flush()
                elif line.startswith("RESULT "):
                    data = json.loads(line[7:])
            dialer.wait(30)
            code = dialer.returncode
            self.children.stop(dialer)
            if code != 0 or data is None or len(marks) != 2:
                raise RuntimeError(f"the {agent} dialer failed ({code}) on {scheme}")
        finally:
            self.children.stop(sim)
        (t0, c0, s0), (t1, c1, s1) = marks["WINDOW_START"], marks["WINDOW_END"]
        seconds = t1 - t0
        calls = len(data["latencies"])

        def pct(pid: int) -> float | None:
            if pid not in c0 or pid not in c1:
                return None
            return round(100.0 * (c1[pid] - c0[pid]) / seconds, 1)

        return {
            "agent": agent,
            "scheme": scheme,
            "concurrency": concurrency,
            "calls": calls,
            "errors": data["errors"],
            "wall_s": round(data["wall"], 4),
            "calls_per_second": round(calls / data["wall"], 1) if data["wall"] > 0 else None,
            "cpu_s": round(data["cpu"], 4),
            "cpu_ms_per_call": round(1000 * data["cpu"] / calls, 3) if calls else None,
            "dialer_cpu_pct": round(100 * data["cpu"] / data["wall"], 1) if data["wall"] else None,
            "sim_cpu_pct": pct(sim.pid),
            "foreign_cpu_pct": round(foreign_cpu_pct(c0, c1, {sim.pid, dialer.pid}, seconds), 1),
            "steal_pct": (
                round(100.0 * (s1 - s0) / seconds, 1)
                if s0 is not None and s1 is not None
                else None
            ),
            "setup_ms": [round(1000 * x, 3) for x in data["latencies"]],
        }


def summarise(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell (agent, scheme, concurrency) over its repeats."""
    ms = sorted(x for r in runs for x in r["setup_ms"])
    rates = [r["calls_per_second"] for r in runs if r["calls_per_second"] is not None]
    cpu = [r["cpu_ms_per_call"] for r in runs if r["cpu_ms_per_call"] is not None]
    return {
        "agent": runs[0]["agent"],
        "scheme": runs[0]["scheme"],
        "concurrency": runs[0]["concurrency"],
        "repeats": len(runs),
        "calls": len(ms),
        "errors": sum(len(r["errors"]) for r in runs),
        "setup_ms_p50": percentile(ms, 0.50),
        "setup_ms_p90": percentile(ms, 0.90),
        "setup_ms_p99": percentile(ms, 0.99),
        "calls_per_second": median(rates),
        "calls_per_second_range": [min(rates), max(rates)] if rates else None,
        "calls_per_second_spread_pct": spread_pct(rates),
        "cpu_ms_per_call": median(cpu),
        "cpu_ms_per_call_range": [min(cpu), max(cpu)] if cpu else None,
        "dialer_cpu_pct": median([r["dialer_cpu_pct"] for r in runs]),
        "sim_cpu_pct": median([r["sim_cpu_pct"] for r in runs]),
        "foreign_cpu_pct_max": max(r["foreign_cpu_pct"] for r in runs),
    }


def run(args: argparse.Namespace) -> dict[str, Any]:
    started = time.monotonic()
    bench = Bench(args)
    runs: list[dict[str, Any]] = []
    try:
        for repeat in range(args.repeats):
            # ours, sdk, then sdk, ours: neither side always runs first
            agents = args.agents if repeat % 2 == 0 else args.agents[::-1]
            for scheme in args.schemes:
                for concurrency in args.concurrency:
                    for agent in agents:
                        record = bench.run(agent, scheme, concurrency)
                        record["repeat"] = repeat + 1
                        runs.append(record)
                        log(
                            f"  {repeat + 1}/{args.repeats} {scheme} C={concurrency} "
                            f"{agent:12s}: {record['calls']} calls, "
                            f"p50 {fmt(percentile(sorted(record['setup_ms']), 0.5), 2)} ms, "
                            f"{fmt(record['calls_per_second'])} calls/s, "
                            f"{fmt(record['cpu_ms_per_call'], 2)} ms CPU/call, "
                            f"sim {fmt(record['sim_cpu_pct'])} %, "
                            f"foreign {fmt(record['foreign_cpu_pct'])} %, "
                            f"steal {fmt(record['steal_pct'])} %"
                            + (f", errors {record['errors']}" if record["errors"] else "")
                        )
    finally:
        bench.children.stop_all()
    cells = [
        summarise([r for r in runs if (r["agent"], r["scheme"], r["concurrency"]) == key])
        for key in dict.fromkeys((r["agent"], r["scheme"], r["concurrency"]) for r in runs)
    ]
    return {
        "benchmark": "outbound",
        "machine": machine(),
        "settings": {k: v for k, v in vars(args).items() if k not in ("role", "url", "cafile")},
        "seconds": round(time.monotonic() - started, 1),
        "cells": cells,
        "runs": runs,
    }


# -- the tables ---------------------------------------------------------------------------------

HEADER = (
    "scheme",
    "C",
    "dialer",
    "calls (errors)",
    "set-up p50 / p90 / p99 (ms)",
    "calls/s: median [min-max]",
    "CPU per call (ms): median [min-max]",
    "dialer CPU %",
    "simulator CPU %",
)


def row(c: dict[str, Any]) -> list[str]:
    rate, cpu = c["calls_per_second_range"], c["cpu_ms_per_call_range"]
    return [
        f"{c['scheme']}://",
        str(c["concurrency"]),
        AGENTS[c["agent"]],
        f"{c['calls']} ({c['errors']})",
        " / ".join(fmt(c[f"setup_ms_p{q}"], 2) for q in (50, 90, 99)),
        f"{fmt(c['calls_per_second'], 0)} [{rate[0]:.0f}-{rate[1]:.0f}]" if rate else "-",
        f"{fmt(c['cpu_ms_per_call'], 2)} [{cpu[0]:.2f}-{cpu[1]:.2f}]" if cpu else "-",
        fmt(c["dialer_cpu_pct"]),
        fmt(c["sim_cpu_pct"]),
    ]


def ratio(num: float | None, den: float | None) -> float | None:
    return num / den if num and den else None


def verdicts(result: dict[str, Any]) -> list[tuple[str, str, bool | None]]:
    """Per scheme and concurrency, ours against each SDK row: latency, calls/s, CPU."""
    by = {(c["agent"], c["scheme"], c["concurrency"]): c for c in result["cells"]}
    rows: list[tuple[str, str, bool | None]] = []
    for (agent, scheme, concurrency), theirs in by.items():
        ours = by.get(("ours", scheme, concurrency))
        if agent == "ours" or ours is None:
            continue
        where = f"{scheme}://, C={concurrency}, vs {agent}"
        p50 = ratio(theirs["setup_ms_p50"], ours["setup_ms_p50"])
        p99 = ratio(theirs["setup_ms_p99"], ours["setup_ms_p99"])
        rate = ratio(ours["calls_per_second"], theirs["calls_per_second"])
        cpu = ratio(theirs["cpu_ms_per_call"], ours["cpu_ms_per_call"])
        rows.append(
            (
                f"{where}: set-up p50, theirs ÷ ours >= {TARGET}",
                f"{fmt(p50, 2)}x ({fmt(theirs['setup_ms_p50'], 2)} vs "
                f"{fmt(ours['setup_ms_p50'], 2)} ms; p99 {fmt(p99, 2)}x)",
                None if p50 is None else p50 >= TARGET,
            )
        )
        rows.append(
            (
                f"{where}: calls/s, ours ÷ theirs >= {TARGET}",
                f"{fmt(rate, 2)}x ({fmt(ours['calls_per_second'], 0)} vs "
                f"{fmt(theirs['calls_per_second'], 0)}; CPU per call theirs ÷ ours "
                f"{fmt(cpu, 2)})",
                None if rate is None else rate >= TARGET,
            )
        )
    return rows


def noise(result: dict[str, Any]) -> str:
    """How noisy the run was: steal time, other processes' CPU, the repeats' spread."""
    runs = result["runs"]
    steal = [r["steal_pct"] for r in runs if r["steal_pct"] is not None]
    foreign = [r["foreign_cpu_pct"] for r in runs]
    spreads = [
        c["calls_per_second_spread_pct"]
        for c in result["cells"]
        if c["calls_per_second_spread_pct"] is not None
    ]
    limit = result["settings"]["max_foreign"]
    noisy = [r for r in runs if r["foreign_cpu_pct"] > limit]
    retried = sum(1 for r in runs if r.get("attempt", 1) > 1)
    parts = noise_parts(
        f"calls/s spread of the {result['settings']['repeats']} repeats of a cell",
        spreads,
        steal,
        foreign,
    )
    text = ("Noise: " + "; ".join(parts) + ".") if parts else ""
    text += (
        f" {retried} window(s) were repeated for noise; {len(noisy)} kept above "
        f"{limit:g} % of a core used by other processes."
    )
    return text + "\n"


def markdown(result: dict[str, Any]) -> str:
    """The outbound section of ``docs/performance.md``."""
    s = result["settings"]
    return "\n".join(
        [
            "### Outbound calls",
            "",
            f"Run {result['machine']['date']}, commit {result['machine']['commit']}. "
            "Each run: a fresh simulator (core 1) and dialer "
            f"(core 0), {s['warmup']} warm-up call(s), then {s['calls']} calls C at a time in "
            f"the window; {s['repeats']} repeats per cell, the dialers interleaved. Set-up: "
            "`session.create` sent -> first callee audio received (the callee answers at "
            "once), percentiles over all the repeats' calls; calls/s and CPU per call (the "
            "dialer's user+sys in the window): median of the repeats.",
            "",
            markdown_table(HEADER, [row(c) for c in result["cells"]]),
            verdict_table(verdicts(result)),
            noise(result),
        ]
    )


# -- the command line ---------------------------------------------------------------------------


def csv(kind: type) -> Any:
    return lambda text: [kind(x) for x in text.split(",")]


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--quick", action="store_true", help="one repeat of 20 calls per cell")
    quick = "--quick" in (argv if argv is not None else sys.argv[1:])
    parser.add_argument("--calls", type=int, default=20 if quick else 40)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=1 if quick else 10)
    parser.add_argument("--concurrency", type=csv(int), default=[1, 20])
    parser.add_argument("--schemes", type=csv(str), default=["ws", "wss"])
    parser.add_argument("--agents", type=csv(str), default=["ours", "sdk"])
    parser.add_argument("--max-foreign", type=float, default=8.0)
    parser.add_argument("--noisy-retries", type=int, default=0 if quick else 3)
    parser.add_argument("--quiet-wait", type=float, default=0.0 if quick else 5.0)
    parser.add_argument("--label", default="", help="a side run: no outbound-latest.*")
    parser.add_argument("--role", choices=("sim", *AGENTS), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--cafile", help=argparse.SUPPRESS)
    parser.add_argument("--certfile", help=argparse.SUPPRESS)
    parser.add_argument("--keyfile", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "sim":
        serve(args.port, args.certfile, args.keyfile)
        return None
    if args.role is not None:
        data = (dial_ours if args.role == "ours" else dial_sdk)(args)
        print("RESULT " + json.dumps(data), flush=True)
        return None
    for name in args.agents:
        if name not in AGENTS:
            parser.error(f"unknown dialer {name!r}; known: {', '.join(AGENTS)}")
    for scheme in args.schemes:
        if scheme not in ("ws", "wss"):
            parser.error(f"unknown scheme {scheme!r}: ws or wss")
    log(
        f"outbound: {', '.join(args.agents)}; {args.calls} calls per run at C = "
        f"{args.concurrency} on {args.schemes}, {args.repeats} repeats"
    )
    result = run(args)
    write_results("outbound", result, args.label)
    if not args.label:
        (HERE / "results" / "outbound-latest.md").write_text(markdown(result))
    print(markdown(result))
    log(f"outbound benchmark: {result['seconds']:.0f} s")
    return result


if __name__ == "__main__":
    main()
