"""The client and the simulator on ``transport="lean"``: same calls, same audio, same faults."""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import trio
import trio.testing

from telcoflow_trio import ActiveCall, TelcoflowClient, TelcoflowClientConfig, events
from telcoflow_trio.simulator import CallerScript, SimulatorConfig, open_simulator, tone
from telcoflow_trio.ws._connection import LeanWebSocket

from .conftest import open_pair

RATE = 24000


@pytest.mark.parametrize(
    ("client_transport", "sim_transport"),
    [("lean", "lean"), ("lean", "trio-websocket"), ("trio-websocket", "lean")],
)
async def test_echo_call(
    autojump_clock: trio.testing.MockClock, client_transport: str, sim_transport: str
) -> None:
    stats: list[Any] = []

    async def handler(call: ActiveCall) -> None:
        await call.answer()
        async for chunk in call.audio_stream():
            call.send_audio(chunk)
        stats.append(call.statistics())

    sim_config = SimulatorConfig(transport=sim_transport)
    async with open_pair(sim_config, handler=handler, transport=client_transport) as (sim, _, _):
        simulated = await sim.place_call(CallerScript(audio=tone(440), hangup_after=2))
        result = await simulated.wait_result()
        with trio.fail_after(5):
            while not stats:  # noqa: ASYNC110 (the handler's last line)
                await trio.sleep(0.01)
    caller = b"".join(itertools.islice(tone(440).frames(RATE, 960), 100))
    assert result.agent_audio == caller[: len(result.agent_audio)]
    assert result.agent_audio_seconds == pytest.approx(2, abs=0.1)
    assert result.underruns == 0
    assert result.unrequested_bytes == 0
    assert stats[0].frames_received == 100


async def test_stalled_pings_on_a_lean_simulator_reconnect_the_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    sim_config = SimulatorConfig(transport="lean")
    options = {"transport": "lean", "heartbeat_interval": 2.0, "heartbeat_timeout": 1.0}
    async with open_pair(sim_config, **options) as (sim, _, opener):
        await trio.sleep(10)  # healthy: pings answered, no reconnect
        assert len(opener.attempts) == 1
        sim.faults.stall_pings()
        start = trio.current_time()
        with trio.fail_after(10):
            while len(opener.attempts) < 2:  # noqa: ASYNC110
                await trio.sleep(0.1)
        assert trio.current_time() - start <= 2 + 1 + 1  # interval + timeout + backoff
        sim.faults.stall_pings(False)


async def test_agent_audio_leaves_from_the_calling_task_on_loopback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """On a real socket, ``send_audio`` (and a ``buffer_request`` finding audio
    queued) sends at once from the calling task, without waking the sender;
    the echo arrives whole and in order."""
    nowait: list[int] = []
    real = LeanWebSocket.send_message_nowait

    def spy(self: LeanWebSocket, message: bytes) -> bool:
        ok = real(self, message)
        if ok and self._client:
            nowait.append(len(message))
        return ok

    monkeypatch.setattr(LeanWebSocket, "send_message_nowait", spy)
    stats: list[Any] = []
    async with open_simulator(SimulatorConfig(), listen=True) as sim:
        config = TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url, sample_rate=RATE
        )
        simulated = await sim.place_call(CallerScript(audio=tone(440), hangup_after=1))
        async with TelcoflowClient(config) as client, trio.open_nursery() as nursery:

            @client.on(events.INCOMING_CALL)
            async def on_call(call: ActiveCall) -> None:
                try:
                    await call.answer()
                    async for chunk in call.audio_stream():
                        call.send_audio(chunk)
                finally:  # the end of the call may cancel the handler first
                    stats.append(call.statistics())

            await client.connect()
            nursery.start_soon(client.run_forever)
            with trio.fail_after(10):
                result = await simulated.wait_result()
                while not stats:  # noqa: ASYNC110 (the handler's last line)
                    await trio.sleep(0.01)
            nursery.cancel_scope.cancel()
    caller = b"".join(itertools.islice(tone(440).frames(RATE, 960), 100))
    assert result.agent_audio_seconds > 0.5
    assert result.agent_audio == caller[: len(result.agent_audio)]
    assert stats[0].frames_sent >= len(nowait) > stats[0].frames_sent / 2


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="transport"):
        TelcoflowClientConfig.sandbox("k", "c", transport="tcp")
    with pytest.raises(ValueError, match="transport"):
        SimulatorConfig(transport="tcp")
