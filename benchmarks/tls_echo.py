"""CPU per WebSocket echo round trip of 400 bytes over TLS on loopback, by TLS path.

Why: wss:// used to run on ``trio.SSLStream`` (OpenSSL over memory BIOs);
it now runs on a non-blocking ``ssl.SSLSocket`` driven by the lean poller
(``telcoflow_trio/ws/_tls.py``). Both paths stay reachable, so one script
measures both: ``sslstream`` puts ``trio.SSLStream`` under the lean WebSocket
at both ends (what the library did before), ``socket`` uses ``start_tls`` and
``accept_tls`` (what it does now); ``plain`` is the same echo without TLS, for
scale. The echo server is a child process pinned to core 1, the client runs
on core 0: it sends one 400-byte binary message, waits for its echo, and
again. CPU is read from /proc for each process; the figures are per round
trip.

Usage: ``python tls_echo.py [--rounds N] [--repeats R]``; prints a table and
writes ``results/tls-echo-<time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import ssl
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import trio
import trustme
from _proc import HERE, cpu_seconds, free_port, pin, wait_port
from _report import fmt, machine, markdown_table, median, write_json

from telcoflow_trio.ws._connection import LeanWebSocket, accept_lean_websocket
from telcoflow_trio.ws._streams import accept_tls, start_tls
from telcoflow_trio.ws._transport import open_websocket

MESSAGE = b"x" * 400
MODES = ("plain", "sslstream", "socket")


async def tls(
    stream: trio.abc.Stream, context: ssl.SSLContext, mode: str, host: str | None
) -> trio.abc.Stream:
    """TLS over ``stream``: the library's way (``socket``), ``trio.SSLStream``, or none."""
    if mode == "plain":
        return stream
    if mode == "socket":
        if host is None:
            return await accept_tls(stream, context)
        return await start_tls(stream, context, host)
    wrapped = trio.SSLStream(stream, context, server_side=host is None, server_hostname=host)
    await wrapped.do_handshake()
    return wrapped


async def serve(port: int, mode: str, cert: str, key: str) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)

    async def one(stream: trio.SocketStream) -> None:
        with contextlib.suppress(Exception):  # wait_port's probe, the client's end
            request = await accept_lean_websocket(await tls(stream, context, mode, None))
            if request is None:
                return
            ws: LeanWebSocket = await request.accept()
            try:
                while True:
                    await ws.send_message(await ws.get_message())
            finally:
                await ws.aclose()

    await trio.serve_tcp(one, port, host="127.0.0.1")


async def client(port: int, mode: str, ca: str, rounds: int, server_pid: int) -> dict[str, float]:
    context = ssl.create_default_context(cafile=ca)

    async def opener(host: str, port: int, ssl_context: ssl.SSLContext | None) -> trio.abc.Stream:
        assert ssl_context is not None
        stream = await trio.open_tcp_stream(host, port)
        return await tls(stream, ssl_context, mode, host)

    async with open_websocket(
        f"wss://127.0.0.1:{port}/", ssl_context=context, open_stream=opener
    ) as ws:
        for _ in range(200):  # warm up
            await ws.send_message(MESSAGE)
            await ws.get_message()
        server0, client0, wall0 = cpu_seconds(server_pid), time.process_time(), time.perf_counter()
        for _ in range(rounds):
            await ws.send_message(MESSAGE)
            await ws.get_message()
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
            mode,
            fmt(s["client_us"]),
            fmt(s["server_us"]),
            fmt((s["client_us"] or 0) + (s["server_us"] or 0)),
            fmt(s["wall_us"]),
        ]
        for mode, s in summary.items()
    ]
    print(markdown_table(["TLS path", "client µs", "server µs", "both µs", "wall µs"], rows))
    path = write_json(
        f"tls-echo-{time.strftime('%Y%m%d-%H%M%S')}.json",
        {"machine": machine(), "rounds": args.rounds, "runs": runs, "median": summary},
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
