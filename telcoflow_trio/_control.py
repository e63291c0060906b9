"""The control connection: connect, set up, read, heartbeat, reconnect, claim calls.

:meth:`ControlConnection.run` is the supervisor. Each connection goes:

1. open the WebSocket to ``{base_url}/v1/agent/session-manager`` with the auth
   headers (or the mTLS context), the whole opening bounded by
   ``connect_timeout``;
2. send ``setup`` and wait for ``setup.done`` (``setup_timeout``); only then is
   the backoff reset;
3. run the reader and the heartbeat (a ping with a unique payload every
   ``heartbeat_interval``, dead after ``heartbeat_timeout`` without its pong).

When a connection fails, requests in flight fail at once, and the supervisor
waits as the backoff policy says and reconnects. Authentication rejected ends
the supervisor with :class:`~telcoflow_trio.exceptions.WSSAuthenticationError`,
never retried; so does a first connection that fails, and a backoff policy that
gives up (:class:`~telcoflow_trio.exceptions.WSSConnectionError`).

Incoming calls are claimed with ``session.open`` and ``session.ready``, after
the delay the client's claim policy asks for (a claim whose session closes or
arrives meanwhile is dropped); a ``SESSION_BUSY`` answer means another worker
took the call and is skipped quietly. Calls live on their own media
connections and are not touched by a control reconnect.

The server forgets a connection's ``call_flow.setup`` when it drops, so the
last one accepted (:attr:`ControlConnection.call_flow`) is sent again on every
new connection, and claims wait until it is accepted; a refusal fails that
connection (it is retried as the backoff policy says).
"""

from __future__ import annotations

import itertools
import logging
import ssl
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

import attrs
import trio

from . import proto
from ._logging import call_context
from ._reply import Reply
from ._throttle import ThrottledLog
from .config import TelcoflowClientConfig
from .exceptions import (
    RemoteProtocolError,
    WSSAuthenticationError,
    WSSConnectionClosed,
    WSSConnectionError,
    WSSError,
)
from .ws._streams import StreamOpener
from .ws._transport import ClientWebSocket, open_websocket, redact_url

__all__ = ["ControlConnection", "ControlCounters", "client_ssl_context"]

logger = logging.getLogger(__name__)

#: Claims in flight at once; past this, notifications are left to other workers.
MAX_CLAIMS_IN_FLIGHT: Final = 1000

#: Control error codes meaning "this session is not ours to take" (quiet skip).
_NOT_OURS: Final = frozenset({"SESSION_BUSY", "SESSION_CLOSED", "SESSION_NOT_FOUND"})


def client_ssl_context(config: TelcoflowClientConfig) -> ssl.SSLContext | None:
    """The config's TLS context (``None``: plain ``ws://``).

    Raises:
        WSSAuthenticationError: a certificate, key or CA file cannot be loaded
            (its name is not in the message).
    """
    try:
        return config.ssl_context()
    except (OSError, ssl.SSLError) as exc:
        raise WSSAuthenticationError(
            f"could not load the client certificate or CA file: {type(exc).__name__}"
        ) from exc


@attrs.define
class ControlCounters:
    """Running totals of the control plane (mutable; copied into statistics)."""

    connects: int = 0
    reconnects: int = 0
    notifications: int = 0
    sessions_claimed: int = 0
    sessions_busy: int = 0
    pings: int = 0
    malformed_frames: int = 0
    #: From ``session.notify`` to the ``call.in`` of a claimed session.
    claim_latency: proto.LatencyHistogram = attrs.Factory(proto.LatencyHistogram)


@attrs.define
class _Claim:
    """A claim in flight: from ``session.notify`` until ``call.in``, closed or given up."""

    notified_at: float
    #: Set when the session's ``call.in`` or ``session.closed`` arrives.
    settled: trio.Event = attrs.Factory(trio.Event)
    #: ``session.open`` is (about to be) sent: it counts as a call for ``max_calls``.
    opening: bool = False


class ControlConnection:
    """The client's connection to the session manager, kept alive by :meth:`run`.

    Args:
        config: the client's settings.
        open_stream: how to open the byte stream under the WebSocket.
        random_source: floats in ``[0, 1)`` for the backoff jitter.
        counters: where to count what happens.
        should_claim: whether to claim the call of a ``session.notify`` (asked
            again after a claim delay).
        claim_delay: seconds to wait before claiming a newly notified session.
        on_claim_done: a claim ended (won, refused, dropped), unless cancelled.
        on_call_in: a claimed session's call arrived.
        on_session_closed: the server closed a session.
        on_connected: a connection was set up (``True`` for a reconnection).
        on_wa_notify: a WhatsApp session is offered (``session.notify``, channel WA).
        on_wa_message: a ``wa.msg.in`` arrived.
    """

    def __init__(
        self,
        config: TelcoflowClientConfig,
        *,
        open_stream: StreamOpener,
        random_source: Callable[[], float],
        counters: ControlCounters,
        should_claim: Callable[[proto.SessionNotify], bool],
        on_call_in: Callable[[proto.CallIn], None],
        on_session_closed: Callable[[proto.SessionClosed], None],
        claim_delay: Callable[[], float],
        on_claim_done: Callable[[], None],
        on_connected: Callable[[bool], None] = lambda reconnect: None,
        on_wa_notify: Callable[[proto.SessionNotify], None] = lambda frame: None,
        on_wa_message: Callable[[proto.WaMsgIn], None] = lambda frame: None,
    ) -> None:
        self._config = config
        self._open_stream = open_stream
        self._backoff = proto.Backoff(config.reconnect, random_source)
        self.counters = counters
        self._should_claim = should_claim
        self._claim_delay = claim_delay
        self._on_claim_done = on_claim_done
        self._on_call_in = on_call_in
        self._on_session_closed = on_session_closed
        self._on_connected = on_connected
        self._on_wa_notify = on_wa_notify
        self._on_wa_message = on_wa_message
        self._ws: ClientWebSocket | None = None
        self._nursery: trio.Nursery | None = None
        self._requests: dict[str, Reply[proto.Response]] = {}
        self._claims: dict[str, _Claim] = {}
        #: Claims that sent (or are sending) ``session.open``, call not arrived yet.
        self.claims_opening = 0
        self._ping_ids = itertools.count(1)
        self._log_malformed = ThrottledLog(logger, logging.ERROR)
        self._state_lot = trio.lowlevel.ParkingLot()
        self._run_scope = trio.CancelScope()
        self._stopping = False
        #: Whether a connection is set up (``setup.done`` received) right now.
        self.connected = False
        #: Whether :meth:`run` has reported ready (the first setup succeeded).
        self.started = False
        #: Set when :meth:`run` has ended; ``failure`` says why, if it failed.
        self.stopped = False
        self.failure: WSSError | None = None
        #: The ``smWsId`` of the current connection.
        self.sm_ws_id: str | None = None
        #: The TLS context of the latest connection (``None``: plain ``ws://``);
        #: the calls' media connections share it instead of loading the CA file
        #: and certificate again per call.
        self.ssl_context: ssl.SSLContext | None = None
        #: The call flow to restore on each new connection (``req_id`` unused).
        self.call_flow: proto.CallFlowSetup | None = None
        self._flow_restored = trio.Event()

    async def wait_connected(self) -> None:
        """Wait until a connection is set up.

        Raises:
            WSSError: the supervisor failed for good (its ``failure``), or
                :class:`~telcoflow_trio.exceptions.WSSConnectionError` if it was
                stopped.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self.connected:
            if self.stopped:
                raise self.failure or WSSConnectionError("the control connection was closed")
            await self._state_lot.park()

    async def wait_lost(self) -> None:
        """Wait until the connection set up now is lost (at once if there is none)."""
        await trio.lowlevel.checkpoint()
        ws = self._ws
        while ws is not None and self._ws is ws:
            await self._state_lot.park()

    # -- supervisor ------------------------------------------------------------------

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Connect, report ready after the first ``setup.done``, then stay connected.

        Runs until cancelled.

        Raises:
            WSSAuthenticationError: credentials rejected (first or later connection).
            WSSConnectionError: the first connection failed, or the backoff policy
                gave up reconnecting.
        """

        def ready() -> None:
            reconnect = self.started
            if reconnect:
                self.counters.reconnects += 1
            else:
                self.started = True
                task_status.started()
            self._on_connected(reconnect)

        try:
            with self._run_scope:
                await self._supervise(ready)
            if not self.started:
                raise WSSConnectionError("the control connection was stopped while opening")
        except WSSError as exc:
            self.failure = exc
            raise
        finally:
            self.stopped = True
            self._state_lot.unpark_all()

    def stop(self) -> None:
        """Make :meth:`run` return, closing the connection with a proper handshake."""
        self._stopping = True
        if self._nursery is not None:
            self._nursery.cancel_scope.cancel()
        else:
            self._run_scope.cancel()

    async def _supervise(self, ready: Callable[[], None]) -> None:
        url = redact_url(self._config.control_url)
        while True:
            try:
                await self._serve_one(ready)
                return  # stopped
            except WSSAuthenticationError as exc:
                logger.error("control connection to %s: authentication rejected: %s", url, exc)
                raise
            except WSSError as exc:
                if not self.started:
                    logger.error("control connection to %s failed: %s", url, exc)
                    raise
                error = exc
            delay = self._backoff.next_delay(trio.current_time())
            if delay is None:
                logger.error("control connection to %s: giving up reconnecting", url)
                raise WSSConnectionError(
                    f"could not reconnect to {url} after {self._backoff.attempt} attempts: {error}"
                ) from error
            logger.warning(
                "control connection to %s lost (%s); reconnecting in %.2f s (attempt %d)",
                url,
                error,
                delay,
                self._backoff.attempt,
            )
            await trio.sleep(delay)

    async def _serve_one(self, ready: Callable[[], None]) -> None:
        """One connection, from opening to failure (raises) or :meth:`stop` (returns)."""
        config = self._config
        ssl_context = self.ssl_context = client_ssl_context(config)
        async with open_websocket(
            config.control_url,
            headers=config.auth_headers(),
            ssl_context=ssl_context,
            open_stream=self._open_stream,
            connect_timeout=config.connect_timeout,
            close_timeout=config.close_timeout,
            max_message_size=config.max_message_size,
            transport=config.transport,
        ) as ws:
            try:
                await ws.send_message(
                    proto.Setup(config.sample_rate, str(config.audio_mode)).encode()
                )
                done: proto.SetupDone | None = None
                with trio.move_on_after(config.setup_timeout):
                    done = await self._wait_setup_done(ws)
                if done is None:
                    raise WSSConnectionError(f"no setup.done within {config.setup_timeout:g} s")
                self._backoff.reset()
                self.sm_ws_id = done.sm_ws_id
                self.counters.connects += 1
                self._ws = ws
                self.connected = True
                self._state_lot.unpark_all()
                logger.info(
                    "control connection to %s set up (smWsId %s)",
                    redact_url(config.control_url),
                    done.sm_ws_id,
                )
                ready()
                failure: list[WSSError] = []
                self._flow_restored = trio.Event()
                if self.call_flow is None:
                    self._flow_restored.set()
                async with trio.open_nursery() as nursery:
                    self._nursery = nursery
                    if self.call_flow is not None:
                        nursery.start_soon(self._restore_call_flow, self.call_flow, failure)
                    nursery.start_soon(self._watch, self._read, ws, failure, nursery.cancel_scope)
                    nursery.start_soon(
                        self._watch, self._heartbeat, ws, failure, nursery.cancel_scope
                    )
                if self._stopping:
                    return
                raise failure[0] if failure else WSSConnectionError("control connection ended")
            finally:
                self._lost()

    def _lost(self) -> None:
        self._ws = None
        self._nursery = None
        self.connected = False
        self._state_lot.unpark_all()  # wake wait_lost()
        error = WSSConnectionError("the control connection was lost")
        for slot in self._requests.values():
            slot.error = error
            slot.event.set()
        self._requests.clear()

    async def _restore_call_flow(self, flow: proto.CallFlowSetup, failure: list[WSSError]) -> None:
        """Send ``flow`` again on a new connection; then claims may go on."""
        try:
            response = await self.request(lambda req_id: attrs.evolve(flow, req_id=req_id))
            error = proto.request_error(response, "call_flow.setup")
        except WSSConnectionError as exc:
            error = exc
        if error is not None:
            failure.append(WSSConnectionError(f"could not restore the call flow: {error}"))
            if self._nursery is not None:
                self._nursery.cancel_scope.cancel()
            return
        logger.debug("control: call flow restored (inboundCall %s)", flow.inbound_call)
        self._flow_restored.set()

    @staticmethod
    async def _watch(
        fn: Callable[[ClientWebSocket], Awaitable[None]],
        ws: ClientWebSocket,
        failure: list[WSSError],
        scope: trio.CancelScope,
    ) -> None:
        try:
            await fn(ws)
        except WSSError as exc:
            failure.append(exc)
        scope.cancel()

    async def _wait_setup_done(self, ws: ClientWebSocket) -> proto.SetupDone:
        while True:
            frame = self._decode(await ws.get_message())
            if isinstance(frame, proto.SetupDone):
                return frame
            if frame is not None:
                logger.debug("control: ignoring %s before setup.done", type(frame).__name__)

    def _decode(self, message: str | bytes) -> proto.ControlFrame | None:
        try:
            return proto.decode_control(message, max_size=self._config.max_message_size)
        except RemoteProtocolError as exc:
            self.counters.malformed_frames += 1
            self._log_malformed("control: ignoring a malformed frame: %s", exc)
            return None

    # -- reader and heartbeat -------------------------------------------------------------

    async def _read(self, ws: ClientWebSocket) -> None:
        while True:
            frame = self._decode(await ws.get_message())
            if frame is None:
                continue
            if isinstance(frame, proto.Response):
                slot = self._requests.pop(frame.req_id, None)
                if slot is None:
                    logger.debug("control: response to unknown request %s", frame.req_id)
                else:
                    slot.response = frame
                    slot.event.set()
            elif isinstance(frame, proto.SessionNotify):
                self._notified(frame)
            elif isinstance(frame, proto.CallIn):
                with call_context(frame.call_id):
                    self._call_in(frame)
            elif isinstance(frame, proto.SessionClosed):
                logger.debug("control: session.closed %s (%s)", frame.session_id, frame.reason)
                self._settle(frame.session_id)
                self._on_session_closed(frame)
            elif isinstance(frame, proto.WaMsgIn):
                self._on_wa_message(frame)
            else:
                logger.debug("control: ignoring %s", type(frame).__name__)

    def _call_in(self, frame: proto.CallIn) -> None:
        logger.debug("control: call.in %s (session %s)", frame.call_id, frame.session_id)
        claim = self._settle(frame.session_id)
        if claim is not None:
            latency = trio.current_time() - claim.notified_at
            self.counters.claim_latency = self.counters.claim_latency.observe(latency)
        self._on_call_in(frame)

    async def _heartbeat(self, ws: ClientWebSocket) -> None:
        interval = self._config.heartbeat_interval
        timeout = self._config.heartbeat_timeout
        while True:
            await trio.sleep(interval)
            self.counters.pings += 1
            # Unique payloads: a ping abandoned on timeout stays registered
            # in trio-websocket until some later pong, so never reuse one.
            payload = b"hb-%d" % next(self._ping_ids)
            with trio.move_on_after(timeout) as scope:
                await ws.ping(payload)
            if scope.cancelled_caught:
                raise WSSConnectionError(f"no pong within {timeout:g} s; the connection is dead")

    # -- requests and claims ------------------------------------------------------------

    async def request(self, build: Callable[[str], proto.ControlFrame]) -> proto.Response:
        """Send the frame ``build(req_id)`` and wait for its ``response``.

        Raises:
            WSSConnectionError: not connected, the connection dropped while
                waiting (at once, not after the timeout), or no response within
                ``request_timeout``.
        """
        ws = self._ws
        if ws is None:
            raise WSSConnectionError("the control connection is not open")
        req_id = str(uuid.uuid4())
        frame = build(req_id)
        slot = self._requests[req_id] = Reply[proto.Response]()
        try:
            logger.debug("control: sending %s", type(frame).__name__)
            try:
                await ws.send_message(frame.encode())
            except WSSConnectionClosed as exc:
                raise WSSConnectionError(f"could not send {type(frame).__name__}: {exc}") from exc
            timeout = self._config.request_timeout
            with trio.move_on_after(timeout):
                await slot.event.wait()
            if slot.error is not None:
                raise slot.error
            if slot.response is None:
                raise WSSConnectionError(
                    f"no response to {type(frame).__name__} within {timeout:g} s"
                )
            return slot.response
        finally:
            self._requests.pop(req_id, None)

    async def send(self, frame: proto.ControlFrame) -> None:
        """Send ``frame``, which has no reply.

        Raises:
            WSSConnectionError: not connected, or the connection is closed.
        """
        ws = self._ws
        if ws is None:
            raise WSSConnectionError("the control connection is not open")
        try:
            await ws.send_message(frame.encode())
        except WSSConnectionClosed as exc:
            raise WSSConnectionError(f"could not send {type(frame).__name__}: {exc}") from exc

    @property
    def claims_in_flight(self) -> int:
        """Sessions notified and being claimed (delayed or opening)."""
        return len(self._claims)

    def _notified(self, frame: proto.SessionNotify) -> None:
        if frame.channel == "WA":
            self._on_wa_notify(frame)
            return
        self.counters.notifications += 1
        self.notified(frame)

    def notified(self, frame: proto.SessionNotify) -> None:
        """Claim the session of ``frame`` if ``should_claim`` says so (no-op if offline)."""
        session_id = frame.session_id
        if frame.channel != "TELCO":
            logger.debug("control: ignoring %s session %s", frame.channel, session_id)
            return
        if session_id in self._claims or not self._should_claim(frame):
            logger.debug("control: not claiming session %s", session_id)
            return
        if self._nursery is None:
            return
        if len(self._claims) >= MAX_CLAIMS_IN_FLIGHT:
            logger.warning(
                "control: %d claims in flight; leaving session %s to other workers",
                len(self._claims),
                session_id,
            )
            return
        delay = self._claim_delay()  # the load before this claim
        claim = self._claims[session_id] = _Claim(trio.current_time())
        if delay <= 0:
            self._opening(claim)  # counted for max_calls at once, before the next notify
        self._nursery.start_soon(self._claim, frame, claim, delay)

    def _opening(self, claim: _Claim) -> None:
        claim.opening = True
        self.claims_opening += 1

    def _settle(self, session_id: str, claim: _Claim | None = None) -> _Claim | None:
        """The claim of ``session_id`` (only if it is ``claim``) is over: forget it."""
        found = self._claims.get(session_id)
        if found is None or (claim is not None and found is not claim):
            return None
        del self._claims[session_id]
        found.settled.set()
        if found.opening:
            found.opening = False
            self.claims_opening -= 1
        return found

    async def _claim(self, frame: proto.SessionNotify, claim: _Claim, delay: float) -> None:
        try:
            await self._try_claim(frame, claim, delay)
        finally:
            self._settle(frame.session_id, claim)
        self._on_claim_done()  # not when cancelled: then the connection is going

    async def _try_claim(self, frame: proto.SessionNotify, claim: _Claim, delay: float) -> None:
        session_id = frame.session_id
        if delay > 0:
            with trio.move_on_after(delay):
                await claim.settled.wait()
            if claim.settled.is_set() or self._ws is None or not self._should_claim(frame):
                # Closed, taken by us meanwhile, full or offline (a reconnect
                # brings a new notification): nothing to say.
                logger.debug("session %s: dropping the delayed claim", session_id)
                return
            self._opening(claim)
        if not self._flow_restored.is_set():
            await self._flow_restored.wait()  # the server must know our call flow first
            if not self._should_claim(frame):
                return
        try:
            response = await self.request(lambda req_id: proto.SessionOpen(session_id, req_id))
        except WSSConnectionError as exc:
            logger.warning("session %s: could not claim it: %s", session_id, exc)
            return
        if not response.ok:
            code = response.error_code
            if code == "SESSION_BUSY":
                self.counters.sessions_busy += 1
            if code in _NOT_OURS:
                logger.debug("session %s: not ours (%s); skipping", session_id, code)
            else:
                logger.warning("session %s: session.open refused: %s", session_id, code)
            return
        ws = self._ws
        if ws is None:
            return
        try:
            await ws.send_message(proto.SessionReady(session_id).encode())
        except WSSConnectionClosed:
            return
        self.counters.sessions_claimed += 1
        # The call is ours now (no other worker gets it), so the claim keeps
        # counting as load until its call.in or close; without either, a
        # platform fault, it stops at request_timeout (docs: concepts, scaling out).
        timeout = self._config.request_timeout
        with trio.move_on_after(timeout):
            await claim.settled.wait()
        if not claim.settled.is_set():
            logger.warning(
                "session %s: no call.in within %g s of session.ready", session_id, timeout
            )
