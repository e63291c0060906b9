"""``StreamConnector``: bridge a call's audio to a remote WebSocket, on trio.

One bridge is one nursery holding two relay tasks (call -> remote, remote ->
call), plus a keep-alive pinger and a send watchdog when enabled. Each relay
does exactly one receive, one handler call and at most one send per message.

**How a bridge ends.** Whatever ends it, both relays stop and both sides are
closed within ``close_timeout``, with a code that says why:

* ``STOP`` from either handler: both sides get 1000 ("Stream stopped by
  client", Teler's reason); returns ``CALL_STOP`` or ``REMOTE_STOP``.
* The call side ends (Teler closed the socket, the Telcoflow call hung up): the
  remote gets 1000 "call ended"; returns ``CALL_CLOSED``.
* The remote closes with 1000 or 1001: the call side gets 1000 "remote closed";
  returns ``REMOTE_CLOSED``.
* Either side sends data its WebSocket refuses (a protocol violation, invalid
  UTF-8, a message over ``max_message_size``): that side is closed by us with
  1002, 1007 or 1009 (``CloseInfo.by_peer`` is ``False``), the other with 1011,
  and ``StreamBridgeError`` is raised.
* The remote closes with any other code (1006 when its connection drops, 1011,
  4xxx), a handler raises or returns a bad result, a socket fails, a send stays
  blocked for ``send_timeout``, a ping goes unanswered for ``ping_timeout``, the
  remote cannot be reached, or ``on_open`` raises: both sides get 1011 "bridge
  error" and ``StreamBridgeError`` is raised.
* The caller cancels ``bridge_*`` (a timeout, server shutdown): both sides get
  1001 "going away", with a proper close handshake, and the cancellation
  propagates.

A Telcoflow call (``bridge_call``) is "closed" by ``call.close()`` whenever it is
still up. The result (also on ``StreamBridgeError.result``) keeps the peer's code
and reason when a peer closed first. A bridge error is always one
:class:`~telcoflow_trio.exceptions.StreamBridgeError`, raised ``from`` the
original exception (or from the group when several failed at once).

**When one side is slower (the bridge's memory policy).** Backpressure, nothing
dropped: a relay waits for its send to finish before it reads the next message,
so the bridge holds at most one message per direction. A slow reader makes the
relay stop reading from the faster side, whose own bounded buffers fill up
(trio-websocket's ``message_queue_size`` on the remote leg, Hypercorn's
``max_app_queue_size`` on an ASGI call, then the kernel's TCP buffers) and
slow the sender down in turn. Memory per bridge stays bounded; latency grows
while the reader lags. A send blocked for ``send_timeout`` seconds (detected
within twice that) means the reader is stuck, which a real-time call cannot
wait out: the bridge ends with ``StreamBridgeError``. While the remote -> call
relay is blocked, the remote's pongs wait behind it (trio-websocket reads
nothing more), so keep ``send_timeout`` below ``ping_timeout`` to get the
accurate error.

With ``send_timeout=None`` a remote that never reads still gets nothing more
than its TCP buffers hold (the kernel's, not this process's: a few MB a
connection on Linux) and the bridge one message a direction; then Teler's own
sends block. The bridge waits until it is cancelled, unless keep-alive pings
are on (the default): a ping waits behind the blocked send as well, so the
bridge ends after ``ping_interval + ping_timeout``. A Telcoflow call
(``bridge_call``) cannot be held back: its audio waits in the call's inbound
queue, which keeps the newest ``inbound_queue_chunks`` chunks and drops (and
counts) older ones. ``benchmarks/stuck_remote.py`` measures all of this.
"""

from __future__ import annotations

import functools
import inspect
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeAlias, cast

import attrs
import sniffio
import trio

from ..exceptions import RemoteProtocolError, StreamBridgeError, WSSConnectionClosed
from ..ws._errors import code_and_reason
from ..ws._streams import StreamOpener, open_tcp
from ..ws._transport import (
    DEFAULT_TRANSPORT,
    TRANSPORTS,
    ClientWebSocket,
    MessageStream,
    Transport,
    open_websocket,
    redact_url,
)
from . import teler
from ._sockets import CallAudio, CallLike, as_message_stream
from ._types import (
    BridgeEnd,
    BridgeResult,
    CloseInfo,
    ContextStreamHandler,
    DirectionStats,
    StreamHandler,
    StreamOp,
    StreamType,
    relay,
)

__all__ = ["BridgeContext", "StreamConnector", "bridge_call"]

logger = logging.getLogger(__name__)

AnyHandler: TypeAlias = StreamHandler | ContextStreamHandler
OnOpen: TypeAlias = Callable[["BridgeContext"], Awaitable[None]]

#: Remote close codes that end a bridge normally; any other is an error.
NORMAL_CLOSE_CODES = frozenset({1000, 1001})
_STOP_REASON = "Stream stopped by client"  # Teler's reason, kept for its users


def _check_url(instance: object, attribute: object, url: str) -> None:
    if not url:
        raise ValueError("remote_url is a required parameter")
    if not url.startswith(("ws://", "wss://")) or not redact_url(url).split("//", 1)[1]:
        raise ValueError(f"remote_url must be a ws:// or wss:// URL, got {redact_url(url)!r}")


def _is_async_callable(handler: object) -> bool:
    """Whether calling ``handler`` makes a coroutine: an ``async def`` function or
    method, a ``functools.partial`` of one, or an object with an ``async def __call__``."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.iscoroutinefunction(handler):
        return True
    call = None if inspect.isroutine(handler) else getattr(handler, "__call__", None)  # noqa: B004
    return call is not None and _is_async_callable(call)


def _check_handler(instance: object, attribute: attrs.Attribute[Any], handler: object) -> None:
    if _is_async_callable(handler):
        return
    inner = handler
    while isinstance(inner, functools.partial):
        inner = inner.func
    if inspect.isroutine(inner):
        what = f"the plain (non-async) function {getattr(inner, '__qualname__', inner)!r}"
    elif callable(inner):
        what = f"a {type(inner).__qualname__} whose __call__ is not async"
    else:
        what = f"a {type(inner).__qualname__}, which is not callable"
    if inner is not handler:
        what = f"a functools.partial of {what}"
    expected = "context" if attribute.name == "on_open" else "message) -> (data, StreamOp"
    raise TypeError(
        f"{attribute.name} must be an async callable, async ({expected}): an async def "
        f"function, a functools.partial of one, or an object with an async def "
        f"__call__; got {what}"
    )


def _check_timeout(instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attribute.name} must be a positive number of seconds, got {value!r}")


def _require_trio(method: str) -> None:
    """Refuse to run a bridge outside trio, saying how to run it from asyncio.

    Raises:
        RuntimeError: not awaited in a trio task (an asyncio host such as uvicorn).
    """
    if trio.lowlevel.in_trio_task():
        return
    try:
        host = sniffio.current_async_library()
    except sniffio.AsyncLibraryNotFoundError:
        host = "no async library"
    if method == "bridge_stream":
        how = (
            "Serve the app with Hypercorn's trio worker (hypercorn --worker-class "
            "trio app:app), or, from asyncio, run the bridge in trio through "
            "telcoflow_trio.asyncio_bridge: await portal.bridge_stream(connector, "
            "websocket) inside open_trio_portal()"
        )
    else:
        how = (
            "Bridge the call in its INCOMING_CALL handler, which runs on trio "
            "(from asyncio: the handler given to portal.open_client)"
        )
    raise RuntimeError(
        f"StreamConnector.{method}() runs on trio, but it was awaited from {host}. {how}"
    )


def _headers(value: Mapping[str, str] | Sequence[tuple[str, str]]) -> tuple[tuple[str, str], ...]:
    items = value.items() if isinstance(value, Mapping) else value
    return tuple((str(k), str(v)) for k, v in items)


def _header_names(headers: tuple[tuple[str, str], ...]) -> str:
    return repr(tuple(name for name, _ in headers))  # values may be credentials


def _wants_context(handler: Callable[..., object]) -> bool:
    """Whether ``handler`` declares a second positional parameter (for the context)."""
    try:
        params = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    return sum(p.kind in positional for p in params) >= 2


def _describe(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _bad_result(label: str, result: object) -> StreamBridgeError:
    if type(result) is not tuple or len(result) != 2:
        why = "expected a (data, StreamOp) tuple"
    elif not isinstance(result[1], StreamOp):
        why = f"the second item must be a StreamOp, got {type(result[1]).__name__}"
    else:
        why = f"RELAY needs str, bytes or None data, got {type(result[0]).__name__}"
    return StreamBridgeError(
        f"{label} returned {_describe(result)} ({type(result).__name__}): {why}"
    )


@attrs.define(eq=False)
class StreamConnector:
    """Bridges a call's media stream to a remote WebSocket through two handlers.

    Teler's API, kept: the four positional parameters and
    ``await connector.bridge_stream(call_ws)``. A handler is
    ``async (message) -> (data, StreamOp)``; one that declares a second
    positional parameter is called as ``handler(message, context)`` with the
    bridge's :class:`BridgeContext`. One connector serves any number of
    concurrent bridges: nothing per call is stored on it.

    Args:
        stream_type: ``BIDIRECTIONAL``, or ``UNIDIRECTIONAL`` for listen-only
            (the remote handler still runs, but nothing is sent to the call).
        remote_url: the ``ws://``/``wss://`` URL of the remote (never logged with
            its query string).
        call_stream_handler: handles each message from the call.
        remote_stream_handler: handles each message from the remote.
        headers: extra HTTP headers for the remote's upgrade request (auth).
        subprotocols: WebSocket subprotocols to offer the remote.
        ssl_context: TLS settings for ``wss://`` (default: the system's).
        connect_timeout: bound on opening the remote (TCP, TLS, upgrade).
        close_timeout: bound on closing each side.
        max_message_size: largest message accepted from the remote (else 1009).
        message_queue_size: remote messages trio-websocket buffers ahead of the relay.
        ping_interval: seconds between keep-alive pings to the remote; ``None``: off.
        ping_timeout: a ping unanswered this long ends the bridge.
        send_timeout: a send blocked this long ends the bridge; ``None``: wait forever.
        on_open: ``async (context)`` run once the remote is connected and before any
            relaying, e.g. to send a session/config message with
            ``context.send_to_remote``.
        open_stream: opens the remote's byte stream (tests pass in-memory streams).
        transport: the WebSocket implementation for the remote leg:
            ``"lean"`` (default; about half the CPU per message of the
            other, see the performance page) or ``"trio-websocket"``.

    Raises:
        ValueError: ``remote_url`` is empty or not a WebSocket URL, a timeout is
            not positive, ``stream_type`` is not a :class:`StreamType` value.
        TypeError: a handler or ``on_open`` is not an async callable (a plain
            ``def`` is refused here rather than failing at the first message).
    """

    stream_type: StreamType = attrs.field(default=StreamType.BIDIRECTIONAL, converter=StreamType)
    remote_url: str = attrs.field(default="", validator=_check_url, repr=redact_url)
    call_stream_handler: AnyHandler = attrs.field(default=relay, validator=_check_handler)
    remote_stream_handler: AnyHandler = attrs.field(default=relay, validator=_check_handler)
    headers: tuple[tuple[str, str], ...] = attrs.field(
        default=(), kw_only=True, converter=_headers, repr=_header_names
    )
    subprotocols: tuple[str, ...] = attrs.field(default=(), kw_only=True, converter=tuple)
    ssl_context: ssl.SSLContext | None = attrs.field(default=None, kw_only=True)
    connect_timeout: float = attrs.field(default=10.0, kw_only=True, validator=_check_timeout)
    close_timeout: float = attrs.field(default=2.0, kw_only=True, validator=_check_timeout)
    max_message_size: int = attrs.field(default=1 << 20, kw_only=True)
    message_queue_size: int = attrs.field(default=1, kw_only=True)
    ping_interval: float | None = attrs.field(default=20.0, kw_only=True, validator=_check_timeout)
    ping_timeout: float = attrs.field(default=20.0, kw_only=True, validator=_check_timeout)
    send_timeout: float | None = attrs.field(default=10.0, kw_only=True, validator=_check_timeout)
    on_open: OnOpen | None = attrs.field(
        default=None, kw_only=True, validator=attrs.validators.optional(_check_handler)
    )
    open_stream: StreamOpener = attrs.field(default=open_tcp, kw_only=True, repr=False)
    transport: Transport = attrs.field(
        default=DEFAULT_TRANSPORT, kw_only=True, validator=attrs.validators.in_(TRANSPORTS)
    )

    async def bridge_stream(self, call_ws: object) -> BridgeResult:
        """Relay between ``call_ws`` and a new connection to ``remote_url`` until one ends.

        Args:
            call_ws: the call's WebSocket, already accepted: a
                :class:`telcoflow_trio.ws.WebSocketConnection` (from
                :func:`telcoflow_trio.ws.serve_websocket`, the fast path), a
                Starlette/FastAPI ``WebSocket`` (ASGI, e.g. under Hypercorn's
                trio worker), a trio-websocket ``WebSocketConnection`` or a
                ``MessageStream``.

        Returns:
            why the bridge ended, both close codes and the traffic each way.

        Raises:
            StreamBridgeError: the bridge ended with an error (see the module
                docs); ``__cause__`` has the details, ``result`` the outcome.
            TypeError: ``call_ws`` is not a supported socket.
            RuntimeError: awaited outside trio, e.g. on uvicorn's asyncio loop
                (use Hypercorn's trio worker, or
                :meth:`~telcoflow_trio.asyncio_bridge.TrioPortal.bridge_stream`).
        """
        _require_trio("bridge_stream")
        call = as_message_stream(call_ws, self.close_timeout)
        return await _Bridge(self, call, None, None).run()

    async def bridge_call(self, call: CallLike) -> BridgeResult:
        """Relay a Telcoflow call's audio to ``remote_url`` and the remote's audio back.

        Messages from the call are ``bytes`` of PCM; data relayed to the call
        must be ``bytes`` too (it is written with ``call.write_audio``).
        :meth:`BridgeContext.clear_audio` maps to ``call.clear_send_audio_buffer()``.
        The call is ended with ``call.close()`` whenever the bridge ends and the
        call is still up.

        Raises:
            StreamBridgeError: as for :meth:`bridge_stream`.
            RuntimeError: awaited outside trio (see :meth:`bridge_stream`).
        """
        _require_trio("bridge_call")
        audio = CallAudio(call, self.close_timeout)
        return await _Bridge(self, audio, call.call_id, audio.clear).run()


async def bridge_call(
    call: CallLike,
    remote_url: str,
    *,
    call_stream_handler: AnyHandler = relay,
    remote_stream_handler: AnyHandler = relay,
    stream_type: StreamType = StreamType.BIDIRECTIONAL,
    **options: Any,
) -> BridgeResult:
    """``StreamConnector(...).bridge_call(call)`` in one call; ``options`` are its keywords."""
    connector = StreamConnector(
        stream_type, remote_url, call_stream_handler, remote_stream_handler, **options
    )
    return await connector.bridge_call(call)


class BridgeContext:
    """One bridge's view for its handlers: which call, per-call state, both sides.

    Handlers that take a second positional parameter get it. Nothing in it is
    shared with other bridges of the same connector.
    """

    __slots__ = ("_bridge", "_chunker", "call_id", "start", "state")

    def __init__(self, bridge: _Bridge, call_id: str | None) -> None:
        self._bridge = bridge
        self._chunker: teler.AudioChunker | None = None
        #: The call's id: the Telcoflow call's, or the Teler ``start`` message's.
        self.call_id = call_id
        #: Teler's ``start`` message, once the call side has sent it.
        self.start: teler.TelerStart | None = None
        #: Yours: per-call state for the handlers.
        self.state: dict[str, Any] = {}

    @property
    def stream_type(self) -> StreamType:
        """The connector's stream type."""
        return self._bridge.connector.stream_type

    async def send_to_call(self, message: str | bytes) -> None:
        """Send a message to the call side (e.g. Teler's ``clear``).

        Raises:
            WSSConnectionClosed: the call side is closed.
        """
        socket = self._bridge.call.socket
        assert socket is not None
        await socket.send_message(message)
        self._bridge.down.count_out(message)

    async def send_to_remote(self, message: str | bytes) -> None:
        """Send a message to the remote (session config, an answer to its ping, ...).

        Raises:
            WSSConnectionClosed: the remote is closed.
            RuntimeError: the remote is not connected yet.
        """
        socket = self._bridge.remote.socket
        if socket is None:
            raise RuntimeError("the remote is not connected yet")
        await socket.send_message(message)
        self._bridge.up.count_out(message)

    async def clear_audio(self) -> None:
        """Stop what the caller is hearing (barge-in).

        For a Teler stream: drop the audio pending in :meth:`audio_out`'s chunker
        and send ``clear``. For a Telcoflow call: ``call.clear_send_audio_buffer()``.
        """
        if self._bridge.clear is not None:
            await self._bridge.clear()
            return
        if self._chunker is not None:
            self._chunker.clear()
        await self.send_to_call(teler.clear_message())

    def audio_out(
        self,
        *,
        min_chunk_ms: int = 500,
        shape: teler.AudioShape = teler.AudioShape.FLAT,
        sample_rate: int | None = None,
    ) -> teler.AudioChunker:
        """This bridge's Teler audio chunker (created on first use, then the same one).

        The bridge flushes it to the call when it ends normally; ``clear_audio``
        empties it. ``sample_rate`` defaults to the ``start`` message's (else 8000).
        """
        if self._chunker is None:
            rate = sample_rate or (self.start.sample_rate if self.start else 8000)
            self._chunker = teler.AudioChunker(rate, min_chunk_ms, shape)
        return self._chunker

    def _see_first_message(self, message: str | bytes) -> None:
        if isinstance(message, str) and '"start"' in message:
            try:
                self.start = teler.parse_start(message)
            except RemoteProtocolError:
                return
            if self.call_id is None:
                self.call_id = self.start.call_id


class _Counter:
    """Live traffic counters of one direction."""

    __slots__ = ("bytes_in", "bytes_out", "messages_in", "messages_out", "sending")

    def __init__(self) -> None:
        self.messages_in = self.bytes_in = self.messages_out = self.bytes_out = 0
        #: A relay send is in progress (read by the watchdog).
        self.sending = False

    def count_out(self, message: str | bytes) -> None:
        self.messages_out += 1
        self.bytes_out += len(message)

    def freeze(self) -> DirectionStats:
        return DirectionStats(self.messages_in, self.bytes_in, self.messages_out, self.bytes_out)


class _Side:
    __slots__ = ("closed_by_us", "name", "peer_close", "socket")

    def __init__(self, name: str, socket: MessageStream | None) -> None:
        self.name = name
        self.socket = socket
        self.peer_close: tuple[int, str | None] | None = None
        self.closed_by_us: tuple[int, str | None] | None = None

    def close_info(self) -> CloseInfo | None:
        if self.peer_close is not None:
            return CloseInfo(*self.peer_close, by_peer=True)
        if self.closed_by_us is not None:
            return CloseInfo(*self.closed_by_us, by_peer=False)
        return None


class _Bridge:
    """The state of one bridge run."""

    def __init__(
        self,
        connector: StreamConnector,
        call: MessageStream,
        call_id: str | None,
        clear: Callable[[], Awaitable[None]] | None,
    ) -> None:
        self.connector = connector
        self.call = _Side("call", call)
        self.remote = _Side("remote", None)
        self.clear = clear
        self.ctx = BridgeContext(self, call_id)
        self.up = _Counter()  # call -> remote
        self.down = _Counter()  # remote -> call
        self.end: BridgeEnd | None = None
        self.scope = trio.CancelScope()  # the relays'
        self.shield = trio.CancelScope(shield=True)  # the whole bridge's
        self.cancelled = False  # cancelled from outside
        self.finished = False
        self.closed = False

    async def run(self) -> BridgeResult:
        # The bridge runs shielded, and a watcher turns a cancellation from
        # outside into stopping the relays: the remote's trio-websocket reader
        # task then survives long enough for a proper close handshake (1001).
        result: BridgeResult | None = None
        error: BaseException | None = None
        async with trio.open_nursery() as guard:
            guard.start_soon(self._watch_cancellation)
            try:
                with self.shield:
                    result = await self._run()
            except BaseException as exc:
                error = exc  # keep it out of the guard's exception group
            finally:
                self.finished = True
                guard.cancel_scope.cancel()
        # A cancellation from outside has been raised by the guard by now.
        if error is not None:
            raise error
        assert result is not None
        return result

    async def _watch_cancellation(self) -> None:
        try:
            await trio.sleep_forever()
        finally:
            if not self.finished:
                self.cancelled = True
                # Still connecting: abandon it. Connected: stop relaying, then close.
                (self.shield if self.remote.socket is None else self.scope).cancel()

    async def _run(self) -> BridgeResult:
        c = self.connector
        started = trio.current_time()
        failure: BaseException | None = None
        try:
            async with open_websocket(
                c.remote_url,
                headers=c.headers,
                subprotocols=c.subprotocols,
                ssl_context=c.ssl_context,
                open_stream=c.open_stream,
                connect_timeout=c.connect_timeout,
                close_timeout=c.close_timeout,
                max_message_size=c.max_message_size,
                message_queue_size=c.message_queue_size,
                transport=c.transport,
            ) as remote:
                self.remote.socket = remote
                logger.info("bridge connected to %s", redact_url(c.remote_url))
                try:
                    await self._relay(remote)
                except BaseException as exc:
                    failure = _classify(exc)
                # Inside the block, so our close code reaches the remote.
                await self._close(failure)
        except BaseException as exc:
            if isinstance(exc, Exception):
                doing = "connect to" if self.remote.socket is None else "keep the connection to"
                failure = StreamBridgeError(
                    f"could not {doing} the remote {redact_url(c.remote_url)}"
                )
                failure.__cause__ = exc
            else:
                failure = exc
            await self._close(failure)
        end = BridgeEnd.ERROR if isinstance(failure, StreamBridgeError) else self.end
        result = BridgeResult(
            end=end or BridgeEnd.ERROR,
            call_close=self.call.close_info(),
            remote_close=self.remote.close_info(),
            call_to_remote=self.up.freeze(),
            remote_to_call=self.down.freeze(),
            duration=trio.current_time() - started,
        )
        logger.info(
            "bridge for call %s ended: %s (call %s, remote %s)",
            self.ctx.call_id,
            "cancelled" if self.cancelled else result.end.value,
            result.call_close,
            result.remote_close,
        )
        if failure is None:
            return result
        if isinstance(failure, StreamBridgeError):
            failure.result = result
        raise failure

    async def _relay(self, remote: ClientWebSocket) -> None:
        c = self.connector
        with self.scope:
            if c.on_open is not None:
                try:
                    await c.on_open(self.ctx)
                except Exception as exc:
                    raise StreamBridgeError(f"on_open raised {type(exc).__name__}: {exc}") from exc
            async with trio.open_nursery() as nursery:
                nursery.start_soon(
                    self._pump,
                    self.call,
                    self.remote,
                    c.call_stream_handler,
                    "call_stream_handler",
                    self.up,
                    BridgeEnd.CALL_STOP,
                )
                listen_only = c.stream_type is StreamType.UNIDIRECTIONAL
                nursery.start_soon(
                    self._pump,
                    self.remote,
                    None if listen_only else self.call,
                    c.remote_stream_handler,
                    "remote_stream_handler",
                    self.down,
                    BridgeEnd.REMOTE_STOP,
                )
                if c.ping_interval is not None:
                    nursery.start_soon(self._keepalive, remote, c.ping_interval, c.ping_timeout)
                if c.send_timeout is not None:
                    nursery.start_soon(self._watch_sends, c.send_timeout)

    def _finish(self, end: BridgeEnd) -> None:
        if self.end is None:
            self.end = end
        self.scope.cancel()

    def _peer_closed(self, side: _Side, exc: WSSConnectionClosed) -> None:
        if side.peer_close is not None or side.closed_by_us is not None:
            return  # the other relay saw this close first and reported it
        code, reason = code_and_reason(exc)
        detail = f"code {code}" + (f": {reason}" if reason else "")
        if not exc.by_peer:
            # Its transport closed it for bad data (1002, 1007, 1009): our close.
            side.closed_by_us = (code, reason)
            raise StreamBridgeError(
                f"the {side.name} sent data we refused; we closed it with {detail}"
            ) from exc
        side.peer_close = (code, reason)
        if side is self.remote and code not in NORMAL_CLOSE_CODES:
            raise StreamBridgeError(f"the remote closed the connection with {detail}") from exc
        self._finish(BridgeEnd.CALL_CLOSED if side is self.call else BridgeEnd.REMOTE_CLOSED)

    async def _pump(
        self,
        src: _Side,
        dst: _Side | None,
        handler: AnyHandler,
        label: str,
        counter: _Counter,
        stop: BridgeEnd,
    ) -> None:
        # The hot path: one receive, one handler call, one send. Keep it lean.
        assert src.socket is not None
        receive = src.socket.get_message
        send = dst.socket.send_message if dst is not None and dst.socket is not None else None
        ctx = self.ctx
        with_ctx = _wants_context(handler)
        ctx_handler = cast(ContextStreamHandler, handler)
        plain_handler = cast(StreamHandler, handler)
        first = src is self.call
        relay_op, pass_op, stop_op = StreamOp.RELAY, StreamOp.PASS, StreamOp.STOP
        while True:
            try:
                message = await receive()
            except WSSConnectionClosed as exc:
                return self._peer_closed(src, exc)
            except Exception as exc:
                raise StreamBridgeError(f"receiving from the {src.name} failed: {exc!r}") from exc
            counter.messages_in += 1
            counter.bytes_in += len(message)
            if first:
                first = False
                ctx._see_first_message(message)
            try:
                result = await (ctx_handler(message, ctx) if with_ctx else plain_handler(message))
            except Exception as exc:
                raise StreamBridgeError(f"{label} raised {type(exc).__name__}: {exc}") from exc
            if type(result) is tuple and len(result) == 2:
                data, op = result
                if op is relay_op:
                    if isinstance(data, (str, bytes)):
                        if send is None:
                            continue  # listen-only
                        counter.sending = True
                        try:
                            await send(data)
                        except WSSConnectionClosed as exc:
                            assert dst is not None
                            return self._peer_closed(dst, exc)
                        except Exception as exc:
                            raise StreamBridgeError(
                                f"sending to the {dst.name if dst else '?'} failed: {exc!r}"
                            ) from exc
                        counter.sending = False
                        counter.messages_out += 1
                        counter.bytes_out += len(data)
                        continue
                    if data is None:
                        continue
                elif op is pass_op:
                    continue
                elif op is stop_op:
                    return self._finish(stop)
            raise _bad_result(label, result)

    async def _keepalive(self, remote: ClientWebSocket, interval: float, limit: float) -> None:
        count = 0
        while True:
            await trio.sleep(interval)
            count += 1
            with trio.move_on_after(limit) as scope:
                try:
                    await remote.ping(count.to_bytes(8, "big"))
                except WSSConnectionClosed:
                    return  # the remote's relay reports the close
            if scope.cancelled_caught:
                raise StreamBridgeError(f"the remote did not answer a ping within {limit:g} s")

    async def _watch_sends(self, limit: float) -> None:
        # A send seen in progress at two checks in a row with no send finished
        # in between has been blocked for at least `limit`.
        watched = ((self.up, "remote"), (self.down, "call"))
        last = [(False, -1), (False, -1)]
        while True:
            await trio.sleep(limit)
            for i, (counter, where) in enumerate(watched):
                now = (counter.sending, counter.messages_out)
                if now[0] and now == last[i]:
                    raise StreamBridgeError(
                        f"a send to the {where} has been blocked for over {limit:g} s"
                    )
                last[i] = now

    async def _close(self, failure: BaseException | None) -> None:
        """Close both sides with codes that say why, in parallel, within ``close_timeout``."""
        if self.closed:
            return
        self.closed = True
        if self.cancelled and not isinstance(failure, StreamBridgeError):
            code, call_reason, remote_reason = 1001, "going away", "going away"
        elif failure is None:
            code = 1000
            call_reason = remote_reason = _STOP_REASON
            if self.end is BridgeEnd.CALL_CLOSED:
                remote_reason = "call ended"
            elif self.end is BridgeEnd.REMOTE_CLOSED:
                call_reason = "remote closed"
        elif isinstance(failure, StreamBridgeError):
            code, call_reason, remote_reason = 1011, "bridge error", "bridge error"
        else:
            code, call_reason, remote_reason = 1001, "going away", "going away"
        chunker = self.ctx._chunker
        flush = chunker.flush() if chunker and failure is None and not self.cancelled else None
        timeout = self.connector.close_timeout
        with trio.CancelScope(shield=True, deadline=trio.current_time() + timeout):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._close_side, self.call, code, call_reason, flush)
                if self.remote.socket is not None:
                    nursery.start_soon(self._close_side, self.remote, code, remote_reason, None)

    async def _close_side(
        self, side: _Side, code: int, reason: str, last_message: str | None
    ) -> None:
        assert side.socket is not None
        if side.peer_close is None and side.closed_by_us is None:
            side.closed_by_us = (code, reason)
            if last_message is not None:
                try:
                    await side.socket.send_message(last_message)
                except Exception as exc:
                    logger.debug("could not flush audio to the %s: %r", side.name, exc)
        try:
            await side.socket.aclose(code, reason)
        except Exception as exc:
            logger.debug("closing the %s failed: %r", side.name, exc)


def _classify(exc: BaseException) -> BaseException:
    """The one exception a failed bridge raises for ``exc`` (what its relays raised)."""
    if isinstance(exc, BaseExceptionGroup):
        rest = exc.split(trio.Cancelled)[1]
        if rest is None:
            return exc  # cancelled from outside: let trio see its Cancelled
        leaves = list(_leaves(rest))
        if not all(isinstance(leaf, Exception) for leaf in leaves):
            return exc  # KeyboardInterrupt and friends pass unchanged
        if len(leaves) == 1:
            return _classify(leaves[0])
        first = next((e for e in leaves if isinstance(e, StreamBridgeError)), leaves[0])
        error = StreamBridgeError(f"{_message(first)} (and {len(leaves) - 1} more errors)")
        error.__cause__ = rest
        return error
    if isinstance(exc, StreamBridgeError) or not isinstance(exc, Exception):
        return exc
    error = StreamBridgeError(f"the bridge failed: {type(exc).__name__}: {exc}")
    error.__cause__ = exc
    return error


def _message(exc: BaseException) -> str:
    if isinstance(exc, StreamBridgeError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def _leaves(group: BaseExceptionGroup[BaseException]) -> Any:
    for exc in group.exceptions:
        if isinstance(exc, BaseExceptionGroup):
            yield from _leaves(exc)
        else:
            yield exc
