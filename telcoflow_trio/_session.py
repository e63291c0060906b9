"""Sessions: :class:`Session` (a WhatsApp conversation, or a TELCO session) and its messages.

A session is the platform's unit of a conversation with one remote address.
WhatsApp sessions carry messages both ways on the control connection:
``wa.msg.out`` (a request, acknowledged with the connector's response) and
``wa.msg.in``. Incoming messages wait in a bounded inbox (the oldest is dropped
when it is full, and counted) until :meth:`Session.messages` reads them.
"""

from __future__ import annotations

import collections
import inspect
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from functools import partial
from typing import TYPE_CHECKING, Any, Final, TypeAlias, final

import attrs
import trio

from . import proto
from ._rest import RestClient
from .config import TelcoflowClientConfig
from .events import ChannelType, MessageErrorCode
from .exceptions import (
    WrongChannelError,
    WSSConnectionError,
    WSSError,
    WSSMessageError,
)

if TYPE_CHECKING:
    from ._control import ControlConnection

__all__ = [
    "IncomingMessage",
    "MessageHandler",
    "Session",
    "SessionRegistry",
    "check_channel",
    "check_remote_address",
]

logger = logging.getLogger(__name__)

#: Incoming messages a session keeps unread before dropping the oldest.
INBOX_MESSAGES: Final = 256

#: A phone number or WhatsApp id: digits, an optional leading ``+``, 6 to 15 digits.
_ADDRESS = re.compile(r"\+?[1-9][0-9]{5,14}")

_Request = Callable[[Callable[[str], proto.ControlFrame]], Awaitable[proto.Response]]


def check_channel(channel: ChannelType | str) -> ChannelType:
    """``channel`` as a :class:`ChannelType`.

    Raises:
        ValueError: it is not ``TELCO`` or ``WA``.
    """
    try:
        return ChannelType(channel)
    except ValueError:
        allowed = ", ".join(c.value for c in ChannelType)
        raise ValueError(f"unknown channel {channel!r} (one of {allowed})") from None


def check_remote_address(remote_address: object) -> str:
    """``remote_address`` if it is a phone number or WhatsApp id (``+15550100``, ``15550100``).

    Raises:
        ValueError: empty, not a string, or not 6 to 15 digits with an optional ``+``.
    """
    if not isinstance(remote_address, str) or not remote_address.strip():
        raise ValueError(f"remote_address must be a non-empty string, got {remote_address!r}")
    if not _ADDRESS.fullmatch(remote_address):
        raise ValueError(
            f"remote_address {remote_address!r} is not a phone number or WhatsApp id "
            "(6 to 15 digits, optionally after a '+')"
        )
    return remote_address


@attrs.frozen
class IncomingMessage:
    """A WhatsApp message from ``sender`` on ``session``; ``content`` is the platform's object."""

    session: Session = attrs.field(repr=lambda s: repr(s.id))
    sender: str
    content: dict[str, Any]


@final
class Session:
    """One session of the platform. Get it from :meth:`TelcoflowClient.create_session`,
    or in an ``INCOMING_MESSAGE`` handler (``message.session``).

    Attributes:
        id: the platform's session id.
        channel: :class:`~telcoflow_trio.events.ChannelType` (``WA`` or ``TELCO``).
        remote_address: the other party (phone number or WhatsApp id).
        local_address: our side's address, when the platform says.
        opened_at: when the session opened, in epoch seconds (0 if not said).
        created: ``False`` when ``create_session`` found the session already existing.
        close_reason: why it closed (``SDK_REQUEST``, ``FORCE_CLOSE``, ...), once closed.
        messages_dropped: incoming messages dropped because the inbox was full.
    """

    def __init__(
        self,
        session_id: str,
        channel: ChannelType,
        *,
        remote_address: str = "",
        local_address: str = "",
        opened_at: int = 0,
        created: bool = True,
        request: _Request,
        close: Callable[[str], Awaitable[proto.CloseResult]],
        close_timeout: float,
        inbox_size: int = INBOX_MESSAGES,
    ) -> None:
        self.id = session_id
        self.channel = channel
        self.remote_address = remote_address
        self.local_address = local_address
        self.opened_at = opened_at
        self.created = created
        self.close_reason: str | None = None
        self.messages_dropped = 0
        self._request = request
        self._close = close
        self._close_timeout = close_timeout
        self._inbox: collections.deque[IncomingMessage] = collections.deque(maxlen=inbox_size)
        self._arrived = trio.lowlevel.ParkingLot()
        self._closed = trio.Event()
        #: Our close request (REST) is in flight or went through: gone after a
        #: reconnect, the session was closed by us, not by the platform.
        self._close_requested = False

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Session {self.id} {self.channel} {self.remote_address} {state}>"

    @property
    def closed(self) -> bool:
        """Whether the session has closed (told by the platform, or given up on locally)."""
        return self._closed.is_set()

    async def send_message(self, data: Mapping[str, Any], *, api_version: str = "v1") -> Any:
        """Send a WhatsApp message (``data``: the connector's message object) and wait for its ack.

        Returns:
            The connector's response (the ``content`` of the acknowledgement).

        Raises:
            WrongChannelError: this is not a WA session.
            TypeError: ``data`` is not a mapping.
            ValueError: ``api_version`` is empty.
            WSSMessageError: the platform refused it; ``error_code`` is a
                :class:`~telcoflow_trio.events.MessageErrorCode` (``SESSION_NOT_OPEN``
                without asking, when the session is closed).
            WSSConnectionError: not connected, the connection dropped, or no ack in time.
        """
        if self.channel is not ChannelType.WA:
            raise WrongChannelError(
                f"send_message() needs a WA session; session {self.id} is {self.channel}",
                error_code="WRONG_CHANNEL",
            )
        if not isinstance(data, Mapping):
            raise TypeError(f"data must be a mapping (a JSON object), got {type(data).__name__}")
        if not isinstance(api_version, str) or not api_version:
            raise ValueError("api_version must be a non-empty string")
        if self.closed:
            closed = MessageErrorCode.SESSION_NOT_OPEN
            raise WSSMessageError(f"session {self.id} is closed: {closed}", error_code=closed)
        msg_id = str(uuid.uuid4())
        body = dict(data)
        response = await self._request(
            lambda req_id: proto.WaMsgOut(self.id, msg_id, api_version, body, req_id)
        )
        if response.ok:
            logger.debug("session %s: message %s acknowledged", self.id, msg_id)
            return response.content
        raw = response.error_code or "no error code"
        try:
            code: str = MessageErrorCode(raw)
        except ValueError:
            code = raw
        message = response.error_message
        text = f"message on session {self.id} refused: {code}" + (
            f": {message}" if message else ""
        )
        raise WSSMessageError(text, error_code=code, error_content=response.error_content)

    def messages(self) -> AsyncIterator[IncomingMessage]:
        """The incoming messages, in order (``async for``); ends when the session closes
        and the inbox is read. One reader at a time: two would split the messages.
        """
        return _Messages(self)

    async def receive_message(self) -> IncomingMessage:
        """The next incoming message.

        Raises:
            trio.EndOfChannel: the session closed and every message was read.
        """
        await trio.lowlevel.checkpoint_if_cancelled()
        while not self._inbox:
            if self.closed:
                raise trio.EndOfChannel(f"session {self.id} is closed")
            await self._arrived.park()
        return self._inbox.popleft()

    async def wait_closed(self) -> None:
        """Wait until the session has closed."""
        await self._closed.wait()

    async def close(self) -> None:
        """Close the session (REST ``close``) and wait, within ``close_timeout``, for the
        platform's ``session.closed``; then it counts as closed anyway. Does nothing if
        closed already; a session the platform no longer knows closes at once
        (``close_reason`` ``NOT_FOUND``).

        Raises:
            WSSConnectionError, WSSSessionError: the close request failed (the
                session is still open).
        """
        if self.closed:
            return
        result = await self._close(self.id)
        if result.reason == "NOT_FOUND":  # gone already: no session.closed will come
            self._closed_now("NOT_FOUND")
            return
        with trio.move_on_after(self._close_timeout):
            await self._closed.wait()
        self._closed_now("SDK_REQUEST")

    # -- fed by the client -----------------------------------------------------------

    def _deliver(self, frame: proto.WaMsgIn) -> None:
        if self.closed:
            return
        if len(self._inbox) == self._inbox.maxlen:
            self.messages_dropped += 1
            logger.warning("session %s: inbox full, dropping the oldest message", self.id)
        self._inbox.append(IncomingMessage(self, frame.sender, frame.content))
        self._arrived.unpark_all()

    def _closed_now(self, reason: str) -> None:
        if self.closed:
            return
        self.close_reason = reason
        self._closed.set()
        self._arrived.unpark_all()
        logger.info("session %s closed (%s)", self.id, reason)


@final
class _Messages:
    """What :meth:`Session.messages` returns: an async iterator (no generator to finalize)."""

    __slots__ = ("_session",)

    def __init__(self, session: Session) -> None:
        self._session = session

    def __aiter__(self) -> _Messages:
        return self

    async def __anext__(self) -> IncomingMessage:
        try:
            return await self._session.receive_message()
        except trio.EndOfChannel:
            raise StopAsyncIteration from None


MessageHandler: TypeAlias = Callable[[IncomingMessage], object]

#: Session-request error codes meaning "the session is gone or not ours": after a
#: reconnect, such a session is closed locally (spec B.6).
_LOST: Final = frozenset({"SESSION_BUSY", "SESSION_CLOSED", "SESSION_NOT_FOUND"})


#: WA offers kept while there is no ``INCOMING_MESSAGE`` handler (the newest).
_OFFERS_KEPT: Final = 64


def _open_frame(session_id: str, req_id: str) -> proto.ControlFrame:
    return proto.SessionOpen(session_id, req_id)


class SessionRegistry:
    """The client's sessions: create, claim (incoming WA), re-claim after a reconnect, route.

    Args:
        config: the client's settings (timeouts).
        rest: the REST plane (closing, listing).
        control: the current control connection, if any.
    """

    def __init__(
        self,
        config: TelcoflowClientConfig,
        rest: RestClient,
        control: Callable[[], ControlConnection | None],
    ) -> None:
        self._config = config
        self.rest = rest
        self._control = control
        self._sessions: dict[str, Session] = {}
        #: The ``INCOMING_MESSAGE`` handler; without one, WA sessions are not claimed.
        self.handler: MessageHandler | None = None
        #: Offers declined for lack of a handler, oldest first (bounded), claimed
        #: when one is registered (:meth:`set_handler`).
        self._offers: dict[str, proto.SessionNotify] = {}
        #: Where claims and handler loops run (the client's background nursery).
        self.nursery: trio.Nursery | None = None
        self.handler_errors = 0

    def get(self, session_id: str) -> Session | None:
        return self._sessions.get(session_id)

    def __len__(self) -> int:
        return len(self._sessions)

    async def _request(self, build: Callable[[str], proto.ControlFrame]) -> proto.Response:
        control = self._control()
        if control is None:
            raise WSSConnectionError("the client is not connected; call connect()")
        return await control.request(build)

    async def create(self, channel: ChannelType | str, remote_address: str) -> Session:
        """``session.create`` then claim it (``session.open`` + ``session.ready`` for WA)."""
        kind = check_channel(channel)
        address = check_remote_address(remote_address)
        what = f"session.create ({kind} {address})"
        response = await self._request(lambda r: proto.SessionCreate(kind.value, address, r))
        error = proto.request_error(response, what, session=True)
        if error is not None:
            raise error
        content = response.content if isinstance(response.content, dict) else {}
        session_id = content.get("sessionId")
        if not isinstance(session_id, str) or not session_id:
            raise WSSConnectionError(f"{what}: the response has no sessionId")
        existing = self._sessions.get(session_id)
        if existing is not None:
            return existing
        return await self._claim(session_id, created=content.get("created") is not False)

    async def _claim(self, session_id: str, *, created: bool = True) -> Session:
        """``session.open`` the session, register it, ``session.ready`` it if it is WA."""
        response = await self._request(partial(_open_frame, session_id))
        error = proto.request_error(response, f"session.open {session_id}", session=True)
        if error is not None:
            raise error
        info = response.content.get("session") if isinstance(response.content, dict) else None
        info = info if isinstance(info, dict) else {}
        try:
            channel = ChannelType(str(info.get("channel")))
        except ValueError:
            raise WSSConnectionError(
                f"session.open {session_id}: unknown channel {info.get('channel')!r}"
            ) from None
        opened = info.get("openedAt")
        session = Session(
            session_id,
            channel,
            remote_address=str(info.get("remoteAddress") or ""),
            local_address=str(info.get("localAddress") or ""),
            opened_at=opened if isinstance(opened, int) and not isinstance(opened, bool) else 0,
            created=created,
            request=self._request,
            close=self.close,
            close_timeout=self._config.close_timeout,
        )
        self._sessions[session_id] = session
        if channel is ChannelType.WA:
            await self._ready(session_id)
        logger.info("session %s (%s %s) open", session_id, channel, session.remote_address)
        return session

    async def close(self, session_id: str) -> proto.CloseResult:
        """Close ``session_id`` (REST). One of ours then counts as closed by us
        (``SDK_REQUEST``) even if its ``session.closed`` is lost in a reconnect.

        Raises:
            As :meth:`RestClient.close_session`.
        """
        session = self._sessions.get(session_id)
        if session is not None:
            session._close_requested = True
        try:
            return await self.rest.close_session(session_id)
        except BaseException:
            if session is not None:
                session._close_requested = False
            raise

    async def _ready(self, session_id: str) -> None:
        control = self._control()
        if control is None:
            raise WSSConnectionError("the client is not connected; call connect()")
        await control.send(proto.SessionReady(session_id))

    # -- fed by the control connection --------------------------------------------------

    def set_handler(self, handler: MessageHandler) -> None:
        """Set the ``INCOMING_MESSAGE`` handler and claim the offers kept until now, newest
        first. One taken by another worker meanwhile is refused ``SESSION_BUSY``, one
        closed ``SESSION_CLOSED``: both quietly."""
        self.handler = handler
        offers, self._offers = self._offers, {}
        for frame in reversed(offers.values()):
            self.notified(frame)

    def notified(self, frame: proto.SessionNotify) -> None:
        """A WA session is offered: claim it if there is a handler and it is not ours yet.

        Without a handler the offer is kept (the newest :data:`_OFFERS_KEPT`), so that
        registering one claims it rather than waiting for the user's next message.
        """
        session_id = frame.session_id
        if self.handler is None:
            logger.debug("no INCOMING_MESSAGE handler yet: not claiming WA session %s", session_id)
            self._offers.pop(session_id, None)
            self._offers[session_id] = frame
            while len(self._offers) > _OFFERS_KEPT:
                del self._offers[next(iter(self._offers))]
            return
        if self.nursery is None or session_id in self._sessions:
            logger.debug("not claiming WA session %s", session_id)
            return
        self.nursery.start_soon(self._serve_incoming, session_id)

    async def _serve_incoming(self, session_id: str) -> None:
        try:
            session = await self._claim(session_id)
        except WSSError as exc:
            logger.debug("WA session %s: not claimed: %s", session_id, exc)
            return
        await self.serve(session)

    async def serve(self, session: Session) -> None:
        """Run the ``INCOMING_MESSAGE`` handler on each message of ``session`` until it closes.

        A handler's exception is logged and counted; the next message still runs.
        """
        async for message in session.messages():
            handler = self.handler
            if handler is None:
                continue
            try:
                result = handler(message)
                if inspect.isawaitable(result):
                    await result
            except Exception:
                self.handler_errors += 1
                logger.exception("session %s: INCOMING_MESSAGE handler raised", session.id)

    def message(self, frame: proto.WaMsgIn) -> None:
        session = self._sessions.get(frame.session_id)
        if session is None:
            logger.debug("wa.msg.in for unknown session %s; dropped", frame.session_id)
            return
        session._deliver(frame)

    def closed(self, frame: proto.SessionClosed) -> None:
        session = self._sessions.pop(frame.session_id, None)
        if session is not None:
            session._closed_now(frame.reason)

    def connected(self, reconnect: bool) -> None:
        """After a reconnect, claim the WA sessions again (spec B.6)."""
        if reconnect and self.nursery is not None and self._sessions:
            self.nursery.start_soon(self._reclaim)

    async def _reclaim(self) -> None:
        for session in [s for s in self._sessions.values() if s.channel is ChannelType.WA]:
            try:
                response = await self._request(partial(_open_frame, session.id))
                if response.ok:
                    await self._ready(session.id)
                    logger.info("session %s claimed again after the reconnect", session.id)
                    continue
            except WSSConnectionError as exc:
                logger.warning("session %s: could not claim it again: %s", session.id, exc)
                return  # the connection went again; the next reconnect retries
            if response.error_code in _LOST:
                logger.info(
                    "session %s lost in the reconnect (%s)", session.id, response.error_code
                )
                self._sessions.pop(session.id, None)
                session._closed_now("SDK_REQUEST" if session._close_requested else "FORCE_CLOSE")
            else:
                logger.warning(
                    "session %s: session.open refused after the reconnect: %s",
                    session.id,
                    response.error_code,
                )

    def shutdown(self) -> None:
        """The client is closing: every session counts as closed (readers end)."""
        for session in list(self._sessions.values()):
            session._closed_now("CLIENT_CLOSED")
        self._sessions.clear()
        self._offers.clear()
