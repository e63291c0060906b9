"""A small raw protocol client for driving the simulator in tests.

It speaks the wire protocol frame by frame with ``telcoflow_trio.proto`` over
``_transport.open_websocket``: no part of the real client is involved, so the
simulator is tested on its own.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import trio

from telcoflow_trio.exceptions import WSSConnectionClosed
from telcoflow_trio.proto import (
    AudioFrame,
    BufferRequest,
    CallEventFrame,
    CallIn,
    Command,
    CommandResponse,
    ControlFrame,
    Response,
    SessionNotify,
    SessionOpen,
    SessionReady,
    Setup,
    SetupDone,
    decode_control,
    decode_media,
)
from telcoflow_trio.simulator import CONTROL_PATH, Simulator
from telcoflow_trio.ws._transport import WebSocket, open_websocket


def _in_memory_unless_told(sim: Simulator, options: dict[str, Any]) -> None:
    """Connect through ``sim.open_stream`` unless ``open_stream=None`` (real TCP) is given."""
    if "open_stream" not in options:
        options["open_stream"] = sim.open_stream
    elif options["open_stream"] is None:
        del options["open_stream"]


class RawControl:
    """One control connection, read frame by frame."""

    def __init__(self, ws: WebSocket) -> None:
        self.ws = ws
        self.sm_ws_id = ""
        self._req = 0

    async def recv(self) -> ControlFrame:
        return decode_control(await self.ws.get_message())

    async def expect(self, kind: type[Any], limit: float = 5.0) -> Any:
        with trio.fail_after(limit):
            frame = await self.recv()
        assert isinstance(frame, kind), f"expected {kind.__name__}, got {frame!r}"
        return frame

    async def read_until_closed(self) -> None:
        """Read (and drop) frames until the connection closes; raise its close."""
        while True:
            await self.recv()

    async def open(self, session_id: str) -> Response:
        self._req += 1
        await self.ws.send_message(SessionOpen(session_id, f"req-{self._req}").encode())
        response: Response = await self.expect(Response)
        assert response.req_id == f"req-{self._req}"
        return response

    async def claim(self, notify: SessionNotify | None = None) -> CallIn:
        """Take the next notified call: open, ready, and return its ``call.in``."""
        if notify is None:
            notify = await self.expect(SessionNotify)
        response = await self.open(notify.session_id)
        assert response.ok, response
        await self.ws.send_message(SessionReady(notify.session_id).encode())
        call_in: CallIn = await self.expect(CallIn)
        return call_in


@asynccontextmanager
async def open_control(
    sim: Simulator,
    *,
    sample_rate: int = 16000,
    audio_mode: str = "mixed",
    headers: list[tuple[str, str]] | None = None,
    setup: bool = True,
    **options: Any,
) -> AsyncIterator[RawControl]:
    if headers is None:
        headers = [("x-api-key", sim.api_key), ("x-connector-uuid", sim.connector_uuid)]
    _in_memory_unless_told(sim, options)
    async with open_websocket(sim.base_url + CONTROL_PATH, headers=headers, **options) as ws:
        control = RawControl(ws)
        if setup:
            await ws.send_message(Setup(sample_rate, audio_mode).encode())
            done: SetupDone = await control.expect(SetupDone)
            control.sm_ws_id = done.sm_ws_id
        yield control


class RawMedia:
    """A media connection with a reader task and a well-behaved pull-based sender.

    Audio written with :meth:`say` goes out only against ``buffer_request`` credit,
    in frames of the preferred size, like a real client.
    """

    def __init__(self, ws: WebSocket, nursery: trio.Nursery) -> None:
        self.ws = ws
        self._nursery = nursery
        self.audio: dict[int, bytearray] = {}
        self.events: list[CallEventFrame] = []
        self.requests: list[BufferRequest] = []
        self.responses: dict[str, CommandResponse] = {}
        self.response_times: dict[str, float] = {}
        self.closed: WSSConnectionClosed | None = None
        self.credit = 0
        self.prefer = 0
        self.outgoing = bytearray()
        self.sent = 0
        self.auto_send = True
        self._changed = trio.Event()
        self._ids = 0

    def _poke(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], object], limit: float = 30.0) -> None:
        with trio.fail_after(limit):
            while not predicate():
                await self._changed.wait()

    async def reader(self) -> None:
        try:
            while True:
                frame = decode_media(await self.ws.get_message())
                if isinstance(frame, AudioFrame):
                    self.audio.setdefault(frame.channel, bytearray()).extend(frame.pcm)
                elif isinstance(frame, BufferRequest):
                    self.requests.append(frame)
                    self.credit += frame.requested_bytes
                    self.prefer = frame.prefer_audio_frame_bytes
                    await self._pump()
                elif isinstance(frame, CommandResponse):
                    self.responses[frame.command_id] = frame
                    self.response_times[frame.command_id] = trio.current_time()
                elif isinstance(frame, CallEventFrame):
                    self.events.append(frame)
                self._poke()
        except WSSConnectionClosed as exc:
            self.closed = exc
            self._poke()

    async def _pump(self) -> None:
        while self.auto_send and self.credit > 0 and self.outgoing:
            n = min(self.prefer or 640, self.credit, len(self.outgoing))
            chunk = bytes(self.outgoing[:n])
            del self.outgoing[:n]
            await self.ws.send_message(b"\x00" + chunk)
            self.credit -= n
            self.sent += n

    async def say(self, pcm: bytes) -> None:
        self.outgoing += pcm
        await self._pump()

    async def send_command(
        self, name: str, *, timeout_ms: int = 10_000, data: dict[str, Any] | None = None
    ) -> str:
        self._ids += 1
        command_id = f"cmd-{self._ids}"
        await self.ws.send_message(Command(command_id, name, timeout_ms, data).encode())
        return command_id

    async def command(
        self,
        name: str,
        *,
        timeout_ms: int = 10_000,
        data: dict[str, Any] | None = None,
        wait: float = 200.0,
    ) -> CommandResponse:
        command_id = await self.send_command(name, timeout_ms=timeout_ms, data=data)
        await self.wait_for(lambda: command_id in self.responses, wait)
        return self.responses[command_id]

    async def wait_event(self, name: str, limit: float = 30.0) -> CallEventFrame:
        await self.wait_for(lambda: any(e.event == name for e in self.events), limit)
        return next(e for e in self.events if e.event == name)

    async def wait_closed(self, limit: float = 30.0) -> WSSConnectionClosed:
        await self.wait_for(lambda: self.closed is not None, limit)
        assert self.closed is not None
        return self.closed


@asynccontextmanager
async def open_media(sim: Simulator, call_in: CallIn, **options: Any) -> AsyncIterator[RawMedia]:
    _in_memory_unless_told(sim, options)
    headers = [("authorization", f"Bearer {call_in.token}"), ("x-sdk-version", "1.0.0")]
    async with (
        open_websocket(call_in.url, headers=headers, **options) as ws,
        trio.open_nursery() as nursery,
    ):
        media = RawMedia(ws, nursery)
        nursery.start_soon(media.reader)
        yield media
        nursery.cancel_scope.cancel()
