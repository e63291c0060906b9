"""The simulator: a Telcoflow platform in a box, on telcoflow_trio.ws (or trio-websocket).

One nursery owns everything: the listener (if any), one handler task per
accepted connection, one task per call. Connections arrive as trio byte
streams, from TCP (optionally TLS) or from :meth:`Simulator.open_stream`'s
in-memory pairs, and go through the same handler, so tests under ``MockClock``
exercise exactly the code a real client meets.

Hardening. trio-websocket's server stops entirely when a handler raises, so
:meth:`Simulator._handle_stream` catches everything per connection. Every
close is bounded by ``close_timeout``; every per-connection queue is bounded
(a control connection that stops reading is dropped when its outbox fills).
"""

from __future__ import annotations

import collections
import contextlib
import hmac
import json
import logging
import re
import ssl
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from functools import partial
from typing import final
from urllib.parse import parse_qs, unquote

import attrs
import h11
import trio
import trio.testing
import trio_websocket

from ..exceptions import RemoteProtocolError, WSSConnectionClosed, WSSConnectionError
from ..proto import (
    SESSIONS_PATH,
    CallFlowSetup,
    CallIn,
    CallState,
    Response,
    SessionClosed,
    SessionCreate,
    SessionNotify,
    SessionOpen,
    SessionReady,
    Setup,
    SetupDone,
    UnknownFrame,
    WaMsgOut,
    decode_control,
    encode_error,
    encode_sessions,
)
from ..ws import WebSocketConnection, WebSocketRequest, serve_websocket_stream
from ..ws._connection import _RECEIVE_SIZE, _next_event
from ..ws._handshake import MAX_HANDSHAKE, header_values
from ..ws._streams import accept_tls, start_tls
from ..ws._transport import ClientWebSocket, WebSocket
from ._call import CallObserver, SimulatedCall
from ._clock import SlotTimer
from ._connection import (
    Connection,
    ControlConnection,
    FaultStream,
    FrameLog,
    ReplayStream,
    request_record,
    salvage_field,
)
from ._faults import SimulatorFaults
from ._model import CallerScript, CallResult, SimulatorConfig, SimulatorStatistics
from ._softphone import serve_softphone
from ._wa import WaPlatform

#: An upgrade request from either WebSocket implementation (``SimulatorConfig.transport``).
_Request = trio_websocket.WebSocketRequest | WebSocketRequest
#: A connection's own failures: logged, not counted as handler errors.
_CONNECTION_ERRORS = (trio.BrokenResourceError, trio.ClosedResourceError, ssl.SSLError)

__all__ = [
    "CONTROL_PATH",
    "MEDIA_PATH_PREFIX",
    "SOFTPHONE_PATH",
    "WA_USER_PATH",
    "ControlConnection",
    "Simulator",
    "open_simulator",
    "serve_simulator",
]

logger = logging.getLogger(__name__)

#: A number an outbound call may go to: an optional ``+`` and 3 to 15 digits.
_DIALABLE = re.compile(r"\+?[0-9]{3,15}")

#: The slot of the call tickers' shared timer, in seconds.
_TICK_SLOT = 0.001

CONTROL_PATH = "/v1/agent/session-manager"
MEDIA_PATH_PREFIX = "/v1/media/"
#: The simulator's own caller-side endpoint (the ``telcoflow-trio call`` softphone).
SOFTPHONE_PATH = "/v1/simulator/call"
#: The simulator's own WhatsApp-user endpoint (``telcoflow-trio wa``): a plain HTTP POST.
WA_USER_PATH = "/v1/simulator/wa"
#: Longest a ``wa`` request waits for the agent's replies, in seconds.
_WA_USER_MAX_WAIT = 60.0
#: Host of :attr:`Simulator.base_url` when the simulator is not listening.
MEMORY_HOST = "simulator.invalid"


async def _send_tls_alert(stream: trio.SSLStream[trio.abc.Stream]) -> None:
    """Send the alert of a failed TLS handshake, as TLS servers do.

    trio drops it (it stays in the SSL object's outgoing buffer, a private
    attribute), so a client refused with TLS 1.3 would see only a hang-up.
    """
    outgoing = getattr(stream, "_outgoing", None)
    alert = outgoing.read() if isinstance(outgoing, ssl.MemoryBIO) else b""
    if alert:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.transport_stream.send_all(alert)


def _header(headers: list[tuple[bytes, bytes]], name: bytes) -> bytes:
    for key, value in headers:
        if key.lower() == name:
            return value
    return b""


def _same(expected: str, presented: bytes) -> bool:
    return hmac.compare_digest(expected.encode(), presented)


@final
class Simulator:
    """A running simulator. Get one from :func:`open_simulator` or :func:`serve_simulator`."""

    def __init__(
        self,
        config: SimulatorConfig,
        nursery: trio.Nursery,
        *,
        ssl_context: ssl.SSLContext | None = None,
        frame_log: FrameLog | None = None,
    ) -> None:
        self.config = config
        self.faults = SimulatorFaults(self)
        #: The call tickers' shared timer (ticks up to 1 ms late, never early).
        self.ticks = SlotTimer(_TICK_SLOT)
        self._nursery = nursery
        self._ssl_context = ssl_context
        self._frame_log = frame_log
        scheme = "wss" if ssl_context is not None else "ws"
        #: Where clients connect: ``ws://127.0.0.1:<port>`` when listening, else a placeholder
        #: that only :meth:`open_stream` understands.
        self.base_url = f"{scheme}://{MEMORY_HOST}"
        self.port: int | None = None
        self._epoch0 = time.time() - trio.current_time()  # wire timestamps only
        self._closing = False
        self._drained = trio.Event()
        self._observers: list[CallObserver] = []
        #: The WhatsApp channel: sessions, messages, simulated users.
        self.wa = WaPlatform(self, self._is_call_session)

        self._controls: dict[str, ControlConnection] = {}
        self._calls: dict[str, SimulatedCall] = {}
        self._sessions: dict[str, SimulatedCall] = {}
        self._closed_sessions: collections.OrderedDict[str, None] = collections.OrderedDict()
        self._results: collections.deque[CallResult] = collections.deque(
            maxlen=config.max_finished_calls
        )
        self._live: set[Connection] = set()

        self._connections_total = 0
        self._streams = 0  # connections open, handshake or not
        self._control_total = 0
        self._media_now = 0
        self._media_total = 0
        self._calls_placed = 0
        self._calls_ended = 0
        self._calls_abandoned_unclaimed = 0
        self._sessions_busy = 0
        self._calls_outbound = 0
        #: Scripts for the next outbound call to a number (:meth:`expect_callee`).
        self._callee_scripts: dict[str, CallerScript] = {}
        self._auth_rejections = 0
        self._malformed_frames = 0
        self._handler_errors = 0

    def __repr__(self) -> str:
        return f"<Simulator {self.base_url} calls={len(self._calls)}>"

    # -- public ---------------------------------------------------------------------------

    @property
    def api_key(self) -> str:
        """The API key control connections must present."""
        return self.config.api_key

    @property
    def connector_uuid(self) -> str:
        return self.config.connector_uuid

    @property
    def control_url(self) -> str:
        return self.base_url + CONTROL_PATH

    async def open_stream(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        """A :data:`~telcoflow_trio.ws._streams.StreamOpener` to this simulator, in memory.

        ``host`` and ``port`` are ignored (any URL reaches the simulator). With
        ``ssl_context``, TLS runs over the in-memory pair, handshake included.

        Raises:
            OSError: the simulator is shutting down (like a refused connection).
            trio.BrokenResourceError: the TLS handshake failed.
        """
        if self._closing:
            raise ConnectionRefusedError("the simulator is shut down")
        client, server = trio.testing.memory_stream_pair()
        server_side: trio.abc.Stream = server
        if self._ssl_context is not None:
            server_side = trio.SSLStream(server, self._ssl_context, server_side=True)
        self._nursery.start_soon(self._handle_stream, server_side)
        if ssl_context is None:
            await trio.lowlevel.checkpoint()
            return client
        return await start_tls(client, ssl_context, host)

    async def place_call(
        self,
        script: CallerScript | None = None,
        *,
        caller: str = "+15550100",
        callee: str = "+15550199",
    ) -> SimulatedCall:
        """A new inbound call: notify every control connection and let the caller ring.

        Raises:
            RuntimeError: the simulator is shut down, or ``max_active_calls`` are active.
        """
        if self._closing:
            raise RuntimeError("the simulator is shut down")
        if len(self._calls) >= self.config.max_active_calls:
            raise RuntimeError(
                f"{len(self._calls)} calls are active, the most this simulator allows"
            )
        call = SimulatedCall(
            self,
            script if script is not None else CallerScript(),
            call_id=str(uuid.uuid4()),
            session_id=str(uuid.uuid4()),
            caller=caller,
            callee=callee,
        )
        self._calls[call.call_id] = call
        self._sessions[call.session_id] = call
        self._calls_placed += 1
        self._spawn(call._run)
        self._observe(call, "placed")
        self._offer(call, "NEW_INCOMING_CALL")
        await trio.lowlevel.checkpoint()
        return call

    def expect_callee(self, remote_address: str, script: CallerScript) -> None:
        """The next outbound call to ``remote_address`` is answered as ``script`` says
        (``answers_after``, ``rejects``, ``audio``, ``record_dir``...); other calls use
        ``config.callee_script``. A script with ``answers_after=None`` rings until the
        test calls :meth:`SimulatedCall.answer` or :meth:`SimulatedCall.reject`."""
        self._callee_scripts[remote_address] = script

    def forget_callee(self, remote_address: str, script: CallerScript) -> None:
        """Undo :meth:`expect_callee` of ``script`` if no call has used it yet."""
        if self._callee_scripts.get(remote_address) is script:
            del self._callee_scripts[remote_address]

    def get_call(self, call_id: str) -> SimulatedCall | None:
        """The active call with ``call_id``, if any."""
        return self._calls.get(call_id)

    def active_calls(self) -> list[SimulatedCall]:
        return list(self._calls.values())

    def results(self) -> list[CallResult]:
        """Results of the most recently ended calls (at most ``max_finished_calls``).

        Their ``agent_audio`` is empty; :meth:`SimulatedCall.wait_result` has it.
        """
        return list(self._results)

    def add_observer(self, observer: CallObserver) -> None:
        """Call ``observer(call, event)`` on every call event (synchronously; keep it quick)."""
        self._observers.append(observer)

    def remove_observer(self, observer: CallObserver) -> None:
        self._observers.remove(observer)

    def statistics(self) -> SimulatorStatistics:
        return SimulatorStatistics(
            control_connections=len(self._controls),
            control_connections_total=self._control_total,
            media_connections=self._media_now,
            media_connections_total=self._media_total,
            connections=self._streams,
            calls_placed=self._calls_placed,
            calls_active=len(self._calls),
            calls_ended=self._calls_ended,
            auth_rejections=self._auth_rejections,
            malformed_frames=self._malformed_frames,
            handler_errors=self._handler_errors,
            calls_unclaimed=sum(map(_waiting, self._calls.values())),
            calls_abandoned_unclaimed=self._calls_abandoned_unclaimed,
            sessions_busy=self._sessions_busy,
            calls_outbound=self._calls_outbound,
        )

    async def aclose(self) -> None:
        """Shut down gracefully, within ``2 * close_timeout``.

        Every call ends (``server``; agents get ``call.terminated`` and
        ``session.closed`` with ``FORCE_CLOSE``), control connections close with
        1001. Leaving :func:`open_simulator`'s block does this; cancelling it
        instead stops everything at once.
        """
        if self._closing:
            return
        self._closing = True
        for call in list(self._calls.values()):
            call._finish("server", "FORCE_CLOSE")
        for control in list(self._controls.values()):
            control.close(1001, "simulator shutting down")
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + 2 * self.config.close_timeout
            if self._live:
                await self._drained.wait()

    # -- internals used by calls and faults ----------------------------------------------

    def _spawn(self, fn: Callable[[], Awaitable[object]]) -> bool:
        """Run ``fn`` in the simulator's nursery, its failure contained; ``False`` if closed."""
        try:
            self._nursery.start_soon(self._guarded, fn)
        except RuntimeError:
            return False
        return True

    async def _guarded(self, fn: Callable[[], Awaitable[object]]) -> None:
        try:
            await fn()
        except* Exception as group:
            self._handler_errors += 1
            logger.error("simulator task %r failed", fn, exc_info=group)

    def _observe(self, call: SimulatedCall, event: str) -> None:
        for observer in self._observers:
            try:
                observer(call, event)
            except Exception:
                logger.exception("simulator observer %r failed", observer)

    def _record_result(self, call: SimulatedCall, result: CallResult) -> None:
        # Kept without the audio: a thousand results must not hold an hour of PCM.
        self._results.append(attrs.evolve(result, agent_audio=b""))
        self._observe(call, "ended")

    def _is_call_session(self, session_id: str) -> bool:
        return session_id in self._sessions or session_id in self._closed_sessions

    def _control_connections(self) -> list[ControlConnection]:
        return list(self._controls.values())

    def _epoch(self) -> int:
        return int(self._epoch0 + trio.current_time())

    def _notify_frame(self, call: SimulatedCall, activity: str) -> str:
        return SessionNotify(
            call.session_id, "TELCO", call.caller, call.callee, activity, self._epoch()
        ).encode()

    def _offer(self, call: SimulatedCall, activity: str) -> None:
        """Notify every connection whose call flow takes ``call`` (see ``_miss_later``)."""
        controls = list(self._controls.values())
        if not call._missed and not any(c.inbound_call == "ALL" for c in controls):
            call._missed = True  # nobody takes all calls: missed at once
        frame = self._notify_frame(call, activity)
        for control in controls:
            if control.offered(call._missed):
                control.send_nowait(frame)
        self._watch_missed(call)

    def _watch_missed(self, call: SimulatedCall) -> None:
        """Offer ``call`` to ``MISSED_ONLY`` connections once it is missed (if any listen)."""
        if call._missed or call._miss_timer:
            return
        if any(c.inbound_call == "MISSED_ONLY" for c in self._controls.values()):
            call._miss_timer = self._spawn(lambda: self._miss_later(call))

    async def _miss_later(self, call: SimulatedCall) -> None:
        """Call-flow model of ``MISSED_ONLY``: a call still unclaimed ``missed_call_after``
        after it was placed is missed; only then are those connections offered it."""
        await trio.sleep_until(call.placed_at + self.config.missed_call_after)
        call._miss_timer = False
        if call._missed or not _waiting(call):
            return  # claimed (answered or ringing at an agent) or over: not missed
        call._missed = True
        activity = "RESUME" if call._ever_bound else "NEW_INCOMING_CALL"
        frame = self._notify_frame(call, activity)
        for control in list(self._controls.values()):
            if control.inbound_call == "MISSED_ONLY":
                control.send_nowait(frame)

    def _call_ended(self, call: SimulatedCall) -> None:
        self._calls.pop(call.call_id, None)
        self._sessions.pop(call.session_id, None)
        self._closed_sessions[call.session_id] = None
        while len(self._closed_sessions) > self.config.max_finished_calls:
            self._closed_sessions.popitem(last=False)
        self._calls_ended += 1
        if not call._ever_bound:
            self._calls_abandoned_unclaimed += 1
        bound = call._bound
        if bound is not None:
            bound.send_nowait(SessionClosed(call.session_id, call._termination_reason).encode())
        call._token = None

    # -- connections --------------------------------------------------------------------------

    async def _listen(self, listeners: list[trio.SocketListener], host: str) -> None:
        # TLS, if any, is done per connection (_handle_stream), on the socket.
        await self._nursery.start(trio.serve_listeners, self._handle_stream, listeners)
        self.port = listeners[0].socket.getsockname()[1]
        advertised = "127.0.0.1" if host in ("", "0.0.0.0") else host
        if ":" in advertised:
            advertised = f"[{advertised}]"
        scheme = "wss" if self._ssl_context is not None else "ws"
        self.base_url = f"{scheme}://{advertised}:{self.port}"

    async def _handle_stream(self, transport: trio.abc.Stream) -> None:
        """Serve one connection. Nothing escapes: see the module docstring."""
        stream = FaultStream(transport, self.faults)
        self._connections_total += 1
        number = self._connections_total
        if self._streams >= self.config.max_connections:
            logger.warning("connection %d refused: %d connections open", number, self._streams)
            await trio.aclose_forcefully(stream)
            return
        self._streams += 1
        try:
            with trio.move_on_after(self.config.connect_timeout) as opening:
                if isinstance(transport, trio.SSLStream):  # in memory (open_stream)
                    try:
                        await transport.do_handshake()
                    except trio.BrokenResourceError:
                        await _send_tls_alert(transport)
                        raise
                elif self._ssl_context is not None:  # a listener's socket
                    transport = stream.transport = await accept_tls(
                        transport, self._ssl_context, self.config.close_timeout
                    )
            if opening.cancelled_caught:
                return
            remaining = max(opening.deadline - trio.current_time(), 0.0)
            if self.config.transport == "lean":
                # On the raw stream (the lean socket's fast path); the
                # stalled-pings fault goes through its pong_gate instead.
                await serve_websocket_stream(
                    partial(self._route_guarded, stream=stream, number=number),
                    transport,
                    max_message_size=self.config.max_message_size,
                    handshake_timeout=remaining,
                    close_timeout=self.config.close_timeout,
                    plain_http=True,
                )
                return
            # trio-websocket refuses plain HTTP: read the head first, answer a
            # REST request through the lean request, replay the rest to it.
            replay = ReplayStream(stream, MAX_HANDSHAKE + _RECEIVE_SIZE)
            async with trio.open_nursery() as nursery:
                request: _Request | None = None
                with trio.move_on_after(remaining):
                    request = await self._plain_request(replay)
                    if request is None:
                        replay.replay()
                        request = await trio_websocket.wrap_server_stream(
                            nursery, replay, max_message_size=self.config.max_message_size
                        )
                if request is not None:
                    await self._route(request, stream, number)
                nursery.cancel_scope.cancel()
        except* _CONNECTION_ERRORS as group:
            logger.info("connection %d failed: %r", number, group.exceptions[0])
        except* Exception as group:
            self._count_handler_error(number, group)
        finally:
            self._streams -= 1
            await trio.aclose_forcefully(stream)

    async def _plain_request(self, stream: ReplayStream) -> WebSocketRequest | None:
        """The request on ``stream`` if it is plain HTTP (no ``Upgrade`` header), else ``None``.

        Anything else, even bytes that are no HTTP at all, is left to
        trio-websocket to judge, after :meth:`ReplayStream.replay`.
        """
        conn = h11.Connection(h11.SERVER)
        try:
            event = await _next_event(conn, stream)
        except (h11.RemoteProtocolError, WSSConnectionError):
            return None
        if not isinstance(event, h11.Request) or header_values(list(event.headers), b"upgrade"):
            return None
        return WebSocketRequest(
            stream, conn, event, self.config.max_message_size, self.config.close_timeout
        )

    async def _route_guarded(
        self, request: WebSocketRequest, *, stream: FaultStream, number: int
    ) -> None:
        """:meth:`_route` for ``serve_websocket_stream``, failures counted and logged here."""
        try:
            await self._route(request, stream, number)
        except _CONNECTION_ERRORS as exc:
            logger.info("connection %d failed: %r", number, exc)
        except Exception as exc:
            self._count_handler_error(number, exc)

    def _count_handler_error(self, number: int, exc: BaseException) -> None:
        self._handler_errors += 1
        logger.error("connection %d: handler failed", number, exc_info=exc)

    async def _reject(self, request: _Request, status: int, body: bytes, why: str) -> None:
        if status in (401, 403):
            self._auth_rejections += 1
        logger.info("rejected %s with HTTP %d: %s", request.path.split("?")[0], status, why)
        with trio.move_on_after(self.config.close_timeout):
            await request.reject(status, body=body)

    def _api_key_ok(self, headers: list[tuple[bytes, bytes]]) -> bool:
        if self.config.mtls:
            return True  # the TLS layer already verified the client certificate
        key_ok = _same(self.config.api_key, _header(headers, b"x-api-key"))
        uuid_ok = _same(self.config.connector_uuid, _header(headers, b"x-connector-uuid"))
        return key_ok and uuid_ok

    async def _route(self, request: _Request, stream: FaultStream, number: int) -> None:
        path = request.path.split("?", 1)[0]
        headers = request.headers
        if self._frame_log is not None:
            self._frame_log(f"http-{number}", "request", request_record(request))
        if isinstance(request, WebSocketRequest) and not request.upgrade:
            await self._serve_rest(request, path)
            return
        if self.faults.auth_rejected:
            await self._reject(request, 401, b"unauthorized", "auth rejection fault")
            return
        if path == CONTROL_PATH:
            if not self._api_key_ok(headers):
                body = b"unauthorized: invalid API key or connector UUID"
                await self._reject(request, 401, body, "bad API key or connector UUID")
                return
            stream.control = True
            await self._serve(request, stream, f"control-{number}", self._serve_control)
        elif path.startswith(MEDIA_PATH_PREFIX):
            call = self._calls.get(path[len(MEDIA_PATH_PREFIX) :])
            auth = _header(headers, b"authorization")
            token = auth[7:].decode("latin-1") if auth[:7].lower() == b"bearer " else ""
            refusal = (
                "no such call (unknown or ended)"
                if call is None
                else call._take_token(token, trio.current_time())
            )
            if refusal is not None:
                await self._reject(request, 401, f"unauthorized: {refusal}".encode(), refusal)
                return
            assert call is not None
            await self._serve(request, stream, f"media-{call.call_id}", self._media_handler(call))
        elif path == SOFTPHONE_PATH:
            if not self._api_key_ok(headers):
                await self._reject(request, 401, b"unauthorized", "bad softphone credentials")
                return
            handler = partial(serve_softphone, self)
            await self._serve(request, stream, f"softphone-{number}", handler)
        else:
            await self._reject(request, 404, b"not found", "unknown path")

    async def _serve_rest(self, request: WebSocketRequest, path: str) -> None:
        """Answer a plain HTTP request: the REST plane (spec B.1), JSON in and out.

        Both transports come here: the ``lean`` one hands plain requests over
        itself, for ``trio-websocket`` :meth:`_plain_request` picks them out.
        """
        if path == WA_USER_PATH:
            status, body = await self._wa_user(request)
        else:
            status, body = self._rest_answer(request, path)
        if status in (401, 403):
            self._auth_rejections += 1
        logger.info("REST %s %s -> %d", request.method, path, status)
        with trio.move_on_after(self.config.close_timeout):
            await request.respond(status, body, [("Content-Type", "application/json")])

    async def _wa_user(self, request: WebSocketRequest) -> tuple[int, bytes]:
        """``POST /v1/simulator/wa?from=NUMBER&text=TEXT[&wait=S]``: a user writes; with
        ``wait``, the answer comes with the agent's first reply (or after ``wait`` seconds)
        and lists the replies so far."""
        if self.faults.auth_rejected or not self._api_key_ok(request.headers):
            return 401, encode_error("UNAUTHORIZED", "invalid API key or connector UUID")
        if request.method != "POST":
            return 405, encode_error("INVALID_REQUEST", f"{request.method} not allowed")
        query = {k: v[0] for k, v in parse_qs(request.path.partition("?")[2]).items()}
        try:
            wait = min(max(float(query.get("wait", "0")), 0.0), _WA_USER_MAX_WAIT)
            session = await self.wa.send_from_user(query.get("from", ""), query.get("text", ""))
        except ValueError as exc:
            return 400, encode_error("INVALID_REQUEST", str(exc))
        except RuntimeError as exc:
            return 503, encode_error("CHANNEL_NOT_CONFIGURED", str(exc))
        before = len(session.received)
        with trio.move_on_after(wait):
            await session.wait_received(before + 1)
        replies = [m.data for m in list(session.received)[before:]]
        return 200, json.dumps({"sessionId": session.session_id, "replies": replies}).encode()

    def _rest_answer(self, request: WebSocketRequest, path: str) -> tuple[int, bytes]:
        if not path.startswith(SESSIONS_PATH):
            return 400, encode_error("INVALID_REQUEST", "not a WebSocket upgrade request")
        if self.faults.auth_rejected or not self._api_key_ok(request.headers):
            return 401, encode_error("UNAUTHORIZED", "invalid API key or connector UUID")
        if self.faults.rest_status is not None:
            return self.faults.rest_status, encode_error("INTERNAL_ERROR", "injected fault")
        if path == SESSIONS_PATH:
            if request.method != "GET":
                return 405, encode_error("INVALID_REQUEST", f"{request.method} not allowed")
            query = parse_qs(request.path.partition("?")[2])
            first = {key: values[0] for key, values in query.items()}
            found = self.wa.listing(
                first.get("channel"), first.get("remoteAddress"), first.get("state")
            )
            return 200, encode_sessions(found)
        session_id, slash, action = path[len(SESSIONS_PATH) + 1 :].partition("/")
        if not slash or action != "close" or not session_id:
            return 404, encode_error("INVALID_REQUEST", "no such endpoint")
        if request.method != "POST":
            return 405, encode_error("INVALID_REQUEST", f"{request.method} not allowed")
        result = self.wa.close_by_rest(unquote(session_id))
        if result is None:
            return 404, encode_error("SESSION_NOT_FOUND", f"no open session {session_id}")
        return 200, json.dumps(result.to_json()).encode()

    def _media_handler(self, call: SimulatedCall) -> Callable[[Connection], Awaitable[None]]:
        async def handler(conn: Connection) -> None:
            self._media_now += 1
            self._media_total += 1
            try:
                await call._serve_media(conn)
            finally:
                self._media_now -= 1

        return handler

    async def _serve(
        self,
        request: _Request,
        stream: FaultStream,
        name: str,
        handler: Callable[[Connection], Awaitable[None]],
    ) -> None:
        """Accept ``request``, run ``handler``, then close gracefully unless dropped."""
        ws: ClientWebSocket | None = None
        with trio.move_on_after(self.config.close_timeout):
            accepted = await request.accept()
            if isinstance(accepted, WebSocketConnection):
                if stream.control:
                    faults = self.faults
                    accepted.pong_gate = lambda: not faults.pings_stalled
                ws = accepted
            else:
                ws = WebSocket(accepted, self.config.close_timeout)
        if ws is None:
            return
        conn = Connection(ws, stream, name, self._frame_log)
        self._live.add(conn)
        try:
            with conn.scope:
                await handler(conn)
        finally:
            self._live.discard(conn)
            if conn.abrupt:  # dropped: TCP ends now, with no close handshake
                await trio.aclose_forcefully(stream)
            else:
                await ws.aclose(conn.close_code, conn.close_reason)
            if self._closing and not self._live:
                self._drained.set()

    # -- control plane ---------------------------------------------------------------------------

    async def _serve_control(self, conn: Connection) -> None:
        config = self.config
        setup: object = None
        with trio.move_on_after(config.setup_timeout):
            try:
                message = await conn.receive()
            except WSSConnectionClosed:
                return
            try:
                setup = decode_control(message, max_size=config.max_message_size)
            except RemoteProtocolError as exc:
                self._malformed_frames += 1
                conn.close(1008, f"bad setup frame: {exc}")
                return
        if setup is None:
            conn.close(1008, f"no setup frame within {config.setup_timeout:g} s")
            return
        if not isinstance(setup, Setup):
            conn.close(1008, "the first frame must be setup")
            return
        if setup.sample_rate not in config.accepted_sample_rates:
            rates = "/".join(map(str, config.accepted_sample_rates))
            conn.close(1008, f"unsupported sampleRate {setup.sample_rate} (use {rates})")
            return
        if setup.audio_mode not in ("mixed", "isolated"):
            conn.close(1008, f"unsupported audioMode {setup.audio_mode!r}")
            return
        send, receive = trio.open_memory_channel[str | bytes](config.control_outbox_frames)
        control = ControlConnection(
            conn, str(uuid.uuid4()), setup.sample_rate, setup.audio_mode, send
        )
        conn.name = f"control-{control.sm_ws_id}"
        self._controls[control.sm_ws_id] = control
        self._control_total += 1
        logger.info(
            "control connection %s set up (%d Hz, %s)",
            control.sm_ws_id,
            setup.sample_rate,
            setup.audio_mode,
        )
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._control_writer, control, receive)
                control.send_nowait(SetupDone(control.sm_ws_id).encode())
                self._renotify(control)
                self.wa.renotify(control)
                await self._control_reader(control)
                nursery.cancel_scope.cancel()
        finally:
            control.alive = False
            send.close()
            self._control_gone(control)

    async def _control_writer(
        self, control: ControlConnection, receive: trio.MemoryReceiveChannel[str | bytes]
    ) -> None:
        conn = control.connection
        try:
            async for message in receive:
                await conn.send(message)
        except WSSConnectionClosed:
            conn.peer_closed = True
        conn.scope.cancel()  # the outbox was closed (graceful close) or the socket was

    async def _control_reader(self, control: ControlConnection) -> None:
        conn = control.connection
        max_size = self.config.max_message_size
        while True:
            try:
                message = await conn.receive()
            except WSSConnectionClosed:
                return
            try:
                frame = decode_control(message, max_size=max_size)
            except RemoteProtocolError as exc:
                self._malformed_frames += 1
                req_id = (
                    salvage_field(message, "reqId", nested=False)
                    if isinstance(message, str)
                    else None
                )
                if req_id is None:
                    logger.warning(
                        "control %s: closing after a bad frame: %s", control.sm_ws_id, exc
                    )
                    conn.close(1003 if isinstance(message, bytes) else 1008, f"bad frame: {exc}")
                    return
                error = {"message": str(exc)}
                control.send_nowait(
                    Response(req_id, False, None, "INVALID_REQUEST", error).encode()
                )
                continue
            self._on_control_frame(control, frame)

    def _on_control_frame(self, control: ControlConnection, frame: object) -> None:
        refusal = _flow_refusal(control, frame)
        if refusal is not None:
            control.send_nowait(refusal.encode())
        elif isinstance(frame, SessionOpen | SessionReady) and self.wa.owns(frame.session_id):
            if isinstance(frame, SessionOpen):
                control.send_nowait(self.wa.open(control, frame).encode())
            else:
                self.wa.ready(control, frame)
        elif isinstance(frame, SessionOpen):
            control.send_nowait(self._open_session(control, frame).encode())
        elif isinstance(frame, SessionReady):
            self._session_ready(control, frame)
        elif isinstance(frame, SessionCreate) and frame.channel == "WA":
            control.send_nowait(self.wa.create(control, frame).encode())
        elif isinstance(frame, WaMsgOut):
            self.wa.msg_out(control, frame)
        elif isinstance(frame, CallFlowSetup):
            self._set_call_flow(control, frame)
        elif isinstance(frame, SessionCreate) and frame.channel == "TELCO":
            self._spawn(partial(self._create_outbound, control, frame))
        elif isinstance(frame, SessionCreate):
            error = {"message": f"the simulator has no {frame.channel!r} channel"}
            response = Response(frame.req_id, False, None, "CHANNEL_NOT_CONFIGURED", error)
            control.send_nowait(response.encode())
        elif isinstance(frame, UnknownFrame) and isinstance(frame.body.get("reqId"), str):
            error = {"message": f"unknown frame type {frame.type!r}"}
            response = Response(frame.body["reqId"], False, None, "INVALID_REQUEST", error)
            control.send_nowait(response.encode())
        else:
            logger.debug("control %s: ignoring %r", control.sm_ws_id, type(frame).__name__)

    async def _create_outbound(self, control: ControlConnection, frame: SessionCreate) -> None:
        """Answer a ``session.create`` for a call (``create_delay`` late) and ring the callee."""
        if self.faults.create_delay > 0:
            await trio.sleep(self.faults.create_delay)
        if control.alive:
            control.send_nowait(self._outbound_response(control, frame).encode())

    def _outbound_response(self, control: ControlConnection, frame: SessionCreate) -> Response:
        def refused(code: str, message: str) -> Response:
            return Response(frame.req_id, False, None, code, {"message": message})

        config, remote = self.config, frame.remote_address
        if self.faults.create_refusal is not None:
            return refused(*self.faults.create_refusal)
        if not config.outbound_calls:
            return refused("CHANNEL_NOT_CONFIGURED", "outbound calls are not enabled")
        if not _DIALABLE.fullmatch(remote):
            return refused("INVALID_REQUEST", f"remoteAddress {remote!r} is not a phone number")
        for call in self._calls.values():
            if call.outbound and call.callee == remote and call._bound is control:
                return Response(
                    frame.req_id, True, {"sessionId": call.session_id, "created": False}
                )
        outbound = sum(call.outbound for call in self._calls.values())
        if outbound >= config.max_outbound_calls:
            return refused("QUOTA_EXCEEDED", f"{outbound} outbound calls are active")
        if self._closing or len(self._calls) >= config.max_active_calls:
            return refused("OUTBOUND_OVERFLOW", f"{len(self._calls)} calls are active")
        call = SimulatedCall(
            self,
            self._callee_scripts.pop(remote, config.callee_script),
            call_id=str(uuid.uuid4()),
            session_id=str(uuid.uuid4()),
            caller=config.outbound_caller_id,
            callee=remote,
            outbound=True,
        )
        call._bound = control
        call._ever_bound = True
        call.sample_rate = control.sample_rate
        call.audio_mode = control.audio_mode
        self._calls[call.call_id] = call
        self._sessions[call.session_id] = call
        self._calls_outbound += 1
        self._spawn(call._run)
        self._observe(call, "placed")
        return Response(frame.req_id, True, {"sessionId": call.session_id, "created": True})

    def _outbound_answered(self, call: SimulatedCall) -> None:
        """The callee answered: the agent gets ``call.in`` if it is ready for it."""
        bound = call._bound
        if bound is not None and call._ready and not call._call_in_sent:
            self._send_call_in(bound, call)

    def _open_session(self, control: ControlConnection, frame: SessionOpen) -> Response:
        call = self._sessions.get(frame.session_id)
        if call is None:
            code = (
                "SESSION_CLOSED"
                if frame.session_id in self._closed_sessions
                else "SESSION_NOT_FOUND"
            )
            error = {"message": f"session {frame.session_id} is not open"}
            return Response(frame.req_id, False, None, code, error)
        bound = call._bound
        if bound is not control and not control.offered(call._missed):
            error = {"message": f"the call flow (inboundCall {control.inbound_call}) excludes it"}
            return Response(frame.req_id, False, None, "FORBIDDEN", error)
        # A call on its media connection stays with its worker even once that
        # worker's control connection is gone (it drains): only a ringing call
        # is offered again (see _control_gone).
        if bound is not None and bound is not control and (bound.alive or call._media_used):
            self._sessions_busy += 1
            return Response(
                frame.req_id, False, None, "SESSION_BUSY", {"boundSmWsId": bound.sm_ws_id}
            )
        if bound is not control:
            call._bound = control
            call._ever_bound = True
            if call._media is None and not call._media_used:
                call.sample_rate = control.sample_rate
                call.audio_mode = control.audio_mode
            self._observe(call, "claimed")
        remote, local = (call.callee, call.caller) if call.outbound else (call.caller, call.callee)
        session = {
            "id": call.session_id,
            "channel": "TELCO",
            "remoteAddress": remote,
            "localAddress": local,
            "openedAt": self._epoch(),
        }
        return Response(frame.req_id, True, {"session": session})

    def _session_ready(self, control: ControlConnection, frame: SessionReady) -> None:
        call = self._sessions.get(frame.session_id)
        if call is None or call._bound is not control:
            logger.debug(
                "control %s: session.ready for a session it has not opened", control.sm_ws_id
            )
            return
        if call._call_in_sent:
            return
        if call.outbound and call.state is CallState.PENDING:
            call._ready = True  # call.in once the callee answers
            return
        self._send_call_in(control, call)

    def _send_call_in(self, control: ControlConnection, call: SimulatedCall) -> None:
        token = uuid.uuid4().hex + uuid.uuid4().hex
        call._issue_token(token, trio.current_time() + self.config.token_ttl)
        url = f"{self.base_url}{MEDIA_PATH_PREFIX}{call.call_id}"
        call_in = CallIn(
            call.session_id,
            call.call_id,
            call.caller,
            call.callee,
            url,
            token,
            self.config.org_uuid,
        )
        control.send_nowait(call_in.encode())

    def _renotify(
        self, control: ControlConnection, skip: Callable[[SimulatedCall], bool] = lambda c: False
    ) -> None:
        """Tell ``control`` about every call waiting for an agent that its flow takes."""
        for call in list(self._calls.values()):
            if _waiting(call) and control.offered(call._missed) and not skip(call):
                activity = "RESUME" if call._ever_bound else "NEW_INCOMING_CALL"
                control.send_nowait(self._notify_frame(call, activity))

    def _set_call_flow(self, control: ControlConnection, frame: CallFlowSetup) -> None:
        """Apply ``call_flow.setup`` to this connection (until it closes), then offer it
        the waiting calls it did not take before."""
        if frame.inbound_call not in ("ALL", "MISSED_ONLY", "NO"):
            mode = frame.inbound_call
            error = {"message": f"inboundCall must be ALL, MISSED_ONLY or NO, not {mode!r}"}
            control.send_nowait(
                Response(frame.req_id, False, None, "INVALID_REQUEST", error).encode()
            )
            return
        before = control.inbound_call
        control.inbound_call = frame.inbound_call
        control.outbound_call = frame.outbound_call
        control.inbound_message = frame.inbound_message
        control.outbound_message = frame.outbound_message
        control.send_nowait(Response(frame.req_id, True).encode())
        self._renotify(control, skip=lambda call: control.offered(call._missed, before))
        for call in list(self._calls.values()):
            if _waiting(call):
                self._watch_missed(call)

    def _control_gone(self, control: ControlConnection) -> None:
        self._controls.pop(control.sm_ws_id, None)
        logger.info("control connection %s closed", control.sm_ws_id)
        self.wa.control_gone(control)
        mine = [c for c in self._calls.values() if c._bound is control and not c._media_used]
        for call in mine:
            if call.outbound:  # its agent is gone before the media: the platform hangs up
                call._finish("server", "FORCE_CLOSE")
        orphans = [call for call in mine if call.state is CallState.PENDING and not call.outbound]
        for call in orphans:
            call._unbind()
            self._offer(call, "RESUME")


def _flow_refusal(control: ControlConnection, frame: object) -> Response | None:
    """``FORBIDDEN`` for what this connection's call flow does not allow, else ``None``.

    FORBIDDEN, not CHANNEL_NOT_CONFIGURED: the connector has the channel; it is
    this connection that declared it does not place calls or send messages.
    """
    if isinstance(frame, SessionCreate):
        allowed = control.outbound_call if frame.channel == "TELCO" else control.outbound_message
        what = "outboundCall" if frame.channel == "TELCO" else "outboundMessage"
    elif isinstance(frame, WaMsgOut):
        allowed, what = control.outbound_message, "outboundMessage"
    else:
        return None
    if allowed:
        return None
    error = {"message": f"the call flow of this connection has {what} false"}
    return Response(frame.req_id, False, None, "FORBIDDEN", error)


def _waiting(call: SimulatedCall) -> bool:
    """Whether ``call`` rings with no agent: offered, and no worker has it now."""
    return (
        call.state is CallState.PENDING
        and call._bound is None
        and not call._media_used
        and not call.outbound
    )


@asynccontextmanager
async def open_simulator(
    config: SimulatorConfig | None = None,
    *,
    listen: bool = False,
    host: str = "127.0.0.1",
    port: int = 0,
    frame_log: FrameLog | None = None,
) -> AsyncIterator[Simulator]:
    """Run a simulator for the duration of the block.

    With ``listen`` it also serves TCP on ``host:port`` (0: a free port); either
    way :meth:`Simulator.open_stream` connects in memory. On leaving the block
    every call ends (``server``) and every connection closes, within a bound.

    Raises:
        OSError: the port cannot be bound; TLS files cannot be read.
        ssl.SSLError: the TLS files are not valid.
    """
    config = config if config is not None else SimulatorConfig()
    ssl_context = config.server_ssl_context()
    listeners = await trio.open_tcp_listeners(port, host=host) if listen else []
    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            sim = Simulator(config, nursery, ssl_context=ssl_context, frame_log=frame_log)
            try:
                if listeners:
                    await sim._listen(listeners, host)
                yield sim
            except BaseException as exc:
                body_error = exc  # the caller's own exception: keep it out of the group
            finally:
                await sim.aclose()
                nursery.cancel_scope.cancel()
    finally:
        for listener in listeners:
            await trio.aclose_forcefully(listener)
    if body_error is not None:
        raise body_error


async def serve_simulator(
    config: SimulatorConfig | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    listen: bool = True,
    frame_log: FrameLog | None = None,
    task_status: trio.TaskStatus[Simulator] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Run a simulator until cancelled: ``sim = await nursery.start(serve_simulator, config)``.

    Raises:
        OSError: the port cannot be bound; TLS files cannot be read.
    """
    async with open_simulator(
        config, listen=listen, host=host, port=port, frame_log=frame_log
    ) as sim:
        task_status.started(sim)
        await trio.sleep_forever()
