"""Both ends of a cross-node handoff with the official ``telcoflow`` 1.0.0 SDK.

``python sdk_handoff.py hand-off BASE_URL API_KEY CONNECTOR_UUID``: claim one
call, print ``READY`` once the handler is registered, then ``HANDOFF <json>``
(``Call.to_json()``, media never opened here), wait for the session to close
and print a JSON report.

``python sdk_handoff.py adopt``: read one handoff document from stdin,
``Call.from_json()`` it, answer, play 0.96 s of audio, close; print a JSON
report (with ``error`` if the media connection was refused).
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from sdk_common import RATE, manager, on_each_session, print_report, say, watch_closed
from telcoflow.audio_config import CallAudioConfig
from telcoflow.call import Call

#: 0.96 s at 16 kHz: whole 20 ms frames at 16 and 24 kHz (1.0.0's sender waits for
#: a whole frame, for ever, when less is left).
AUDIO = b"\x10\x00" * 15360


async def hand_off(base_url: str, api_key: str, connector_uuid: str) -> dict[str, Any]:
    report: dict[str, Any] = {}
    closed = asyncio.Event()
    async with manager(base_url, api_key, connector_uuid) as sm:

        def setup(session: Any, notification: Any) -> None:
            watch_closed(session, report, closed=closed)

            @session.on_incoming_call
            async def on_call(call: Any) -> None:
                report["state"] = str(call.state)
                say(f"HANDOFF {call.to_json()}")

        on_each_session(sm, setup)
        say("READY")
        await asyncio.wait_for(closed.wait(), 20)
    return report


async def adopt() -> dict[str, Any]:
    document = sys.stdin.readline()
    call = Call.from_json(document, audio_config=CallAudioConfig(sample_rate=RATE))
    report: dict[str, Any] = {"call_id": call.id, "caller": call.caller_number}
    try:
        report["answer"] = bool(await call.answer())
    except Exception as exc:
        chain, cause = [], exc
        while cause is not None:
            chain.append(repr(cause))
            cause = cause.__cause__ or cause.__context__
        report["error"] = " <- ".join(chain)
        return report
    await call.send_audio(AUDIO)
    while await call.get_send_audio_buffer_size():  # noqa: ASYNC110 - no drain signal in 1.0.0
        await asyncio.sleep(0.02)
    await asyncio.sleep(0.1)
    report["close"] = bool(await call.close())
    report["state"] = str(call.state)
    return report


if __name__ == "__main__":
    if sys.argv[1] == "hand-off":
        result = asyncio.run(hand_off(*sys.argv[2:5]))
    else:
        result = asyncio.run(adopt())
    print_report(result)
