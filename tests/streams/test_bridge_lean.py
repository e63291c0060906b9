"""The bridge with ``transport="lean"`` on its remote leg: same relaying, same endings.

The remote is the trio-websocket fake of conftest, so these also check that the
lean client interoperates with trio-websocket's server.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio
import trio.testing

from telcoflow_trio._transport import WebSocket
from telcoflow_trio.streams import BridgeEnd, CloseInfo, StreamConnector, StreamOp, relay
from telcoflow_trio.testing.teler import open_teler_peer

from .conftest import CallPair, MemoryRemote, spawn

URL = "ws://ai.test/agent"


def lean(remote: MemoryRemote, **options: object) -> StreamConnector:
    return StreamConnector(
        remote_url=URL,
        open_stream=remote.open_stream,
        transport="lean",
        remote_stream_handler=relay,
        **options,  # type: ignore[arg-type]
    )


def test_unknown_transport_is_refused() -> None:
    with pytest.raises(ValueError, match="transport"):
        StreamConnector(remote_url=URL, transport="tcp")  # type: ignore[arg-type]


async def test_relays_both_ways_then_the_call_hangs_up(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    app_ws, teler_ws = call_pair
    running = spawn(nursery, lambda: lean(remote).bridge_stream(app_ws))
    async with open_teler_peer(teler_ws, send_start=False) as peer:
        for size in (1, 320, 70_000):
            frame = bytes(range(256)) * (size // 256) + b"\xff" * (size % 256)
            await teler_ws.send_message(frame)
            await peer.wait_for(lambda frame=frame: frame in peer.received)  # type: ignore[misc]
        await peer.hang_up(1000, "call over")
    result = await running.wait()
    assert result.end is BridgeEnd.CALL_CLOSED
    assert result.remote_close == CloseInfo(1000, "call ended", by_peer=False)
    assert remote.closes == [(1000, "call ended")]
    assert result.remote_to_call.bytes_out == 1 + 320 + 70_000


async def test_remote_abnormal_close_is_an_error(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    make_remote: Callable[..., MemoryRemote],
    call_pair: CallPair,
) -> None:
    async def fail(ws: WebSocket) -> None:
        await ws.get_message()
        await ws.aclose(4000, "llm crashed")

    remote = make_remote(fail)
    app_ws, teler_ws = call_pair
    running = spawn(nursery, lambda: lean(remote).bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert "the remote closed the connection with code 4000: llm crashed" in str(error)
    assert error.result is not None
    assert error.result.remote_close == CloseInfo(4000, "llm crashed", by_peer=True)


async def test_keepalive_detects_a_silent_remote(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    app_ws, teler_ws = call_pair
    bridge = lean(remote, ping_interval=5, ping_timeout=3, close_timeout=1)
    running = spawn(nursery, lambda: bridge.bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        await trio.sleep(60)  # idle but healthy: the relay's reader sees the pongs
        assert peer.close is None
        remote.streams[0].frozen = True
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert str(error) == "the remote did not answer a ping within 3 s"


async def test_oversized_remote_message_is_1009(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    make_remote: Callable[..., MemoryRemote],
    call_pair: CallPair,
) -> None:
    async def big(ws: WebSocket) -> None:
        await ws.send_message(b"x" * 2000)
        await trio.sleep_forever()

    remote = make_remote(big)
    app_ws, teler_ws = call_pair
    running = spawn(nursery, lambda: lean(remote, max_message_size=1000).bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        assert await peer.wait_closed() == (1011, "bridge error")
    error = await running.wait_error()
    assert "code 1009" in str(error)
    assert error.result is not None
    assert error.result.remote_close is not None
    assert error.result.remote_close.code == 1009


async def test_stop_from_a_handler_closes_the_remote_with_1000(
    nursery: trio.Nursery,
    autojump_clock: trio.testing.MockClock,
    remote: MemoryRemote,
    call_pair: CallPair,
) -> None:
    async def stop(message: str | bytes) -> tuple[None, StreamOp]:
        return None, StreamOp.STOP

    app_ws, teler_ws = call_pair
    running = spawn(nursery, lambda: lean(remote, call_stream_handler=stop).bridge_stream(app_ws))
    async with open_teler_peer(teler_ws) as peer:
        await peer.wait_closed()
    result = await running.wait()
    assert result.end is BridgeEnd.CALL_STOP
    assert remote.closes == [(1000, "Stream stopped by client")]
