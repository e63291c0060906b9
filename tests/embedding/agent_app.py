"""An ASGI application that runs a Telcoflow agent, built with FastAPI or with Starlette.

* The app's lifespan owns the ``TelcoflowClient``: entered at startup, left at
  shutdown (one task, as trio requires), which closes the calls in progress.
* Each call is answered and bridged to a voice AI (``StreamConnector.bridge_call``).
* ``/media-stream`` bridges each Teler media stream to the same voice AI, per
  request (``StreamConnector.bridge_stream``).
* ``/events`` streams call events as JSON to WebSocket subscribers.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from fastapi import FastAPI
from starlette.applications import Starlette
from starlette.routing import WebSocketRoute
from starlette.websockets import WebSocket, WebSocketState

from telcoflow_trio import ActiveCall, TelcoflowClient, TelcoflowClientConfig, events
from telcoflow_trio.streams import StreamConnector
from telcoflow_trio.ws._streams import StreamOpener

logger = logging.getLogger(__name__)

Event = dict[str, Any]


@attrs.define(eq=False)
class Gateway:
    """What both apps share: the lifespan, the call handler and the endpoints."""

    config: TelcoflowClientConfig
    #: How the client reaches the platform (the simulator, in the tests).
    open_stream: StreamOpener
    voice_ai_url: str
    #: How the bridges reach the voice AI (in memory, in the tests).
    voice_ai_open_stream: StreamOpener
    client: TelcoflowClient | None = None
    subscribers: set[trio.MemorySendChannel[Event]] = attrs.Factory(set)

    @property
    def connector(self) -> StreamConnector:
        return StreamConnector(
            remote_url=self.voice_ai_url, open_stream=self.voice_ai_open_stream, close_timeout=0.5
        )

    @asynccontextmanager
    async def lifespan(self, app: object) -> AsyncIterator[None]:
        async with TelcoflowClient(self.config, open_stream=self.open_stream) as client:
            client.on(events.INCOMING_CALL)(self.handle_call)
            self.client = client
            try:
                yield
            finally:
                self.client = None
                for channel in list(self.subscribers):
                    channel.close()

    def publish(self, **event: Any) -> None:
        for channel in list(self.subscribers):
            try:
                channel.send_nowait(event)
            except trio.WouldBlock:  # a subscriber that stopped reading: drop it
                channel.close()
                self.subscribers.discard(channel)

    async def handle_call(self, call: ActiveCall) -> None:
        await call.answer()
        self.publish(event="answered", call_id=call.call_id)
        try:
            result = await self.connector.bridge_call(call)
            self.publish(event="bridge_ended", call_id=call.call_id, end=result.end.value)
        finally:
            info = call.termination
            self.publish(
                event="ended", call_id=call.call_id, reason=str(info.reason) if info else None
            )

    async def events_endpoint(self, websocket: WebSocket) -> None:
        await websocket.accept()
        send, receive = trio.open_memory_channel[Event](16)
        self.subscribers.add(send)
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._until_disconnect, websocket, nursery.cancel_scope)
                async with receive:
                    async for event in receive:
                        await websocket.send_json(event)
                nursery.cancel_scope.cancel()  # the app is shutting down
        finally:
            self.subscribers.discard(send)
            # Hypercorn cancels WebSocket handlers still running after its
            # graceful_timeout: say goodbye anyway, shielded and bounded.
            if websocket.client_state is WebSocketState.CONNECTED:
                with trio.CancelScope(shield=True, deadline=trio.current_time() + 0.5):
                    await websocket.close(1001, "shutting down")

    @staticmethod
    async def _until_disconnect(websocket: WebSocket, scope: trio.CancelScope) -> None:
        while (await websocket.receive())["type"] != "websocket.disconnect":
            pass
        scope.cancel()

    async def media_stream(self, websocket: WebSocket) -> None:
        await websocket.accept()
        await self.connector.bridge_stream(websocket)


def fastapi_app(gateway: Gateway) -> FastAPI:
    app = FastAPI(lifespan=gateway.lifespan)
    app.add_api_websocket_route("/events", gateway.events_endpoint)
    app.add_api_websocket_route("/media-stream", gateway.media_stream)
    return app


def starlette_app(gateway: Gateway) -> Starlette:
    return Starlette(
        routes=[
            WebSocketRoute("/events", gateway.events_endpoint),
            WebSocketRoute("/media-stream", gateway.media_stream),
        ],
        lifespan=gateway.lifespan,
    )
