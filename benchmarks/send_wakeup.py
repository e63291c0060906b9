"""What a loopback ``send`` costs when it wakes its peer, and when the peer is awake.

Why: the lean transport defers small writes to the end of trio's batch and does
them back to back (``telcoflow_trio/ws/_poller.py``). This measures the reason.
One process (core 0) writes a 480-byte message (about one 8 kHz Teler frame)
on each of 100 loopback TCP connections; another (core 1) reads them with
epoll, sleeping whenever it has nothing to read. Two patterns, same messages:

* ``spread``: one ``send``, then 30 µs of work (what a relay spends making the
  next message), so the reader has gone back to sleep before most sends;
* ``burst``: the 100 sends back to back, then the same work.

Usage: ``python send_wakeup.py [--rounds N]``; prints the median time per
``send`` of each pattern and writes ``results/send-wakeup-<time>.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import select
import socket
import statistics
import time

from _proc import HERE, pin
from bench_bridge import BRIDGE_CORE, LOAD_CORE

CONNECTIONS = 100
MESSAGE = b"x" * 480
WORK_US = 30.0


def read_until_eof(socks: list[socket.socket]) -> None:
    """The peer: read whatever arrives, sleeping in epoll in between."""
    pin(0, LOAD_CORE)
    poll = select.epoll()
    by_fd = {}
    for sock in socks:
        sock.setblocking(False)
        poll.register(sock.fileno(), select.EPOLLIN)
        by_fd[sock.fileno()] = sock
    open_count = len(socks)
    while open_count:
        for fd, _ in poll.poll():
            try:
                data = by_fd[fd].recv(65536)
            except BlockingIOError:
                continue
            if not data:
                poll.unregister(fd)
                open_count -= 1


def work(us: float) -> None:
    end = time.perf_counter() + us / 1e6
    while time.perf_counter() < end:
        pass


def one_round(socks: list[socket.socket], pattern: str, repeats: int) -> float:
    """Mean seconds per ``send`` over ``repeats`` passes over every connection."""
    spent = 0.0
    clock = time.perf_counter
    for _ in range(repeats):
        for sock in socks:
            start = clock()
            sock.send(MESSAGE)
            spent += clock() - start
            if pattern == "spread":
                work(WORK_US)
        if pattern == "burst":
            work(WORK_US * len(socks))
    return spent / (repeats * len(socks))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=300, help="passes per round")
    args = parser.parse_args()
    listener = socket.create_server(("127.0.0.1", 0))
    ours, theirs = [], []
    for _ in range(CONNECTIONS):
        sock = socket.create_connection(listener.getsockname())
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        ours.append(sock)
        theirs.append(listener.accept()[0])
    listener.close()
    pid = os.fork()
    if pid == 0:
        try:
            for sock in ours:
                sock.close()
            read_until_eof(theirs)
        finally:
            os._exit(0)
    for sock in theirs:
        sock.close()
    try:
        pinned = pin(0, BRIDGE_CORE)
        time.sleep(0.2)
        results: dict[str, list[float]] = {"spread": [], "burst": []}
        for _ in range(args.rounds):
            for pattern, runs in results.items():
                runs.append(one_round(ours, pattern, args.repeats) * 1e6)
    finally:
        for sock in ours:
            sock.close()
        os.waitpid(pid, 0)
    summary = {pattern: round(statistics.median(runs), 2) for pattern, runs in results.items()}
    for pattern, us in summary.items():
        print(f"{pattern:6s} {us:6.2f} µs per send  (rounds: {results[pattern]})")
    out = HERE / "results" / f"send-wakeup-{time.strftime('%Y%m%d-%H%M%S', time.gmtime())}.json"
    out.write_text(
        json.dumps(
            {
                "pinned": pinned,
                "connections": CONNECTIONS,
                "message_bytes": len(MESSAGE),
                "work_us_between_sends": WORK_US,
                "median_us_per_send": summary,
                "rounds_us_per_send": results,
            },
            indent=2,
        )
    )
    print(f"wrote {out}")


if __name__ == "__main__":
    main()
