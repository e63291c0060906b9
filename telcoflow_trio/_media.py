"""One call's media connection: audio both ways and the call commands.

:class:`MediaConnection` owns the call's WebSocket and runs two tasks on it, a
reader and a sender:

* the **reader** decodes every message and never waits for the application:
  caller audio goes into bounded queues (:class:`InboundAudio`), ``buffer_request``
  credit is added up, command responses wake their callers, call events are
  handed to a synchronous callback that only records them;
* **sending** is pull-based: agent audio goes out only while the server has credit
  for it (:class:`~telcoflow_trio.proto.SendCredit`), in frames of the server's
  preferred size (else 20 ms), always whole samples, and a short tail goes at
  once rather than being held back. A frame that can go now is sent by the task
  that made it possible (``send_audio``'s, or the reader's on a
  ``buffer_request``) if the connection takes it without waiting
  (``send_message_nowait``); otherwise the **sender** task sends it.

Commands are round trips correlated by :class:`~telcoflow_trio.proto.CommandTracker`;
the client's own deadline is the server's deadline plus a grace period. When the
call ends, :meth:`MediaConnection.close_down` fails the commands in flight with
:class:`~telcoflow_trio.exceptions.WSSCallClosedError`, ends every audio stream,
closes the outgoing buffer and closes the socket (bounded in time).
"""

from __future__ import annotations

import collections
import contextlib
import logging
import ssl
import weakref
from collections.abc import Callable
from typing import Any, Final, final

import attrs
import trio

from . import proto
from ._reply import Reply
from ._throttle import ThrottledLog
from .config import TelcoflowClientConfig
from .exceptions import (
    BufferClosedError,
    RemoteProtocolError,
    WSSCallClosedError,
    WSSCallCommandTimeoutError,
    WSSConnectionClosed,
    WSSError,
    WSSMediaError,
)
from .ws._streams import StreamOpener
from .ws._transport import ClientWebSocket, open_websocket, redact_url

__all__ = ["AudioStream", "InboundAudio", "MediaConnection", "MediaCounters"]

logger = logging.getLogger(__name__)

#: Agent audio always goes out on channel 0.
_AUDIO_PREFIX: Final = b"\x00"


@attrs.define
class MediaCounters:
    """Running totals of one media connection (mutable; copied into statistics)."""

    frames_sent: int = 0
    bytes_sent: int = 0
    frames_received: int = 0
    bytes_received: int = 0
    buffer_requests: int = 0
    #: ``buffer_request``\\ s that found earlier credit unused and nothing to send.
    underruns: int = 0
    malformed_frames: int = 0
    commands_sent: int = 0


@final
class AudioStream:
    """One audio channel (0: the mix) as an async iterator of PCM16LE ``bytes`` chunks.

    Each stream has its own bounded queue, so several readers (say, a recorder
    and a speech recogniser) each see every chunk. The iteration ends once the
    call has ended and the queue is empty; a stream opened after the end yields
    what was still buffered and then ends, never blocks.
    """

    __slots__ = ("__weakref__", "_inbound", "_lot", "_queue")

    def __init__(self, inbound: InboundAudio, queue: collections.deque[bytes]) -> None:
        self._inbound = inbound
        self._queue = queue
        self._lot = trio.lowlevel.ParkingLot()

    def __aiter__(self) -> AudioStream:
        return self

    async def __anext__(self) -> bytes:
        await trio.lowlevel.checkpoint_if_cancelled()
        queue = self._queue
        if queue:
            await trio.lowlevel.cancel_shielded_checkpoint()
        while not queue:
            if self._inbound.ended:
                raise StopAsyncIteration
            await self._lot.park()
        return queue.popleft()

    def aclose_nowait(self) -> None:
        """Stop receiving; chunks already queued are discarded."""
        self._inbound.unsubscribe(self)
        self._queue.clear()

    async def aclose(self) -> None:
        """Stop receiving (also happens when the stream is garbage-collected)."""
        self.aclose_nowait()
        await trio.lowlevel.checkpoint()

    def _push(self, chunk: bytes) -> None:
        self._inbound.append_bounded(self._queue, chunk)
        if self._lot:
            self._lot.unpark_all()

    def _wake(self) -> None:
        self._lot.unpark_all()


class InboundAudio:
    """Caller audio waiting for :class:`AudioStream` readers, bounded everywhere.

    Policy when the application reads too slowly: every queue (one per open
    stream, plus a backlog kept while no stream is open) holds at most
    ``max_chunks`` chunks; when a queue is full its **oldest** chunk is dropped
    and counted in :attr:`dropped_chunks` / :attr:`dropped_bytes`. The reader of
    the media connection never waits, so commands, events and pings keep flowing.
    The first stream opened while no other is open takes over the backlog, so
    audio that arrived before ``audio_stream()`` was called is not lost.
    """

    __slots__ = (
        "_backlog",
        "_subscribers",
        "dropped_bytes",
        "dropped_chunks",
        "ended",
        "max_chunks",
    )

    def __init__(self, max_chunks: int) -> None:
        self.max_chunks = max_chunks
        self._backlog: collections.deque[bytes] = collections.deque()
        self._subscribers: list[weakref.ref[AudioStream]] = []
        self.ended = False
        self.dropped_chunks = 0
        self.dropped_bytes = 0

    def append_bounded(self, queue: collections.deque[bytes], chunk: bytes) -> None:
        if len(queue) >= self.max_chunks:
            old = queue.popleft()
            self.dropped_chunks += 1
            self.dropped_bytes += len(old)
        queue.append(chunk)

    def push(self, chunk: bytes) -> None:
        """Deliver ``chunk`` to every open stream (or the backlog); never blocks."""
        if not self._subscribers:
            self.append_bounded(self._backlog, chunk)
            return
        for ref in self._subscribers:
            stream = ref()
            if stream is not None:
                stream._push(chunk)

    def open_stream(self) -> AudioStream:
        """A new reader; it starts with the backlog if no other reader is open."""
        queue: collections.deque[bytes] = collections.deque()
        if not self._subscribers:
            queue, self._backlog = self._backlog, queue
        stream = AudioStream(self, queue)
        self._subscribers.append(weakref.ref(stream, self._forget))
        return stream

    def unsubscribe(self, stream: AudioStream) -> None:
        self._subscribers = [r for r in self._subscribers if r() not in (stream, None)]

    def _forget(self, ref: weakref.ref[AudioStream]) -> None:
        with contextlib.suppress(ValueError):
            self._subscribers.remove(ref)

    def end(self) -> None:
        """No more audio will come: every reader ends once its queue is empty."""
        self.ended = True
        for ref in self._subscribers:
            stream = ref()
            if stream is not None:
                stream._wake()


class MediaConnection:
    """The media WebSocket of one call.

    Args:
        call_in: the ``call.in`` frame: media URL and bearer token.
        config: the client's settings (timeouts, audio format, buffer sizes).
        open_stream: how to open the byte stream under the WebSocket.
        on_event: called (synchronously, from the reader) with each ``call_event``.
        on_lost: called (synchronously) when the connection breaks unexpectedly.
    """

    def __init__(
        self,
        call_in: proto.CallIn,
        config: TelcoflowClientConfig,
        *,
        open_stream: StreamOpener,
        on_event: Callable[[proto.CallEventFrame], None],
        on_lost: Callable[[BaseException], None],
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._call_in = call_in
        self._config = config
        #: for ``wss://`` (``None``: made from the config when the media opens)
        self._ssl_context = ssl_context
        self._open_stream = open_stream
        self._on_event = on_event
        self._on_lost = on_lost
        rate = config.sample_rate
        self.outgoing = proto.OutgoingAudio(config.buffer_size)
        self.credit = proto.SendCredit(
            proto.frame_bytes(rate),
            config.max_send_credit_ms * rate // 1000 * proto.SAMPLE_WIDTH,
        )
        self.inbound = InboundAudio(config.inbound_queue_chunks)
        #: Every inbound channel seen or asked for, 0 (``inbound``) included.
        self.channels: dict[int, InboundAudio] = {0: self.inbound}
        self.tracker = proto.CommandTracker(config.command_grace)
        self.counters = MediaCounters()
        self.closed = False
        self._waiters: dict[str, Reply[proto.CommandResponse]] = {}
        self._ws: ClientWebSocket | None = None
        self._opening = trio.CancelScope()  # around the opening only
        self._serving = trio.CancelScope()  # inside the open connection
        self._sender_lot = trio.lowlevel.ParkingLot()  # the sender waits for audio or credit
        self._space_lot = trio.lowlevel.ParkingLot()  # write() waits for room
        self._drained_lot = trio.lowlevel.ParkingLot()  # wait_sent() waits for an empty buffer
        self._sending = 0  # bytes taken from the buffer and not yet on the wire
        self._log_malformed = ThrottledLog(logger, logging.ERROR)

    # -- lifetime ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Open the connection, report ready, then serve it until :meth:`close_down`.

        Raises:
            WSSMediaError: the connection could not be opened (``__cause__`` says
                why), or the call ended while it was opening.
        """
        config = self._config
        url = self._call_in.url
        headers = [
            ("authorization", f"Bearer {self._call_in.token}"),
            ("x-sdk-version", config.sdk_version),
        ]
        try:
            with self._opening:
                tls = url.startswith("wss:")
                async with open_websocket(
                    url,
                    headers=headers,
                    ssl_context=(self._ssl_context or config.ssl_context()) if tls else None,
                    open_stream=self._open_stream,
                    connect_timeout=config.connect_timeout,
                    close_timeout=config.close_timeout,
                    max_message_size=config.max_message_size,
                    transport=config.transport,
                ) as ws:
                    self._ws = ws
                    task_status.started()
                    # Cancelled by close_down(): inside the block, so the
                    # socket still closes with a proper handshake.
                    with self._serving:
                        async with trio.open_nursery() as nursery:
                            nursery.start_soon(self._read, ws)
                            nursery.start_soon(self._send, ws)
        except (WSSError, OSError, ValueError) as exc:
            if self._ws is not None:
                # The connection broke while closing: the call has ended anyway.
                logger.debug("call %s: media close: %s", self._call_in.call_id, exc)
                self._lost(exc)
                return
            raise WSSMediaError(
                f"could not open the media connection of call {self._call_in.call_id} "
                f"({redact_url(url)}): {exc}"
            ) from exc
        if self._ws is None:
            raise WSSMediaError(
                f"call {self._call_in.call_id} ended before its media connection opened"
            )

    @property
    def connected(self) -> bool:
        """Whether the connection is open and the call not yet closed down."""
        return self._ws is not None and not self.closed

    def close_down(self) -> None:
        """End everything at once: fail pending commands, end audio, close the socket."""
        if self.closed:
            return
        self.closed = True
        self.outgoing.close()
        self.credit.reset()
        for inbound in self.channels.values():
            inbound.end()
        error = WSSCallClosedError(f"call {self._call_in.call_id} has ended")
        for pending in self.tracker.drain():
            waiter = self._waiters.pop(pending.frame.command_id, None)
            if waiter is not None:
                waiter.error = error
                waiter.event.set()
        for lot in (self._sender_lot, self._space_lot, self._drained_lot):
            lot.unpark_all()
        if self._ws is None:
            self._opening.cancel()
        self._serving.cancel()

    def channel(self, channel_id: int) -> InboundAudio:
        """The inbound audio of ``channel_id`` (made on first use, bounded like channel 0).

        Channels 1, 2, ... carry single legs under ``audio_mode="isolated"``.
        """
        inbound = self.channels.get(channel_id)
        if inbound is None:
            inbound = self.channels[channel_id] = InboundAudio(self._config.inbound_queue_chunks)
            inbound.ended = self.closed
        return inbound

    def _lost(self, exc: BaseException) -> None:
        if not self.closed:
            self._on_lost(exc)
            self.close_down()

    # -- reader --------------------------------------------------------------------

    async def _read(self, ws: ClientWebSocket) -> None:
        counters = self.counters
        max_size = self._config.max_message_size
        call_id = self._call_in.call_id
        # The platform sends the same buffer_request text again and again:
        # decode it once (frames are immutable).
        last_text: str | None = None
        last_request: proto.MediaFrame | None = None
        while True:
            try:
                message = await ws.get_message()
            except WSSConnectionClosed as exc:
                self._lost(exc)
                return
            if message == last_text:
                frame = last_request
            else:
                try:
                    frame = proto.decode_media(message, max_size=max_size)
                except RemoteProtocolError as exc:
                    counters.malformed_frames += 1
                    self._log_malformed(
                        "call %s: ignoring a malformed media frame: %s", call_id, exc
                    )
                    continue
                if type(frame) is proto.BufferRequest and isinstance(message, str):
                    last_text, last_request = message, frame
            if type(frame) is proto.AudioFrame:
                counters.frames_received += 1
                counters.bytes_received += len(frame.pcm)
                if frame.channel == 0:
                    self.inbound.push(frame.pcm)
                else:
                    self.channel(frame.channel).push(frame.pcm)
            elif type(frame) is proto.BufferRequest:
                counters.buffer_requests += 1
                if frame.channel_id == 0:
                    if self.credit.available and not self.outgoing and not self._sending:
                        counters.underruns += 1
                    self.credit.grant(frame.requested_bytes, frame.prefer_audio_frame_bytes)
                    self._send_or_wake()
            elif type(frame) is proto.CommandResponse:
                self._resolve(frame)
            elif type(frame) is proto.CallEventFrame:
                logger.debug("call %s: event %s", call_id, frame.event)
                self._on_event(frame)
            else:
                logger.debug("call %s: ignoring media frame %r", call_id, type(frame).__name__)

    def _resolve(self, response: proto.CommandResponse) -> None:
        pending = self.tracker.resolve(response)
        waiter = self._waiters.pop(response.command_id, None)
        if pending is None or waiter is None:
            logger.debug(
                "call %s: response to unknown or abandoned command %s",
                self._call_in.call_id,
                response.command_id,
            )
            return
        waiter.response = response
        waiter.event.set()

    # -- sender --------------------------------------------------------------------

    def _send_or_wake(self) -> None:
        """Audio or credit came: send what can go now, here, else wake the sender.

        Sending from the calling task (``send_audio``'s, or the reader's on a
        ``buffer_request``) saves a task switch per frame; it takes only what the
        connection takes without waiting. Nothing happens when nothing can be
        sent: a wake-up per ``buffer_request`` with nothing queued (the usual
        case for an echoing agent) would be a task switch for nothing.
        """
        n = self.credit.next_frame(len(self.outgoing))
        if not n or self._sending:
            return  # a sender in the middle of a send loops on by itself
        ws = self._ws
        if ws is not None and self._send_nowait(ws, n):
            return
        if self._sender_lot:
            self._sender_lot.unpark_all()

    def _send_nowait(self, ws: ClientWebSocket, n: int) -> bool:
        """Send frames (the first of ``n`` bytes) while the connection takes them; all sent?"""
        out, credit = self.outgoing, self.credit
        while n:
            pcm = out.read(n)
            if not ws.send_message_nowait(_AUDIO_PREFIX + pcm):
                out.unread(pcm)
                return False
            credit.consume(n)
            if self._space_lot:
                self._space_lot.unpark_all()
            self._sent(n)
            n = credit.next_frame(len(out))
        return True

    def _sent(self, n: int) -> None:
        """``n`` bytes of agent audio went to the connection."""
        self.counters.frames_sent += 1
        self.counters.bytes_sent += n
        if not self.outgoing and self._drained_lot:
            self._drained_lot.unpark_all()

    async def _send(self, ws: ClientWebSocket) -> None:
        out, credit = self.outgoing, self.credit
        while True:
            n = credit.next_frame(len(out))
            if n:
                pcm = out.read(n)
                credit.consume(n)
                if self._space_lot:
                    self._space_lot.unpark_all()
                self._sending = n
                try:
                    await ws.send_message(_AUDIO_PREFIX + pcm)
                except WSSConnectionClosed as exc:
                    self._lost(exc)
                    return
                finally:
                    self._sending = 0
                self._sent(n)
            else:
                await self._sender_lot.park()

    # -- outgoing audio --------------------------------------------------------------

    def write_nowait(self, data: bytes) -> None:
        """Queue ``data`` whole, or raise; sends what credit allows (see ``_send_or_wake``).

        Raises:
            ValueError: ``data`` is not whole 16-bit samples.
            BufferFullError: no room for all of ``data``; nothing was queued.
            BufferClosedError: the call has ended.
        """
        if len(data) % proto.SAMPLE_WIDTH:
            raise ValueError(f"PCM16 audio must be whole 2-byte samples; got {len(data)} bytes")
        self.outgoing.write(data)
        self._send_or_wake()

    async def write(self, data: bytes) -> None:
        """Queue all of ``data``, waiting for room as often as needed (any size).

        Raises:
            ValueError: ``data`` is not whole 16-bit samples.
            BufferClosedError: the call ended before everything was queued.
        """
        view = memoryview(data).cast("B")
        if len(view) % proto.SAMPLE_WIDTH:
            raise ValueError(f"PCM16 audio must be whole 2-byte samples; got {len(view)} bytes")
        await trio.lowlevel.checkpoint_if_cancelled()
        out = self.outgoing
        while True:
            if out.closed:
                raise BufferClosedError("the call's audio buffer is closed")
            room = out.free - out.free % proto.SAMPLE_WIDTH
            if len(view) <= room:
                out.write(data if len(view) == len(data) else bytes(view))
                break
            if room:
                out.write(bytes(view[:room]))
                view = view[room:]
            self._send_or_wake()
            await self._space_lot.park()
        self._send_or_wake()
        await trio.lowlevel.cancel_shielded_checkpoint()

    async def wait_sent(self) -> None:
        """Wait until every queued byte has been handed to the connection.

        Raises:
            WSSCallClosedError: the call ended with audio still queued.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        if not (self.outgoing or self._sending):
            await trio.lowlevel.cancel_shielded_checkpoint()
            return
        while self.outgoing or self._sending:
            if self.closed:
                raise WSSCallClosedError(
                    f"call {self._call_in.call_id} ended with {len(self.outgoing)} bytes unsent"
                )
            await self._drained_lot.park()

    def clear(self) -> int:
        """Drop all queued agent audio; return how many bytes were dropped."""
        dropped = self.outgoing.clear()
        if self._space_lot:
            self._space_lot.unpark_all()
        if self._drained_lot and not self._sending:
            self._drained_lot.unpark_all()
        return dropped

    # -- commands --------------------------------------------------------------------

    async def round_trip(
        self,
        command: proto.CallCommand,
        server_timeout: float,
        data: dict[str, Any] | None = None,
    ) -> proto.CommandResponse:
        """Send ``command`` and wait for its response (success or failure).

        The server is given ``server_timeout``; we wait that plus the grace period.

        Raises:
            WSSCallClosedError: the call ended (before or while waiting).
            WSSCallCommandTimeoutError: no response by the client's deadline.
        """
        ws = self._ws
        if self.closed or ws is None:
            raise WSSCallClosedError(f"cannot send {command}: call {self._call_in.call_id} ended")
        pending = self.tracker.start(command, trio.current_time(), server_timeout, data)
        command_id = pending.frame.command_id
        waiter = self._waiters[command_id] = Reply[proto.CommandResponse]()
        try:
            logger.debug("call %s: sending %s (%s)", self._call_in.call_id, command, command_id)
            try:
                await ws.send_message(pending.frame.encode())
            except WSSConnectionClosed as exc:
                self._lost(exc)
                raise WSSCallClosedError(
                    f"cannot send {command}: the media connection of call "
                    f"{self._call_in.call_id} closed"
                ) from exc
            self.counters.commands_sent += 1
            with trio.move_on_at(pending.deadline):
                await waiter.event.wait()
            if waiter.error is not None:
                raise waiter.error
            if waiter.response is None:
                raise WSSCallCommandTimeoutError(
                    f"no response to {command} on call {self._call_in.call_id} within "
                    f"{pending.deadline - pending.sent_at:g} s"
                )
            return waiter.response
        finally:
            self.tracker.forget(pending)
            self._waiters.pop(command_id, None)

    async def post(self, command: proto.CallCommand, server_timeout: float) -> None:
        """Send ``command`` without waiting for its response (best effort, at shutdown)."""
        ws = self._ws
        if ws is None or self.closed:
            return
        pending = self.tracker.start(command, trio.current_time(), server_timeout)
        self.tracker.forget(pending)
        with contextlib.suppress(WSSConnectionClosed):
            await ws.send_message(pending.frame.encode())
