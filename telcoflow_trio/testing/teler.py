"""A Teler-side media-stream peer, for testing stream bridges against the platform's behaviour.

:func:`open_teler_peer` connects to an app's stream URL (or takes a
:class:`~telcoflow_trio.ws._transport.MessageStream`, e.g. one end of an in-memory
WebSocket), sends ``start`` like Teler does, and records everything the app
sends back: decoded audio, ``chunk_id``s, ``clear`` and ``interrupt`` messages,
binary frames, malformed messages and the close code. Audio goes out with
:meth:`TelerPeer.send_audio`, as base64 L16 chunks of ``chunk_ms``, paced in
real time (virtual time under ``MockClock``)::

    async with open_teler_peer("ws://127.0.0.1:8000/media-stream") as peer:
        await peer.send_audio(pcm)
        await peer.wait_audio(len(pcm))
        assert bytes(peer.audio) == pcm
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager

import attrs
import trio

from ..exceptions import RemoteProtocolError, WSSConnectionClosed
from ..streams import teler
from ..ws._errors import code_and_reason
from ..ws._streams import StreamOpener, open_tcp
from ..ws._transport import MessageStream, open_websocket

__all__ = ["TelerPeer", "open_teler_peer"]


@attrs.define(eq=False)
class TelerPeer:
    """Teler's end of one media stream. Use :func:`open_teler_peer` to run one.

    Args:
        stream: the WebSocket to the app.
        call_id, stream_id, account_id, call_app_id: what ``start`` announces.
        sample_rate: 8000 or 16000, announced in ``start``.
        chunk_ms: the stream's ``chunk_size``: milliseconds of audio per message.
    """

    stream: MessageStream
    call_id: str = "call-0001"
    stream_id: str = "stream-0001"
    account_id: str = "account-0001"
    call_app_id: str = "app-0001"
    sample_rate: int = 8000
    chunk_ms: int = 20

    #: Every message from the app, parsed; binary frames as ``bytes``.
    received: list[teler.TelerMessage | bytes] = attrs.field(factory=list, init=False)
    #: The app's audio, decoded and joined.
    audio: bytearray = attrs.field(factory=bytearray, init=False)
    #: ``chunk_id`` of each audio message (``None`` where it had none).
    chunk_ids: list[int | None] = attrs.field(factory=list, init=False)
    #: How many ``clear`` messages arrived.
    clears: int = attrs.field(default=0, init=False)
    #: The ``chunk_id`` of each ``interrupt``.
    interrupts: list[int] = attrs.field(factory=list, init=False)
    #: Messages that broke the Teler schema.
    errors: list[RemoteProtocolError] = attrs.field(factory=list, init=False)
    #: ``(code, reason)`` the app closed with, once it has.
    close: tuple[int, str | None] | None = attrs.field(default=None, init=False)
    _message_id: int = attrs.field(default=0, init=False)
    _changed: trio.Event = attrs.field(factory=trio.Event, init=False)

    @property
    def chunk_bytes(self) -> int:
        """Bytes of PCM in one ``chunk_ms`` message."""
        return self.sample_rate * self.chunk_ms // 1000 * teler.SAMPLE_WIDTH

    def _next_id(self) -> int:
        self._message_id += 1
        return self._message_id

    async def send_start(self) -> None:
        """Send ``start`` (``message_id`` 1), as Teler does first."""
        await self.stream.send_message(
            json.dumps(
                {
                    "type": "start",
                    "account_id": self.account_id,
                    "call_app_id": self.call_app_id,
                    "call_id": self.call_id,
                    "stream_id": self.stream_id,
                    "message_id": self._next_id(),
                    "data": {
                        "encoding": "audio/l16",
                        "sample_rate": self.sample_rate,
                        "channels": 1,
                    },
                }
            )
        )

    def audio_message(self, pcm: bytes, *, flat: bool = False) -> str:
        """An ``audio`` message as Teler sends it (``flat``: top-level ``audio_b64``)."""
        audio = {"audio_b64": teler.encode_audio(pcm)}
        body: dict[str, object] = {
            "type": "audio",
            "stream_id": self.stream_id,
            "message_id": self._next_id(),
        }
        if flat:
            body.update(audio)
        else:
            body["data"] = audio
        return json.dumps(body)

    async def send_audio(self, pcm: bytes, *, paced: bool = True, flat: bool = False) -> int:
        """Send ``pcm`` as ``chunk_ms`` audio messages, one per ``chunk_ms`` when ``paced``.

        Stops early, like Teler, once the app has closed the stream.

        Returns:
            how many bytes of ``pcm`` were sent.
        """
        step = self.chunk_bytes
        deadline = trio.current_time()
        for offset in range(0, len(pcm), step):
            try:
                await self.stream.send_message(
                    self.audio_message(pcm[offset : offset + step], flat=flat)
                )
            except WSSConnectionClosed:
                return offset
            if paced:
                deadline += self.chunk_ms / 1000
                await trio.sleep_until(deadline)
        return len(pcm)

    async def receive_all(self) -> None:
        """Record the app's messages until it closes (run by :func:`open_teler_peer`)."""
        try:
            while True:
                self._record(await self.stream.get_message())
        except WSSConnectionClosed as exc:
            self.close = code_and_reason(exc)
            self._notify()

    def _record(self, message: str | bytes) -> None:
        if isinstance(message, bytes):
            self.received.append(message)
        else:
            try:
                parsed = teler.parse_message(message)
            except RemoteProtocolError as exc:
                self.errors.append(exc)
            else:
                self.received.append(parsed)
                if isinstance(parsed, teler.TelerAudio):
                    self.audio += parsed.pcm
                    self.chunk_ids.append(parsed.chunk_id)
                elif isinstance(parsed, teler.TelerClear):
                    self.clears += 1
                elif isinstance(parsed, teler.TelerInterrupt):
                    self.interrupts.append(parsed.chunk_id)
        self._notify()

    def _notify(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    async def wait_for(self, predicate: Callable[[], bool]) -> None:
        """Wait until ``predicate()`` holds; it is checked after every message.

        Raises:
            WSSConnectionClosed: the app closed first.
        """
        while not predicate():
            if self.close is not None:
                raise WSSConnectionClosed(*self.close)
            await self._changed.wait()

    async def wait_audio(self, nbytes: int) -> None:
        """Wait until at least ``nbytes`` of audio arrived."""
        await self.wait_for(lambda: len(self.audio) >= nbytes)

    async def wait_closed(self) -> tuple[int, str | None]:
        """Wait for the app to close; its ``(code, reason)``."""
        while self.close is None:
            await self._changed.wait()
        return self.close

    async def hang_up(self, code: int = 1000, reason: str | None = None) -> None:
        """End the stream as Teler does when the call ends: close the WebSocket."""
        await self.stream.aclose(code, reason)


@asynccontextmanager
async def open_teler_peer(
    target: str | MessageStream,
    *,
    open_stream: StreamOpener = open_tcp,
    send_start: bool = True,
    **options: object,
) -> AsyncIterator[TelerPeer]:
    """Connect a :class:`TelerPeer` to ``target`` (a ``ws://`` URL or a stream) for a block.

    Sends ``start`` first unless ``send_start`` is false, records in the
    background, and closes with 1000 (bounded) on leaving the block.

    Args:
        target: the app's stream URL, or an open stream to it.
        open_stream: how to open the URL's byte stream.
        send_start: send ``start`` on entry.
        options: :class:`TelerPeer` fields (``call_id``, ``sample_rate``, ``chunk_ms``, ...).
    """
    if isinstance(target, str):
        async with (
            open_websocket(target, open_stream=open_stream) as ws,
            _run_peer(ws, send_start, options) as peer,
        ):
            yield peer
    else:
        async with _run_peer(target, send_start, options) as peer:
            yield peer


@asynccontextmanager
async def _run_peer(
    stream: MessageStream, send_start: bool, options: dict[str, object]
) -> AsyncIterator[TelerPeer]:
    peer = TelerPeer(stream, **options)  # type: ignore[arg-type]
    body_error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.receive_all)
        try:
            if send_start:
                await peer.send_start()
            yield peer
        except BaseException as exc:
            body_error = exc  # the test's own error: keep it out of the nursery's group
        finally:
            await stream.aclose()
            nursery.cancel_scope.cancel()
    if body_error is not None:
        raise body_error
