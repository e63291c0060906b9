"""An agent written with the official ``telcoflow`` 1.0.0 SDK (asyncio), run as a subprocess.

Usage: ``python sdk_agent.py SCENARIO BASE_URL API_KEY CONNECTOR_UUID``. Prints
``READY`` once its handlers are registered, then one JSON line with what it saw.

Scenarios: ``echo`` (answer, echo one second of caller audio, close),
``unanswered`` (answer, connect to a callee who never answers, close),
``hangup`` (answer and wait for the caller to hang up), ``flow`` (set a
MISSED_ONLY call flow without outbound calls, try to place one, then answer
and close), ``flow_reconnect`` (set that flow, then answer and close the call
that comes after the test dropped the control connection), ``isolated``
(isolated audio: read channels 0, 1 and, after a connect, 2), ``error``
(answer, wait for a ``call.error``, close), ``commands`` (answer, connect,
whisper, barge, spy, clear the send buffer, disconnect), ``decline`` (close
without answering).
"""

from __future__ import annotations

import asyncio
import sys
import time
from typing import Any

from sdk_common import manager, on_call, on_each_session, print_report, say, watch_closed
from telcoflow import AudioMode, CallEvent, CallFlowConfig, ChannelType, InboundCallMode

ECHO_BYTES = 32000  # one second at 16 kHz


async def handle(
    scenario: str, call: Any, report: dict[str, Any], session_closed: asyncio.Event
) -> None:
    if scenario == "decline":  # close without answering (1.0.0 tells the server nothing)
        report["close"] = bool(await call.close())
        return
    report["answer"] = bool(await call.answer())
    if scenario == "echo":
        echoed = 0
        async for chunk in call.audio_stream():
            chunk = chunk[: ECHO_BYTES - echoed]
            await call.send_audio(chunk)
            echoed += len(chunk)
            if echoed >= ECHO_BYTES:
                break
        report["echoed"] = echoed
        # The 1.0.0 SDK has no drain signal: poll until the server has pulled it all.
        while await call.get_send_audio_buffer_size():  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.1)
        report["close"] = bool(await call.close())
    elif scenario == "unanswered":
        started = time.monotonic()
        result = await call.connect(ring_time_seconds=2)
        report["connect"] = {
            "success": result.success,
            "error_code": result.error_code,
            "seconds": round(time.monotonic() - started, 2),
        }
        report["close"] = bool(await call.close())
    elif scenario == "hangup":
        terminated = asyncio.Event()
        call.on_terminated(terminated.set)
        received = 0
        async for chunk in call.audio_stream():
            received += len(chunk)
            if terminated.is_set():
                break
        await asyncio.wait_for(terminated.wait(), 5)
        report["terminated"] = True
        report["state"] = str(call.state)
        report["received"] = received
        await asyncio.wait_for(session_closed.wait(), 5)
    elif scenario in ("flow", "flow_reconnect"):
        report["close"] = bool(await call.close())
    elif scenario == "isolated":
        report["ch0"] = (await read(call.audio_stream(0), 3200)).hex()
        report["ch1"] = (await read(call.audio_stream(1), 3200)).hex()
        report["connect"] = bool(await call.connect(ring_time_seconds=5))
        report["ch2"] = len(await read(call.audio_stream(2), 3200))
        report["close"] = bool(await call.close())
    elif scenario == "commands":
        report["connect"] = bool(await call.connect(ring_time_seconds=5))
        report["modes"] = [bool(await call.whisper()), bool(await call.barge())]
        report["modes"].append(bool(await call.spy()))
        report["cleared"] = await call.clear_send_audio_buffer()
        report["disconnect"] = bool(await call.disconnect())
    elif scenario == "error":
        errors: asyncio.Queue[Any] = asyncio.Queue()
        call.on_call_event(CallEvent.CALL_ERROR)(errors.put_nowait)
        report["call_error"] = await asyncio.wait_for(errors.get(), 5)
        report["state"] = str(call.state)
        report["close"] = bool(await call.close())


async def read(stream: Any, size: int) -> bytes:
    """The first ``size`` bytes of an audio stream."""
    data = b""
    async for chunk in stream:
        data += chunk
        if len(data) >= size:
            break
    return data[:size]


async def before_ready(scenario: str, sm: Any, report: dict[str, Any]) -> None:
    if scenario not in ("flow", "flow_reconnect"):
        return
    flow = CallFlowConfig(inbound_call=InboundCallMode.MISSED_ONLY, inbound_message=True)
    await sm.setup_call_flow(flow)
    if scenario == "flow_reconnect":
        return
    try:
        await sm.create_session(ChannelType.TELCO, "+15550777")
    except Exception as exc:
        report["create_session"] = f"{type(exc).__name__}: {exc}"


async def main(scenario: str, base_url: str, api_key: str, connector_uuid: str) -> None:
    mode = AudioMode.ISOLATED if scenario == "isolated" else AudioMode.MIXED
    report: dict[str, Any] = {}
    done = asyncio.Event()
    async with manager(base_url, api_key, connector_uuid, mode) as sm:
        report["smWsId"] = sm.id

        def setup(session: Any, notification: Any) -> None:
            report["notified"] = notification.session_id
            closed = watch_closed(session, report)
            on_call(session, report, lambda call: handle(scenario, call, report, closed), done)

        on_each_session(sm, setup)
        await before_ready(scenario, sm, report)
        say("READY")
        await asyncio.wait_for(done.wait(), 10)
    print_report(report)


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
