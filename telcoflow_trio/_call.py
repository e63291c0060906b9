"""The public :class:`ActiveCall`: one call, its commands, audio and events.

An ``ActiveCall`` is created by :class:`~telcoflow_trio.TelcoflowClient` when a
call arrives (or is adopted) and lives in its own task: the ``CALL_OFFERED``
handler, if any, may hand it off first; then the media connection is opened,
then the ``INCOMING_CALL`` handler runs, and when the handler returns or raises
the call is closed (``call.close``). Whatever ends a call (the caller hanging
up, the platform, the media connection breaking, a local
``close()``/``disconnect()``, the handler ending, the client shutting down), it
terminates **exactly once**, with a :class:`TerminationInfo` saying why and who
(see :class:`TerminationReason` for how the wire's reasons map); then
pending commands fail with :class:`~telcoflow_trio.exceptions.WSSCallClosedError`,
``audio_stream()`` ends and ``send_audio`` raises
:class:`~telcoflow_trio.exceptions.BufferClosedError`.

Call event handlers (``call.on(...)``) never run inside the media reader: a
dispatcher task of the call runs them in order, so a handler may await a command.
"""

from __future__ import annotations

import collections
import enum
import inspect
import logging
import math
import ssl
from collections.abc import AsyncIterator, Callable
from typing import Any, Final, Literal, TypeAlias, TypeVar, final

import attrs
import trio

from . import proto
from ._media import MediaConnection
from ._offer import CallOffer, CallParties
from .config import TelcoflowClientConfig
from .events import CallEvent, CallState
from .exceptions import (
    BufferClosedError,
    WSSCallClosedError,
    WSSCallCommandError,
    WSSCallCommandTimeoutError,
    WSSCallError,
    WSSError,
)
from .ws._streams import StreamOpener

__all__ = ["ActiveCall", "CallErrorInfo", "CallStatistics", "TerminationInfo", "TerminationReason"]

logger = logging.getLogger(__name__)

_Handler = TypeVar("_Handler", bound=Callable[..., Any])
ErrorHook: TypeAlias = Callable[["ActiveCall", BaseException], object]

#: Call events queued for handlers beyond this are dropped (``CALL_TERMINATED`` never is).
_MAX_QUEUED_EVENTS: Final = 256
#: Command latencies kept for :meth:`ActiveCall.statistics`.
_LATENCIES_KEPT: Final = 32
_MIN_RING, _MAX_RING = 1, 120


class TerminationReason(enum.StrEnum):
    """Why a call ended.

    The platform's word comes with a wire reason (``call.terminated`` on the
    media connection, ``session.closed`` on the control one): ``CALL_TERMINATED``
    is a party hanging up, ``FORCE_CLOSE`` the platform ending the call,
    ``SDK_REQUEST`` our own ``call.close``/``call.disconnect``. The media
    connection has the last word: when ``session.closed`` comes first, the call
    waits up to ``close_timeout`` for its media connection to say how it ended.
    """

    #: The platform ended the call (``FORCE_CLOSE``, or ``call.terminated`` without a reason).
    SERVER = "server"
    #: The caller hung up (``CALL_TERMINATED``), before or after the answer, or
    #: gave up ringing.
    CALLER_HANGUP = "caller_hangup"
    #: The called party of an outbound call hung up (``CALL_TERMINATED``).
    CALLEE_HANGUP = "callee_hangup"
    #: The platform ended the call for a reason this client does not know (in ``detail``).
    SESSION_CLOSED = "session_closed"
    #: The media connection broke, or the platform dropped it, without a ``call.terminated``.
    MEDIA_LOST = "media_lost"
    #: ``call.close()`` succeeded.
    CLOSED = "closed"
    #: ``call.disconnect()`` succeeded.
    DISCONNECTED = "disconnected"
    #: The ``INCOMING_CALL`` handler returned; the call was closed.
    HANDLER_RETURNED = "handler_returned"
    #: The ``INCOMING_CALL`` handler raised; the call was closed.
    HANDLER_FAILED = "handler_failed"
    #: The client shut down while the call was in progress.
    CLIENT_SHUTDOWN = "client_shutdown"
    #: The ``CALL_OFFERED`` handler handed the call to another process
    #: (:meth:`CallOffer.to_json`); it goes on there.
    HANDED_OFF = "handed_off"


Who: TypeAlias = Literal["caller", "callee", "agent", "server", "network", "client"]


@attrs.frozen
class TerminationInfo:
    """How a call ended.

    Attributes:
        reason: why.
        who: which side ended it: ``"caller"``, ``"callee"`` (of an outbound
            call), ``"agent"`` (this program's
            commands or handler), ``"server"``, ``"network"`` or ``"client"``
            (the client shutting down).
        when: ``trio.current_time()`` at the end.
        detail: extra text from the server or the error, if any.
    """

    reason: TerminationReason
    who: Who
    when: float
    detail: str | None = None


@attrs.frozen
class CallErrorInfo:
    """The payload of ``CALL_ERROR``: a ``call.error`` event from the server."""

    error_code: str | None
    error_message: str | None
    fields: dict[str, Any] = attrs.field(factory=dict)


@attrs.frozen
class CallStatistics:
    """A snapshot of one call's counters.

    Attributes:
        underruns: ``buffer_request``\\ s that arrived while earlier credit was
            unused and nothing was queued: the server wanted agent audio we did
            not have (deliberate silences count too).
        inbound_dropped_chunks: inbound audio chunks (all channels) dropped
            because ``audio_stream()`` readers were too slow (oldest first).
        command_latencies: ``(command, seconds)`` of the latest answered commands.
    """

    call_id: str
    state: CallState
    frames_sent: int
    bytes_sent: int
    frames_received: int
    bytes_received: int
    send_buffer_bytes: int
    inbound_dropped_chunks: int
    inbound_dropped_bytes: int
    underruns: int
    buffer_requests: int
    malformed_frames: int
    commands_sent: int
    command_latencies: tuple[tuple[str, float], ...]


def _cancelled() -> bool:
    """Whether the current task is being cancelled (outside any shield)."""
    return trio.current_effective_deadline() == -math.inf


def _takes_argument(handler: Callable[..., Any]) -> bool:
    try:
        parameters = inspect.signature(handler).parameters.values()
    except (TypeError, ValueError):
        return False
    positional = (
        inspect.Parameter.POSITIONAL_ONLY,
        inspect.Parameter.POSITIONAL_OR_KEYWORD,
        inspect.Parameter.VAR_POSITIONAL,
    )
    return any(p.kind in positional for p in parameters)


@final
class ActiveCall(CallParties):
    """One call, handed to your ``INCOMING_CALL`` handler with its media connected.

    Created only by :class:`~telcoflow_trio.TelcoflowClient`. Commands raise
    :class:`~telcoflow_trio.exceptions.WSSCallStateError` (nothing sent) when
    the call's state does not allow them,
    :class:`~telcoflow_trio.exceptions.WSSCallCommandError` when the server
    refuses, :class:`~telcoflow_trio.exceptions.WSSCallCommandTimeoutError`
    when no answer comes in time and
    :class:`~telcoflow_trio.exceptions.WSSCallClosedError` once the call ended.
    """

    def __init__(
        self,
        call_in: proto.CallIn,
        config: TelcoflowClientConfig,
        *,
        open_stream: StreamOpener,
        on_handler_error: ErrorHook | None = None,
        on_terminated: Callable[[ActiveCall], None] | None = None,
        outbound: bool = False,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        self._call_in = call_in
        self._config = config
        self._on_handler_error = on_handler_error
        self._on_terminated = on_terminated
        #: Placed by this program (:meth:`TelcoflowClient.place_call`): it
        #: arrives answered, and ``CALL_TERMINATED`` is the callee hanging up.
        self.outbound = outbound
        self._state = CallState.ANSWERED if outbound else CallState.PENDING
        self._termination: TerminationInfo | None = None
        self._terminated = trio.Event()
        self._handlers: dict[CallEvent, list[tuple[Callable[..., Any], bool]]] = {}
        self._events: collections.deque[tuple[CallEvent, object]] = collections.deque()
        self._events_lot = trio.lowlevel.ParkingLot()
        self._latencies: collections.deque[tuple[str, float]] = collections.deque(
            maxlen=_LATENCIES_KEPT
        )
        self._ending: tuple[TerminationReason, Who] | None = None  # a close/disconnect in flight
        #: The latest close/disconnect sent, answered or not (``SDK_REQUEST`` is its doing).
        self._requested: tuple[TerminationReason, Who] | None = None
        self._nursery: trio.Nursery | None = None  # the call's own, while its media is open
        self._handler_scope = trio.CancelScope()
        self._offer_scope = trio.CancelScope()
        self._shutting_down = False
        self.handler_errors = 0
        self._media = MediaConnection(
            call_in,
            config,
            open_stream=open_stream,
            on_event=self._on_media_event,
            on_lost=self._on_media_lost,
            ssl_context=ssl_context,
        )

    def __repr__(self) -> str:
        return f"<ActiveCall {self.call_id} {self._state}>"

    # -- properties (call_id, id, caller_number, callee_number: CallParties) ----------

    @property
    def sample_rate(self) -> int:
        """Sample rate of the call's PCM16 mono audio, both ways."""
        return self._config.sample_rate

    @property
    def state(self) -> CallState:
        """PENDING, ANSWERED, CONNECTED or DISCONNECTED."""
        return self._state

    @property
    def terminated(self) -> bool:
        """Whether the call has ended."""
        return self._termination is not None

    @property
    def termination(self) -> TerminationInfo | None:
        """How the call ended, or ``None`` while it is live."""
        return self._termination

    # -- commands ----------------------------------------------------------------------

    async def answer(self) -> None:
        """Answer the call (PENDING -> ANSWERED); audio then flows with the caller."""
        await self._command(
            proto.CallCommand.ANSWER,
            success_event=CallEvent.CALL_ANSWERED,
            failure_event=CallEvent.CALL_ANSWER_FAILED,
        )

    async def connect(self, ring_time_seconds: int = 60) -> None:
        """Ring the original callee and join caller, callee and agent (-> CONNECTED).

        Args:
            ring_time_seconds: how long to ring, 1 to 120.

        Raises:
            ValueError: ``ring_time_seconds`` out of range.
            WSSCallCommandError: e.g. ``error_code == "CALL_UNANSWERED"``; the
                call stays in its state, so you may retry, branch or end it.
            WSSCallCommandTimeoutError: no response within the ring time plus
                the grace period.
        """
        ring = ring_time_seconds
        if (
            isinstance(ring, bool)
            or not isinstance(ring, int)
            or not _MIN_RING <= ring <= _MAX_RING
        ):
            raise ValueError(
                f"ring_time_seconds must be an integer from {_MIN_RING} to {_MAX_RING}; "
                f"got {ring_time_seconds!r}"
            )
        await self._command(
            proto.CallCommand.CONNECT,
            server_timeout=float(ring),
            data={"ringTimeSeconds": ring},
            success_event=CallEvent.CALL_CONNECTED,
            failure_event=CallEvent.CALL_CONNECT_FAILED,
        )

    async def whisper(self) -> None:
        """Only the callee hears the agent (CONNECTED)."""
        await self._command(proto.CallCommand.WHISPER)

    async def barge(self) -> None:
        """Caller and callee both hear the agent (CONNECTED; the default after connect)."""
        await self._command(proto.CallCommand.BARGE)

    async def spy(self) -> None:
        """Listen only (CONNECTED)."""
        await self._command(proto.CallCommand.SPY)

    async def disconnect(self) -> None:
        """End the call for everyone. Does nothing if the call already ended."""
        if self._termination is not None:
            await trio.lowlevel.checkpoint()
            return
        await self._command(
            proto.CallCommand.DISCONNECT, ending=(TerminationReason.DISCONNECTED, "agent")
        )

    async def close(self) -> None:
        """Leave the call and release it. Does nothing if the call already ended.

        After ``connect()`` caller and callee stay connected; after only
        ``answer()`` (or before it) the caller is disconnected too.
        """
        if self._termination is not None:
            await trio.lowlevel.checkpoint()
            return
        await self._command(proto.CallCommand.CLOSE, ending=(TerminationReason.CLOSED, "agent"))

    async def _command(
        self,
        command: proto.CallCommand,
        *,
        server_timeout: float | None = None,
        data: dict[str, Any] | None = None,
        success_event: CallEvent | None = None,
        failure_event: CallEvent | None = None,
        ending: tuple[TerminationReason, Who] | None = None,
    ) -> Any:
        proto.check_command(self._state, command)
        timeout = self._config.command_timeout if server_timeout is None else server_timeout
        if ending is not None:
            self._ending = self._requested = ending
        started = trio.current_time()
        try:
            response = await self._media.round_trip(command, timeout, data)
        except WSSCallClosedError:
            if ending is not None and self._termination is not None:
                return None  # the call is over, which is what was asked for
            raise
        except WSSCallCommandTimeoutError as exc:
            if failure_event is not None:
                self._queue_event(failure_event, exc)
            raise
        finally:
            if ending is not None and self._ending == ending:
                self._ending = None
        self._latencies.append((str(command), trio.current_time() - started))
        error = proto.response_error(response)
        if isinstance(error, WSSCallCommandError) and error.error_code == "CALL_TERMINATED":
            # The platform failed the command because the call ended under it;
            # its call.terminated, next on the same connection, says how.
            await self._wait_media_verdict()
            self._platform_ended(None if ending is not None else error.error_code)
            if ending is not None:
                return None  # the call is over, which is what was asked for
            raise WSSCallClosedError(f"{command} failed: call {self.call_id} ended") from error
        if self._termination is None:
            self._state = proto.next_state(self._state, command, success=error is None)
        if error is not None:
            logger.info("call %s: %s failed: %s", self.call_id, command, error)
            if failure_event is not None:
                self._queue_event(failure_event, error)
            raise error
        if success_event is not None:
            self._queue_event(success_event, None)
        if self._state is CallState.DISCONNECTED and ending is not None:
            self._terminate(*ending)
        return response.result

    # -- audio -----------------------------------------------------------------------

    def send_audio(self, data: bytes) -> None:
        """Queue PCM16LE mono audio to play to the call; never blocks.

        Audio goes out as the server asks for it (pull-based). Audio queued
        before ``answer()`` plays once the server starts pulling.

        Raises:
            BufferFullError: ``data`` does not fit in the free space; nothing was
                queued (see :meth:`write_audio` to wait for room instead).
            BufferClosedError: the call has ended.
            ValueError: ``data`` is not whole 2-byte samples.
        """
        self._media.write_nowait(data)

    async def write_audio(self, data: bytes) -> None:
        """Queue audio of any size, waiting for room in the buffer when needed.

        Raises:
            BufferClosedError: the call ended before all of ``data`` was queued.
            ValueError: ``data`` is not whole 2-byte samples.
        """
        await self._media.write(data)

    async def wait_audio_sent(self) -> None:
        """Wait until all queued audio has been sent to the server.

        This is sent, not played: the server may still be playing its last frames.

        Raises:
            WSSCallClosedError: the call ended with audio still queued.
        """
        await self._media.wait_sent()

    async def clear_send_audio_buffer(self) -> int:
        """Drop all queued audio and tell the server to stop playing (``agent.interrupt``).

        Before the call is answered only the local buffer is cleared.

        Returns:
            How many bytes were dropped locally.

        Raises:
            WSSCallClosedError: the call has ended.
            WSSCallCommandError, WSSCallCommandTimeoutError: the interrupt failed
                (the local buffer was cleared anyway).
        """
        dropped = self._media.clear()
        if self._state is CallState.PENDING:
            await trio.lowlevel.checkpoint()
        else:
            await self._command(proto.CallCommand.INTERRUPT)
        return dropped

    def get_send_audio_buffer_size(self) -> int:
        """Bytes of agent audio queued and not yet sent."""
        return len(self._media.outgoing)

    def audio_stream(self, channel_id: int = 0) -> AsyncIterator[bytes]:
        """The call's audio on ``channel_id`` as PCM16LE chunks, until the call ends.

        Channel 0 is what the agent hears (the caller, mixed with the connected
        party after ``connect()``). With ``audio_mode="isolated"`` the platform
        also sends each leg alone on channels 1, 2, ... (the simulator: 1 the
        caller, 2 the connected party); a channel that never carries audio
        just ends with the call.

        Each call of this method gives an independent reader that sees every chunk
        from then on (the first one of a channel also gets what arrived before
        it). Every channel has its own bounded queues: a reader keeps at most
        ``config.inbound_queue_chunks`` chunks; when it falls further behind, the
        oldest chunks are dropped and counted in :meth:`statistics`. The
        connection itself never waits for a slow reader.

        Raises:
            ValueError: ``channel_id`` is not an integer from 0 to 255 (one byte).
        """
        if isinstance(channel_id, bool) or not isinstance(channel_id, int):
            raise ValueError(f"channel_id must be an int from 0 to 255, got {channel_id!r}")
        if not 0 <= channel_id <= 255:
            raise ValueError(f"channel_id must be from 0 to 255, got {channel_id}")
        return self._media.channel(channel_id).open_stream()

    # -- events ----------------------------------------------------------------------

    def on(self, event: CallEvent | str) -> Callable[[_Handler], _Handler]:
        """Decorator: run ``handler`` on ``event``; sync or async.

        A handler that takes one positional argument gets the event's payload:
        the :class:`TerminationInfo` for ``CALL_TERMINATED``, the exception for
        ``CALL_ANSWER_FAILED``/``CALL_CONNECT_FAILED``, a :class:`CallErrorInfo`
        for ``CALL_ERROR`` and ``None`` otherwise. Handlers run one at a time in
        the call's own task, never in the media reader.

        Raises:
            ValueError: ``event`` is not a call event.
        """
        try:
            key = CallEvent(event)
        except ValueError:
            allowed = ", ".join(e.value for e in CallEvent)
            raise ValueError(f"{event!r} is not a call event (one of {allowed})") from None

        def register(handler: _Handler) -> _Handler:
            self._handlers.setdefault(key, []).append((handler, _takes_argument(handler)))
            return handler

        return register

    async def wait_terminated(self) -> TerminationInfo:
        """Wait until the call ends; return how it ended."""
        await self._terminated.wait()
        assert self._termination is not None
        return self._termination

    def statistics(self) -> CallStatistics:
        """A snapshot of the call's counters."""
        media = self._media
        c = media.counters
        return CallStatistics(
            call_id=self.call_id,
            state=self._state,
            frames_sent=c.frames_sent,
            bytes_sent=c.bytes_sent,
            frames_received=c.frames_received,
            bytes_received=c.bytes_received,
            send_buffer_bytes=len(media.outgoing),
            inbound_dropped_chunks=sum(i.dropped_chunks for i in media.channels.values()),
            inbound_dropped_bytes=sum(i.dropped_bytes for i in media.channels.values()),
            underruns=c.underruns,
            buffer_requests=c.buffer_requests,
            malformed_frames=c.malformed_frames,
            commands_sent=c.commands_sent,
            command_latencies=tuple(self._latencies),
        )

    # -- internals: termination ----------------------------------------------------------

    def _terminate(self, reason: TerminationReason, who: Who, detail: str | None = None) -> None:
        if self._termination is not None:
            return
        self._state = CallState.DISCONNECTED
        info = self._termination = TerminationInfo(reason, who, trio.current_time(), detail)
        logger.info(
            "call %s ended: %s (by %s)%s",
            self.call_id,
            reason,
            who,
            f": {detail}" if detail else "",
        )
        self._media.close_down()
        self._queue_event(CallEvent.CALL_TERMINATED, info)
        self._events_lot.unpark_all()
        self._terminated.set()
        if self._on_terminated is not None:
            self._on_terminated(self)

    def _on_media_event(self, frame: proto.CallEventFrame) -> None:
        if frame.event == CallEvent.CALL_TERMINATED:
            reason = frame.fields.get("reason")
            self._platform_ended(reason if isinstance(reason, str) else None)
        elif frame.event == CallEvent.CALL_ERROR:
            code, message = frame.fields.get("error_code"), frame.fields.get("error_message")
            info = CallErrorInfo(
                code if isinstance(code, str) else None,
                message if isinstance(message, str) else None,
                dict(frame.fields),
            )
            logger.warning("call %s: server reported error %s", self.call_id, info.error_code)
            self._queue_event(CallEvent.CALL_ERROR, info)
        else:
            logger.debug("call %s: ignoring call event %r", self.call_id, frame.event)

    def _platform_ended(self, reason: str | None) -> None:
        """The platform says the call is over, for the wire's ``reason`` (see
        :class:`TerminationReason`); ``None``: it did not say why."""
        ours = reason == "SDK_REQUEST" or (reason is None and self._ending is not None)
        if ours and self._requested is not None:
            # Our close/disconnect did it (also one whose response came too late).
            self._terminate(*self._requested)
        elif reason == "CALL_TERMINATED" and self.outbound:
            self._terminate(TerminationReason.CALLEE_HANGUP, "callee", reason)
        elif reason == "CALL_TERMINATED":
            self._terminate(TerminationReason.CALLER_HANGUP, "caller", reason)
        elif reason in (None, "FORCE_CLOSE"):
            self._terminate(TerminationReason.SERVER, "server", reason)
        else:
            self._terminate(TerminationReason.SESSION_CLOSED, "server", reason)

    def _session_closed(self, reason: str) -> None:
        """``session.closed`` came on the control connection.

        Its reason is coarser than what the media connection knows (a
        ``call.terminated``, or the connection breaking), and the two arrive in
        either order on two sockets: while the media connection is open, let it
        speak first, for up to ``close_timeout``.
        """
        if self._termination is not None:
            return
        if self._nursery is None or not self._media.connected:
            self._platform_ended(reason)
        else:
            self._nursery.start_soon(self._session_closed_after_media, reason)

    async def _session_closed_after_media(self, reason: str) -> None:
        await self._wait_media_verdict()
        self._platform_ended(reason)  # a no-op if the media connection said it

    async def _wait_media_verdict(self) -> None:
        """Wait (up to ``close_timeout``) for the media connection to end the call."""
        with trio.move_on_after(self._config.close_timeout):
            await self._terminated.wait()

    def _on_media_lost(self, exc: BaseException) -> None:
        if self._ending is not None:
            self._terminate(*self._ending)
        else:
            self._terminate(TerminationReason.MEDIA_LOST, "network", str(exc))

    # -- internals: events ------------------------------------------------------------

    def _queue_event(self, event: CallEvent, payload: object) -> None:
        if event not in self._handlers:
            return
        if len(self._events) >= _MAX_QUEUED_EVENTS and event is not CallEvent.CALL_TERMINATED:
            logger.warning("call %s: event queue full; dropping %s", self.call_id, event)
            return
        self._events.append((event, payload))
        self._events_lot.unpark_all()

    async def _dispatch_events(self) -> None:
        """Run queued event handlers in order until the call has ended."""
        while True:
            await self._run_queued_events()
            if self._termination is not None and not self._events:
                return
            await self._events_lot.park()

    async def _run_queued_events(self) -> None:
        while self._events:
            event, payload = self._events.popleft()
            for handler, takes_argument in list(self._handlers.get(event, ())):
                try:
                    result = handler(payload) if takes_argument else handler()
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    logger.exception("call %s: %s handler raised", self.call_id, event)
                    await self._report(exc)

    async def _report(self, exc: BaseException) -> None:
        self.handler_errors += 1
        hook = self._on_handler_error
        if hook is None:
            return
        try:
            result = hook(self, exc)
            if inspect.isawaitable(result):
                await result
        except Exception:
            logger.exception("call %s: the on_handler_error hook raised", self.call_id)

    # -- internals: the call's task ------------------------------------------------------

    async def _serve(
        self,
        handler: Callable[[ActiveCall], object],
        offered: Callable[[CallOffer], object] | None = None,
        *,
        task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
    ) -> WSSError | None:
        """The whole life of the call: offer, media, handler, close. Returns why
        media failed (before ``task_status`` is started), else ``None``."""
        if offered is not None and await self._offer(offered):
            task_status.started()
            return None
        async with trio.open_nursery() as nursery:
            try:
                await nursery.start(self._media.run)
            except WSSError as exc:
                if self._termination is None:
                    logger.error("call %s not handled: %s", self.call_id, exc)
                    self._terminate(TerminationReason.MEDIA_LOST, "network", str(exc))
                return exc
            logger.info("call %s from %s: media connected", self.call_id, self.caller_number)
            task_status.started()
            self._nursery = nursery
            nursery.start_soon(self._dispatch_events)
            try:
                await self._run_handler(handler)
            finally:
                self._nursery = None
        return None

    async def _offer(self, hook: Callable[[CallOffer], object]) -> bool:
        """Run the ``CALL_OFFERED`` handler; True if the call is over here (handed
        off, or the client shut down meanwhile)."""
        offer = CallOffer(self._call_in, self._config.sample_rate, str(self._config.audio_mode))
        failed = False
        try:
            with self._offer_scope:
                result = hook(offer)
                if inspect.isawaitable(result):
                    await result
        except Exception as exc:
            failed = True
            logger.exception(
                "call %s: CALL_OFFERED handler raised; serving the call here", self.call_id
            )
            await self._report(exc)
        finally:
            offer._open = False
        if self._offer_scope.cancelled_caught:
            self._terminate(TerminationReason.CLIENT_SHUTDOWN, "client")
        elif offer.handed_off and not failed:
            self._terminate(TerminationReason.HANDED_OFF, "agent")
        return self._termination is not None

    async def _run_handler(self, handler: Callable[[ActiveCall], object]) -> None:
        reason = TerminationReason.HANDLER_RETURNED
        try:
            with self._handler_scope:
                try:
                    result = handler(self)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    if self._termination is not None and isinstance(
                        exc, BufferClosedError | WSSCallClosedError
                    ):
                        # The documented way a handler learns that the caller hung up
                        # mid-response (0.24 error handling): an end, not a failure.
                        logger.debug(
                            "call %s: handler stopped by the end of the call", self.call_id
                        )
                    else:
                        reason = TerminationReason.HANDLER_FAILED
                        logger.exception("call %s: INCOMING_CALL handler raised", self.call_id)
                        await self._report(exc)
            if self._handler_scope.cancelled_caught:
                reason = TerminationReason.CLIENT_SHUTDOWN
        finally:
            await self._finish(reason)

    async def _finish(self, reason: TerminationReason) -> None:
        """Close the call after its handler (close semantics), bounded in time."""
        config = self._config
        who: Who = "client" if reason is TerminationReason.CLIENT_SHUTDOWN else "agent"
        try:
            if self._termination is None and not _cancelled():
                if reason is TerminationReason.HANDLER_RETURNED and not self.outbound:
                    # The rule 1.0.0 callback code trips over: say it where it bites.
                    logger.debug(
                        "call %s: the INCOMING_CALL handler returned, so the call ends "
                        "(call.close); to keep a call, await call.wait_terminated() "
                        "in the handler",
                        self.call_id,
                    )
                limit = config.close_timeout if self._shutting_down else math.inf
                with trio.move_on_after(limit):
                    try:
                        await self._command(proto.CallCommand.CLOSE, ending=(reason, who))
                    except WSSCallError as exc:
                        logger.warning(
                            "call %s: close after the handler failed: %s", self.call_id, exc
                        )
                self._terminate(reason, who)
        finally:
            if _cancelled():
                # Cancelled from outside: the media reader is gone, so say goodbye
                # without waiting for an answer, then run what is left of the events.
                with trio.CancelScope(shield=True) as scope:
                    scope.deadline = trio.current_time() + config.close_timeout
                    if self._termination is None:
                        await self._media.post(proto.CallCommand.CLOSE, config.close_timeout)
                        self._terminate(TerminationReason.CLIENT_SHUTDOWN, "client")
                    await self._run_queued_events()

    def _shutdown(self) -> None:
        """The client is shutting down: cancel the handler; the task then closes the call."""
        self._shutting_down = True
        self._offer_scope.cancel()
        self._handler_scope.cancel()
