"""An accepted WebSocket of the simulator (a control one too), the stream under it, the log."""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from typing import IO, Protocol, final

import attrs
import trio

from ..exceptions import WSSConnectionClosed
from ..ws._transport import ClientWebSocket

__all__ = [
    "Connection",
    "ControlConnection",
    "FaultStream",
    "FrameLog",
    "JsonLinesFrameLog",
    "PingFaults",
    "ReplayStream",
    "request_record",
    "salvage_field",
]

logger = logging.getLogger(__name__)

#: First byte of an unfragmented, unmasked WebSocket pong frame (FIN + opcode 0xA).
#: Server frames are never masked and trio-websocket writes each frame with
#: one ``send_all``, so a pong is recognisable from its first byte.
_PONG = 0x8A


def salvage_field(message: str, key: str, *, nested: bool) -> str | None:
    """The string ``key`` (inside ``data`` when ``nested``) of a frame that failed to decode.

    Lets the simulator answer a malformed request instead of dropping the
    connection; only called on that error path.
    """
    try:
        obj = json.loads(message)
    except (ValueError, RecursionError):
        return None
    if nested and isinstance(obj, dict):
        obj = obj.get("data")
    value = obj.get(key) if isinstance(obj, dict) else None
    if not isinstance(value, str) or not value:
        return None
    try:
        value.encode()  # a lone surrogate escape cannot be sent back
    except UnicodeEncodeError:
        return None
    return value


class FrameLog(Protocol):
    """Receives every frame the simulator sends or receives (``direction`` is ``in``/``out``),
    and every HTTP request, upgrades and REST alike (``direction`` ``request``, connection
    ``http-N``, frame :func:`request_record`'s text)."""

    def __call__(self, connection: str, direction: str, frame: str | bytes) -> None: ...


#: Headers whose values are credentials: :func:`request_record` masks them.
_SECRET_HEADERS = frozenset({b"authorization", b"x-api-key", b"cookie", b"proxy-authorization"})


class _Request(Protocol):
    @property
    def path(self) -> str: ...

    @property
    def headers(self) -> Sequence[tuple[bytes, bytes]]: ...


def request_record(request: _Request) -> str:
    """An HTTP request as JSON text: ``method``, ``path`` (with the query) and ``headers``
    (``[name, value]`` pairs in order, names lower-cased, credentials masked as ``***``).

    The body is not read (the simulator's REST endpoints take none).
    """
    headers = [
        [name.decode("latin-1").lower(), "***"]
        if name.lower() in _SECRET_HEADERS
        else [name.decode("latin-1").lower(), value.decode("latin-1")]
        for name, value in request.headers
    ]
    method = getattr(request, "method", "GET")  # trio-websocket's requests are upgrades only
    record = {"method": method, "path": request.path, "headers": headers}
    return json.dumps(record, separators=(",", ":"))


def _redacted(frame: str) -> str:
    """``frame`` with the value of a top-level ``token`` field masked."""
    try:
        obj = json.loads(frame)
    except ValueError:
        return frame
    if isinstance(obj, dict) and "token" in obj:
        obj["token"] = "***"
        return json.dumps(obj, separators=(",", ":"))
    return frame


@final
class JsonLinesFrameLog:
    """A :class:`FrameLog` writing one JSON object per line to a text file.

    Text frames are logged whole (bearer tokens masked); audio frames as their
    channel and length.
    Writes go to the file object's buffer; the owner flushes and closes it.
    """

    def __init__(self, file: IO[str]) -> None:
        self._file = file

    def __call__(self, connection: str, direction: str, frame: str | bytes) -> None:
        record: dict[str, object] = {
            "t": round(trio.current_time(), 6),
            "conn": connection,
            "dir": direction,
        }
        if isinstance(frame, bytes):
            record["channel"] = frame[0] if frame else None
            record["bytes"] = max(len(frame) - 1, 0)
        elif '"token"' in frame:
            record["text"] = _redacted(frame)
        else:
            record["text"] = frame
        self._file.write(json.dumps(record, separators=(",", ":")) + "\n")


class PingFaults(Protocol):
    """The switch :class:`FaultStream` reads (``SimulatorFaults`` has it)."""

    #: Control connections do not answer WebSocket pings.
    pings_stalled: bool


@final
class FaultStream(trio.abc.Stream):
    """A byte stream that can swallow outgoing pongs (the ``stall_pings`` fault).

    Everything else passes straight through.
    """

    __slots__ = ("_faults", "control", "transport")

    def __init__(self, transport: trio.abc.Stream, faults: PingFaults) -> None:
        self.transport = transport
        self._faults = faults
        #: Set once the connection turns out to be a control connection.
        self.control = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self.control and self._faults.pings_stalled and data and data[0] == _PONG:
            await trio.lowlevel.checkpoint()
            return
        await self.transport.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        return await self.transport.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.transport.aclose()


@final
class ReplayStream(trio.abc.Stream):
    """A stream that keeps what it receives until :meth:`replay`, then hands it out again.

    Lets the simulator read a request head itself (to answer the REST plane's
    plain HTTP) and still give an upgrade to trio-websocket, which must read
    the request from its first byte. At most ``limit`` bytes are kept: a peer
    that sends more before :meth:`replay` breaks the stream
    (:class:`trio.BrokenResourceError`). Sending passes straight through.
    """

    __slots__ = ("_keeping", "_kept", "_limit", "transport")

    def __init__(self, transport: trio.abc.Stream, limit: int) -> None:
        self.transport = transport
        self._limit = limit
        self._kept = bytearray()
        self._keeping = True

    def replay(self) -> None:
        """Stop keeping; the next reads return the kept bytes first, in order."""
        self._keeping = False

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        await self.transport.send_all(data)

    async def wait_send_all_might_not_block(self) -> None:
        await self.transport.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        if not self._keeping and self._kept:
            await trio.lowlevel.checkpoint()
            size = len(self._kept) if max_bytes is None else max_bytes
            kept = bytes(self._kept[:size])
            del self._kept[:size]
            return kept
        data = await self.transport.receive_some(max_bytes)
        if self._keeping:
            if len(self._kept) + len(data) > self._limit:
                raise trio.BrokenResourceError("request head too large to replay")
            self._kept += data
        return data

    async def aclose(self) -> None:
        self._kept.clear()
        await self.transport.aclose()


@attrs.define(eq=False)
class Connection:
    """An accepted WebSocket: what the handlers, faults and shutdown act on."""

    ws: ClientWebSocket
    stream: FaultStream
    name: str
    log: FrameLog | None
    scope: trio.CancelScope = attrs.Factory(trio.CancelScope)
    #: Close without a handshake (a dropped connection) when the handler ends.
    abrupt: bool = False
    close_code: int = 1000
    close_reason: str | None = None
    #: The peer closed (or the socket broke): nothing more can be sent.
    peer_closed: bool = False

    async def receive(self) -> str | bytes:
        """The next message.

        Raises:
            WSSConnectionClosed: the connection closed (``peer_closed`` is then set).
        """
        try:
            message = await self.ws.get_message()
        except WSSConnectionClosed:
            self.peer_closed = True
            raise
        if self.log is not None:
            self.log(self.name, "in", message)
        return message

    async def send(self, message: str | bytes) -> None:
        """Send one message.

        Raises:
            WSSConnectionClosed: the connection is closed.
        """
        await self.send_many([message])

    async def send_many(self, messages: list[str | bytes]) -> None:
        """Send ``messages`` in order, with one write where the transport can.

        Raises:
            WSSConnectionClosed: the connection is closed.
        """
        if self.log is not None:
            for message in messages:
                self.log(self.name, "out", message)
        await self.ws.send_messages(messages)

    def abort(self) -> None:
        """Drop the connection now, without a close handshake."""
        self.abrupt = True
        self.scope.cancel()

    def close(self, code: int, reason: str | None = None) -> None:
        """Stop the handler and close with ``code`` (bounded by the close timeout)."""
        self.close_code = code
        # A close reason must fit in 123 bytes of UTF-8.
        self.close_reason = (
            None if reason is None else reason.encode()[:120].decode(errors="ignore")
        )
        self.scope.cancel()


@attrs.define(eq=False)
class ControlConnection:
    """A control (session-manager) connection that completed ``setup``."""

    connection: Connection
    sm_ws_id: str
    sample_rate: int
    audio_mode: str
    outbox: trio.MemorySendChannel[str | bytes]
    #: Its ``call_flow.setup`` (until one arrives, the default: everything on).
    #: ``inbound_call``: ``ALL``, ``MISSED_ONLY`` or ``NO`` (see :meth:`offered`).
    inbound_call: str = "ALL"
    outbound_call: bool = True
    inbound_message: bool = True
    outbound_message: bool = True
    alive: bool = True

    def offered(self, missed: bool, inbound_call: str | None = None) -> bool:
        """Whether its call flow (or ``inbound_call``) takes an inbound call;
        ``missed``: no ``ALL`` connection took it in time."""
        mode = self.inbound_call if inbound_call is None else inbound_call
        return mode == "ALL" or (mode == "MISSED_ONLY" and missed)

    def send_nowait(self, message: str | bytes) -> None:
        """Queue a frame; a connection whose outbox is full is not reading: drop it."""
        if not self.alive:
            return
        try:
            self.outbox.send_nowait(message)
        except trio.WouldBlock:
            logger.warning("control connection %s stopped reading; dropping it", self.sm_ws_id)
            self.alive = False
            self.connection.abort()
        except (trio.ClosedResourceError, trio.BrokenResourceError):
            self.alive = False

    def close(self, code: int, reason: str) -> None:
        """Send what is queued, then close with ``code``."""
        self.connection.close_code = code
        self.connection.close_reason = reason
        self.outbox.close()  # the writer drains it, then ends the connection
