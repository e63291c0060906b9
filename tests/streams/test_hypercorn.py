"""The bridge under FastAPI on Hypercorn's trio worker, driven by a real WebSocket client.

Real loopback sockets and the real clock (the ASGI server is what is under
test); every wait is bounded.
"""

from __future__ import annotations

import importlib.util
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from types import ModuleType

import hypercorn
import hypercorn.trio
import pytest
import trio
from fastapi import FastAPI, WebSocket

from telcoflow_trio.exceptions import StreamBridgeError
from telcoflow_trio.streams import (
    BridgeEnd,
    BridgeResult,
    CloseInfo,
    HandlerResult,
    StreamConnector,
    StreamOp,
)
from telcoflow_trio.testing.teler import open_teler_peer

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "teler_fastapi_echo.py"
PCM = bytes(range(256)) * 25  # 400 ms at 8 kHz


def load_example() -> ModuleType:
    spec = importlib.util.spec_from_file_location("teler_fastapi_echo", EXAMPLE)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@asynccontextmanager
async def serve(app: FastAPI, graceful_timeout: float = 0.5) -> AsyncIterator[str]:
    """Serve ``app`` on a free loopback port; yields ``host:port``; shuts down on exit."""
    config = hypercorn.Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = graceful_timeout
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        binds = await nursery.start(
            partial(hypercorn.trio.serve, app, config, shutdown_trigger=shutdown.wait)
        )
        try:
            yield binds[0].removeprefix("http://")
        finally:
            shutdown.set()


@pytest.fixture(autouse=True)
def quiet_hypercorn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hypercorn")


async def test_teler_readme_echo_sample_caller_hears_itself() -> None:
    example = load_example()
    with trio.fail_after(20):
        async with serve(example.app) as address:
            example.connector.remote_url = f"ws://{address}/echo"
            async with open_teler_peer(f"ws://{address}/media-stream", chunk_ms=20) as peer:
                await peer.send_audio(PCM)
                await peer.wait_audio(len(PCM))
                assert bytes(peer.audio) == PCM
                await peer.hang_up()
        # leaving `serve` shut the server down: the bridge and the echo ended with it


async def test_shutdown_during_a_call_closes_it_going_away() -> None:
    example = load_example()
    config = hypercorn.Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 0.5
    shutdown = trio.Event()
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            binds = await nursery.start(
                partial(hypercorn.trio.serve, example.app, config, shutdown_trigger=shutdown.wait)
            )
            address = binds[0].removeprefix("http://")
            example.connector.remote_url = f"ws://{address}/echo"
            async with open_teler_peer(f"ws://{address}/media-stream") as peer:
                await peer.send_audio(PCM)
                await peer.wait_audio(len(PCM))
                shutdown.set()
                assert await peer.wait_closed() == (1001, "going away")
        # the nursery waited for serve() to return: the server is down


class Outcomes(list[BridgeResult | Exception]):
    """What the app's bridges ended with."""

    def __init__(self) -> None:
        super().__init__()
        self.changed = trio.Event()

    async def wait(self) -> None:
        while not self:
            await self.changed.wait()


def bridge_app(connector: StreamConnector, results: Outcomes) -> FastAPI:
    """An app whose ``/bridge`` runs ``connector`` and keeps each outcome; plus ``/echo``."""
    app = FastAPI()
    app.include_router(load_example().router)

    @app.websocket("/bridge")
    async def bridge(websocket: WebSocket) -> None:
        await websocket.accept()
        try:
            results.append(await connector.bridge_stream(websocket))
        except StreamBridgeError as exc:
            results.append(exc)
        results.changed.set()

    return app


async def test_asgi_binary_both_ways_and_the_caller_hanging_up() -> None:
    results = Outcomes()
    connector = StreamConnector(remote_url="ws://127.0.0.1:1/echo")
    with trio.fail_after(20):
        async with serve(bridge_app(connector, results)) as address:
            connector.remote_url = f"ws://{address}/echo"
            async with open_teler_peer(f"ws://{address}/bridge", send_start=False) as peer:
                for frame in (b"\x00\x01", PCM, "text"):
                    await peer.stream.send_message(frame)
                await peer.wait_for(lambda: len(peer.received) + len(peer.errors) == 3)
                assert peer.received[:2] == [b"\x00\x01", PCM]
                await peer.hang_up(1000, "bye")
            await results.wait()
    [result] = results
    assert isinstance(result, BridgeResult)
    assert result.end is BridgeEnd.CALL_CLOSED
    # Hypercorn reports 1006 for a client's close (it passes no code to the app)
    assert result.call_close == CloseInfo(1006, None, by_peer=True)
    assert result.remote_close == CloseInfo(1000, "call ended", by_peer=False)
    assert result.call_to_remote.bytes_out == result.remote_to_call.bytes_out == 2 + len(PCM) + 4


async def test_asgi_handler_error_closes_the_caller_1011() -> None:
    async def remote_handler(message: str | bytes) -> HandlerResult:
        if message == "boom":
            raise ValueError("boom")
        return message, StreamOp.RELAY

    results = Outcomes()
    connector = StreamConnector(
        remote_url="ws://127.0.0.1:1/echo", remote_stream_handler=remote_handler
    )
    with trio.fail_after(20):
        async with serve(bridge_app(connector, results)) as address:
            connector.remote_url = f"ws://{address}/echo"
            async with open_teler_peer(f"ws://{address}/bridge", send_start=False) as peer:
                await peer.stream.send_message("boom")
                assert await peer.wait_closed() == (1011, "bridge error")
            await results.wait()
    [error] = results
    assert isinstance(error, StreamBridgeError)
    assert str(error) == "remote_stream_handler raised ValueError: boom"
    assert error.result is not None
    assert error.result.call_close == CloseInfo(1011, "bridge error", by_peer=False)
    assert error.result.remote_close == CloseInfo(1011, "bridge error", by_peer=False)
