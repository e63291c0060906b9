"""Round trip of one large message on loopback: our WebSocket, and ``websockets`` for scale.

Why: receiving a message larger than one read must cost time linear in its
size (issue 15: the lean framing copied its buffer on every read). Each size is
echoed ``--repeat`` times over one connection, client and server both ours
through the public ``telcoflow_trio.ws`` API (so both reassemble it), in one
process; the median CPU time of that process is reported (CPU, not wall time:
the machine is shared), in ms, with MB/s (the message counted once).
``websockets`` (asyncio) runs the same when it is importable.

Usage: ``python benchmarks/large_echo.py [--sizes 1,4,16] [--repeat 5] [--json out.json]``
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # measure this checkout

from telcoflow_trio.ws import (
    ConnectionClosed,
    WebSocketRequest,
    open_websocket_url,
    serve_websocket,
)

MIB = 1 << 20
LIMIT = 64 * MIB


async def _ours(sizes: list[int], repeat: int) -> dict[int, list[float]]:
    async def echo(request: WebSocketRequest) -> None:
        ws = await request.accept()
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except ConnectionClosed:
            pass

    times: dict[int, list[float]] = {}
    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            lambda task_status: serve_websocket(
                echo, "127.0.0.1", 0, None, max_message_size=LIMIT, task_status=task_status
            )
        )
        url = f"ws://127.0.0.1:{server.port}/"
        with trio.fail_after(600):
            async with open_websocket_url(url, max_message_size=LIMIT) as ws:
                for size in sizes:
                    payload = bytes(range(256)) * (size // 256)
                    for _ in range(repeat):
                        started = time.process_time()
                        await ws.send_message(payload)
                        back = await ws.get_message()
                        times.setdefault(size, []).append(time.process_time() - started)
                        assert back == payload
        nursery.cancel_scope.cancel()
    return times


async def _websockets(sizes: list[int], repeat: int) -> dict[int, list[float]]:
    from websockets.asyncio.client import connect
    from websockets.asyncio.server import serve

    async def echo(ws: Any) -> None:
        async for message in ws:
            await ws.send(message)

    times: dict[int, list[float]] = {}
    async with serve(echo, "127.0.0.1", 0, max_size=LIMIT, compression=None) as server:
        port = next(iter(server.sockets)).getsockname()[1]
        url = f"ws://127.0.0.1:{port}/"
        async with connect(url, max_size=LIMIT, compression=None) as ws:
            for size in sizes:
                payload = bytes(range(256)) * (size // 256)
                for _ in range(repeat):
                    started = time.process_time()
                    await ws.send(payload)
                    back = await ws.recv()
                    times.setdefault(size, []).append(time.process_time() - started)
                    assert back == payload
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--sizes", default="1,4,16", help="MiB, comma-separated")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--json", help="also write the medians to this file")
    args = parser.parse_args()
    sizes = [int(float(s) * MIB) for s in args.sizes.split(",")]
    results: dict[str, dict[int, list[float]]] = {"ours": trio.run(_ours, sizes, args.repeat)}
    try:
        results["websockets"] = asyncio.run(_websockets(sizes, args.repeat))
    except ImportError:
        print("(websockets not importable: ours only)")
    medians = {
        who: {size: statistics.median(ts) * 1000 for size, ts in by_size.items()}
        for who, by_size in results.items()
    }
    print(f"{'MiB':>5} " + " ".join(f"{who + ' CPU ms':>15} {'MB/s':>7}" for who in medians))
    for size in sizes:
        cells = [f"{m[size]:15.1f} {size / m[size] / 1000:7.0f}" for m in medians.values()]
        print(f"{size / MIB:5.0f} " + " ".join(cells))
    if args.json:
        out = {
            who: {str(size // MIB): round(ms, 2) for size, ms in m.items()}
            for who, m in medians.items()
        }
        with open(args.json, "w") as f:
            json.dump({"median_cpu_ms": out, "repeat": args.repeat}, f, indent=1)


if __name__ == "__main__":
    main()
