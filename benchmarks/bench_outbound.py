"""Outbound calls: set-up latency and calls placed per second, ours vs the official SDK.

One simulator process (core 1) whose callees answer at once and talk a 440 Hz
tone; one dialer process at a time (core 0), ours (``TelcoflowClient.place_call``)
or the official ``telcoflow`` 1.0.0 SDK (``SessionManager.create_session``,
``session.ready``, then the voice connection its first ``send_audio`` opens).
Each dialer places ``--calls`` calls, ``--concurrency`` at a time; a call is:
create, wait for the answer (``call.in``), open the media, hear the callee's
first audio frame, close. Per call:

* **set-up latency**: ``session.create`` sent -> the callee's first audio
  frame received (the media is connected both ways by then);
* **calls per second**: calls completed / wall time of the run.

Needs ``telcoflow==1.0.0`` next to telcoflow_trio (``nox -s interop``'s venv).
Results go to ``results/outbound-<time>.json`` and ``results/outbound-latest.md``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from _proc import HERE, Children, free_port, wait_port
from _report import RESULTS, fmt, machine, markdown_table, write_json

PY = sys.executable
ROOT = HERE.parent


def number(i: int) -> str:
    """A number per call: two calls to one number at once would be one session."""
    return f"+1555{i:07d}"


AGENTS = {
    "ours": "ours: TelcoflowClient.place_call (lean transport)",
    "sdk": "official telcoflow 1.0.0 SDK (asyncio)",
}


def log(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


# -- the simulator process -----------------------------------------------------------


def serve(port: int) -> None:
    import trio

    from telcoflow_trio.simulator import CallerScript, SimulatorConfig, open_simulator, tone

    async def main() -> None:
        script = CallerScript(audio=tone(440), answers_after=0.0, hangup_after=30.0)
        config = SimulatorConfig(callee_script=script, max_outbound_calls=10_000)
        async with open_simulator(config, listen=True, port=port):
            await trio.sleep_forever()

    trio.run(main)


# -- the dialers ----------------------------------------------------------------------------


def dial_ours(url: str, calls: int, concurrency: int) -> dict[str, Any]:
    import trio

    from telcoflow_trio import TelcoflowClient, TelcoflowClientConfig

    latencies: list[float] = []

    async def one(client: TelcoflowClient, limit: trio.CapacityLimiter, i: int) -> None:
        async with limit:
            started = time.monotonic()
            async with client.place_call(number(i)) as call:
                async for _ in call.audio_stream():
                    latencies.append(time.monotonic() - started)
                    break

    async def main() -> float:
        config = TelcoflowClientConfig.sandbox(
            "sim-api-key", "sim-connector", base_url=url, sample_rate=16000
        )
        async with TelcoflowClient(config) as client:
            limit = trio.CapacityLimiter(concurrency)
            started = time.monotonic()
            with trio.fail_after(120):
                async with trio.open_nursery() as nursery:
                    for i in range(calls):
                        nursery.start_soon(one, client, limit, i)
            return time.monotonic() - started

    wall = trio.run(main)
    return {"latencies": latencies, "wall": wall}


def dial_sdk(url: str, calls: int, concurrency: int) -> dict[str, Any]:
    from telcoflow import SessionManager, SessionManagerConfig
    from telcoflow.audio_config import CallAudioConfig
    from telcoflow.events import ChannelType

    latencies: list[float] = []

    async def one(sm: Any, limit: asyncio.Semaphore, i: int) -> None:
        async with limit:
            started = time.monotonic()
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

    async def main() -> float:
        config = SessionManagerConfig.create(
            api_key="sim-api-key",
            connector_uuid="sim-connector",
            base_url=url,
            call_audio=CallAudioConfig(sample_rate=16000),
        )
        async with SessionManager(config) as sm:
            limit = asyncio.Semaphore(concurrency)
            started = time.monotonic()
            await asyncio.wait_for(asyncio.gather(*(one(sm, limit, i) for i in range(calls))), 120)
            return time.monotonic() - started

    wall = asyncio.run(main())
    return {"latencies": latencies, "wall": wall}


# -- the runner ---------------------------------------------------------------------------------


def run_one(children: Children, agent: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    me = str(Path(__file__).resolve())
    sim = children.start([PY, me, "--role", "sim", "--port", str(port)], {1}, env=env)
    try:
        wait_port(port, sim)
        command = [PY, me, "--role", agent, "--port", str(port)]
        command += ["--calls", str(args.calls), "--concurrency", str(args.concurrency)]
        dialer = children.start(command, {0}, stdout=subprocess.PIPE, env=env)
        out, _ = dialer.communicate(timeout=180)
        children.stop(dialer)
        if dialer.returncode != 0:
            raise RuntimeError(f"the {agent} dialer failed ({dialer.returncode})")
    finally:
        children.stop(sim)
    data = json.loads(out.decode().splitlines()[-1])
    ms = sorted(1000 * x for x in data["latencies"])
    return {
        "agent": agent,
        "calls": len(ms),
        "calls_per_second": round(len(ms) / data["wall"], 1),
        "setup_ms_p50": round(statistics.median(ms), 2) if ms else None,
        "setup_ms_p95": round(ms[int(0.95 * (len(ms) - 1))], 2) if ms else None,
        "setup_ms_max": round(ms[-1], 2) if ms else None,
    }


def markdown(result: dict[str, Any]) -> str:
    s = result["settings"]
    rows = [
        [
            AGENTS[r["agent"]],
            str(r["calls"]),
            fmt(r["setup_ms_p50"], 2),
            fmt(r["setup_ms_p95"], 2),
            fmt(r["calls_per_second"]),
        ]
        for r in result["runs"]
    ]
    header = ("dialer", "calls", "set-up p50 (ms)", "set-up p95 (ms)", "calls/s")
    return (
        f"## Outbound calls ({s['calls']} calls, {s['concurrency']} at a time)\n\n"
        "Set-up: `session.create` sent -> first callee audio received; the callee "
        "answers at once.\n\n" + markdown_table(header, rows)
    )


def main(argv: list[str] | None = None) -> dict[str, Any] | None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--agents", nargs="+", choices=sorted(AGENTS), default=["ours", "sdk"])
    parser.add_argument("--role", choices=("sim", "ours", "sdk"), help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.role == "sim":
        serve(args.port)
        return None
    if args.role is not None:
        dial = dial_ours if args.role == "ours" else dial_sdk
        data = dial(f"ws://127.0.0.1:{args.port}", args.calls, args.concurrency)
        print(json.dumps(data), flush=True)
        return None
    children = Children()
    runs = []
    for agent in args.agents:
        log(f"outbound: {agent}, {args.calls} calls, {args.concurrency} at a time")
        runs.append(run_one(children, agent, args))
        log(f"  {runs[-1]}")
    result = {
        "benchmark": "outbound",
        "machine": machine(),
        "settings": {"calls": args.calls, "concurrency": args.concurrency},
        "runs": runs,
    }
    stamp = time.strftime("%Y%m%d-%H%M%S")
    write_json(f"outbound-{stamp}.json", result)
    (RESULTS / "outbound-latest.md").write_text(markdown(result))
    print(markdown(result))
    return result


if __name__ == "__main__":
    main()
