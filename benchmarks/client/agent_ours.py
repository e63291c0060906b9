"""The echo agent on our client: answer, echo caller audio at real time, until hang-up.

Prints ``READY`` once connected and ``H <call_id> <monotonic>`` when each call's
handler starts (the runner pairs it with the simulator's ``call.in`` time).

Usage: ``python agent_ours.py --url ws://127.0.0.1:P --rate 8000 [--transport lean]``;
``telcoflow-trio run agent_ours:on_call`` serves the same handler (``bench_scale.py``).
"""

from __future__ import annotations

import argparse
import sys
import time

import trio

from telcoflow_trio import ActiveCall, TelcoflowClient, TelcoflowClientConfig, events
from telcoflow_trio.exceptions import BufferClosedError, WSSCallClosedError
from telcoflow_trio.simulator import DEFAULT_API_KEY, DEFAULT_CONNECTOR_UUID


async def on_call(call: ActiveCall) -> None:
    """Answer and echo until the caller hangs up (``telcoflow-trio run agent_ours:on_call``)."""
    sys.stdout.write(f"H {call.call_id} {time.monotonic()}\n")
    sys.stdout.flush()
    await call.answer()
    try:
        async for chunk in call.audio_stream():
            call.send_audio(chunk)
    except (BufferClosedError, WSSCallClosedError):
        pass  # the caller hung up while a chunk was on its way


async def main(args: argparse.Namespace) -> None:
    config = TelcoflowClientConfig.sandbox(
        DEFAULT_API_KEY,
        DEFAULT_CONNECTOR_UUID,
        sample_rate=args.rate,
        base_url=args.url,
        transport=args.transport,
        heartbeat_interval=args.heartbeat[0],
        heartbeat_timeout=args.heartbeat[1],
    )
    async with TelcoflowClient(config) as client:
        client.on(events.INCOMING_CALL)(on_call)
        await client.connect()
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        await client.run_forever()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=int, default=8000)
    parser.add_argument("--transport", choices=("lean", "trio-websocket"), default="lean")
    parser.add_argument(
        "--heartbeat",
        type=lambda v: tuple(float(x) for x in v.split(",")),
        default=(30.0, 10.0),
        help="heartbeat interval,timeout in seconds (the defaults: 30,10)",
    )
    trio.run(main, parser.parse_args())
