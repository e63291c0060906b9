"""The official ``telcoflow`` 1.0.0 SDK places an outbound call against our simulator.

Real clock and real loopback sockets: the two sides are separate processes.
Run with ``nox -s interop`` (``pytest --run-interop -m interop``).
"""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path
from typing import Any

import pytest
import trio

from telcoflow_trio.proto import CallState
from telcoflow_trio.simulator import (
    CallerScript,
    CallResult,
    SimulatorConfig,
    open_simulator,
    tone,
)
from telcoflow_trio.simulator._call import SimulatedCall
from telcoflow_trio.testing import contains_tone

pytestmark = pytest.mark.interop

DIALER = Path(__file__).with_name("sdk_dialer.py")
NUMBER = "+15550100"


async def dial(
    script: CallerScript, config: SimulatorConfig | None = None
) -> tuple[dict[str, Any], CallResult]:
    async with open_simulator(config, listen=True) as sim:
        sim.expect_callee(NUMBER, script)
        placed: list[SimulatedCall] = []
        sim.add_observer(lambda call, event: placed.append(call) if event == "placed" else None)
        command = [sys.executable, str(DIALER), sim.base_url, sim.api_key, sim.connector_uuid]
        with trio.fail_after(20):
            process = await trio.run_process([*command, NUMBER], capture_stdout=True, check=False)
            assert process.returncode == 0, process.stdout
            result = await placed[0].wait_result()
        assert sim.statistics().calls_outbound == 1
        assert sim.statistics().handler_errors == 0
    report = json.loads(process.stdout.decode().splitlines()[-1])
    assert "error" not in report, report["error"]
    assert report["session_id"] == result.session_id
    assert report["remote_address"] == NUMBER
    return report, result


async def test_sdk_outbound_call_is_answered_and_carries_audio_both_ways() -> None:
    report, result = await dial(CallerScript(tone(440), answers_after=0.5))
    assert report["answered_after"] == pytest.approx(0.5, abs=0.4)
    assert (report["caller"], report["callee"]) == ("+15550199", NUMBER)
    assert report["call_id"] == result.call_id
    # The callee's voice reached the SDK from the first frame ...
    callee = b"".join(itertools.islice(tone(440).frames(16000, 640), 1))
    assert bytes.fromhex(report["heard_head"]) == callee
    assert report["heard"] >= 32000
    # ... and the SDK's message reached the callee.
    assert report["close"] is True
    assert result.ended_by == "agent_close"
    assert result.outbound
    assert result.agent_audio_seconds == pytest.approx(1.0, abs=0.01)
    assert contains_tone(result.agent_audio, 600, 16000)
    assert [s for _, s in result.states] == [
        CallState.PENDING,
        CallState.ANSWERED,
        CallState.DISCONNECTED,
    ]
    assert [(c.name, c.success) for c in result.commands] == [("call.close", True)]


async def test_sdk_sees_a_declined_outbound_call_close() -> None:
    report, result = await dial(CallerScript(answers_after=0.5, rejects=True))
    assert report["session_closed"] == "CALL_TERMINATED"
    assert "call_id" not in report
    assert result.ended_by == "callee_rejected"
