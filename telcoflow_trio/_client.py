"""The public :class:`TelcoflowClient`.

``async with TelcoflowClient(config) as client:`` opens the client's nursery
and connects. The nursery holds the control supervisor and a nursery of calls;
each call is its own task (see :mod:`telcoflow_trio._call`). Leaving the block
stops taking calls, closes the calls in progress (each bounded by
``close_timeout``) and closes the control connection.

Errors: a failure in the client's own background work surfaces as one
:class:`~telcoflow_trio.exceptions.WSSError` raised ``from`` the exception
group; your exception from the ``async with`` body propagates unchanged;
exceptions of your ``INCOMING_CALL`` and call-event handlers are logged with
the call id and passed to ``on_handler_error``, and end only that call.
"""

from __future__ import annotations

import logging
import random
import re
from collections.abc import AsyncIterator, Callable, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar, final

import attrs
import trio

from . import proto
from ._call import ActiveCall, ErrorHook
from ._control import ControlConnection, ControlCounters
from ._logging import call_context
from ._media import MediaCounters
from ._offer import CallOffer
from ._rest import RestClient
from ._session import Session, SessionRegistry, check_channel
from .config import TelcoflowClientConfig
from .events import ChannelType, ClientEvent, InboundCallMode
from .exceptions import (
    WSSCallClosedError,
    WSSCallError,
    WSSCallNotAnswered,
    WSSConnectionError,
    WSSError,
    WSSMediaError,
    WSSSessionAlreadyExists,
    WSSSessionError,
    refusal,
)
from .ws._streams import StreamOpener, open_tcp

__all__ = ["ClientStatistics", "TelcoflowClient"]

logger = logging.getLogger(__name__)

_Handler = TypeVar("_Handler", bound=Callable[..., Any])

#: Notifications kept to claim later: while no INCOMING_CALL handler is
#: registered, or while the client is at ``max_calls``.
_UNCLAIMED_KEPT = 64
#: Outbound sessions given up before their answer, kept so that a late
#: ``call.in`` for one is hung up at once instead of taken as an inbound call.
_ABANDONED_KEPT = 64
#: A number to call: E.164-like, an optional ``+`` and 3 to 15 digits.
_REMOTE_ADDRESS = re.compile(r"\+?[0-9]{3,15}")


@attrs.define
class _Dialing:
    """An outbound call from ``session.create`` until the application holds it."""

    remote_address: str
    #: The platform's session, once ``session.create`` succeeded.
    session_id: str | None = None
    #: The claim (create, open, ready) is over: done, or failed with ``error``.
    claimed: trio.Event = attrs.Factory(trio.Event)
    error: Exception | None = None
    #: ``call.in`` came (``call`` is set), the session closed (``closed_reason``), or
    #: the control connection was lost.
    arrived: trio.Event = attrs.Factory(trio.Event)
    call: ActiveCall | None = None
    closed_reason: str | None = None
    #: The call's media connected (its task holds it), or it ended first.
    connected: trio.Event = attrs.Factory(trio.Event)
    #: The application is done with the call: its task closes it.
    released: trio.Event = attrs.Factory(trio.Event)
    #: The call's task has ended.
    done: trio.Event = attrs.Factory(trio.Event)


@attrs.frozen(kw_only=True)
class ClientStatistics:
    """A snapshot of the client's counters (totals count since the client was made).

    Attributes:
        connected: the control connection is set up right now.
        claiming: the client takes new calls: connected, an ``INCOMING_CALL``
            handler registered, not closing or disconnected, below ``max_calls``.
        calls_active: calls whose task is running.
        calls_total: calls received (``call.in``), outbound ones included, or adopted
            (:meth:`TelcoflowClient.adopt_call`; not one cancelled while its media opened).
        calls_outbound: outbound calls the platform accepted (``session.create``).
        calls_outbound_unanswered: of those, calls that ended or were given up
            before the callee answered.
        calls_failed: calls whose media connection could not be opened.
        calls_ended: ended calls by :class:`~telcoflow_trio.TerminationReason`
            value (only reasons that occurred appear).
        reconnects: control reconnections after a successful first connection.
        connects: control connections set up, the first included.
        notifications: ``session.notify`` frames received (calls offered).
        sessions_claimed: sessions this client won (``session.ready`` sent).
        sessions_busy: claims lost to another worker (``SESSION_BUSY``).
        sessions_full: notifications not claimed at once because the client was
            at ``max_calls`` (active calls plus claims in flight); the latest are
            kept and tried again, newest first, when a call ends.
        claims_in_flight: sessions notified and being claimed right now.
        claim_latency: from ``session.notify`` to ``call.in``, of won claims.
        loop_lag: how late the event loop runs, in seconds (the load-aware
            claim policy's measure, a decaying peak; 0 under first-come).
        handler_errors: exceptions raised by your handlers (``INCOMING_MESSAGE`` too).
        audio_frames_sent, audio_bytes_sent: agent audio sent, all calls.
        audio_frames_received, audio_bytes_received: caller audio received, all calls.
        send_buffer_bytes: agent audio queued for sending, summed over active calls.
    """

    connected: bool
    calls_active: int
    calls_total: int
    calls_outbound: int
    calls_outbound_unanswered: int
    calls_failed: int
    reconnects: int
    connects: int
    notifications: int
    sessions_claimed: int
    sessions_busy: int
    handler_errors: int
    pings: int
    malformed_frames: int
    claiming: bool
    calls_ended: Mapping[str, int]
    sessions_full: int
    claims_in_flight: int
    claim_latency: proto.LatencyHistogram
    loop_lag: float
    audio_frames_sent: int
    audio_bytes_sent: int
    audio_frames_received: int
    audio_bytes_received: int
    send_buffer_bytes: int


@final
class TelcoflowClient:
    """A Telcoflow agent: receives calls and runs your handler for each.

    Args:
        config: credentials, URL, audio format and timeouts.
        open_stream: how to open the byte stream under each WebSocket (default:
            TCP plus TLS when needed); the simulator and tests pass an in-memory
            one.
        random_source: floats in ``[0, 1)`` for reconnect jitter (pass a seeded
            ``random.Random(...).random`` for reproducible delays).
        on_handler_error: called with the call and the exception whenever one of
            your handlers raises (sync or async); it is also logged.

    Use it as an async context manager, which connects::

        async with TelcoflowClient(config) as client:
            @client.on(events.INCOMING_CALL)
            async def on_call(call): ...

            await client.run_forever()

    The context manager must be entered and exited in the same task.
    """

    def __init__(
        self,
        config: TelcoflowClientConfig,
        *,
        open_stream: StreamOpener | None = None,
        random_source: Callable[[], float] | None = None,
        on_handler_error: ErrorHook | None = None,
    ) -> None:
        self._config = config
        self._open_stream = open_stream or open_tcp
        self._random = random_source or random.random
        self._on_handler_error = on_handler_error
        self._incoming: Callable[[ActiveCall], object] | None = None
        self._offered: Callable[[CallOffer], object] | None = None
        self._counters = ControlCounters()
        self._calls: dict[str, ActiveCall] = {}
        self._by_session: dict[str, ActiveCall] = {}
        self._unclaimed: dict[str, proto.SessionNotify] = {}
        self._calls_total = 0
        self._calls_outbound = 0
        self._calls_outbound_unanswered = 0
        self._dialing: dict[str, _Dialing] = {}
        self._abandoned: dict[str, None] = {}
        self._calls_failed = 0
        self._handler_errors_done = 0  # handler errors of calls that have finished
        self._media_done = MediaCounters()  # audio totals of calls that have finished
        self._calls_ended: dict[str, int] = {}
        self._sessions_full = 0
        self._lag = proto.LagMeter()
        self._calls_changed = trio.lowlevel.ParkingLot()
        self._lifetime_cm: AbstractAsyncContextManager[TelcoflowClient] | None = None
        self._nursery: trio.Nursery | None = None
        self._background_scope = trio.CancelScope(shield=True)
        self._calls_nursery: trio.Nursery | None = None
        self._closing = False
        self._control: ControlConnection | None = None
        self._control_scope: trio.CancelScope | None = None
        self._control_done = trio.Event()
        self._control_done.set()
        self._failure: WSSError | None = None
        self._disconnected = False
        self._rest = RestClient(config, self._open_stream)
        self._wa = SessionRegistry(config, self._rest, lambda: self._control)
        self._call_flow: proto.CallFlowSetup | None = None

    # -- lifetime --------------------------------------------------------------------

    async def __aenter__(self) -> TelcoflowClient:
        if self._lifetime_cm is not None:
            raise RuntimeError("this TelcoflowClient is already open")
        self._background_scope = trio.CancelScope(shield=True)
        cm = self._lifetime()
        result = await cm.__aenter__()
        self._lifetime_cm = cm
        return result

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> bool | None:
        cm, self._lifetime_cm = self._lifetime_cm, None
        assert cm is not None
        return await cm.__aexit__(exc_type, exc, tb)

    @asynccontextmanager
    async def _lifetime(self) -> AsyncIterator[TelcoflowClient]:
        body_error: BaseException | None = None
        self._closing = False
        try:
            async with trio.open_nursery() as nursery:
                try:
                    # In the try, so that a cancellation landing here still ends the
                    # shielded background task. Not nursery.start(): trio leaves a task
                    # whose start() was cancelled where it is, and start() would wait
                    # for ever for a shielded one.
                    background_started = trio.Event()
                    nursery.start_soon(self._run_background, background_started)
                    await background_started.wait()
                    assert self._nursery is not None
                    self._wa.nursery = self._nursery
                    self._rest.open()
                    self._calls_nursery = await self._nursery.start(self._hold_calls_nursery)
                    if self._config.claim_policy.load_aware:
                        self._nursery.start_soon(self._measure_lag)
                    await self.connect()
                    yield self
                except BaseException as exc:
                    body_error = exc
                finally:
                    try:
                        await self._shutdown()
                    finally:
                        self._background_scope.cancel()
                        nursery.cancel_scope.cancel()
        except BaseExceptionGroup as group:
            real = group.split(trio.Cancelled)[1]
            if real is None or real.subgroup((KeyboardInterrupt, SystemExit)) is not None:
                raise
            leaves = _leaves(real)
            if len(leaves) == 1 and isinstance(leaves[0], WSSError):
                raise leaves[0] from group
            raise WSSError(f"the client failed in the background: {leaves[0]!r}") from group
        finally:
            self._nursery = self._calls_nursery = None
        if body_error is not None:
            raise body_error

    async def _run_background(self, started: trio.Event) -> None:
        # Shielded: a cancellation from outside reaches the connections and
        # calls only through _shutdown(), which closes them properly (a socket
        # whose reader task was cancelled cannot finish its close handshake).
        with self._background_scope:
            async with trio.open_nursery() as background:
                self._nursery = background
                started.set()
                await trio.sleep_forever()

    async def _hold_calls_nursery(self, *, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        async with trio.open_nursery() as calls:
            task_status.started(calls)
            await trio.sleep_forever()

    async def _measure_lag(self) -> None:
        """Feed the lag meter: a timer that should wake every ``lag_interval``."""
        interval = self._config.claim_policy.lag_interval
        while True:
            due = trio.current_time() + interval
            await trio.sleep_until(due)
            self._lag.tick(due, trio.current_time())

    async def _shutdown(self) -> None:
        self._closing = True
        if self._control is not None:
            self._control.stop()
        for call in list(self._calls.values()):
            call._shutdown()
        self._wa.shutdown()
        # Bounded, and shielded so it also runs when we are being cancelled.
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + 2 * self._config.close_timeout
            await self._rest.aclose()
            await self._wait_no_calls()
            await self._control_done.wait()

    async def _wait_no_calls(self) -> None:
        while self._calls:
            await self._calls_changed.park()

    # -- connection ----------------------------------------------------------------------

    async def connect(self) -> None:
        """Open the control connection and wait until it is set up.

        Does nothing if it is already open (waits if it is reconnecting). The
        ``async with`` block calls this for you. Once connected, a lost
        connection is reconnected automatically.

        Raises:
            WSSAuthenticationError: the credentials were rejected.
            WSSConnectionError: the connection could not be opened or set up.
            RuntimeError: outside ``async with client``.
        """
        nursery = self._nursery
        if nursery is None or self._closing:
            raise RuntimeError("use `async with TelcoflowClient(config) as client:` first")
        if self._control is not None:
            await self._control.wait_connected()
            return
        self._failure = None
        self._disconnected = False
        self._control = ControlConnection(
            self._config,
            open_stream=self._open_stream,
            random_source=self._random,
            counters=self._counters,
            should_claim=self._should_claim,
            claim_delay=self._claim_delay,
            on_claim_done=self._reoffer,
            on_call_in=self._call_arrived,
            on_session_closed=self._session_closed,
            on_connected=self._wa.connected,
            on_wa_notify=self._wa.notified,
            on_wa_message=self._wa.message,
        )
        self._control.call_flow = self._call_flow
        self._control_done = trio.Event()
        try:
            await nursery.start(self._run_control, self._control)
        except BaseException:
            self._control = None
            raise

    async def _run_control(
        self, control: ControlConnection, *, task_status: trio.TaskStatus[None]
    ) -> None:
        try:
            with trio.CancelScope() as scope:
                self._control_scope = scope
                await control.run(task_status=task_status)
        except WSSError as exc:
            if not control.started:
                raise
            self._failure = exc  # run_forever() raises it
        finally:
            self._control_scope = None
            self._control = None
            self._control_done.set()

    async def disconnect(self) -> None:
        """Close the control connection: no new calls. Calls in progress go on.

        ``run_forever()`` then returns once the calls in progress have ended.
        """
        self._disconnected = True
        if self._control is not None:
            self._control.stop()
        with trio.move_on_after(2 * self._config.close_timeout):
            await self._control_done.wait()
            return
        if self._control_scope is not None:
            self._control_scope.cancel()
        await self._control_done.wait()

    async def wait_connected(self) -> None:
        """Wait until the control connection is set up (again, after a drop).

        Raises:
            WSSAuthenticationError, WSSConnectionError: the connection failed for
                good, or it is not open (never connected, or disconnected).
        """
        control = self._control
        if control is None:
            if self._failure is not None:
                raise self._failure
            raise WSSConnectionError("the client is not connected; call connect()")
        await control.wait_connected()

    async def run_forever(self) -> None:
        """Serve calls until the client is closed.

        Returns after :meth:`disconnect` once the calls in progress have ended.
        Outside ``async with`` it opens and closes the client itself.

        Raises:
            WSSAuthenticationError: the credentials were rejected (not retried).
            WSSConnectionError: the connection failed and the backoff policy
                gave up.
        """
        if self._nursery is None:
            async with self:
                await self.run_forever()
            return
        if self._control is None and not self._disconnected:
            await self.connect()
        while True:
            await self._control_done.wait()
            if self._failure is not None:
                raise self._failure
            if self._control is None:
                break
        await self._wait_no_calls()

    async def setup_call_flow(
        self,
        *,
        inbound_call: InboundCallMode | str = InboundCallMode.NO,
        outbound_call: bool = False,
        inbound_message: bool = False,
        outbound_message: bool = False,
    ) -> None:
        """Tell the platform which traffic this connection takes (``call_flow.setup``).

        The arguments and their defaults (everything off) are those of telcoflow
        1.0.0's ``CallFlowConfig``: ``inbound_call`` says which inbound calls
        are offered (``ALL``, ``MISSED_ONLY``: only calls no ``ALL`` connection
        took, ``NO``: none, and the client then claims none); the flags allow
        placing calls and receiving or sending messages. Without a call flow
        the platform applies its default (the simulator: everything on).

        Unlike 1.0.0 the client keeps the accepted flow and sends it again on
        every reconnection before it claims any call (the server forgets it).
        Cancelled, or the connection lost, while waiting for the answer, the
        server may have applied it or not: the client keeps the previous flow
        (restored on a reconnect), so call it again.

        Raises:
            ValueError: ``inbound_call`` is not one of ALL, MISSED_ONLY, NO.
            TypeError: a flag is not a bool.
            WSSConnectionError: not connected, or the connection dropped.
            WSSRequestError: the server refused the flow; the subclass names
                the code (e.g. :class:`~telcoflow_trio.exceptions.WSSInvalidRequest`)
                and the message carries the server's. The previous flow stays.
        """
        try:
            mode = InboundCallMode(inbound_call)
        except ValueError:
            allowed = ", ".join(m.value for m in InboundCallMode)
            raise ValueError(
                f"inbound_call must be one of {allowed}; got {inbound_call!r}"
            ) from None
        flags = {
            "outbound_call": outbound_call,
            "inbound_message": inbound_message,
            "outbound_message": outbound_message,
        }
        for name, value in flags.items():
            if not isinstance(value, bool):
                raise TypeError(f"{name} must be a bool, got {type(value).__name__}")
        control = self._control
        if control is None:
            raise WSSConnectionError("the client is not connected; call connect()")
        flow = proto.CallFlowSetup(str(mode), outbound_call, inbound_message, outbound_message, "")
        response = await control.request(lambda req_id: attrs.evolve(flow, req_id=req_id))
        error = proto.request_error(response, "call_flow.setup")
        if error is not None:
            raise error
        self._call_flow = control.call_flow = flow
        logger.info(
            "call flow set: inbound calls %s, outbound calls %s, messages in %s / out %s",
            mode,
            outbound_call,
            inbound_message,
            outbound_message,
        )

    # -- handlers and calls ------------------------------------------------------------

    def on(self, event: ClientEvent | str) -> Callable[[_Handler], _Handler]:
        """Decorator: register the handler of ``events.INCOMING_CALL`` (or ``CALL_OFFERED``,
        ``INCOMING_MESSAGE``).

        The handler gets the :class:`ActiveCall` (media already connected) and
        may be sync or async; the call lasts as long as the handler: when it
        returns or raises, the call is closed. Without a handler the client does
        not claim calls, leaving them to other workers; calls notified before
        the handler is registered are claimed when it is.

        An optional ``CALL_OFFERED`` handler (sync or async) runs first, in the
        call's task, with a :class:`CallOffer` before the media connection
        opens: calling ``offer.to_json()`` hands the call off to another process
        (see :meth:`adopt_call`); returning without it serves the call here.

        ``INCOMING_MESSAGE``: the handler gets each
        :class:`~telcoflow_trio.IncomingMessage` of the WhatsApp sessions the
        platform offers (``session.notify``), which the client claims only
        while there is such a handler (sessions offered before it is
        registered are claimed when it is); messages of one session run one
        after another. Sessions you create yourself deliver to ``session.messages()``.

        Raises:
            ValueError: ``event`` is not a client event, or a handler is already set.
        """
        try:
            key = ClientEvent(event)
        except ValueError:
            allowed = ", ".join(e.value for e in ClientEvent)
            raise ValueError(f"{event!r} is not a client event (one of {allowed})") from None

        def register(handler: _Handler) -> _Handler:
            if key is ClientEvent.CALL_OFFERED:
                if self._offered is not None:
                    raise ValueError(f"a handler for {key} is already registered")
                self._offered = handler
                return handler
            if key is ClientEvent.INCOMING_MESSAGE:
                if self._wa.handler is not None:
                    raise ValueError(f"a handler for {key} is already registered")
                self._wa.set_handler(handler)  # claims the sessions offered until now
                return handler
            if self._incoming is not None:
                raise ValueError(f"a handler for {key} is already registered")
            self._incoming = handler
            self._reoffer()  # calls notified before there was a handler
            return handler

        return register

    async def create_session(self, channel: ChannelType | str, remote_address: str) -> Session:
        """Start a session with ``remote_address`` (``session.create``) and claim it.

        For WA the session is ready for :meth:`Session.send_message` and
        :meth:`Session.messages` when this returns. If the platform already
        has a session with that address (``created: false``) it is claimed and
        returned, with ``session.created`` false.

        Raises:
            ValueError: an unknown channel, or an empty or malformed address.
            WSSChannelNotConfigured, WSSQuotaExceeded, WSSForbidden,
                WSSInvalidRequest, WSSOutboundOverflow: the platform refused
                (its ``error_code`` and message are on the exception).
            WSSSessionBusy: another connection holds the existing session.
            WSSConnectionError: not connected, or no response in time.
        """
        return await self._wa.create(channel, remote_address)

    def get_session(self, session_id: str) -> Session | None:
        """The open session with ``session_id`` that this client holds, or ``None``."""
        return self._wa.get(session_id)

    async def list_sessions(
        self,
        channel: ChannelType | str | None = None,
        remote_address: str | None = None,
        state: str | None = "OPEN",
    ) -> list[proto.SessionInfo]:
        """The connector's sessions (REST ``GET /public/v1/sessions``), filtered.

        Raises:
            ValueError: an unknown channel.
            WSSConnectionError: the request failed or timed out, or the client
                closed meanwhile.
            WSSSessionError, WSSAuthenticationError: the platform refused it.
            RuntimeError: outside ``async with client``.
        """
        kind = None if channel is None else check_channel(channel).value
        return await self._rest.list_sessions(kind, remote_address, state)

    async def close_session(self, session_id: str) -> proto.CloseResult:
        """Close a session by id (REST); ``reason`` ``NOT_FOUND`` if it was gone already.

        Raises:
            ValueError: ``session_id`` is empty.
            WSSConnectionError, WSSSessionError, WSSAuthenticationError,
                RuntimeError: as :meth:`list_sessions`.
        """
        return await self._wa.close(session_id)

    def get_call(self, call_id: str) -> ActiveCall | None:
        """The live call with ``call_id``, or ``None``."""
        call = self._calls.get(call_id)
        return None if call is None or call.terminated else call

    def statistics(self) -> ClientStatistics:
        """A snapshot of the client's counters."""
        c = self._counters
        control = self._control
        audio = attrs.evolve(self._media_done)
        send_buffer = 0
        for call in self._calls.values():
            _add_audio(audio, call._media.counters)
            send_buffer += len(call._media.outgoing)
        return ClientStatistics(
            connected=control is not None and control.connected,
            claiming=control is not None
            and control.connected
            and self._incoming is not None
            and not self._closing
            and not self._disconnected
            and not self._full(),
            calls_active=len(self._calls),
            calls_total=self._calls_total,
            calls_outbound=self._calls_outbound,
            calls_outbound_unanswered=self._calls_outbound_unanswered,
            calls_failed=self._calls_failed,
            reconnects=c.reconnects,
            connects=c.connects,
            notifications=c.notifications,
            sessions_claimed=c.sessions_claimed,
            sessions_busy=c.sessions_busy,
            handler_errors=self._handler_errors_done
            + self._wa.handler_errors
            + sum(call.handler_errors for call in self._calls.values()),
            pings=c.pings,
            malformed_frames=c.malformed_frames,
            calls_ended=dict(self._calls_ended),
            sessions_full=self._sessions_full,
            claims_in_flight=control.claims_in_flight if control is not None else 0,
            claim_latency=c.claim_latency,
            loop_lag=self._lag.lag,
            audio_frames_sent=audio.frames_sent,
            audio_bytes_sent=audio.bytes_sent,
            audio_frames_received=audio.frames_received,
            audio_bytes_received=audio.bytes_received,
            send_buffer_bytes=send_buffer,
        )

    def _full(self) -> bool:
        """At ``max_calls``: active calls plus claims that sent ``session.open``."""
        max_calls = self._config.max_calls
        if max_calls is None:
            return False
        opening = self._control.claims_opening if self._control is not None else 0
        return len(self._calls) + opening >= max_calls

    def _claim_delay(self) -> float:
        control = self._control
        load = len(self._calls) + (control.claims_in_flight if control is not None else 0)
        return self._config.claim_policy.delay(load, self._config.max_calls, self._lag.lag)

    def _keep(self, notify: proto.SessionNotify) -> None:
        """Keep ``notify`` (bounded, newest last) to claim when there is a handler or room."""
        self._unclaimed.pop(notify.session_id, None)
        self._unclaimed[notify.session_id] = notify
        while len(self._unclaimed) > _UNCLAIMED_KEPT:
            del self._unclaimed[next(iter(self._unclaimed))]

    def _reoffer(self) -> None:
        """Claim kept notifications, newest first (the likeliest to still ring), while
        there is room. One another worker took meanwhile is answered SESSION_BUSY,
        one that hung up SESSION_CLOSED: both quietly, and the next is offered."""
        control, max_calls = self._control, self._config.max_calls
        if control is None or self._incoming is None or self._closing or self._disconnected:
            return
        while self._unclaimed:
            if max_calls is not None and len(self._calls) + control.claims_in_flight >= max_calls:
                return
            control.notified(self._unclaimed.popitem()[1])

    def _should_claim(self, notify: proto.SessionNotify) -> bool:
        flow = self._call_flow
        if flow is not None and flow.inbound_call == InboundCallMode.NO:
            logger.debug("call flow takes no inbound calls: not claiming %s", notify.session_id)
            return False
        if self._incoming is None:
            logger.info("no INCOMING_CALL handler yet: not claiming session %s", notify.session_id)
            self._keep(notify)
            return False
        if self._closing:
            return False
        held = self._by_session.get(notify.session_id)
        if held is not None:
            # Re-broadcast after a reconnect. A call on its media connection stays
            # ours; one whose media was not open yet the platform took back (its
            # token revoked, so it fails): claim the session again once it has ended.
            if not held._media.connected:
                self._keep(notify)
            return False
        if self._full():
            self._sessions_full += 1
            logger.debug(
                "at max_calls (%d): leaving session %s to other workers for now",
                self._config.max_calls,
                notify.session_id,
            )
            self._keep(notify)
            return False
        return True

    def _call_arrived(self, call_in: proto.CallIn) -> None:
        handler = self._incoming
        if call_in.call_id in self._calls or call_in.session_id in self._by_session:
            logger.debug("call %s is already being handled; ignoring call.in", call_in.call_id)
            return
        dialing = self._dialing.get(call_in.session_id)
        if dialing is not None or call_in.session_id in self._abandoned:
            self._outbound_arrived(call_in, dialing)
            return
        if handler is None or self._closing or self._calls_nursery is None:
            logger.warning("not taking call %s: the client is closing", call_in.call_id)
            return
        call = self._new_call(call_in, outbound=False)
        self._by_session[call_in.session_id] = call
        self._calls_nursery.start_soon(self._serve_call, call, handler, self._offered)

    def _new_call(self, call_in: proto.CallIn, *, outbound: bool) -> ActiveCall:
        call = ActiveCall(
            call_in,
            self._config,
            open_stream=self._open_stream,
            on_handler_error=self._on_handler_error,
            on_terminated=self._call_ended,
            outbound=outbound,
            # the control connection's: one TLS context per connection, not per call
            ssl_context=self._control.ssl_context if self._control is not None else None,
        )
        self._calls[call.call_id] = call
        self._calls_total += 1
        logger.info("call %s from %s to %s", call.call_id, call.caller_number, call.callee_number)
        return call

    # -- outbound calls --------------------------------------------------------------------

    @asynccontextmanager
    async def place_call(
        self, remote_address: str, *, ring_timeout: float = 60.0
    ) -> AsyncIterator[ActiveCall]:
        """Call ``remote_address``; the block runs once the callee answered.

        ``async with client.place_call("+15550100") as call:`` sends
        ``session.create`` (channel ``TELCO``), claims the new session
        (``session.open``, ``session.ready``) and waits for its ``call.in``,
        which the platform sends when the callee answers. The block gets the
        :class:`ActiveCall` ANSWERED, media connected, as an inbound handler
        does; leaving the block closes the call (``call.close``, termination
        ``handler_returned``) and waits for its task to end. The call is owned by
        the client's calls nursery, like an inbound call: it counts for
        ``max_calls``, and leaving ``async with client`` closes it
        (``client_shutdown``) even while the block still runs. If the callee
        hangs up, the call terminates (``callee_hangup``) as for inbound calls.

        Cancelled before the block runs, it raises at once; a call still being
        created or claimed is claimed anyway by a task of the client, so that
        its answer, if it comes, is hung up at once (as after ``ring_timeout``).

        Raises:
            ValueError: ``remote_address`` is not 3 to 15 digits with an optional
                leading ``+``, or ``ring_timeout`` is not positive (nothing sent).
            WSSConnectionError: not connected, or the connection dropped.
            WSSSessionError: the platform refused the call; the subclass names the
                code (:class:`~telcoflow_trio.exceptions.WSSQuotaExceeded`,
                ``WSSChannelNotConfigured``, ``WSSForbidden``, ``WSSInvalidRequest``,
                ``WSSOutboundOverflow``, ``WSSSessionAlreadyExists``), the message
                has the server's.
            WSSCallNotAnswered: the callee declined, was busy or did not answer
                (the session closed first), or ``ring_timeout`` ran out (a later
                answer is hung up at once).
            WSSMediaError: answered, but the media connection could not be opened.
        """
        call, dialing = await self._dial(remote_address, ring_timeout)
        try:
            yield call
        finally:
            dialing.released.set()
            await dialing.done.wait()

    async def _dial(self, remote_address: str, ring_timeout: float) -> tuple[ActiveCall, _Dialing]:
        if not isinstance(remote_address, str) or not _REMOTE_ADDRESS.fullmatch(remote_address):
            raise ValueError(
                f"remote_address must be a phone number: an optional '+' and 3 to 15 digits; "
                f"got {remote_address!r}"
            )
        if isinstance(ring_timeout, bool) or not ring_timeout > 0:
            raise ValueError(
                f"ring_timeout must be a positive number of seconds; got {ring_timeout!r}"
            )
        control, nursery = self._control, self._nursery
        if control is None or not control.connected or self._closing or nursery is None:
            raise WSSConnectionError("the client is not connected; cannot place a call")
        dialing = _Dialing(remote_address)
        # In a task of the client's, not the caller's: a caller giving up while the
        # platform creates or opens the session must not leave a call ringing that
        # we do not know of, or answered with nobody to take it. The task finishes
        # the claim, so that the answer comes to us and is hung up at once.
        nursery.start_soon(self._claim_outbound, control, dialing, ring_timeout)
        answered = False
        try:
            await dialing.claimed.wait()
            if dialing.error is not None:
                raise dialing.error
            async with trio.open_nursery() as ringing:
                ringing.start_soon(_set_when_lost, control, dialing.arrived)
                with trio.move_on_after(ring_timeout):
                    await dialing.arrived.wait()
                ringing.cancel_scope.cancel()
            call = dialing.call
            if call is None:
                raise self._not_answered(dialing, ring_timeout)
            answered = True
            await dialing.connected.wait()
            termination = call.termination
            if termination is not None:
                what = f"the call to {remote_address} ended before its media connected"
                if termination.reason == "media_lost":
                    raise WSSMediaError(f"{what}: {termination.detail}")
                raise WSSCallClosedError(f"{what} ({termination.reason})")
            return call, dialing
        except BaseException:
            self._give_up(dialing, answered=answered)
            raise
        finally:
            if dialing.session_id is not None and dialing.claimed.is_set():
                self._dialing.pop(dialing.session_id, None)

    async def _claim_outbound(
        self, control: ControlConnection, dialing: _Dialing, ring_timeout: float
    ) -> None:
        """``session.create``, ``session.open``, ``session.ready`` of a call placed; a
        failure goes to the caller (``dialing.error``), who may have given up."""
        remote_address = dialing.remote_address
        try:
            response = await control.request(
                lambda req_id: proto.SessionCreate("TELCO", remote_address, req_id)
            )
            session_id = dialing.session_id = _created_session(response, remote_address)
            self._calls_outbound += 1
            self._dialing[session_id] = dialing
            opened = await control.request(lambda req_id: proto.SessionOpen(session_id, req_id))
            if not opened.ok and dialing.arrived.is_set():
                raise self._not_answered(dialing, ring_timeout)  # it closed that fast
            if not opened.ok:
                raise refusal(
                    f"session.open of the call to {remote_address}",
                    opened.error_code,
                    opened.error_message,
                    content=opened.error_content,
                    session=True,
                )
            await control.send(proto.SessionReady(session_id))
        except Exception as exc:
            dialing.error = exc
        finally:
            dialing.claimed.set()
            if dialing.released.is_set():  # the caller gave up meanwhile
                if dialing.error is not None:
                    logger.info("call to %s (given up): %s", remote_address, dialing.error)
                self._give_up(dialing, answered=False)

    def _give_up(self, dialing: _Dialing, *, answered: bool) -> None:
        """The caller of ``place_call`` is done with ``dialing`` before holding its call
        (failed or cancelled); if the claim is still going on, its task calls this again
        once it is over. A call not answered yet is hung up when its answer comes."""
        dialing.released.set()
        session_id = dialing.session_id
        if not dialing.claimed.is_set() or session_id is None:
            return
        if self._dialing.pop(session_id, None) is None:
            return  # given up already
        if not answered:
            self._calls_outbound_unanswered += 1
            if dialing.call is None:
                self._abandon(session_id)

    def _not_answered(self, dialing: _Dialing, ring_timeout: float) -> WSSError:
        where = f"the call to {dialing.remote_address}"
        if self._closing:
            return WSSConnectionError(f"the client closed while {where} rang")
        if dialing.closed_reason is not None:
            return WSSCallNotAnswered(
                f"{where} ended before it was answered (session closed: {dialing.closed_reason}; "
                "the callee declined, was busy or did not answer)",
                reason=dialing.closed_reason,
            )
        if dialing.arrived.is_set():
            return WSSConnectionError(f"the control connection was lost while {where} rang")
        return WSSCallNotAnswered(f"{where} was not answered within {ring_timeout:g} s")

    def _abandon(self, session_id: str) -> None:
        self._abandoned[session_id] = None
        while len(self._abandoned) > _ABANDONED_KEPT:
            del self._abandoned[next(iter(self._abandoned))]

    def _outbound_arrived(self, call_in: proto.CallIn, dialing: _Dialing | None) -> None:
        if self._closing or self._calls_nursery is None:
            logger.warning("not taking call %s: the client is closing", call_in.call_id)
            if dialing is not None:
                dialing.arrived.set()
            return
        if dialing is None:
            # Given up before the answer: take the call only to hang up.
            del self._abandoned[call_in.session_id]
            logger.info("call %s was answered after we gave up on it: closing it", call_in.call_id)
            dialing = _Dialing(call_in.callee)
            dialing.released.set()
        call = self._new_call(call_in, outbound=True)
        self._by_session[call_in.session_id] = call
        dialing.call = call
        dialing.arrived.set()
        logger.info("call %s to %s: answered", call.call_id, call.callee_number)
        self._calls_nursery.start_soon(self._serve_outbound, call, dialing)

    async def _serve_outbound(self, call: ActiveCall, dialing: _Dialing) -> None:
        async def hold(_: ActiveCall) -> None:
            dialing.connected.set()
            await dialing.released.wait()

        try:
            await self._serve_call(call, hold, None)
        finally:
            dialing.connected.set()
            dialing.done.set()

    async def adopt_call(
        self,
        data: str | bytes | Mapping[str, object],
        *,
        handler: Callable[[ActiveCall], object] | None = None,
    ) -> ActiveCall:
        """Take over a call another process handed off, and serve it here.

        ``data`` is the handoff document: :meth:`CallOffer.to_json` of another
        worker (or telcoflow 1.0.0's ``Call.to_json()``), as text or already
        parsed. The call's media connection is opened with its token; then the
        call runs in this client's calls nursery like any other: ``handler``
        (default: the ``INCOMING_CALL`` handler) runs, the call is closed when
        it returns, and the client's shutdown ends it. The control connection
        is not involved (the session stays with the worker that claimed it).
        The claiming worker's ``setup`` fixed the media's sample rate and audio
        mode: this client must have the same ones. A document from
        :meth:`CallOffer.to_json` says which, and a mismatch is refused; one
        from 1.0.0 does not, so it is up to you.

        Returns:
            The call, its media connected and ``handler`` started.

        Raises:
            ValueError: ``data`` is not a valid handoff document (the message
                names the field, never the token), its sample rate or audio
                mode is not this client's, no handler, or this client already
                has the call.
            WSSCallError: the media connection could not be opened (for example
                the platform refused a used or expired token); ``__cause__``
                says why. :class:`~telcoflow_trio.exceptions.WSSCallClosedError`:
                the client began to shut down meanwhile, which closes the call.
            RuntimeError: outside ``async with client``.
        """
        handoff = proto.decode_handoff(data)
        call_in = handoff.call_in
        checks = (
            ("sample_rate", handoff.sample_rate, self._config.sample_rate),
            ("audio_mode", handoff.audio_mode, str(self._config.audio_mode)),
        )
        for what, theirs, mine in checks:
            if theirs is not None and theirs != mine:
                raise ValueError(
                    f"call {call_in.call_id} has {what} {theirs!r} (fixed by the worker that "
                    f"claimed it); this client has {mine!r}"
                )
        handler = handler if handler is not None else self._incoming
        if handler is None:
            raise ValueError("adopt_call() needs handler= or an INCOMING_CALL handler")
        if self._calls_nursery is None or self._closing:
            raise RuntimeError("use `async with TelcoflowClient(config) as client:` first")
        if call_in.call_id in self._calls:
            raise ValueError(f"call {call_in.call_id} is already handled by this client")
        call = self._new_call(call_in, outbound=False)
        error = await self._calls_nursery.start(self._serve_call, call, handler, None)
        if error is not None:
            raise WSSCallError(f"could not adopt call {call.call_id}: {error}") from error
        if self._closing:  # its media opened as the client began to shut down
            raise WSSCallClosedError(
                f"could not adopt call {call.call_id}: the client is shutting down, "
                "so the call is being closed"
            )
        return call

    async def _serve_call(
        self,
        call: ActiveCall,
        handler: Callable[[ActiveCall], object],
        offered: Callable[[CallOffer], object] | None,
        *,
        task_status: trio.TaskStatus[WSSError | None] = trio.TASK_STATUS_IGNORED,
    ) -> None:
        """The call's task; ``task_status`` gets ``None`` once the call is served
        (media open, or handed off), or the media error once the call is gone."""
        # The call's task: what it logs, and the tasks it starts, carry its id.
        error: WSSError | None = None
        with call_context(call.call_id):
            try:
                error = await call._serve(handler, offered, task_status=task_status)
                if error is not None:
                    self._calls_failed += 1
            finally:
                self._calls.pop(call.call_id, None)
                self._call_ended(call)
                self._finished(call)
                self._calls_changed.unpark_all()
            self._reoffer()  # room for one more
            if error is not None:
                task_status.started(error)  # adopt_call() raises it, all counted

    def _finished(self, call: ActiveCall) -> None:
        """Add an ended call to the client's totals.

        A call that never started here (an ``adopt_call`` cancelled while its
        media opened: it has no termination) is taken out of them again.
        """
        if call.termination is None:
            self._calls_total -= 1
            return
        self._handler_errors_done += call.handler_errors
        _add_audio(self._media_done, call._media.counters)
        reason = str(call.termination.reason)
        self._calls_ended[reason] = self._calls_ended.get(reason, 0) + 1

    def _call_ended(self, call: ActiveCall) -> None:
        session_id = call._call_in.session_id
        if self._by_session.get(session_id) is call:
            del self._by_session[session_id]

    def _session_closed(self, closed: proto.SessionClosed) -> None:
        self._wa.closed(closed)
        dialing = self._dialing.get(closed.session_id)
        if dialing is not None and dialing.call is None:
            dialing.closed_reason = closed.reason
            dialing.arrived.set()
            return
        call = self._by_session.get(closed.session_id)
        if call is not None:
            with call_context(call.call_id):
                call._session_closed(closed.reason)


def _created_session(response: proto.Response, remote_address: str) -> str:
    """The session id in a ``session.create`` response; raise if it was refused."""
    what = f"session.create to {remote_address}"
    if not response.ok:
        raise refusal(
            what,
            response.error_code,
            response.error_message,
            content=response.error_content,
            session=True,
        )
    content = response.content
    session_id = content.get("sessionId") if isinstance(content, dict) else None
    if not isinstance(session_id, str) or not session_id:
        raise WSSSessionError(f"{what}: the response has no sessionId")
    if isinstance(content, dict) and content.get("created") is False:
        raise WSSSessionAlreadyExists(
            f"{what}: a session to that address is already open ({session_id})",
            session_id=session_id,
        )
    return session_id


async def _set_when_lost(control: ControlConnection, event: trio.Event) -> None:
    await control.wait_lost()
    event.set()


def _add_audio(total: MediaCounters, counters: MediaCounters) -> None:
    total.frames_sent += counters.frames_sent
    total.bytes_sent += counters.bytes_sent
    total.frames_received += counters.frames_received
    total.bytes_received += counters.bytes_received


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
