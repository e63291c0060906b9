"""The simulator's WhatsApp channel: sessions, message delivery with acks, simulated users.

A WA session joins the connector to one remote address. The agent starts one
with ``session.create`` (initiator ``SDK``) or a simulated user starts one by
writing (:meth:`WaPlatform.send_from_user`, initiator ``CONNECTOR``), which
offers it to every control connection with ``session.notify``
(``NEW_INCOMING_MESSAGE``). The connection that claims it (``session.open`` +
``session.ready``) gets its ``wa.msg.in``; messages written before that wait,
bounded. ``wa.msg.out`` is acknowledged (after ``faults.wa_ack_delay``) with the
connector's response, or refused with a ``MessageErrorCode``; what the user
received is recorded on the session. Sessions outlive control connections:
after a reconnect the agent claims them again.
"""

from __future__ import annotations

import collections
import logging
import re
import uuid
from collections.abc import Awaitable, Callable
from typing import Any, Final, Protocol, final

import attrs
import trio

from ..proto import (
    CloseResult,
    Response,
    SessionClosed,
    SessionCreate,
    SessionInfo,
    SessionNotify,
    SessionOpen,
    SessionReady,
    WaMsgIn,
    WaMsgOut,
)
from ._connection import ControlConnection
from ._faults import SimulatorFaults
from ._model import SimulatorConfig

__all__ = ["WaMessage", "WaPlatform", "WaSession"]

logger = logging.getLogger(__name__)

#: The connector's own WhatsApp number (the sessions' local address).
LOCAL_ADDRESS: Final = "+15550000"
_ADDRESS = re.compile(r"\+?[1-9][0-9]{5,14}")


class WaHost(Protocol):
    """What the WhatsApp side needs of its simulator (the ``Simulator`` is one)."""

    config: SimulatorConfig
    faults: SimulatorFaults
    _closing: bool

    def _epoch(self) -> int: ...

    def _spawn(self, fn: Callable[[], Awaitable[object]]) -> bool: ...

    def _control_connections(self) -> list[ControlConnection]: ...


@attrs.frozen
class WaMessage:
    """A message the simulated user received from the agent (``wa.msg.out`` acknowledged)."""

    client_msg_id: str
    api_version: str
    data: dict[str, Any]
    message_id: str
    received_at: float


@final
@attrs.define(eq=False)
class WaSession:
    """One WhatsApp session of the simulator (``sim.wa.get(session_id)``)."""

    session_id: str
    remote_address: str
    initiator: str
    opened_at: int
    local_address: str = LOCAL_ADDRESS
    #: ``OPEN`` or ``CLOSED``.
    state: str = "OPEN"
    closed_at: int | None = None
    close_reason: str | None = None
    #: Messages the simulated user received, oldest first (bounded).
    received: collections.deque[WaMessage] = attrs.field(factory=collections.deque)
    _bound: ControlConnection | None = None
    _ready: bool = False
    _pending: collections.deque[WaMsgIn] = attrs.field(factory=collections.deque)
    _acks_in_flight: int = 0
    _changed: trio.lowlevel.ParkingLot = attrs.field(factory=trio.lowlevel.ParkingLot)

    @property
    def open(self) -> bool:
        return self.state == "OPEN"

    @property
    def claimed(self) -> bool:
        """Whether a live control connection has claimed it and sent ``session.ready``."""
        bound = self._bound
        return bound is not None and bound.alive and not bound.connection.abrupt and self._ready

    async def wait_received(self, count: int = 1) -> list[WaMessage]:
        """Wait until the user has received ``count`` messages in all; return them."""
        while len(self.received) < count:
            await self._changed.park()
        return list(self.received)

    async def wait_claimed(self) -> None:
        """Wait until a control connection has claimed the session (``session.ready``)."""
        while not self.claimed:
            await self._changed.park()

    def info(self) -> SessionInfo:
        return SessionInfo(
            id=self.session_id,
            channel="WA",
            initiator=self.initiator,
            state=self.state,
            remote_address=self.remote_address,
            local_address=self.local_address,
            opened_at=self.opened_at,
            closed_at=self.closed_at,
        )


def _refusal(req_id: str, code: str, message: str) -> Response:
    return Response(req_id, False, None, code, {"message": message})


@final
class WaPlatform:
    """The WhatsApp side of one simulator (``sim.wa``)."""

    def __init__(self, sim: WaHost, is_call_session: Callable[[str], bool]) -> None:
        self._sim = sim
        self._is_call_session = is_call_session
        self._sessions: dict[str, WaSession] = {}
        self._by_address: dict[str, WaSession] = {}
        self._closed: collections.OrderedDict[str, WaSession] = collections.OrderedDict()
        self.messages_in = 0
        self.messages_out = 0
        self.messages_refused = 0

    def get(self, session_id: str) -> WaSession | None:
        """The session with ``session_id``, open or recently closed."""
        return self._sessions.get(session_id) or self._closed.get(session_id)

    def find(self, remote_address: str) -> WaSession | None:
        """The open session with ``remote_address``, if any."""
        return self._by_address.get(remote_address)

    def sessions(self) -> list[WaSession]:
        """Open sessions, then the recently closed ones."""
        return [*self._sessions.values(), *self._closed.values()]

    def owns(self, session_id: str) -> bool:
        return session_id in self._sessions or session_id in self._closed

    # -- sessions -----------------------------------------------------------------------

    def _new(self, remote_address: str, initiator: str) -> WaSession:
        session = WaSession(str(uuid.uuid4()), remote_address, initiator, self._sim._epoch())
        self._sessions[session.session_id] = session
        self._by_address[remote_address] = session
        logger.info(
            "WA session %s with %s opened (%s)", session.session_id, remote_address, initiator
        )
        return session

    def create(self, control: ControlConnection, frame: SessionCreate) -> Response:
        """Answer a WA ``session.create``."""
        config, faults = self._sim.config, self._sim.faults
        if faults.create_refusal is not None:
            return _refusal(frame.req_id, *faults.create_refusal)
        if not config.wa_enabled:
            return _refusal(frame.req_id, "CHANNEL_NOT_CONFIGURED", "no WhatsApp channel")
        address = frame.remote_address
        if not _ADDRESS.fullmatch(address):
            return _refusal(frame.req_id, "INVALID_REQUEST", f"bad remoteAddress {address!r}")
        existing = self._by_address.get(address)
        if existing is not None:
            return Response(
                frame.req_id, True, {"sessionId": existing.session_id, "created": False}
            )
        if len(self._sessions) >= config.max_wa_sessions:
            return _refusal(
                frame.req_id, "QUOTA_EXCEEDED", f"{config.max_wa_sessions} WA sessions are open"
            )
        session = self._new(address, "SDK")
        return Response(frame.req_id, True, {"sessionId": session.session_id, "created": True})

    def open(self, control: ControlConnection, frame: SessionOpen) -> Response:
        """Answer a ``session.open`` of a WA session (a claim, or a re-claim after a reconnect)."""
        session = self._sessions.get(frame.session_id)
        if session is None:
            return _refusal(frame.req_id, "SESSION_CLOSED", f"session {frame.session_id} is over")
        bound = session._bound
        if (
            bound is not None
            and bound is not control
            and bound.alive
            and not bound.connection.abrupt
        ):
            return Response(
                frame.req_id, False, None, "SESSION_BUSY", {"boundSmWsId": bound.sm_ws_id}
            )
        if bound is not control:
            session._bound, session._ready = control, False
        info = {
            "id": session.session_id,
            "channel": "WA",
            "remoteAddress": session.remote_address,
            "localAddress": session.local_address,
            "openedAt": session.opened_at,
        }
        return Response(frame.req_id, True, {"session": info})

    def ready(self, control: ControlConnection, frame: SessionReady) -> None:
        """``session.ready``: deliver what the user wrote meanwhile."""
        session = self._sessions.get(frame.session_id)
        if session is None or session._bound is not control:
            return
        session._ready = True
        while session._pending:
            control.send_nowait(session._pending.popleft().encode())
        session._changed.unpark_all()

    def close(self, session_id: str, reason: str = "FORCE_CLOSE") -> WaSession | None:
        """Close an open session; its holder gets ``session.closed``. ``None`` if not open."""
        session = self._sessions.pop(session_id, None)
        if session is None:
            return None
        if self._by_address.get(session.remote_address) is session:
            del self._by_address[session.remote_address]
        session.state, session.close_reason = "CLOSED", reason
        session.closed_at = self._sim._epoch()
        self._closed[session_id] = session
        while len(self._closed) > self._sim.config.max_finished_calls:
            self._closed.popitem(last=False)
        if session._bound is not None:
            session._bound.send_nowait(SessionClosed(session_id, reason).encode())
        session._pending.clear()
        session._changed.unpark_all()
        logger.info("WA session %s closed (%s)", session_id, reason)
        return session

    def control_gone(self, control: ControlConnection) -> None:
        """Sessions of a lost connection stay open, unclaimed, for a reconnect to claim."""
        for session in self._sessions.values():
            if session._bound is control:
                session._bound, session._ready = None, False

    def renotify(self, control: ControlConnection) -> None:
        """Offer a new connection the sessions whose user is waiting for an answer."""
        for session in self._sessions.values():
            if session._bound is None and session._pending:
                control.send_nowait(self._notify(session))

    def _notify(self, session: WaSession) -> str:
        return SessionNotify(
            session.session_id,
            "WA",
            session.remote_address,
            session.local_address,
            "NEW_INCOMING_MESSAGE",
            self._sim._epoch(),
        ).encode()

    # -- messages ------------------------------------------------------------------------------

    async def send_from_user(
        self, remote_address: str, content: dict[str, Any] | str
    ) -> WaSession:
        """The simulated user ``remote_address`` writes ``content`` (a string is a text message).

        Delivered at once to the connection holding the session; else kept
        (bounded: the oldest goes) and the session offered with ``session.notify``.

        Raises:
            ValueError: a malformed address.
            RuntimeError: the simulator is shut down or the WA channel is off.
        """
        if not _ADDRESS.fullmatch(remote_address):
            raise ValueError(f"not a phone number or WhatsApp id: {remote_address!r}")
        if self._sim._closing or not self._sim.config.wa_enabled:
            raise RuntimeError("the simulator's WhatsApp channel is not available")
        body = {"type": "text", "text": {"body": content}} if isinstance(content, str) else content
        session = self._by_address.get(remote_address) or self._new(remote_address, "CONNECTOR")
        frame = WaMsgIn(session.session_id, remote_address, dict(body))
        self.messages_in += 1
        if session.claimed:
            assert session._bound is not None
            session._bound.send_nowait(frame.encode())
        else:
            if len(session._pending) >= self._sim.config.wa_inbox_messages:
                session._pending.popleft()
            session._pending.append(frame)
            if session._bound is None:  # offered where the call flow takes messages
                notify = self._notify(session)
                for control in self._sim._control_connections():
                    if control.inbound_message:
                        control.send_nowait(notify)
        await trio.lowlevel.checkpoint()
        return session

    def msg_out(self, control: ControlConnection, frame: WaMsgOut) -> None:
        """Acknowledge or refuse a ``wa.msg.out`` (after the ack delay, in its own task)."""
        refusal = self._check(control, frame)
        if refusal is not None:
            self.messages_refused += 1
            control.send_nowait(refusal.encode())
            return
        session = self._sessions[frame.session_id]
        session._acks_in_flight += 1
        if not self._sim._spawn(lambda: self._ack(control, session, frame)):
            session._acks_in_flight -= 1

    def _check(self, control: ControlConnection, frame: WaMsgOut) -> Response | None:
        sid, req = frame.session_id, frame.req_id
        session = self._sessions.get(sid)
        if session is None:
            if self._is_call_session(sid):
                return _refusal(req, "INVALID_CHANNEL", f"session {sid} is not a WA session")
            if sid in self._closed:
                return _refusal(req, "SESSION_NOT_OPEN", f"session {sid} is closed")
            return _refusal(req, "SESSION_NOT_FOUND", f"no session {sid}")
        if session._bound is not control:  # sending needs a claim, not ready
            return _refusal(
                req, "SESSION_NOT_OPEN", f"session {sid} is not open on this connection"
            )
        if not frame.data or not frame.api_version:
            return _refusal(req, "INVALID_PAYLOAD", "apiVersion and a non-empty data are required")
        if session._acks_in_flight >= self._sim.config.wa_max_unacked:
            return _refusal(req, "OVERFLOW", f"{session._acks_in_flight} messages await their ack")
        fault = self._sim.faults.wa_error
        if fault is not None:
            return _refusal(req, fault, f"refused by an injected fault ({fault})")
        return None

    async def _ack(self, control: ControlConnection, session: WaSession, frame: WaMsgOut) -> None:
        try:
            delay = self._sim.faults.wa_ack_delay
            if delay > 0:
                await trio.sleep(delay)
            if not session.open:
                self.messages_refused += 1
                message = f"session {session.session_id} closed before delivery"
                control.send_nowait(_refusal(frame.req_id, "SESSION_NOT_OPEN", message).encode())
                return
            message_id = f"wamid.{uuid.uuid4().hex}"
            limit = self._sim.config.wa_inbox_messages
            if len(session.received) >= limit:
                session.received.popleft()
            session.received.append(
                WaMessage(
                    frame.client_msg_id,
                    frame.api_version,
                    frame.data,
                    message_id,
                    trio.current_time(),
                )
            )
            self.messages_out += 1
            session._changed.unpark_all()
            content = {"messageId": message_id, "status": "accepted"}
            control.send_nowait(Response(frame.req_id, True, content).encode())
        finally:
            session._acks_in_flight -= 1

    # -- REST -------------------------------------------------------------------------------

    def listing(
        self, channel: str | None, remote_address: str | None, state: str | None
    ) -> list[SessionInfo]:
        """The sessions a REST listing with these filters returns (WA sessions only)."""
        if channel not in (None, "WA"):
            return []
        return [
            s.info()
            for s in self.sessions()
            if (remote_address is None or s.remote_address == remote_address)
            and (state is None or s.state == state)
        ]

    def close_by_rest(self, session_id: str) -> CloseResult | None:
        """A REST close; ``None`` when there is no such open session (a 404)."""
        session = self.close(session_id, "SDK_REQUEST")
        if session is None:
            return None
        return CloseResult(closed_at=session.closed_at, reason="SDK_REQUEST")
