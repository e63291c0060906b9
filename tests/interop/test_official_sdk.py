"""The official ``telcoflow`` 1.0.0 SDK (asyncio, in a subprocess) against our simulator.

Real clock and real loopback sockets: the two sides are separate processes.
Run with ``nox -s interop`` (``pytest --run-interop -m interop``).
"""

from __future__ import annotations

import itertools
import json
import subprocess
import sys
from contextlib import AsyncExitStack
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
from simulator.simclient import open_control

from telcoflow_trio.proto import CallState
from telcoflow_trio.simulator import (
    CallerScript,
    CallResult,
    Simulator,
    SimulatorConfig,
    open_simulator,
    tone,
)
from telcoflow_trio.simulator._call import CallObserver

pytestmark = pytest.mark.interop

AGENT = Path(__file__).with_name("sdk_agent.py")


async def start_agent(nursery: trio.Nursery, command: list[str]) -> tuple[trio.Process, bytes]:
    """Start an SDK agent process; return it and its output up to ``READY``."""
    agent: trio.Process = await nursery.start(
        partial(trio.run_process, command, stdout=subprocess.PIPE, check=False)
    )
    assert agent.stdout is not None
    output = b""
    while b"READY\n" not in output:
        chunk = await agent.stdout.receive_some()
        assert chunk, f"the SDK agent exited early: {output!r}"
        output += chunk
    return agent, output


async def finish_agent(agent: trio.Process, output: bytes) -> dict[str, Any]:
    """Read the agent's output to its end; return its last line, the JSON report."""
    assert agent.stdout is not None
    while chunk := await agent.stdout.receive_some():
        output += chunk
    assert await agent.wait() == 0, output
    report: dict[str, Any] = json.loads(output.decode().splitlines()[-1])
    return report


async def run_scenario(
    scenario: str,
    script: CallerScript,
    config: SimulatorConfig | None = None,
    *,
    other_agent: bool = False,
    observer: CallObserver | None = None,
) -> tuple[dict[str, Any], CallResult, Simulator]:
    """Start the SDK agent, place one call once it is ready, return both sides' views.

    ``other_agent``: a raw control connection that takes all calls, claiming none.
    """
    async with (
        open_simulator(config, listen=True) as sim,
        trio.open_nursery() as nursery,
        AsyncExitStack() as stack,
    ):
        if other_agent:
            await stack.enter_async_context(open_control(sim, open_stream=None))
        if observer is not None:
            sim.add_observer(observer)
        command = [sys.executable, str(AGENT), scenario, sim.base_url]
        command += [sim.api_key, sim.connector_uuid]
        with trio.fail_after(15):
            agent, output = await start_agent(nursery, command)
            # Placed once the SDK's handler is registered: a notification sent
            # earlier would be dropped by the SDK's event bus.
            call = await sim.place_call(script, caller="+15550123")
            result = await call.wait_result()
            report = await finish_agent(agent, output)
    assert report["call_id"] == call.call_id
    assert report["caller"] == "+15550123"
    assert report["notified"] == call.session_id
    assert report["answer"] is True
    assert "error" not in report, report["error"]
    return report, result, sim


async def test_sdk_answers_and_echoes() -> None:
    report, result, sim = await run_scenario("echo", CallerScript(tone(440)))
    assert report["echoed"] == 32000
    assert report["close"] is True
    assert result.ended_by == "agent_close"
    assert [s for _, s in result.states] == [
        CallState.PENDING,
        CallState.ANSWERED,
        CallState.DISCONNECTED,
    ]
    # What the agent sent back is exactly what the caller said, from the start.
    caller = b"".join(itertools.islice(tone(440).frames(16000, 640), 60))
    assert result.agent_audio == caller[: len(result.agent_audio)]
    assert len(result.agent_audio) == 32000
    assert result.underruns == 0
    assert [(c.name, c.success) for c in result.commands] == [
        ("call.answer", True),
        ("call.close", True),
    ]
    stats = sim.statistics()
    assert (stats.handler_errors, stats.malformed_frames, stats.auth_rejections) == (0, 0, 0)


async def test_sdk_connect_gets_call_unanswered() -> None:
    report, result, _ = await run_scenario(
        "unanswered", CallerScript(tone(440), callee_answers_after=None)
    )
    assert report["connect"]["success"] is False
    assert report["connect"]["error_code"] == "CALL_UNANSWERED"
    assert report["connect"]["seconds"] == pytest.approx(2.0, abs=0.5)
    assert report["close"] is True
    connect = next(c for c in result.commands if c.name == "call.connect")
    assert (connect.data, connect.error_code) == ({"ringTimeSeconds": 2}, "CALL_UNANSWERED")
    assert connect.latency == pytest.approx(2.0, abs=0.1)
    assert [s for _, s in result.states] == [
        CallState.PENDING,
        CallState.ANSWERED,
        CallState.DISCONNECTED,
    ]
    assert result.ended_by == "agent_close"


async def test_sdk_sees_the_caller_hang_up() -> None:
    report, result, _ = await run_scenario("hangup", CallerScript(tone(440), hangup_after=1.0))
    assert report["terminated"] is True
    assert report["state"] == "TERMINATED"
    assert report["session_closed"] == "CALL_TERMINATED"
    assert report["received"] == pytest.approx(32000, abs=2 * 640)
    assert result.ended_by == "caller_hangup"
    assert result.caller_audio_seconds == pytest.approx(1.0, abs=0.05)


async def test_sdk_whatsapp_sessions_and_rest() -> None:
    """create_session(WA) + send + receive, an offered session, REST list and close."""
    wa_agent = AGENT.with_name("sdk_wa_agent.py")
    async with open_simulator(listen=True) as sim, trio.open_nursery() as nursery:
        command = [sys.executable, str(wa_agent), sim.base_url, sim.api_key, sim.connector_uuid]
        with trio.fail_after(20):
            agent, output = await start_agent(nursery, command)
            own = sim.wa.find("+15550100")
            assert own is not None
            await sim.wa.send_from_user("+15550100", "to your session")
            new = await sim.wa.send_from_user("+15550200", "a new conversation")
            await new.wait_received(1)
            report = await finish_agent(agent, output)
    assert report["session"] == [own.session_id, "WA", "+15550100"]
    assert report["sent"][0] is True
    assert report["sent"][1]["status"] == "accepted"
    assert [m.data for m in own.received] == [{"type": "text", "text": {"body": "hi"}}]
    text = {"type": "text", "text": {"body": "to your session"}}
    assert report["own_message"] == ["+15550100", text]
    assert report["notified"] == ["WA", "NEW_INCOMING_MESSAGE"]
    assert report["new_message"][0] == "+15550200"
    assert report["echo_ok"] is True
    assert new.received[0].data == {
        "echo": {"type": "text", "text": {"body": "a new conversation"}}
    }
    assert report["listed"] == [["+15550100", "SDK", "OPEN"], ["+15550200", "CONNECTOR", "OPEN"]]
    assert report["closed"] == "SDK_REQUEST"
    assert report["is_closed"] is True
    assert own.state == "CLOSED"


async def test_sdk_call_flow_is_accepted_and_applied() -> None:
    claimed: list[float] = []

    def observe(call: Any, event: str) -> None:
        if event == "claimed":
            claimed.append(trio.current_time() - call.placed_at)

    config = SimulatorConfig(missed_call_after=1.0)
    report, result, sim = await run_scenario(
        "flow", CallerScript(tone(440)), config, other_agent=True, observer=observe
    )
    # outboundCall false: the SDK's session.create is refused as FORBIDDEN.
    assert report["create_session"].startswith("WSSForbidden: [FORBIDDEN]")
    # MISSED_ONLY: offered only once the other (ALL) agent let it ring 1 s.
    assert claimed == [pytest.approx(1.0, abs=0.3)]
    assert report["close"] is True
    assert result.ended_by == "agent_close"
    stats = sim.statistics()
    assert (stats.handler_errors, stats.malformed_frames) == (0, 0)


async def test_sdk_receives_isolated_channels() -> None:
    script = CallerScript(tone(440), callee_audio=tone(1000), callee_answers_after=0.5)
    report, result, _ = await run_scenario("isolated", script)
    # Alone on the line, channel 0 (the mix) is the caller's leg on channel 1.
    assert report["ch0"] == report["ch1"]
    caller = b"".join(itertools.islice(tone(440).frames(16000, 640), 5))
    assert bytes.fromhex(report["ch1"]) == caller
    assert report["connect"] is True
    assert report["ch2"] == 3200  # the connected party's leg, after connect
    assert result.ended_by == "agent_close"


async def test_sdk_gets_call_error_and_the_call_goes_on() -> None:
    script = CallerScript(tone(440), call_errors=[(0.5, "TTS_SESSION_ERROR")])
    report, result, _ = await run_scenario("error", script)
    assert report["call_error"] == {  # the SDK's handler gets the fields but "event"
        "error_code": "TTS_SESSION_ERROR",
        "error_message": "scripted call error",
    }
    assert report["state"] == "LIVE"
    assert report["close"] is True
    assert result.ended_by == "agent_close"
