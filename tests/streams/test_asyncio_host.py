"""The stream bridge under an asyncio host (a FastAPI app on uvicorn).

``bridge_stream`` awaited on asyncio is refused with an error that says what to
do; through the asyncio bridge's portal it runs in trio while the Starlette
WebSocket's ``receive``/``send`` run on the asyncio loop. Real clock (two event
loops in two threads): every wait is bounded and nothing sleeps.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Coroutine, Mapping
from contextlib import asynccontextmanager
from typing import Any

import anyio
import pytest
import trio
from starlette.websockets import WebSocket as StarletteWebSocket

from telcoflow_trio.asyncio_bridge import open_trio_portal
from telcoflow_trio.streams import BridgeEnd, BridgeResult, CloseInfo, StreamConnector, teler

from .conftest import MemoryRemote

URL = "ws://ai.test/agent"
START = json.dumps({"type": "start", "call_id": "c-1", "stream_id": "s-1", "data": {}})


class AsyncioAsgi:
    """The server end of an ASGI WebSocket on asyncio: what uvicorn hands the app."""

    def __init__(self) -> None:
        self.incoming: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
        self.sent: asyncio.Queue[Mapping[str, Any]] = asyncio.Queue()
        self.incoming.put_nowait({"type": "websocket.connect"})

    async def receive(self) -> Mapping[str, Any]:
        return await self.incoming.get()  # only works on the asyncio loop

    async def send(self, message: Mapping[str, Any]) -> None:
        await self.sent.put(message)

    def say(self, text: str) -> None:
        self.incoming.put_nowait({"type": "websocket.receive", "text": text})

    def hang_up(self, code: int = 1000) -> None:
        self.incoming.put_nowait({"type": "websocket.disconnect", "code": code})


async def accepted(asgi: AsyncioAsgi) -> StarletteWebSocket:
    websocket = StarletteWebSocket(
        {"type": "websocket", "path": "/media"}, asgi.receive, asgi.send
    )
    await websocket.accept()
    assert (await asgi.sent.get())["type"] == "websocket.accept"
    return websocket


def run(main: Coroutine[Any, Any, None], limit: float = 20) -> None:
    async def bounded() -> None:
        async with asyncio.timeout(limit):
            await main

    asyncio.run(bounded())


def test_bridge_stream_awaited_on_asyncio_says_what_to_do() -> None:
    async def main() -> None:
        asgi = AsyncioAsgi()
        websocket = await accepted(asgi)
        connector = StreamConnector(remote_url=URL)
        with pytest.raises(RuntimeError) as info:
            await connector.bridge_stream(websocket)
        message = str(info.value)
        assert "runs on trio, but it was awaited from asyncio" in message
        assert "hypercorn --worker-class trio" in message
        assert "portal.bridge_stream(connector, websocket)" in message
        assert asgi.sent.empty()  # the socket is untouched: the app still owns it

    anyio.run(main, backend="asyncio")


def test_bridge_call_awaited_on_asyncio_says_what_to_do() -> None:
    async def main() -> None:
        with pytest.raises(RuntimeError, match=r"bridge_call\(\) runs on trio.*INCOMING_CALL"):
            await StreamConnector(remote_url=URL).bridge_call(object())  # type: ignore[arg-type]

    anyio.run(main, backend="asyncio")


@asynccontextmanager
async def memory_remote() -> AsyncIterator[MemoryRemote]:
    async with trio.open_nursery() as nursery:
        yield MemoryRemote(nursery)
        nursery.cancel_scope.cancel()


@asynccontextmanager
async def portal_bridge() -> AsyncIterator[tuple[AsyncioAsgi, asyncio.Future[BridgeResult]]]:
    """An accepted asyncio WebSocket, bridged through the portal to an echoing remote."""
    async with (
        open_trio_portal() as portal,
        portal.open_context(memory_remote) as remote,
    ):
        asgi = AsyncioAsgi()
        websocket = await accepted(asgi)
        connector = StreamConnector(remote_url=URL, open_stream=remote.open_stream)
        yield asgi, asyncio.ensure_future(portal.bridge_stream(connector, websocket))


def test_the_portal_bridges_an_asyncio_websocket() -> None:
    async def main() -> None:
        async with portal_bridge() as (asgi, bridge):
            audio = teler.audio_message(bytes(320), 1)
            asgi.say(START)
            asgi.say(audio)
            echoed = [(await asgi.sent.get())["text"] for _ in range(2)]
            asgi.hang_up(1000)
            result = await bridge
        assert echoed == [START, audio]  # relayed to the remote and back
        assert result.end is BridgeEnd.CALL_CLOSED
        assert result.call_close == CloseInfo(1000, None, by_peer=True)
        assert result.remote_close == CloseInfo(1000, "call ended", by_peer=False)

    run(main())


def test_cancelling_a_portal_bridge_closes_the_websocket_with_1001() -> None:
    async def main() -> None:
        async with portal_bridge() as (asgi, bridge):
            asgi.say(START)
            assert (await asgi.sent.get())["text"] == START
            bridge.cancel()
            with pytest.raises(asyncio.CancelledError):
                await bridge
            close = await asgi.sent.get()
        assert close == {"type": "websocket.close", "code": 1001, "reason": "going away"}

    run(main())


def test_the_portal_refuses_what_is_not_an_asgi_websocket() -> None:
    async def main() -> None:
        async with open_trio_portal() as portal:
            with pytest.raises(TypeError, match=r"takes an ASGI WebSocket.*got int"):
                await portal.bridge_stream(StreamConnector(remote_url=URL), 42)

    run(main())
