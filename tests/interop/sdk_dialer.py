"""An outbound call placed with the official ``telcoflow`` 1.0.0 SDK, run as a subprocess.

Usage: ``python sdk_dialer.py BASE_URL API_KEY CONNECTOR_UUID NUMBER``. Calls
NUMBER (``SessionManager.create_session``), and once the call arrives (on the
answer) sends one second of a 600 Hz tone, reads one second of the callee,
closes, and prints one JSON line with what it saw. A call that never comes, or
a session closed first, is reported too: the script always ends.
"""

from __future__ import annotations

import asyncio
import math
import sys
import time
from typing import Any

from sdk_common import RATE, manager, on_call, print_report, watch_closed
from telcoflow.events import ChannelType

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
    report: dict[str, Any] = {}
    done = asyncio.Event()
    async with manager(base_url, api_key, connector_uuid) as sm:
        started = time.monotonic()
        session = await sm.create_session(ChannelType.TELCO, number)
        report["session_id"] = session.id
        report["remote_address"] = session.remote_address
        watch_closed(session, report, closed=done)

        async def work(call: Any) -> None:
            report["answered_after"] = round(time.monotonic() - started, 2)
            report["callee"] = call.callee_number
            await talk(call, report)

        on_call(session, report, work, done)
        await session.ready()
        await asyncio.wait_for(done.wait(), 15)
    print_report(report)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
