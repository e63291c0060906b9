"""Cross-node handoff with the official ``telcoflow`` 1.0.0 SDK against our simulator:
SDK to SDK, SDK to telcoflow_trio and telcoflow_trio to SDK.

Real clock and real loopback sockets; each SDK end is its own process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio

from telcoflow_trio import ActiveCall, CallOffer, TelcoflowClient, TelcoflowClientConfig, events
from telcoflow_trio.simulator import CallerScript, Simulator, open_simulator

pytestmark = pytest.mark.interop

SCRIPT = Path(__file__).with_name("sdk_handoff.py")
KEYS = {"channel", "id", "caller", "callee", "session_url", "session_token"}


class Lines:
    """Lines of a child's stdout."""

    def __init__(self, stream: trio.abc.ReceiveStream) -> None:
        self._stream = stream
        self._buffer = b""

    async def next(self) -> str:
        while b"\n" not in self._buffer:
            chunk = await self._stream.receive_some()
            assert chunk, f"the SDK process exited early: {self._buffer!r}"
            self._buffer += chunk
        line, self._buffer = self._buffer.split(b"\n", 1)
        return line.decode()


@asynccontextmanager
async def sdk_hand_off(sim: Simulator) -> AsyncIterator[tuple[trio.Process, Lines]]:
    """The SDK claiming process, once it is READY."""
    command = [sys.executable, str(SCRIPT), "hand-off", sim.base_url]
    command += [sim.api_key, sim.connector_uuid]
    async with trio.open_nursery() as nursery:
        process: trio.Process = await nursery.start(
            partial(trio.run_process, command, stdout=subprocess.PIPE, check=False)
        )
        assert process.stdout is not None
        lines = Lines(process.stdout)
        assert await lines.next() == "READY"
        yield process, lines


async def sdk_adopt(document: str) -> dict[str, Any]:
    """Run the SDK adopting process on ``document``; its report."""
    done = await trio.run_process(
        [sys.executable, str(SCRIPT), "adopt"],
        stdin=document.encode() + b"\n",
        capture_stdout=True,
    )
    report: dict[str, Any] = json.loads(done.stdout.decode().splitlines()[-1])
    return report


def trio_client(sim: Simulator) -> TelcoflowClient:
    # The SDK ends use 16 kHz: the claiming connection fixes the call's rate.
    return TelcoflowClient(
        TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url, sample_rate=16000
        )
    )


async def greet(call: ActiveCall) -> None:
    await call.answer()
    await call.write_audio(b"\x00\x00" * 1600)
    await call.wait_audio_sent()
    await call.close()


async def test_sdk_hands_off_to_sdk() -> None:
    with trio.fail_after(40):
        async with open_simulator(listen=True) as sim, sdk_hand_off(sim) as (process, lines):
            call = await sim.place_call(CallerScript(), caller="+15550123")
            line = await lines.next()
            assert line.startswith("HANDOFF ")
            document = line.removeprefix("HANDOFF ")
            assert set(json.loads(document)) == KEYS
            adopted = await sdk_adopt(document)
            assert "error" not in adopted, adopted["error"]
            assert adopted == {
                "call_id": call.call_id,
                "caller": "+15550123",
                "answer": True,
                "close": True,
                "state": "TERMINATED",
            }
            # The token opened one media connection: it is refused now.
            again = await sdk_adopt(document)
            assert "401" in again["error"], again
            result = await call.wait_result()
            report = json.loads(await lines.next())
            assert await process.wait() == 0
    assert report == {"state": "NEW", "session_closed": "SDK_REQUEST"}
    assert result.ended_by == "agent_close"
    assert result.answered_at is not None
    assert result.agent_audio_seconds == pytest.approx(0.96, abs=0.05)
    assert sim.statistics().media_connections_total == 1


async def test_sdk_hands_off_to_telcoflow_trio() -> None:
    with trio.fail_after(40):
        async with (
            open_simulator(listen=True) as sim,
            sdk_hand_off(sim) as (process, lines),
            trio_client(sim) as client,
        ):
            call = await sim.place_call(CallerScript())
            document = (await lines.next()).removeprefix("HANDOFF ")
            adopted = await client.adopt_call(document, handler=greet)
            assert adopted.call_id == call.call_id
            await adopted.wait_terminated()
            result = await call.wait_result()
            report = json.loads(await lines.next())
            assert await process.wait() == 0
    assert report["session_closed"] == "SDK_REQUEST"
    assert result.ended_by == "agent_close"
    assert result.agent_audio_seconds == pytest.approx(0.1, abs=0.02)


async def test_telcoflow_trio_hands_off_to_sdk() -> None:
    send, receive = trio.open_memory_channel[str](1)
    with trio.fail_after(40):
        async with open_simulator(listen=True) as sim, trio_client(sim) as client:

            @client.on(events.CALL_OFFERED)
            async def offered(offer: CallOffer) -> None:
                await send.send(offer.to_json())

            client.on(events.INCOMING_CALL)(greet)
            call = await sim.place_call(CallerScript(), caller="+15550123")
            adopted = await sdk_adopt(await receive.receive())
            result = await call.wait_result()
    assert "error" not in adopted, adopted["error"]
    assert (adopted["call_id"], adopted["caller"]) == (call.call_id, "+15550123")
    assert (adopted["answer"], adopted["close"]) == (True, True)
    assert result.ended_by == "agent_close"
    assert result.agent_audio_seconds == pytest.approx(0.96, abs=0.05)
    assert client.statistics().calls_ended == {"handed_off": 1}
