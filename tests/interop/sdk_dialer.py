"""An outbound call placed with the official ``telcoflow`` 1.0.0 SDK, run as a subprocess.

Usage: ``python sdk_dialer.py BASE_URL API_KEY CONNECTOR_UUID NUMBER``. Calls
NUMBER (``SessionManager.create_session``), and once the call arrives (on the
answer) sends one second of a 600 Hz tone, reads one second of the callee,
closes, and prints one JSON line with what it saw. A call that never comes, or
a session closed first, is reported too: the script always ends.
"""

from __future__ import annotations

import asyncio
import json
import math
import sys
import time
from typing import Any

from telcoflow import SessionManager, SessionManagerConfig
from telcoflow.audio_config import CallAudioConfig
from telcoflow.events import ChannelType

RATE = 16000
ONE_SECOND = 2 * RATE


def tone(hz: float, seconds: float) -> bytes:
    step = 2 * math.pi * hz / RATE
    samples = (int(6000 * math.sin(step * i)) for i in range(int(RATE * seconds)))
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


async def talk(call: Any, report: dict[str, Any]) -> None:
    await call.send_audio(tone(600, 1.0))  # opens the voice connection
    heard = bytearray()
    async for chunk in call.audio_stream():
        heard += chunk
        if len(heard) >= ONE_SECOND:
            break
    report["heard"] = len(heard)
    report["heard_head"] = bytes(heard[:640]).hex()
    # The 1.0.0 SDK has no drain signal: poll until the server has pulled it all.
    while await call.get_send_audio_buffer_size():  # noqa: ASYNC110
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    report["close"] = bool(await call.close())


async def main(base_url: str, api_key: str, connector_uuid: str, number: str) -> None:
    config = SessionManagerConfig.create(
        api_key=api_key,
        connector_uuid=connector_uuid,
        base_url=base_url,
        call_audio=CallAudioConfig(sample_rate=RATE),
    )
    report: dict[str, Any] = {}
    done = asyncio.Event()
    async with SessionManager(config) as sm:
        started = time.monotonic()
        session = await sm.create_session(ChannelType.TELCO, number)
        report["session_id"] = session.id
        report["remote_address"] = session.remote_address

        @session.on_closed
        def on_closed(reason: Any) -> None:
            report["session_closed"] = str(reason)
            done.set()

        @session.on_incoming_call
        async def on_call(call: Any) -> None:
            report["answered_after"] = round(time.monotonic() - started, 2)
            report["call_id"] = call.id
            report["caller"] = call.caller_number
            report["callee"] = call.callee_number
            try:
                await talk(call, report)
            except Exception as exc:
                report["error"] = repr(exc)
            finally:
                done.set()

        await session.ready()
        await asyncio.wait_for(done.wait(), 15)
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
