"""The same echo agent on the official telcoflow 1.0.0 SDK (asyncio), as tests/interop drives it.

Prints ``READY`` once connected and ``H <call_id> <monotonic>`` when each call's
handler starts.

Usage: ``python agent_sdk.py --url ws://127.0.0.1:P --rate 8000 [--loop uvloop]``
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from typing import Any

from telcoflow import SessionManager, SessionManagerConfig
from telcoflow.audio_config import CallAudioConfig

from telcoflow_trio.simulator import DEFAULT_API_KEY, DEFAULT_CONNECTOR_UUID


async def main(args: argparse.Namespace) -> None:
    config = SessionManagerConfig.create(
        api_key=DEFAULT_API_KEY,
        connector_uuid=DEFAULT_CONNECTOR_UUID,
        base_url=args.url,
        call_audio=CallAudioConfig(sample_rate=args.rate),
    )
    async with SessionManager(config) as sm:
        if args.lift_bus_cap:
            # telcoflow 1.0.0's event bus (abxbus) keeps in-flight events in a
            # history capped at 100 and rejects new events when it is full: about
            # 50 concurrent calls, after which new calls are never answered. This
            # lifts the cap (a private attribute) to measure the SDK's CPU alone.
            sm._bus.event_history.max_history_size = None

        @sm.on_session_notification
        async def on_notification(notification: Any) -> None:
            session = await sm.open_session(notification.session_id)

            @session.on_incoming_call
            async def on_call(call: Any) -> None:
                sys.stdout.write(f"H {call.id} {time.monotonic()}\n")
                sys.stdout.flush()
                ended = asyncio.Event()
                call.on_terminated(ended.set)
                await call.answer()

                async def echo() -> None:
                    try:
                        async for chunk in call.audio_stream():
                            await call.send_audio(chunk)
                    except Exception:  # the caller hung up while a chunk was on its way
                        pass

                # The SDK's audio_stream() does not end when the call does (our
                # client's does): stop echoing on termination, as its own
                # examples do, so that the handler ends with the call.
                task = asyncio.create_task(echo())
                waiter = asyncio.create_task(ended.wait())
                await asyncio.wait((task, waiter), return_when=asyncio.FIRST_COMPLETED)
                for t in (task, waiter):
                    t.cancel()

            await session.ready()

        sys.stdout.write("READY\n")
        sys.stdout.flush()
        await asyncio.Event().wait()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True)
    parser.add_argument("--rate", type=int, default=8000)
    parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
    parser.add_argument("--lift-bus-cap", action="store_true", help="see main()")
    args = parser.parse_args()
    if args.loop == "uvloop":
        import uvloop

        uvloop.run(main(args))
    else:
        asyncio.run(main(args))
