"""bridge_call: a Telcoflow call's audio to a remote WebSocket and back.

First against a small fake of the ``ActiveCall`` surface the bridge uses, then
against the real client and the simulator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import trio
import trio.testing

from telcoflow_trio import ActiveCall, TelcoflowClient, TelcoflowClientConfig, events
from telcoflow_trio.exceptions import BufferClosedError, StreamBridgeError
from telcoflow_trio.simulator import CallerScript, CallResult, open_simulator, tone
from telcoflow_trio.streams import (
    BridgeContext,
    BridgeEnd,
    BridgeResult,
    CallLike,
    CloseInfo,
    HandlerResult,
    StreamConnector,
    StreamOp,
    bridge_call,
)
from telcoflow_trio.ws._transport import DEFAULT_TRANSPORT, TRANSPORTS, Transport, WebSocket

from .conftest import MemoryRemote, spawn

URL = "ws://ai.test/agent"
CHUNK = bytes(range(256)) + bytes(64)  # 320 bytes: 20 ms at 8 kHz


class FakeCall:
    """Just the ``ActiveCall`` surface the bridge uses."""

    def __init__(self) -> None:
        self.call_id = "call-fake"
        self.terminated = False
        self.written: list[bytes] = []
        self.clears = 0
        self.closes = 0
        self.wrote = trio.Event()
        self._send, self._receive = trio.open_memory_channel[bytes](16)

    def audio_stream(self) -> AsyncIterator[bytes]:
        return self._chunks()

    async def _chunks(self) -> AsyncIterator[bytes]:
        async for chunk in self._receive:
            yield chunk

    async def speak(self, *chunks: bytes) -> None:
        for chunk in chunks:
            await self._send.send(chunk)

    async def write_audio(self, data: bytes) -> None:
        if self.terminated:
            raise BufferClosedError("the call ended")
        self.written.append(data)
        self.wrote.set()
        self.wrote = trio.Event()
        await trio.lowlevel.checkpoint()

    async def clear_send_audio_buffer(self) -> int:
        self.clears += 1
        await trio.lowlevel.checkpoint()
        return 0

    async def close(self) -> None:
        self.closes += 1
        self.hang_up()
        await trio.lowlevel.checkpoint()

    def hang_up(self) -> None:
        self.terminated = True
        self._send.close()


def test_fake_call_and_active_call_satisfy_the_protocol() -> None:
    assert isinstance(FakeCall(), CallLike)
    for name in ("call_id", "terminated", "audio_stream", "write_audio", "close"):
        assert hasattr(ActiveCall, name)


async def test_audio_both_ways_until_the_call_ends(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, remote: MemoryRemote
) -> None:
    call = FakeCall()
    running = spawn(nursery, lambda: bridge_call(call, URL, open_stream=remote.open_stream))
    await call.speak(CHUNK, CHUNK[::-1])
    while len(call.written) < 2:
        await call.wrote.wait()
    call.hang_up()
    result = await running.wait()
    assert call.written == [CHUNK, CHUNK[::-1]]
    assert result.end is BridgeEnd.CALL_CLOSED
    assert result.call_close == CloseInfo(1000, "call ended", by_peer=True)
    assert result.remote_close == CloseInfo(1000, "call ended", by_peer=False)
    assert call.closes == 0  # it had ended already
    assert result.call_to_remote.bytes_out == result.remote_to_call.bytes_out == 640


async def test_text_relayed_into_a_call_is_an_error_and_ends_the_call(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, remote: MemoryRemote
) -> None:
    async def to_ai(pcm: str | bytes) -> HandlerResult:
        return '{"audio": "..."}', StreamOp.RELAY

    call = FakeCall()
    running = spawn(
        nursery,
        lambda: bridge_call(call, URL, call_stream_handler=to_ai, open_stream=remote.open_stream),
    )
    await call.speak(CHUNK)
    error = await running.wait_error()
    assert "a Telcoflow call plays bytes (16-bit PCM); got str" in str(error)
    assert call.closes == 1
    await remote.done.wait()
    assert remote.closes == [(1011, "bridge error")]


async def test_interrupt_and_stop_from_the_remote(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    make_remote: Callable[..., MemoryRemote],
) -> None:
    async def voice_ai(ws: WebSocket) -> None:
        await ws.get_message()
        await ws.send_message(CHUNK)
        await ws.send_message("interrupted")
        await ws.send_message("goodbye")
        await trio.sleep_forever()

    async def from_ai(message: str | bytes, ctx: BridgeContext) -> HandlerResult:
        assert ctx.call_id == "call-fake"
        if isinstance(message, bytes):
            return message, StreamOp.RELAY
        if message == "interrupted":
            await ctx.clear_audio()
            return None, StreamOp.PASS
        return None, StreamOp.STOP

    remote = make_remote(voice_ai)
    call = FakeCall()
    connector = StreamConnector(
        remote_url=URL, remote_stream_handler=from_ai, open_stream=remote.open_stream
    )
    running = spawn(nursery, lambda: connector.bridge_call(call))
    await call.speak(CHUNK)
    result = await running.wait()
    assert result.end is BridgeEnd.REMOTE_STOP
    assert call.written == [CHUNK]
    assert call.clears == 1
    assert call.closes == 1  # STOP ends the call cleanly


async def test_cancelling_the_bridge_ends_the_call(
    nursery: trio.Nursery, autojump_clock: trio.testing.MockClock, remote: MemoryRemote
) -> None:
    call = FakeCall()
    with trio.move_on_after(3):
        await bridge_call(call, URL, open_stream=remote.open_stream)
    assert call.closes == 1
    await remote.done.wait()
    assert remote.closes == [(1001, "going away")]


# -- the real client and the simulator ---------------------------------------------------


async def run_agent(
    remote: MemoryRemote,
    script: CallerScript,
    bridge: Callable[[ActiveCall], object] | None = None,
    *,
    transport: Transport = DEFAULT_TRANSPORT,
    drop_media_after: float | None = None,
) -> tuple[CallResult, list[BridgeResult | BaseException]]:
    """One simulated call whose agent answers and bridges to ``remote``.

    ``transport``: the client's (so the call's media socket's) WebSocket;
    ``drop_media_after``: the simulator drops the media connection then.
    """
    outcomes: list[BridgeResult | BaseException] = []
    bridged = trio.Event()

    async def on_call(call: ActiveCall) -> None:
        await call.answer()
        try:
            if bridge is not None:
                outcomes.append(await bridge(call))  # type: ignore[misc]
            else:
                outcomes.append(await bridge_call(call, URL, open_stream=remote.open_stream))
        except StreamBridgeError as exc:
            outcomes.append(exc)
        bridged.set()

    async with open_simulator(listen=False) as sim:
        config = TelcoflowClientConfig.sandbox(
            sim.api_key,
            sim.connector_uuid,
            base_url=sim.base_url,
            sample_rate=8000,
            transport=transport,
        )
        client = TelcoflowClient(config, open_stream=sim.open_stream)
        client.on(events.INCOMING_CALL)(on_call)
        async with client:
            simulated = await sim.place_call(script)
            if drop_media_after is not None:
                await trio.sleep(drop_media_after)
                sim.faults.drop_media(simulated.call_id)
            result = await simulated.wait_result()
            await bridged.wait()
    return result, outcomes


async def test_simulated_caller_hears_the_echo(
    autojump_clock: trio.testing.MockClock, remote: MemoryRemote
) -> None:
    result, [outcome] = await run_agent(remote, CallerScript(audio=tone(440), hangup_after=2.0))
    assert isinstance(outcome, BridgeResult)
    assert outcome.end is BridgeEnd.CALL_CLOSED
    assert outcome.remote_close == CloseInfo(1000, "call ended", by_peer=False)
    assert outcome.call_to_remote.bytes_out > 8000 * 2 * 1.5  # ~2 s of 8 kHz PCM went out
    assert result.ended_by == "caller_hangup"
    assert result.agent_audio_seconds > 1.5
    assert outcome.remote_to_call.bytes_out == outcome.call_to_remote.bytes_out


async def test_remote_stop_ends_the_simulated_call_cleanly(
    autojump_clock: trio.testing.MockClock, make_remote: Callable[..., MemoryRemote]
) -> None:
    async def barge_in_then_leave(ws: WebSocket) -> None:
        for _ in range(25):
            await ws.send_message(await ws.get_message())
        await ws.send_message("interrupted")
        await ws.send_message("goodbye")
        await trio.sleep_forever()

    async def from_ai(message: str | bytes, ctx: BridgeContext) -> HandlerResult:
        if isinstance(message, bytes):
            return message, StreamOp.RELAY
        if message == "interrupted":
            await ctx.clear_audio()
            return None, StreamOp.PASS
        return None, StreamOp.STOP

    remote = make_remote(barge_in_then_leave)
    connector = StreamConnector(
        remote_url=URL, remote_stream_handler=from_ai, open_stream=remote.open_stream
    )
    result, [outcome] = await run_agent(
        remote, CallerScript(audio=tone(440), hangup_after=30.0), connector.bridge_call
    )
    assert isinstance(outcome, BridgeResult)
    assert outcome.end is BridgeEnd.REMOTE_STOP
    assert result.ended_by == "agent_close"
    names = [command.name for command in result.commands]
    assert names == ["call.answer", "agent.interrupt", "call.close"]


async def test_remote_failure_ends_the_simulated_call_and_raises(
    autojump_clock: trio.testing.MockClock, make_remote: Callable[..., MemoryRemote]
) -> None:
    async def crash(ws: WebSocket) -> None:
        await ws.get_message()
        await ws.aclose(1011, "model unavailable")

    remote = make_remote(crash)
    result, [outcome] = await run_agent(remote, CallerScript(audio=tone(440), hangup_after=30.0))
    assert isinstance(outcome, StreamBridgeError)
    assert str(outcome) == "the remote closed the connection with code 1011: model unavailable"
    assert outcome.result is not None
    assert outcome.result.remote_close == CloseInfo(1011, "model unavailable", by_peer=True)
    assert result.ended_by == "agent_close"


@pytest.mark.parametrize("transport", TRANSPORTS)
async def test_a_dropped_media_socket_is_reported_as_lost_on_both_transports(
    autojump_clock: trio.testing.MockClock, remote: MemoryRemote, transport: Transport
) -> None:
    def bridge(call: ActiveCall) -> Awaitable[BridgeResult]:
        return bridge_call(call, URL, open_stream=remote.open_stream, transport=transport)

    script = CallerScript(audio=tone(440), hangup_after=30.0)
    result, [outcome] = await run_agent(
        remote, script, bridge, transport=transport, drop_media_after=1.0
    )
    assert result.ended_by == "media_lost"
    assert isinstance(outcome, BridgeResult)
    assert outcome.end is BridgeEnd.CALL_CLOSED
    assert outcome.call_close == CloseInfo(
        1006, "call ended: media_lost (connection closed with code 1006)", by_peer=True
    )
    assert outcome.remote_close == CloseInfo(1000, "call ended", by_peer=False)
    assert remote.closes == [(1000, "call ended")]
