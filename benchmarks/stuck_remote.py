"""What a bridge holds when its remote never reads (``send_timeout=None``, no pings).

``--side stream`` and ``--side call`` run three processes on loopback, so each
one's memory is its own:

* ``remote``: accepts each WebSocket upgrade, then never reads (nor sends);
* the calls: ``--calls`` Teler-style calls from a feeder process, each sending
  one 20 ms ``audio`` message every 20 ms (``stream``: ``bridge_stream``), or
  simulated Telcoflow calls from the simulator in its own process (``call``:
  ``bridge_call``);
* this process: the bridge, with ``tracemalloc`` on.

Every ``--every`` seconds it records RSS (of each process), the traced total
and the messages the bridges read from the calls (counted by the call handler);
at the end, the allocation sites that grew most since the calls connected.
``python benchmarks/stuck_remote.py [--side stream|call] [--calls 10]
[--seconds 30] [--transport lean]`` writes
``results/stuck-remote-<side>-<transport>-<time>.json`` and prints a summary.
Only public API is used (like every benchmark here); the in-process variant
over the testing kit's private memory streams (``results/stuck-remote-memory-*``)
is gone with that rule.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import subprocess
import sys
import time
import tracemalloc
from collections.abc import Awaitable
from typing import Any

import trio
import trio_websocket
from _proc import HERE, free_port, rss_kib, wait_port
from _report import write_json

from telcoflow_trio import ActiveCall, TelcoflowClient, TelcoflowClientConfig, events
from telcoflow_trio.simulator import DEFAULT_API_KEY, DEFAULT_CONNECTOR_UUID
from telcoflow_trio.streams import (
    BridgeContext,
    BridgeResult,
    StreamBridgeError,
    StreamConnector,
    StreamOp,
)
from telcoflow_trio.ws import WebSocketRequest, serve_websocket

FRAME = 0.020
AUDIO = base64.b64encode(bytes(320)).decode()  # 20 ms at 8 kHz


async def remote(port: int) -> None:
    async def never_read(request: WebSocketRequest) -> None:
        await request.accept()
        await trio.sleep_forever()

    await serve_websocket(never_read, "127.0.0.1", port, None)


async def feed(port: int, calls: int, seconds: float) -> None:
    async def one(i: int) -> None:
        async with trio_websocket.open_websocket("127.0.0.1", port, "/media", use_ssl=False) as ws:
            start = {"type": "start", "call_id": f"c{i}", "stream_id": f"s{i}", "data": {}}
            await ws.send_message(json.dumps(start))

            async def drain() -> None:
                while True:
                    await ws.get_message()

            async with trio.open_nursery() as nursery:
                nursery.start_soon(drain)
                n = 0
                deadline = trio.current_time()
                while True:
                    n += 1
                    audio = {"type": "audio", "message_id": n, "data": {"audio_b64": AUDIO}}
                    await ws.send_message(json.dumps(audio))  # blocks under backpressure
                    deadline += FRAME
                    await trio.sleep_until(deadline)

    with trio.move_on_after(seconds):
        try:
            async with trio.open_nursery() as nursery:
                for i in range(calls):
                    nursery.start_soon(one, i)
        except* trio_websocket.ConnectionClosed:
            pass


class Run:
    """One measurement: the connector, the bridges' contexts, and the samples."""

    def __init__(self, args: argparse.Namespace, remote_url: str) -> None:
        self.args = args
        self.bridged_calls = 0
        self.read_from_calls = 0
        self.all_bridged = trio.Event()
        self.ends: list[str] = []
        self.others: dict[str, int] = {}  # name -> pid of another process to sample
        self.connector = StreamConnector(
            remote_url=remote_url,
            call_stream_handler=self._count,
            send_timeout=None,
            ping_interval=None,
            on_open=self._seen,
            transport=args.transport,
        )

    async def _count(self, message: str) -> tuple[str, StreamOp]:
        self.read_from_calls += 1
        return (message, StreamOp.RELAY)

    async def _seen(self, ctx: BridgeContext) -> None:
        self.bridged_calls += 1
        if self.bridged_calls == self.args.calls:
            self.all_bridged.set()

    async def bridged(self, bridge: Awaitable[BridgeResult]) -> None:
        try:
            self.ends.append((await bridge).end.value)
        except StreamBridgeError as exc:
            self.ends.append(str(exc))

    async def measure(self) -> dict[str, Any]:
        """Once every call is bridged: sample for ``--seconds``, then the top growth."""
        await self.all_bridged.wait()
        tracemalloc.start(8)
        base = tracemalloc.take_snapshot()
        samples: list[dict[str, Any]] = []
        started = time.monotonic()
        while (elapsed := time.monotonic() - started) < self.args.seconds:
            await trio.sleep(self.args.every)
            sample = {
                "t": round(elapsed, 1),
                "rss_kib": rss_kib(os.getpid()),
                **{f"{name}_rss_kib": rss_kib(pid) for name, pid in self.others.items()},
                "traced_kib": tracemalloc.get_traced_memory()[0] // 1024,
                "read_from_calls": self.read_from_calls,
            }
            samples.append(sample)
            print(sample, flush=True)
        growth = tracemalloc.take_snapshot().compare_to(base, "lineno")
        tracemalloc.stop()
        top = [
            {"where": str(s.traceback[0]), "kib": s.size_diff // 1024, "count": s.count_diff}
            for s in growth[:12]
        ]
        return {"samples": samples, "top_growth": top, "ends": self.ends}


def spawn(*argv: str, **options: Any) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, *argv], **options)


async def over_loopback(args: argparse.Namespace) -> dict[str, Any]:
    remote_port, app_port = free_port(), free_port()
    remote_proc = spawn(__file__, "--role", "remote", "--port", str(remote_port))
    try:
        wait_port(remote_port, remote_proc)  # type: ignore[arg-type]
        run = Run(args, f"ws://127.0.0.1:{remote_port}/agent")
        run.others["remote"] = remote_proc.pid
        async with trio.open_nursery() as nursery:
            if args.side == "stream":

                async def on_stream(request: trio_websocket.WebSocketRequest) -> None:
                    await run.bridged(run.connector.bridge_stream(await request.accept()))

                await nursery.start(
                    trio_websocket.serve_websocket, on_stream, "127.0.0.1", app_port, None
                )
                feeder = spawn(__file__, "--role", "feed", "--port", str(app_port), "--calls",
                               str(args.calls), "--seconds", str(args.seconds + 5))  # fmt: skip
            else:  # the simulator, in its own process, places the calls
                feeder = spawn(str(HERE / "client" / "sim_driver.py"), "--port", str(app_port),
                               "--warmup", "0.5", "--duration", str(args.seconds + 5),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE)  # fmt: skip
                assert feeder.stdin is not None
                assert feeder.stdout is not None
                if feeder.stdout.readline().strip() != b"READY":
                    raise RuntimeError("the simulator did not start")

                async def on_call(call: ActiveCall) -> None:
                    await call.answer()
                    await run.bridged(run.connector.bridge_call(call))

                config = TelcoflowClientConfig.sandbox(
                    DEFAULT_API_KEY, DEFAULT_CONNECTOR_UUID,
                    base_url=f"ws://127.0.0.1:{app_port}", sample_rate=8000,
                )  # fmt: skip
                client = TelcoflowClient(config)
                client.on(events.INCOMING_CALL)(on_call)
                await nursery.start(serve_calls, client)
                feeder.stdin.write(f"calls {args.calls}\n".encode())
                feeder.stdin.flush()
            run.others["calls"] = feeder.pid
            try:
                result = await run.measure()
            finally:
                feeder.terminate()
                feeder.wait(10)
            nursery.cancel_scope.cancel()
    finally:
        remote_proc.terminate()
        remote_proc.wait(10)
    return result


async def serve_calls(
    client: TelcoflowClient, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    async with client:
        task_status.started()
        await client.run_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--role", choices=("bridge", "remote", "feed"), default="bridge")
    parser.add_argument("--port", type=int)
    parser.add_argument("--side", choices=("stream", "call"), default="stream")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--every", type=float, default=5.0)
    parser.add_argument("--transport", choices=("lean", "trio-websocket"), default="lean")
    args = parser.parse_args()
    if args.role == "remote":
        trio.run(remote, args.port)
        return
    if args.role == "feed":
        trio.run(feed, args.port, args.calls, args.seconds)
        return
    result = trio.run(over_loopback, args)
    result["config"] = {k: v for k, v in vars(args).items() if k not in ("role", "port")}
    stamp = time.strftime("%Y%m%d-%H%M%S")
    path = write_json(f"stuck-remote-{args.side}-{args.transport}-{stamp}.json", result)
    first, last = result["samples"][0], result["samples"][-1]
    print(f"RSS {first['rss_kib']} -> {last['rss_kib']} KiB, traced "
          f"{first['traced_kib']} -> {last['traced_kib']} KiB; wrote {path}")  # fmt: skip
    for row in result["top_growth"][:6]:
        print(f"  {row['kib']:>7} KiB {row['count']:>7} blocks  {row['where']}")


if __name__ == "__main__":
    main()
