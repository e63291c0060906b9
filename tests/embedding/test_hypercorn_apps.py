"""FastAPI and Starlette apps on Hypercorn's trio worker (in-process ``hypercorn.trio.serve``)
with a lifespan-owned client, bridges per call and per request, real WebSocket clients
(trio-websocket) on loopback, and a shutdown in the middle of a call.

Real clock and real sockets (the ASGI server is what is under test); the simulator
runs in the same trio run over memory streams. Every wait is bounded.
"""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import Any

import hypercorn
import hypercorn.trio
import pytest
import trio

from telcoflow_trio import TelcoflowClientConfig
from telcoflow_trio.exceptions import WSSConnectionClosed
from telcoflow_trio.simulator import CallerScript, Simulator, open_simulator, tone
from telcoflow_trio.testing import MemoryServer, contains_tone, make_tone, open_memory_server
from telcoflow_trio.testing.teler import open_teler_peer
from telcoflow_trio.ws._transport import MessageStream, open_websocket

from .agent_app import Gateway, fastapi_app, starlette_app

APPS = [pytest.param(fastapi_app, id="fastapi"), pytest.param(starlette_app, id="starlette")]
AppFactory = Callable[[Gateway], Any]


@pytest.fixture(autouse=True)
def quiet_hypercorn(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="hypercorn")


@asynccontextmanager
async def running(
    factory: AppFactory, sim: Simulator, voice_ai: MemoryServer
) -> AsyncIterator[tuple[str, trio.Event]]:
    """Serve the app on a free port; yields its address and the shutdown trigger."""
    gateway = Gateway(
        TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url, sample_rate=8000
        ),
        sim.open_stream,
        voice_ai.url + "/agent",
        voice_ai.open_stream,
    )
    config = hypercorn.Config()
    config.bind = ["127.0.0.1:0"]
    config.graceful_timeout = 0.5
    shutdown = trio.Event()
    async with trio.open_nursery() as nursery:
        app = factory(gateway)
        binds = await nursery.start(
            partial(hypercorn.trio.serve, app, config, shutdown_trigger=shutdown.wait)
        )
        try:
            yield binds[0].removeprefix("http://"), shutdown
        finally:
            shutdown.set()
        # Leaving the nursery waits for serve() to return: the server is down.


async def next_event(ws: MessageStream) -> dict[str, Any]:
    event: dict[str, Any] = json.loads(await ws.get_message())
    return event


async def closing_code(ws: MessageStream) -> int:
    """Read until the server closes; its close code."""
    try:
        while True:
            await ws.get_message()
    except WSSConnectionClosed as exc:
        return exc.code


@pytest.mark.parametrize("factory", APPS)
async def test_calls_bridged_by_a_lifespan_owned_client(factory: AppFactory) -> None:
    pcm = make_tone(1000, 0.4, 8000)
    with trio.fail_after(30):
        async with (
            open_memory_server() as voice_ai,  # it echoes
            open_simulator() as sim,
            running(factory, sim, voice_ai) as (address, _),
            open_websocket(f"ws://{address}/events") as events,
        ):
            # A call: answered, bridged to the voice AI, which echoes the caller.
            call = await sim.place_call(CallerScript(audio=tone(440), hangup_after=1.0))
            assert await next_event(events) == {"event": "answered", "call_id": call.call_id}
            result = await call.wait_result()
            ended = [await next_event(events), await next_event(events)]
            # Meanwhile, a Teler media stream is bridged per request.
            async with open_teler_peer(f"ws://{address}/media-stream") as peer:
                await peer.send_audio(pcm)
                await peer.wait_audio(len(pcm))
                assert bytes(peer.audio) == pcm
    assert voice_ai.paths == ["/agent", "/agent"]  # one bridge per call, one per request
    assert result.ended_by == "caller_hangup"
    assert [c.name for c in result.commands] == ["call.answer"]
    assert contains_tone(result.agent_audio, 440, 8000, min_share=0.9)  # the echo
    assert result.agent_audio_seconds > 0.5
    assert ended == [
        {"event": "bridge_ended", "call_id": call.call_id, "end": "call_closed"},
        {"event": "ended", "call_id": call.call_id, "reason": "caller_hangup"},
    ]


@pytest.mark.parametrize("factory", APPS)
async def test_shutdown_in_the_middle_of_a_call(factory: AppFactory) -> None:
    with trio.fail_after(30):
        async with open_memory_server() as voice_ai, open_simulator() as sim:
            async with (
                running(factory, sim, voice_ai) as (address, shutdown),
                open_websocket(f"ws://{address}/events") as events,
                open_teler_peer(f"ws://{address}/media-stream") as peer,
            ):
                call = await sim.place_call(CallerScript(audio=tone(440)))  # never hangs up
                assert (await next_event(events))["event"] == "answered"
                await trio.sleep(0.2)
                started = trio.current_time()
                shutdown.set()
                assert await peer.wait_closed() == (1001, "going away")
                assert await closing_code(events) == 1001
                result = await call.wait_result()
            # serve() has returned: the lifespan left the client, which closed the call.
            stopped = trio.current_time() - started
            assert voice_ai.active == 0  # both bridges closed their voice AI connection
    assert result.ended_by == "agent_close"
    assert result.agent_audio_seconds > 0.1
    assert stopped < 5
