"""CPU per WebSocket echo round trip of 400 bytes over TLS on loopback, by stack.

Why: wss:// used to run on ``trio.SSLStream`` (OpenSSL over memory BIOs);
it now runs on a non-blocking ``ssl.SSLSocket`` driven by the lean poller
(``telcoflow_trio/ws/_tls.py``). Measured as a user reaches it (public API
only): ``ws`` and ``wss`` are :mod:`telcoflow_trio.ws` at both ends
(``serve_websocket`` and ``open_websocket_url``, ``ssl_context=`` for TLS);
``tw`` and ``tw_wss`` are trio-websocket at both ends, whose TLS is
``trio.SSLStream`` (the path the library took before). What TLS adds is the
difference of each pair. The echo server is a child process pinned to core 1,
the client runs on core 0: it sends one 400-byte binary message, waits for
its echo, and again. CPU is read from /proc for each process; the figures are
per round trip.

Usage: ``python tls_echo.py [--rounds N] [--repeats R]``; prints a table and
writes ``results/tls-echo-<time>.json``.
"""

from __future__ import annotations

import argparse
import os
import ssl
import subprocess
import sys
import tempfile
import time
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import trio
import trio_websocket
import trustme
from _proc import HERE, cpu_seconds, free_port, pin, wait_port
from _report import fmt, machine, markdown_table, median, write_json

from telcoflow_trio import ws

MESSAGE = b"x" * 400
#: mode -> (the library at both ends, TLS or not)
MODES = {
    "ws": (ws, False),
    "wss": (ws, True),
    "tw": (trio_websocket, False),
    "tw_wss": (trio_websocket, True),
}
LABELS = {
    "ws": "telcoflow_trio.ws, plain TCP",
    "wss": "telcoflow_trio.ws, TLS (poller-driven SSLSocket)",
    "tw": "trio-websocket, plain TCP",
    "tw_wss": "trio-websocket, TLS (trio.SSLStream)",
}


async def serve(port: int, mode: str, cert: str, key: str) -> None:
    library, secure = MODES[mode]
    context = None
    if secure:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)

    async def echo(request: Any) -> None:
        conn = await request.accept()
        try:
            while True:
                await conn.send_message(await conn.get_message())
        except library.ConnectionClosed:
            pass

    await library.serve_websocket(echo, "127.0.0.1", port, context)


async def client(port: int, mode: str, ca: str, rounds: int, server_pid: int) -> dict[str, float]:
    library, secure = MODES[mode]
    url = f"{'wss' if secure else 'ws'}://127.0.0.1:{port}/"
    context = ssl.create_default_context(cafile=ca) if secure else None
    opening: AbstractAsyncContextManager[Any] = library.open_websocket_url(url, context)
    async with opening as conn:
        for _ in range(200):  # warm up
            await conn.send_message(MESSAGE)
            await conn.get_message()
        server0, client0, wall0 = cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        for _ in range(rounds):
            await conn.send_message(MESSAGE)
            await conn.get_message()
        wall = time.perf_counter() - wall0
        client_cpu = time.process_time() - client0
        server1 = cpu_seconds(server_pid)
    assert server0 is not None
    assert server1 is not None
    return {
        "client_us": client_cpu / rounds * 1e6,
        "server_us": (server1 - server0) / rounds * 1e6,
        "wall_us": wall / rounds * 1e6,
    }


def measure(mode: str, rounds: int, files: dict[str, str]) -> dict[str, float]:
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", str(port), mode, files["cert"], files["key"]],
        cwd=HERE,
    )
    try:
        pin(server.pid, {1})
        wait_port(port, server)
        return trio.run(client, port, mode, files["ca"], rounds, server.pid)
    finally:
        server.terminate()
        server.wait(10)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=20_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--serve", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        port, mode, cert, key = args.serve
        trio.run(serve, int(port), mode, cert, key)
        return
    pin(0, {0})
    ca = trustme.CA()
    leaf = ca.issue_cert("127.0.0.1")
    with tempfile.TemporaryDirectory() as folder:
        files = {name: str(Path(folder) / f"{name}.pem") for name in ("ca", "cert", "key")}
        ca.cert_pem.write_to_path(files["ca"])
        leaf.cert_chain_pems[0].write_to_path(files["cert"])
        leaf.private_key_pem.write_to_path(files["key"])
        runs: dict[str, list[dict[str, float]]] = {mode: [] for mode in MODES}
        for _ in range(args.repeats):  # interleaved: a change in the machine's load hits all
            for mode in MODES:
                runs[mode].append(measure(mode, args.rounds, files))
    summary = {
        mode: {key: median([r[key] for r in results]) for key in results[0]}
        for mode, results in runs.items()
    }
    rows = [
        [
            LABELS[mode],
            fmt(s["client_us"]),
            fmt(s["server_us"]),
            fmt((s["client_us"] or 0) + (s["server_us"] or 0)),
            fmt(s["wall_us"]),
        ]
        for mode, s in summary.items()
    ]
    print(markdown_table(["stack", "client µs", "server µs", "both µs", "wall µs"], rows))
    path = write_json(
        f"tls-echo-{time.strftime('%Y%m%d-%H%M%S')}.json",
        {"machine": machine(), "rounds": args.rounds, "runs": runs, "median": summary},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
