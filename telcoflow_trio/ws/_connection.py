"""A lean WebSocket (RFC 6455) on a trio byte stream, behind the ``MessageStream`` seam.

Why it exists: trio-websocket spends most of a small message's cost on its
machinery (a reader task and a memory-channel hop per message, wsproto's
generic frame generators, pure-Python masking). Here the data path is a small
frame codec (the sans-IO :mod:`~telcoflow_trio.ws._framing`) run in the
caller's task: :meth:`LeanWebSocket.get_message` parses frames straight out of
``receive_some`` buffers, and :meth:`LeanWebSocket.send_message` writes header
and payload in one ``send``. On a socket (TCP, or TLS on it), small writes wait for the end of
trio's current batch of tasks and go out back to back with the other
connections' (``_poller.py`` says why). The HTTP upgrade uses h11 (the HTTP
layer wsproto itself uses); what it writes and checks is the sans-IO
:mod:`~telcoflow_trio.ws._handshake`, the reading and writing is here.

What it does: text and binary messages, fragmented messages (reassembled),
masking (client frames masked, server frames not, both enforced on receipt),
``max_message_size`` (1009), UTF-8 validation of text (1007), protocol errors
(1002: reserved bits, unknown opcodes, bad fragmentation, oversized or
fragmented control frames, invalid close codes), ping/pong, close codes and
reasons both ways. No extensions (permessage-deflate is never negotiated).

The one difference in behaviour from trio-websocket, by design: **there is no
reader task**, so pings from the peer are answered and the peer's close is
noticed only while some task is inside :meth:`get_message`, or in :meth:`ping`,
which reads while it waits for its pong if no task is in :meth:`get_message`
(keeping the messages it meets for it, bounded, as trio-websocket's reader
task queues them). Every user in this library keeps a reader running (the
control and media readers, the bridge's relays). A pong owed while another
task is sending goes out right after that send, never in the middle of it;
pings meanwhile are answered by one pong, to the latest (RFC 6455 5.5.3).

:func:`lean_client_handshake` is the client side (selected with
``open_websocket(..., transport="lean")``); :func:`accept_lean_websocket` and
:func:`serve_lean_websocket` are the server side.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import os
import socket
import ssl
from collections.abc import Awaitable, Callable, Sequence
from typing import ClassVar

import h11
import trio

from ..exceptions import WSSConnectionClosed, WSSConnectionError
from ._errors import CloseReason, ConnectionClosed, ConnectionRejected
from ._framing import (
    BINARY,
    CLOSE,
    PING,
    PONG,
    FrameCodec,
    FrameError,
    parse_close,
    valid_close_code,
)
from ._handshake import (
    MAX_HANDSHAKE,
    MAX_REJECT_BODY,
    accept_response,
    check_switch,
    check_upgrade_request,
    client_request,
    header_values,
    refusal_headers,
    reject_bytes,
)
from ._poller import EpollPoller, current_poller
from ._tls import TLSSocketStream, send_all

__all__ = [
    "LeanRequest",
    "LeanWebSocket",
    "WebSocketConnection",
    "accept_lean_websocket",
    "lean_client_handshake",
    "serve_lean_websocket",
]

logger = logging.getLogger(__name__)

_RECEIVE_SIZE = 65536
_DEFER_MAX = 65536  # bytes of deferred frames per connection; beyond, a send writes at once


class LeanWebSocket(FrameCodec):
    """A :class:`~telcoflow_trio.ws._transport.MessageStream` over a trio stream, no reader task.

    Made by :func:`lean_client_handshake` (client) or :func:`accept_lean_websocket`
    (server); not by hand. The framing is its base class
    (:class:`~telcoflow_trio.ws._framing.FrameCodec`), so parsing costs no call
    beyond the parser's own.
    """

    __slots__ = (
        "_closed",
        "_inbox",
        "_inbox_size",
        "_owed_close",
        "_owed_pong",
        "_pings",
        "_poller",
        "_pump_scope",
        "_pumping",
        "_queued",
        "_raw",
        "_raw_drained",
        "_readers_waiting",
        "_receiving",
        "_retry",
        "_send_waiters",
        "_sending",
        "_stream",
        "_tls",
        "_turn",
        "_unsent",
        "close_timeout",
        "path",
        "pong_gate",
        "request_headers",
        "response_headers",
        "subprotocol",
    )

    def __init__(
        self,
        stream: trio.abc.Stream,
        *,
        client: bool,
        leftover: bytes = b"",
        max_message_size: int = 1 << 20,
        close_timeout: float = 2.0,
        path: str = "",
        subprotocol: str | None = None,
        request_headers: Sequence[tuple[bytes, bytes]] = (),
        response_headers: Sequence[tuple[bytes, bytes]] = (),
    ) -> None:
        super().__init__(client=client, max_message_size=max_message_size, leftover=leftover)
        self._stream = stream
        # Plain TCP: do the I/O on the stdlib socket itself, so that a receive
        # that finds data and a send that completes cost one system call and no
        # trip through trio's scheduler (see _recv and _write); waits for data
        # go through the run's shared epoll set (_poller.py), where trio would
        # re-arm a one-shot registration each time. The stream is re-based on
        # that same socket object (no duplicate descriptor): whoever closes the
        # stream, our aclose or its owner's, closes the connection, and our
        # fileno() turns -1 so nothing here touches a number reused since. (An
        # owner closing it under a task in get_message must cancel that task:
        # epoll drops a closed descriptor without a word.)
        self._raw: socket.socket | None = None
        self._poller: EpollPoller | None = None
        # TLS on a socket (_tls.py) is the same path on the SSLSocket; a short
        # read ends a record, not the data: TLSSocketStream.drained() tells.
        self._tls = stream if type(stream) is TLSSocketStream else None
        if type(stream) is trio.SocketStream:
            self._raw = socket.socket(fileno=stream.socket.detach())
            stream.socket = trio.socket.from_stdlib_socket(self._raw)  # non-blocking
            self._poller = current_poller()
            if self._poller is not None:
                self._poller.register(self._raw.fileno())
        elif self._tls is not None:
            self._raw, self._poller = self._tls.socket, self._tls.poller
        self._raw_drained = not leftover and self._tls is None
        self._closed: CloseReason | None = None
        self._sending = False
        self._receiving = False
        self._send_waiters = trio.lowlevel.ParkingLot()
        # Control frames to send after the current send: the pong to the
        # latest ping only (RFC 6455 5.5.3), so a peer that pings and never
        # reads is owed one pong, not one per ping; and our close, once.
        self._owed_pong = b""
        self._owed_close = b""
        self._unsent = b""  # owed before anything else: deferred frames, or what a flush left
        self._queued = False  # _unsent waits for the poller's flush (see _defer)
        self._retry = False  # _unsent is a write cut short: it goes first, alone, as it is
        self._pings: dict[bytes, trio.Event] = {}
        # A ping with nobody in get_message reads itself (_pump): the messages it
        # meets wait here for get_message, at most about max_message_size bytes.
        self._inbox: collections.deque[str | bytes] = collections.deque()
        self._inbox_size = 0
        self._pumping = False  # _receiving is held by a ping's _pump
        self._pump_scope = trio.CancelScope()  # its wait for data
        self._readers_waiting = 0  # get_message calls waiting for the pump to stop
        self._turn = trio.lowlevel.ParkingLot()  # pings waiting for a pong or the reading
        self.close_timeout = close_timeout
        #: The request path (with query string) the connection was opened for.
        self.path = path
        #: The subprotocol both sides agreed on, if any.
        self.subprotocol = subprotocol
        #: The upgrade request's headers, ``(bytes, bytes)`` pairs.
        self.request_headers = list(request_headers)
        #: The headers of the server's 101 answer, ``(bytes, bytes)`` pairs.
        self.response_headers = list(response_headers)
        #: The peer's pings are answered while this returns true (``None``: always);
        #: a test server sets it to play a peer whose heartbeat has stalled.
        self.pong_gate: Callable[[], bool] | None = None

    @property
    def closed(self) -> CloseReason | None:
        """How it closed (the code we sent, or the peer's) once closed, else ``None``."""
        return self._closed

    @property
    def is_client(self) -> bool:
        """Whether this is the client side of the connection."""
        return self._client

    @property
    def handshake_headers(self) -> list[tuple[bytes, bytes]]:
        """The peer's upgrade headers: the 101's on a client, the request's on a server."""
        return self.response_headers if self._client else self.request_headers

    def _closed_error(
        self, code: int, reason: str | None, *, by_peer: bool = True
    ) -> WSSConnectionClosed:
        """What a closed connection raises (the public connection: its own subclass)."""
        return WSSConnectionClosed(code, reason, by_peer=by_peer)

    # -- I/O ----------------------------------------------------------------------------

    async def _recv(self) -> bytes:
        """Some bytes from the peer; ``b""`` once the connection is gone."""
        raw = self._raw
        if raw is None:
            try:
                data = await self._stream.receive_some(_RECEIVE_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                return b""
            return data if type(data) is bytes else bytes(data)
        while True:
            if self._raw_drained:
                if self._unsent and not self._queued:
                    self._push()  # a flush found the socket full (the poller wakes us on room)
                # The last read emptied the socket: wait first (saves a failed recv).
                try:
                    if self._poller is not None:
                        await self._poller.wait_ready(raw)
                    else:
                        await trio.lowlevel.wait_readable(raw)
                except trio.ClosedResourceError:
                    return b""
            try:
                data = raw.recv(_RECEIVE_SIZE)
            except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
                self._raw_drained = True  # WantWrite: the poller wakes us on room too
                continue
            except OSError:  # a reset, a bad TLS record: the peer is gone
                return b""
            tls = self._tls
            self._raw_drained = len(data) < _RECEIVE_SIZE if tls is None else tls.drained()
            return data

    async def _write(self, data: bytes) -> None:
        """Send all of ``data``.

        Raises:
            trio.BrokenResourceError: the connection is gone.
        """
        raw = self._raw
        if raw is None:
            await self._stream.send_all(data)
        else:
            await send_all(raw, data, self._keep)

    def _keep(self, rest: bytes) -> None:
        """A write was cancelled: ``rest`` goes out before anything else (see ``_tls``)."""
        self._unsent, self._retry = rest, True

    async def _drop(self) -> None:
        """Close the TCP connection (the stream, and with it our socket)."""
        raw, self._raw = self._raw, None
        if raw is not None and self._poller is not None:
            self._poller.forget(raw.fileno())  # -1 (a no-op) if the stream was closed already
            self._poller = None  # nothing more to defer
        await trio.aclose_forcefully(self._stream)

    # -- sending ------------------------------------------------------------------------

    async def _send_raw(self, data: bytes) -> None:
        while self._sending:
            await self._send_waiters.park()
        self._sending = True
        try:
            if self._retry:
                unsent, self._unsent, self._retry = self._unsent, b"", False
                await self._write(unsent)
            elif self._unsent:
                data, self._unsent, self._queued = self._unsent + data, b"", False
            if data:
                await self._write(data)
            while self._owed_pong or self._owed_close:
                # Control frames owed meanwhile go in a write of their own, so
                # a write never mixes a pong into a data frame's bytes.
                owed = self._owed_pong + self._owed_close
                self._owed_pong = self._owed_close = b""
                await self._write(owed)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            if self._closed is None:
                self._closed = CloseReason(1006, None)
            self._wake_pings()
            raise self._closed_error(*self._closed) from exc
        finally:
            self._sending = False
            if self._send_waiters:
                self._send_waiters.unpark()

    async def send_message(self, message: str | bytes) -> None:
        """Send one text (``str``) or binary (``bytes``) message.

        On a socket (TCP or TLS) a small message is written when trio's current batch of
        tasks is done, with the other connections' (see ``_poller``): always
        before trio waits for I/O, so nothing waits on it. A connection broken
        meanwhile is then reported by the next send or receive.

        Raises:
            WSSConnectionClosed: the connection is closed.
            TypeError: ``message`` is neither ``str`` nor ``bytes``.
        """
        if self._closed is not None:
            raise self._closed_error(*self._closed)
        frame = self.message_frame(message)
        if not self._defer(frame):
            await self._send_raw(frame)

    def _defer(self, frame: bytes) -> bool:
        """Leave ``frame`` to the poller's flush; ``False``: it must be written now, in order.

        Only on a socket (TCP or TLS), at most ``_DEFER_MAX`` bytes a connection, and never
        behind a send in progress or bytes a flush could not write.
        """
        if self._queued:
            if len(self._unsent) + len(frame) > _DEFER_MAX:
                return False
            self._unsent += frame
            return True
        if self._unsent or self._sending or self._poller is None or len(frame) > _DEFER_MAX:
            return False
        self._unsent, self._queued = frame, True
        self._poller.defer(self._push)
        return True

    def _push(self) -> None:
        """Write what is owed without blocking; what the socket does not take stays owed.

        Called by the poller's flush, and by the reader before it waits (the
        poller wakes it when a full socket has room again).
        """
        self._queued = False
        raw = self._raw
        if raw is None or self._sending or not self._unsent:
            return
        try:
            sent = raw.send(self._unsent)
        except OSError:  # full, or broken: the next write or read reports which
            self._retry = self._retry or self._tls is not None  # OpenSSL may hold part
            return
        self._unsent = self._unsent[sent:]
        self._retry = self._retry and bool(self._unsent)

    async def send_messages(self, messages: Sequence[str | bytes]) -> None:
        """Send several messages, in order, with one write (one system call).

        Raises:
            WSSConnectionClosed: the connection is closed.
            TypeError: a message is neither ``str`` nor ``bytes`` (nothing is sent).
        """
        if self._closed is not None:
            raise self._closed_error(*self._closed)
        frames = b"".join([self.message_frame(m) for m in messages])
        if not self._defer(frames):
            await self._send_raw(frames)

    def send_message_nowait(self, message: bytes) -> bool:
        """Send a binary message from a synchronous caller, if that can be done now.

        ``True``: taken; it leaves with the next flush of writes (see
        :meth:`send_message`). ``False``: nothing was taken (not on a socket, the
        connection is closed, a send is in progress, a flush found the socket
        full, or the message is large); use :meth:`send_message`.
        """
        if self._closed is not None:
            return False
        return self._defer(self.frame(BINARY, message))

    @property
    def unsent(self) -> int:
        """Bytes a flush could not write because the socket was full.

        They go out before anything else, at the next send, :meth:`flush`, or
        when the reader is woken by the socket having room.
        """
        return 0 if self._queued else len(self._unsent)

    async def flush(self) -> None:
        """Write what is owed now (see :attr:`unsent`), waiting for room if need be.

        Raises:
            WSSConnectionClosed: the connection broke.
        """
        await self._send_raw(b"")

    async def ping(self, payload: bytes | None = None) -> None:
        """Send a ping and wait for its pong.

        While no task is in :meth:`get_message`, ping reads itself: it answers the
        peer's pings, sees the close, and keeps the messages it meets for the next
        :meth:`get_message` (which takes the reading over at once). Once those
        hold ``max_message_size`` bytes it stops reading until they are taken, as
        trio-websocket's reader stops when its queue is full, so a peer that
        keeps sending to a connection nobody reads cannot fill memory.
        ``payload`` (at most 125 bytes) defaults to 4 random bytes. Bound the
        wait in time: a peer may never answer.

        Raises:
            WSSConnectionClosed: the connection closed before the pong came.
            ValueError: a ping with this payload is already waiting.
        """
        if self._closed is not None:
            raise self._closed_error(*self._closed)
        if payload is None:
            payload = os.urandom(4)
        if len(payload) > 125:
            raise ValueError("a ping payload is at most 125 bytes")
        if payload in self._pings:
            raise ValueError(f"a ping with payload {payload!r} is already in flight")
        event = self._pings[payload] = trio.Event()
        try:
            await self._send_raw(self.frame(PING, payload))
            while not event.is_set() and self._closed is None:
                if self._receiving or self._readers_waiting or self._inbox_size >= self._max:
                    await self._turn.park()  # woken by a pong, a close, or a reader leaving
                else:
                    await self._pump(event)
        finally:
            self._pings.pop(payload, None)
        if self._closed is not None:
            raise self._closed_error(*self._closed)

    async def _pump(self, event: trio.Event) -> None:
        """Read for a ping (nobody is in :meth:`get_message`) until its pong, a close, a
        full inbox or a reader wanting in; the messages read go to the inbox."""
        self._receiving = self._pumping = True
        try:
            while not event.is_set() and not self._readers_waiting and not self._skip:
                if self._inbox_size >= self._max:
                    return
                try:
                    message = self.next_frame()
                    if isinstance(message, tuple):
                        await self._on_control(*message)
                        continue
                except FrameError as fail:
                    await self._fail(fail.code, fail.reason)
                    return
                if message is not None:
                    self._inbox.append(message)
                    self._inbox_size += len(message)
                    continue
                if self._closed is not None:
                    return
                # A reader wanting in, or the close, cancels the wait (and only
                # the wait: never a write); the loop's test catches them between.
                data = b""
                with trio.CancelScope() as self._pump_scope:
                    data = await self._recv()
                if self._pump_scope.cancelled_caught:
                    return
                if not data:
                    if self._closed is None:
                        self._closed = CloseReason(1006, None)
                    self._wake_pings()
                    return
                self.receive_data(data)
        finally:
            self._receiving = self._pumping = False
            self._turn.unpark_all()

    def _wake_pings(self) -> None:
        for event in self._pings.values():
            event.set()
        self._pump_scope.cancel()
        self._turn.unpark_all()

    async def _send_control(self, frame: bytes, *, close: bool = False) -> None:
        """Send a pong (or the ``close``) now, or right after the send in progress.

        A pong owed replaces the one owed before it: the peer hears about its
        latest ping only.
        """
        if self._sending:
            if close:
                self._owed_close = frame
            else:
                self._owed_pong = frame
            return
        await self._send_raw(frame)

    # -- receiving ----------------------------------------------------------------------

    async def get_message(self) -> str | bytes:
        """The next message; answers pings and handles the close on the way.

        Raises:
            WSSConnectionClosed: the connection closed (after every message that
                arrived before the close was delivered); for a protocol error by
                the peer, with the code we closed with (1002, 1007 or 1009).
        """
        if self._inbox:
            return self._take()
        if self._pumping:  # a ping is reading: take over from it
            await self._stop_pump()
            if self._inbox:
                return self._take()
        if self._receiving:
            raise trio.BusyResourceError("another task is already in get_message()")
        if self._skip:
            raise self._closed_error(*self._closed or (1009, None))  # after our 1009
        self._receiving = True
        try:
            while True:
                try:
                    message = self.next_frame()
                    if type(message) is tuple:
                        await self._on_control(*message)
                        continue
                except FrameError as fail:
                    await self._fail(fail.code, fail.reason)
                    raise self._closed_error(fail.code, fail.reason, by_peer=False) from None
                if message is not None:
                    return message  # type: ignore[return-value]
                if self._closed is not None:
                    raise self._closed_error(*self._closed)
                data = await self._recv()
                if not data:
                    if self._closed is None:
                        self._closed = CloseReason(1006, None)
                    self._wake_pings()
                    raise self._closed_error(*self._closed)
                # FrameCodec.receive_data, inline: the hot loop makes no extra call.
                if self._pos >= len(self._buf):
                    self._buf = data if type(data) is bytes else bytes(data)
                else:
                    self._buf = self._buf[self._pos :] + data
                self._pos = 0
        finally:
            self._receiving = False
            if self._pings:
                self._turn.unpark_all()  # a ping may read now

    async def _stop_pump(self) -> None:
        """Stop a ping's :meth:`_pump` and wait until it has."""
        self._readers_waiting += 1
        try:
            self._pump_scope.cancel()
            while self._pumping:
                await self._turn.park()
        finally:
            self._readers_waiting -= 1

    def _take(self) -> str | bytes:
        """The oldest message a ping's :meth:`_pump` kept."""
        message = self._inbox.popleft()
        self._inbox_size -= len(message)
        if self._pings:
            self._turn.unpark_all()  # room again: a ping may read on
        return message

    async def _on_control(self, opcode: int, payload: bytes) -> None:
        if opcode == PING:
            if self.pong_gate is None or self.pong_gate():
                await self._send_control(self.frame(PONG, payload))
        elif opcode == PONG:
            if payload in self._pings:
                # A pong answers its ping and every ping sent before it.
                for key in list(self._pings):
                    self._pings.pop(key).set()
                    if key == payload:
                        break
                self._turn.unpark_all()
        else:
            code, reason = parse_close(payload)
            await self._close_received(code, reason)

    def _closing_scope(self) -> trio.CancelScope:
        """Closing work is bounded by ``close_timeout`` and runs even when cancelled."""
        return trio.CancelScope(shield=True, deadline=trio.current_time() + self.close_timeout)

    async def _close_received(self, code: int, reason: str | None) -> None:
        """The peer closed: echo its code (unless we closed first), then drop TCP."""
        answer = self._closed is None
        self._closed = CloseReason(code, reason)
        self._wake_pings()
        with self._closing_scope():
            if answer:
                echo = b"" if code == 1005 else code.to_bytes(2, "big")
                with contextlib.suppress(WSSConnectionClosed):
                    await self._send_control(self.frame(CLOSE, echo), close=True)
            await self._drop()

    async def _fail(self, code: int, reason: str) -> None:
        """We end the connection because of the peer: send a close frame with ``code``.

        After a protocol error (1002, 1007) nothing more is read (RFC 6455
        7.1.7) and TCP is dropped at once. After 1009 the peer did nothing wrong
        but send too much, so TCP stays open: :meth:`aclose` skips the rest of
        its message and awaits its close (bounded), so that it reads our close
        rather than a reset. Either way :meth:`get_message` raises right away,
        as trio-websocket's does, so the owner learns of the close without
        waiting on the peer.
        """
        if self._closed is None:
            self._closed = CloseReason(code, reason)
            self._wake_pings()
            with self._closing_scope(), contextlib.suppress(WSSConnectionClosed):
                await self._send_control(self.close_frame(code, reason), close=True)
            if code == 1009:
                return
        await self._drop()

    async def _drain_after_1009(self) -> None:
        while not self.discard_oversized():
            data = await self._recv()
            if not data:
                return
            self.receive_data(data)
        await self._await_peer_close()

    # -- closing ------------------------------------------------------------------------

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code``: send the close frame, wait (bounded) for the peer's, drop TCP.

        Waits at most ``close_timeout``, even when cancelled; idempotent.

        Raises:
            ValueError: ``code`` may not be sent on the wire (e.g. 1005, 1006, 999).
        """
        if not valid_close_code(code):
            raise ValueError(f"close code {code} may not be sent; use 1000-1014 or 3000-4999")
        if self._closed is not None:
            if self._owed_close or self._skip or self._unsent:
                # Our close went out from get_message(): make sure it left (a
                # send cancelled meanwhile may have kept it owed), and after a
                # 1009 finish that closing handshake.
                with self._closing_scope(), contextlib.suppress(WSSConnectionClosed, FrameError):
                    if self._owed_close or self._unsent:
                        await self.flush()
                    if self._skip:
                        await self._drain_after_1009()
                self._skip = 0
            await self._drop()
            return
        self._closed = CloseReason(code, reason)
        self._wake_pings()
        with self._closing_scope():
            try:
                await self._send_raw(self.close_frame(code, reason))
                if not self._receiving or self._pumping:  # a pump stops at the close
                    await self._await_peer_close()
            except (WSSConnectionClosed, FrameError):
                pass
            finally:
                await self._drop()

    async def _await_peer_close(self) -> None:
        """After our close frame: read (discarding messages) until the peer's close or EOF."""
        while True:
            message = self.next_frame()
            if type(message) is tuple and message[0] == CLOSE:
                return
            if message is None:
                data = await self._recv()
                if not data:
                    return
                self.receive_data(data)


# -- the handshake ----------------------------------------------------------------------


async def _next_event(conn: h11.Connection, stream: trio.abc.Stream) -> object:
    while True:
        event = conn.next_event()
        if event is not h11.NEED_DATA:
            return event
        # Only an unfinished head counts: the bytes after it (the first frames
        # a server may send with its 101) are the WebSocket's, whatever their size.
        if len(conn.trailing_data[0]) > MAX_HANDSHAKE:
            raise WSSConnectionError("WebSocket upgrade message too large")
        data = await stream.receive_some(_RECEIVE_SIZE)
        if not data:
            raise WSSConnectionError("the peer closed the connection during the WebSocket upgrade")
        conn.receive_data(bytes(data))


async def lean_client_handshake(
    stream: trio.abc.Stream,
    host: str,
    resource: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] = (),
    max_message_size: int = 1 << 20,
    close_timeout: float = 2.0,
    connection_class: type[LeanWebSocket] = LeanWebSocket,
) -> LeanWebSocket:
    """Upgrade ``stream`` as a client; the caller bounds it in time.

    Raises:
        ConnectionRejected: the server answered with another status.
        WSSConnectionError: the server's answer is not a valid WebSocket upgrade.
    """
    conn = h11.Connection(h11.CLIENT)
    request, nonce = client_request(host, resource, subprotocols=subprotocols, headers=headers)
    await stream.send_all(conn.send(request) or b"")
    try:
        event = await _next_event(conn, stream)
    except h11.RemoteProtocolError as exc:
        raise WSSConnectionError(
            f"the server's upgrade response is not valid HTTP: {exc}"
        ) from None
    if isinstance(event, h11.InformationalResponse) and event.status_code == 101:
        subprotocol = check_switch(list(event.headers), nonce, subprotocols)
        return connection_class(
            stream,
            client=True,
            leftover=conn.trailing_data[0],
            max_message_size=max_message_size,
            close_timeout=close_timeout,
            path=resource,
            subprotocol=subprotocol,
            request_headers=[(k.lower(), v) for k, v in request.headers],
            response_headers=list(event.headers),
        )
    if isinstance(event, h11.Response | h11.InformationalResponse):
        body = b""
        if isinstance(event, h11.Response):
            while len(body) < MAX_REJECT_BODY:
                part = await _next_event(conn, stream)
                if not isinstance(part, h11.Data):
                    break
                body += bytes(part.data)
        raise ConnectionRejected(event.status_code, tuple(event.headers), body[:MAX_REJECT_BODY])
    raise WSSConnectionError(f"unexpected answer to the WebSocket upgrade: {type(event).__name__}")


class LeanRequest:
    """A client's upgrade request, to :meth:`accept` or :meth:`reject`.

    With ``plain_http`` (see :func:`accept_lean_websocket`) it may also be a
    plain HTTP request (``upgrade`` is ``False``): answer it with :meth:`respond`.
    """

    __slots__ = (
        "_accepted",
        "_conn",
        "_done",
        "_stream",
        "close_timeout",
        "headers",
        "max_message_size",
        "method",
        "path",
        "subprotocols",
        "upgrade",
    )

    #: The class :meth:`accept` makes.
    _connection_class: ClassVar[type[LeanWebSocket]] = LeanWebSocket

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: h11.Connection,
        request: h11.Request,
        max_message_size: int,
        close_timeout: float,
    ) -> None:
        self._stream = stream
        self._conn = conn
        self._done = False
        self._accepted: LeanWebSocket | None = None
        #: The request path with its query string.
        self.path = request.target.decode("ascii", "replace")
        #: Header names lower-cased, as ``(bytes, bytes)`` pairs.
        self.headers = list(request.headers)
        #: The subprotocols the client offered.
        self.subprotocols = [
            v.decode() for v in header_values(self.headers, b"sec-websocket-protocol")
        ]
        self.max_message_size = max_message_size
        self.close_timeout = close_timeout
        #: The HTTP method (``"GET"`` for every upgrade).
        self.method = request.method.decode("ascii", "replace")
        #: ``False`` for a plain HTTP request, which can only be answered with :meth:`respond`.
        self.upgrade = check_upgrade_request(request) is None

    async def accept(
        self, subprotocol: str | None = None, extra_headers: Sequence[tuple[str, str]] = ()
    ) -> LeanWebSocket:
        """Answer 101 and return the connection.

        Raises:
            ValueError: ``subprotocol`` was not offered by the client.
        """
        if not self.upgrade:
            raise RuntimeError("a plain HTTP request cannot be accepted as a WebSocket")
        if subprotocol is not None and subprotocol not in self.subprotocols:
            raise ValueError(f"subprotocol {subprotocol!r} was not offered by the client")
        self._done = True
        key = header_values(self.headers, b"sec-websocket-key")[0]
        response = accept_response(key, subprotocol, extra_headers)
        await self._stream.send_all(self._conn.send(response) or b"")
        self._accepted = self._connection_class(
            self._stream,
            client=False,
            leftover=self._conn.trailing_data[0],
            max_message_size=self.max_message_size,
            close_timeout=self.close_timeout,
            path=self.path,
            subprotocol=subprotocol,
            request_headers=self.headers,
            response_headers=[(k.lower(), v) for k, v in response.headers],
        )
        return self._accepted

    async def reject(
        self, status_code: int, body: bytes = b"", extra_headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Answer with an HTTP error and close the connection."""
        await self.respond(status_code, body, extra_headers)

    async def respond(
        self, status_code: int, body: bytes = b"", extra_headers: Sequence[tuple[str, str]] = ()
    ) -> None:
        """Answer with any HTTP status (a plain request's answer) and close the connection."""
        self._done = True
        await _reject(self._stream, self._conn, status_code, body, extra_headers)


async def _reject(
    stream: trio.abc.Stream,
    conn: h11.Connection,
    status: int,
    body: bytes,
    extra_headers: Sequence[tuple[str, str]] = (),
) -> None:
    try:
        await stream.send_all(reject_bytes(conn, status, body, extra_headers))
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.LocalProtocolError):
        pass
    finally:
        await trio.aclose_forcefully(stream)


async def accept_lean_websocket(
    stream: trio.abc.Stream,
    *,
    max_message_size: int = 1 << 20,
    close_timeout: float = 2.0,
    request_class: type[LeanRequest] = LeanRequest,
    plain_http: bool = False,
) -> LeanRequest | None:
    """Read a client's upgrade request from ``stream``; the caller bounds it in time.

    Returns ``None`` (after answering 400 and closing) when the request is not a
    valid WebSocket upgrade; with ``plain_http``, a request that does not ask
    for an upgrade at all (no ``Upgrade: websocket``) is returned instead, with
    ``upgrade`` false, for the caller to :meth:`~LeanRequest.respond` to.
    """
    conn = h11.Connection(h11.SERVER)
    try:
        event = await _next_event(conn, stream)
    except (
        WSSConnectionError,
        h11.RemoteProtocolError,
        trio.BrokenResourceError,
        trio.ClosedResourceError,
    ) as exc:
        logger.debug("bad upgrade request: %s", exc)
        await _reject(stream, conn, 400, b"bad request")
        return None
    if not isinstance(event, h11.Request):
        await _reject(stream, conn, 400, b"bad request")
        return None
    why = check_upgrade_request(event)
    if why is not None and plain_http and not header_values(list(event.headers), b"upgrade"):
        return request_class(stream, conn, event, max_message_size, close_timeout)
    if why is not None:
        await _reject(stream, conn, 400, why, refusal_headers(event))
        return None
    # h11 pauses after an upgrade request; the 101 switches it over.
    while conn.next_event() not in (h11.PAUSED, h11.NEED_DATA):
        pass
    return request_class(stream, conn, event, max_message_size, close_timeout)


async def serve_lean_websocket(
    handler: Callable[[LeanWebSocket], Awaitable[None]],
    host: str,
    port: int,
    *,
    handshake_timeout: float = 10.0,
    max_message_size: int = 1 << 20,
    close_timeout: float = 2.0,
    task_status: trio.TaskStatus[list[trio.SocketListener]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Accept every upgrade on ``host:port`` and run ``handler(ws)`` per connection.

    A handler's exception is logged and ends only its own connection. The
    connection is closed with 1000 (bounded) when the handler returns.
    """

    async def one(stream: trio.SocketStream) -> None:
        ws = None
        with trio.move_on_after(handshake_timeout):
            request = await accept_lean_websocket(
                stream, max_message_size=max_message_size, close_timeout=close_timeout
            )
            if request is not None:
                ws = await request.accept()
        if ws is None:
            await trio.aclose_forcefully(stream)
            return
        try:
            await handler(ws)
        except Exception:
            logger.exception("WebSocket handler for %s failed", ws.path.split("?", 1)[0])
        finally:
            await ws.aclose()

    listeners = await trio.open_tcp_listeners(port, host=host)
    async with trio.open_nursery() as nursery:
        task_status.started(listeners)
        await trio.serve_listeners(one, listeners, handler_nursery=nursery)


class WebSocketConnection(LeanWebSocket):
    """An open WebSocket, client or server side: the public face of :class:`LeanWebSocket`.

    ``await get_message()`` returns the next whole message (``str`` for text,
    ``bytes`` for binary); ``await send_message(m)`` sends one; ``await
    ping()`` waits for the pong; ``await aclose(code, reason)`` closes (bounded
    by ``close_timeout``). After a close these raise :class:`ConnectionClosed`,
    whose ``reason`` is :attr:`closed`.

    There is no background reader: pings from the peer are answered and the
    peer's close noticed while a task is in :meth:`get_message` (or in a
    :meth:`ping` while nobody reads: it reads for itself, see there), so keep
    one reading for as long as the connection lives. Several tasks may send at
    once; one at a time may receive.
    """

    __slots__ = ()

    def _closed_error(
        self, code: int, reason: str | None, *, by_peer: bool = True
    ) -> WSSConnectionClosed:
        return ConnectionClosed(CloseReason(code, reason), by_peer=by_peer)
