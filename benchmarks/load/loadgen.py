"""The call side of the bridge benchmark: N real-time calls on picows + uvloop.

Each call is one WebSocket that sends one Teler ``audio`` message every 20 ms
(``{"type":"audio","message_id":N,"data":{"audio_b64":...}}``, 20 ms of 16-bit
PCM at ``--rate``) and matches the bridge's replies by ``chunk_id`` (or by
``message_id`` when talking straight to the echo, for the baseline). The calls
are spread evenly over twenty 1 ms slots and one sender wakes at absolute
deadlines, so the load does not drift; its lateness is reported as ``sched_lag``.

Modes:

* ``paced``: connect, warm up, measure for ``--duration`` seconds, drain for at
  most ``--drain`` seconds. Prints ``CONNECTED n``, ``WINDOW_START``,
  ``WINDOW_END`` as they happen (the runner samples the bridge's CPU on them),
  then ``RESULT {json}``.
* ``idle``: connect, print ``CONNECTED n``, hold the calls open without traffic
  for ``--hold`` seconds, close, print ``RESULT {json}``.

A ``wss://`` URL is opened with uvloop's TLS, trusting ``--cafile``.

Every loop here is bounded in time; the process exits by itself.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import ssl
import sys
import time

import uvloop
from picows import WSCloseCode, WSFrame, WSListener, WSMsgType, WSTransport, ws_connect

SLOTS = 20  # 1 ms slots per 20 ms frame period
FRAME_PERIOD = 0.020


def say(line: str) -> None:
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


class Call(WSListener):  # type: ignore[misc]
    def __init__(self) -> None:
        self.transport: WSTransport | None = None
        self.sent: list[float] = []  # send time by message id; -1 once answered
        self.rtts: list[float] | None = None  # set during the window
        self.window_first = -1
        self.window_last = -1
        self.received_in_window = 0
        self.in_window = False
        self.closed_early = False
        self.finishing = False

    def on_ws_connected(self, transport: WSTransport) -> None:
        self.transport = transport

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind is WSMsgType.TEXT:
            now = time.perf_counter()
            payload = frame.get_payload_as_bytes()
            at = payload.rfind(b'"chunk_id"')
            if at < 0:
                at = payload.find(b'"message_id"')
            start = payload.index(b":", at) + 1
            end = payload.find(b",", start)
            close = payload.find(b"}", start)
            if end < 0 or 0 <= close < end:
                end = close
            ident = int(payload[start:end])
            sent = self.sent[ident]
            if sent >= 0:
                self.sent[ident] = -1.0
                if self.rtts is not None and self.window_first <= ident:
                    self.rtts.append(now - sent)
                if self.in_window:
                    self.received_in_window += 1
        elif kind is WSMsgType.PING:
            transport.send_pong(frame.get_payload_as_bytes())
        elif kind is WSMsgType.CLOSE:
            if not self.finishing:
                self.closed_early = True
            transport.send_close(WSCloseCode.OK)
            transport.disconnect()

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        if not self.finishing:
            self.closed_early = True


def message(ident: int, b64: str) -> bytes:
    return b'{"type":"audio","message_id":%d,"data":{"audio_b64":"%s"}}' % (ident, b64.encode())


async def connect_all(
    url: str, n: int, parallel: int, connect_timeout: float, cafile: str | None
) -> tuple[list[Call], int]:
    gate = asyncio.Semaphore(parallel)
    context = ssl.create_default_context(cafile=cafile) if url.startswith("wss:") else None
    calls: list[Call] = []
    failed = 0

    async def one() -> None:
        nonlocal failed
        async with gate:
            try:
                _, call = await asyncio.wait_for(
                    ws_connect(Call, url, ssl_context=context), connect_timeout
                )
            except Exception as exc:  # a refused or timed-out call is counted, not fatal
                failed += 1
                if failed <= 3:
                    print(f"loadgen: connect failed: {exc!r}", file=sys.stderr)
                return
            calls.append(call)

    await asyncio.gather(*(one() for _ in range(n)))
    return calls, failed


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


async def close_all(calls: list[Call]) -> None:
    for call in calls:
        call.finishing = True
        if call.transport is not None and not call.transport.is_disconnected:
            call.transport.send_close(WSCloseCode.OK)
    deadline = time.monotonic() + 3.0
    for call in calls:
        if call.transport is None:
            continue
        left = deadline - time.monotonic()
        try:
            await asyncio.wait_for(call.transport.wait_disconnected(), max(left, 0.01))
        except TimeoutError:
            call.transport.disconnect(graceful=False)


async def paced(args: argparse.Namespace) -> dict[str, object]:
    pcm = bytes((i * 37) & 0xFF for i in range(args.rate // 50 * 2))
    b64 = base64.b64encode(pcm).decode()
    started = time.perf_counter()
    calls, failed = await connect_all(
        args.url, args.calls, args.parallel, args.connect_timeout, args.cafile
    )
    connect_seconds = time.perf_counter() - started
    say(f"CONNECTED {len(calls)}")
    loop = asyncio.get_running_loop()
    lags: list[float] = []
    t0 = loop.time() + 0.05
    window_start = t0 + args.warmup
    window_end = window_start + args.duration
    slots: list[list[Call]] = [calls[i::SLOTS] for i in range(SLOTS)]
    tick = 0
    in_window = False
    sent_in_window = 0
    while True:
        deadline = t0 + tick * (FRAME_PERIOD / SLOTS)
        now = loop.time()
        if deadline > now:
            await asyncio.sleep(deadline - now)
            now = loop.time()
        if deadline >= window_end:
            break
        if not in_window and deadline >= window_start:
            in_window = True
            say("WINDOW_START")
            for call in calls:
                call.rtts = []
                call.window_first = len(call.sent)
                call.in_window = True
        if in_window:
            lags.append(now - deadline)
        for call in slots[tick % SLOTS]:
            transport = call.transport
            if transport is None or call.closed_early:
                continue
            ident = len(call.sent)
            data = message(ident, b64)
            call.sent.append(time.perf_counter())
            transport.send(WSMsgType.TEXT, data)
            if in_window:
                sent_in_window += 1
        tick += 1
    for call in calls:
        call.in_window = False
        call.window_last = len(call.sent)
    say("WINDOW_END")
    # Drain: wait for the replies of frames sent in the window, bounded.
    drain_deadline = time.monotonic() + args.drain
    while time.monotonic() < drain_deadline:
        pending = sum(
            1
            for call in calls
            for i in range(call.window_first, call.window_last)
            if call.sent[i] >= 0
        )
        if pending == 0:
            break
        await asyncio.sleep(0.05)
    rtts = [r for call in calls for r in (call.rtts or [])]
    lost = sum(
        1
        for call in calls
        for i in range(call.window_first, call.window_last)
        if call.sent[i] >= 0
    )
    received = sum(call.received_in_window for call in calls)
    errors = failed + sum(call.closed_early for call in calls)
    await close_all(calls)
    ms = 1000.0
    return {
        "mode": "paced",
        "calls": args.calls,
        "connected": len(calls),
        "connect_seconds": round(connect_seconds, 3),
        "rate": args.rate,
        "duration": args.duration,
        "sent": sent_in_window,
        "received_in_window": received,
        "expected_fps": args.calls / FRAME_PERIOD,
        "delivered_fps": round(received / args.duration, 1),
        "lost": lost,
        "errors": errors,
        "rtt_p50_ms": _ms(percentile(rtts, 0.50), ms),
        "rtt_p99_ms": _ms(percentile(rtts, 0.99), ms),
        "rtt_max_ms": _ms(max(rtts) if rtts else None, ms),
        "sched_lag_p99_ms": _ms(percentile(lags, 0.99), ms),
    }


def _ms(value: float | None, scale: float) -> float | None:
    return None if value is None else round(value * scale, 3)


async def idle(args: argparse.Namespace) -> dict[str, object]:
    calls, failed = await connect_all(
        args.url, args.calls, args.parallel, args.connect_timeout, args.cafile
    )
    say(f"CONNECTED {len(calls)}")
    await asyncio.sleep(args.hold)
    errors = failed + sum(call.closed_early for call in calls)
    await close_all(calls)
    return {"mode": "idle", "calls": args.calls, "connected": len(calls), "errors": errors}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--mode", choices=("paced", "idle"), default="paced")
    parser.add_argument("--calls", type=int, default=10)
    parser.add_argument("--rate", type=int, choices=(8000, 16000), default=8000)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--duration", type=float, default=5.0)
    parser.add_argument("--drain", type=float, default=3.0)
    parser.add_argument("--hold", type=float, default=3.0)
    parser.add_argument("--parallel", type=int, default=50)
    parser.add_argument("--connect-timeout", type=float, default=10.0)
    parser.add_argument("--cafile", help="CA (PEM) to trust for a wss:// URL")
    args = parser.parse_args()
    runner = paced if args.mode == "paced" else idle
    result = uvloop.run(runner(args))
    say("RESULT " + json.dumps(result))


if __name__ == "__main__":
    main()
