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
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from types import TracebackType
from typing import Any, TypeVar, final

import attrs
import trio

from . import proto
from ._call import ActiveCall, ErrorHook
from ._control import ControlConnection, ControlCounters
from .config import TelcoflowClientConfig
from .events import ClientEvent
from .exceptions import WSSConnectionError, WSSError
from .ws._streams import StreamOpener, open_tcp

__all__ = ["ClientStatistics", "TelcoflowClient"]

logger = logging.getLogger(__name__)

_Handler = TypeVar("_Handler", bound=Callable[..., Any])

#: Notifications kept while no INCOMING_CALL handler is registered.
_UNCLAIMED_KEPT = 64


@attrs.frozen
class ClientStatistics:
    """A snapshot of the client's counters.

    Attributes:
        calls_active: calls whose task is running.
        calls_total: calls received (``call.in``) since the client started.
        calls_failed: calls whose media connection could not be opened.
        reconnects: control reconnections after a successful first connection.
        sessions_busy: notifications skipped because another worker claimed them.
        handler_errors: exceptions raised by your handlers.
    """

    connected: bool
    calls_active: int
    calls_total: int
    calls_failed: int
    reconnects: int
    connects: int
    notifications: int
    sessions_claimed: int
    sessions_busy: int
    handler_errors: int
    pings: int
    malformed_frames: int


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
        self._counters = ControlCounters()
        self._calls: dict[str, ActiveCall] = {}
        self._by_session: dict[str, ActiveCall] = {}
        self._unclaimed: dict[str, proto.SessionNotify] = {}
        self._calls_total = 0
        self._calls_failed = 0
        self._handler_errors_done = 0  # handler errors of calls that have finished
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
                self._nursery = await nursery.start(self._run_background)
                self._calls_nursery = await self._nursery.start(self._hold_calls_nursery)
                try:
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

    async def _run_background(self, *, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        # Shielded: a cancellation from outside reaches the connections and
        # calls only through _shutdown(), which closes them properly (a socket
        # whose reader task was cancelled cannot finish its close handshake).
        with self._background_scope:
            async with trio.open_nursery() as background:
                task_status.started(background)
                await trio.sleep_forever()

    async def _hold_calls_nursery(self, *, task_status: trio.TaskStatus[trio.Nursery]) -> None:
        async with trio.open_nursery() as calls:
            task_status.started(calls)
            await trio.sleep_forever()

    async def _shutdown(self) -> None:
        self._closing = True
        if self._control is not None:
            self._control.stop()
        for call in list(self._calls.values()):
            call._shutdown()
        # Bounded, and shielded so it also runs when we are being cancelled.
        with trio.CancelScope(shield=True) as scope:
            scope.deadline = trio.current_time() + 2 * self._config.close_timeout
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
            on_call_in=self._call_arrived,
            on_session_closed=self._session_closed,
        )
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

    # -- handlers and calls ------------------------------------------------------------

    def on(self, event: ClientEvent | str) -> Callable[[_Handler], _Handler]:
        """Decorator: register the handler of ``events.INCOMING_CALL``.

        The handler gets the :class:`ActiveCall` (media already connected) and
        may be sync or async; the call lasts as long as the handler: when it
        returns or raises, the call is closed. Without a handler the client does
        not claim calls, leaving them to other workers; calls notified before
        the handler is registered are claimed when it is.

        Raises:
            ValueError: ``event`` is not a client event, or a handler is already set.
        """
        try:
            key = ClientEvent(event)
        except ValueError:
            allowed = ", ".join(e.value for e in ClientEvent)
            raise ValueError(f"{event!r} is not a client event (one of {allowed})") from None

        def register(handler: _Handler) -> _Handler:
            if self._incoming is not None:
                raise ValueError(f"a handler for {key} is already registered")
            self._incoming = handler
            # Calls notified before there was a handler: claim them now (one
            # another worker took meanwhile is answered SESSION_BUSY, quietly).
            unclaimed, self._unclaimed = self._unclaimed, {}
            if self._control is not None:
                for notify in unclaimed.values():
                    self._control.notified(notify)
            return handler

        return register

    def get_call(self, call_id: str) -> ActiveCall | None:
        """The live call with ``call_id``, or ``None``."""
        call = self._calls.get(call_id)
        return None if call is None or call.terminated else call

    def statistics(self) -> ClientStatistics:
        """A snapshot of the client's counters."""
        c = self._counters
        return ClientStatistics(
            connected=self._control is not None and self._control.connected,
            calls_active=len(self._calls),
            calls_total=self._calls_total,
            calls_failed=self._calls_failed,
            reconnects=c.reconnects,
            connects=c.connects,
            notifications=c.notifications,
            sessions_claimed=c.sessions_claimed,
            sessions_busy=c.sessions_busy,
            handler_errors=self._handler_errors_done
            + sum(call.handler_errors for call in self._calls.values()),
            pings=c.pings,
            malformed_frames=c.malformed_frames,
        )

    def _should_claim(self, notify: proto.SessionNotify) -> bool:
        if self._incoming is None:
            # Kept (bounded) in case the handler is registered in a moment.
            logger.info("no INCOMING_CALL handler yet: not claiming session %s", notify.session_id)
            self._unclaimed[notify.session_id] = notify
            while len(self._unclaimed) > _UNCLAIMED_KEPT:
                del self._unclaimed[next(iter(self._unclaimed))]
            return False
        # A session whose call we hold is re-broadcast after a reconnect: keep it.
        return not self._closing and notify.session_id not in self._by_session

    def _call_arrived(self, call_in: proto.CallIn) -> None:
        handler = self._incoming
        if call_in.call_id in self._calls or call_in.session_id in self._by_session:
            logger.debug("call %s is already being handled; ignoring call.in", call_in.call_id)
            return
        if handler is None or self._closing or self._calls_nursery is None:
            logger.warning("not taking call %s: the client is closing", call_in.call_id)
            return
        call = ActiveCall(
            call_in,
            self._config,
            open_stream=self._open_stream,
            on_handler_error=self._on_handler_error,
            on_terminated=self._call_ended,
        )
        self._calls[call.call_id] = call
        self._by_session[call_in.session_id] = call
        self._calls_total += 1
        logger.info("call %s from %s to %s", call.call_id, call.caller_number, call.callee_number)
        self._calls_nursery.start_soon(self._serve_call, call, handler)

    async def _serve_call(self, call: ActiveCall, handler: Callable[[ActiveCall], object]) -> None:
        try:
            if not await call._serve(handler):
                self._calls_failed += 1
        finally:
            self._calls.pop(call.call_id, None)
            self._call_ended(call)
            self._handler_errors_done += call.handler_errors
            self._calls_changed.unpark_all()

    def _call_ended(self, call: ActiveCall) -> None:
        session_id = call._call_in.session_id
        if self._by_session.get(session_id) is call:
            del self._by_session[session_id]

    def _session_closed(self, closed: proto.SessionClosed) -> None:
        call = self._by_session.get(closed.session_id)
        if call is not None:
            call._platform_ended(closed.reason)


def _leaves(group: BaseExceptionGroup[Any]) -> list[BaseException]:
    out: list[BaseException] = []
    for exc in group.exceptions:
        out.extend(_leaves(exc) if isinstance(exc, BaseExceptionGroup) else [exc])
    return out
