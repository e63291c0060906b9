"""The exception tree of telcoflow_trio.

The Telcoflow SDK 0.24 names are kept so code written for it catches the same
classes; the additions (marked ``+``) make protocol and state errors precise::

    WSSError
    ├── WSSConnectionError          control or media connection failed
    │   ├── WSSConnectionClosed +   the peer closed the WebSocket (code, reason)
    │   │   └── ws.ConnectionClosed +   the same from telcoflow_trio.ws (reason: CloseReason)
    │   └── ws.HandshakeError +     a telcoflow_trio.ws WebSocket could not be opened
    │       ├── ws.ConnectionRejected + the server refused the upgrade (status, body)
    │       └── ws.ConnectionTimeout +  opening took too long
    ├── WSSAuthenticationError      API key or mTLS rejected; never retried
    │   └── WSSTLSError +           TLS handshake failed (also a WSSConnectionError)
    ├── WSSMediaError               media connection failed or dropped mid-call
    ├── BufferFullError             the outgoing audio buffer has no room
    ├── BufferClosedError           audio written after the call ended
    ├── WSSCallError                base of call errors
    │   ├── WSSCallNotAnswered +        an outbound call ended before it was answered
    │   ├── WSSCallClosedError          the call has already ended
    │   ├── WSSCallStateError +         command illegal in the call's state
    │   ├── WSSCallCommandError         the server refused a command
    │   └── WSSCallCommandTimeoutError  no response to a command in time
    ├── WSSRequestError +           the session manager refused a control request
    │   └── WSSSessionError             a session request (open, create, call flow): by code
    │       ├── WSSChannelNotConfigured     CHANNEL_NOT_CONFIGURED (1.0.0 names, all codes
    │       ├── WSSForbidden                FORBIDDEN               of spec B.6 but
    │       ├── WSSInvalidRequest           INVALID_REQUEST         UNAUTHORIZED, which is
    │       ├── WSSQuotaExceeded            QUOTA_EXCEEDED          WSSAuthenticationError)
    │       ├── WSSOutboundOverflow         OUTBOUND_OVERFLOW
    │       ├── WSSSessionBusy              SESSION_BUSY (bound_sm_ws_id)
    │       ├── WSSSessionClosed            SESSION_CLOSED
    │       ├── WSSSessionNotFound          SESSION_NOT_FOUND
    │       ├── WSSSessionNotOpen           SESSION_NOT_OPEN
    │       ├── WSSSessionAlreadyExists     session.create answered ``created: false``
    │       └── WrongChannelError +         a channel's operation on another channel's session
    ├── WSSMessageError +           a WhatsApp message was refused (``error_code``)
    ├── ProtocolError +             a frame that breaks the wire protocol
    │   ├── LocalProtocolError +        we were about to send an invalid frame
    │   └── RemoteProtocolError +       the peer sent an invalid frame
    └── StreamBridgeError +         a stream bridge ended with an error

Messages never contain API keys, tokens or key material.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ._bridge_result import BridgeResult

__all__ = [
    "BufferClosedError",
    "BufferFullError",
    "LocalProtocolError",
    "ProtocolError",
    "RemoteProtocolError",
    "StreamBridgeError",
    "WSSAuthenticationError",
    "WSSCallClosedError",
    "WSSCallCommandError",
    "WSSCallCommandTimeoutError",
    "WSSCallError",
    "WSSCallNotAnswered",
    "WSSCallStateError",
    "WSSChannelNotConfigured",
    "WSSConnectionClosed",
    "WSSConnectionError",
    "WSSError",
    "WSSForbidden",
    "WSSInvalidRequest",
    "WSSMediaError",
    "WSSMessageError",
    "WSSOutboundOverflow",
    "WSSQuotaExceeded",
    "WSSRequestError",
    "WSSSessionAlreadyExists",
    "WSSSessionBusy",
    "WSSSessionClosed",
    "WSSSessionError",
    "WSSSessionNotFound",
    "WSSSessionNotOpen",
    "WSSTLSError",
    "WrongChannelError",
]


class WSSError(Exception):
    """Base class of every error raised by telcoflow_trio."""


class WSSConnectionError(WSSError):
    """The control or media connection could not be opened or broke."""


class WSSConnectionClosed(WSSConnectionError):
    """The WebSocket is closed; ``code`` and ``reason`` say how.

    ``by_peer`` is ``True`` when the peer closed it or the connection dropped
    (1006), ``False`` when our side closed it: because the peer sent a protocol
    violation (1002), invalid UTF-8 (1007) or a message over the size limit
    (1009), with that code and the reason we sent.
    """

    def __init__(self, code: int, reason: str | None = None, *, by_peer: bool = True) -> None:
        closed = "connection closed" if by_peer else "we closed the connection"
        super().__init__(f"{closed} with code {code}" + (f": {reason}" if reason else ""))
        self.code = code
        self.reason = reason
        self.by_peer = by_peer


class WSSAuthenticationError(WSSError):
    """The platform rejected our credentials (HTTP 401/403 or a TLS failure).

    Retrying cannot help, so the client stops instead of reconnecting.
    """


class WSSTLSError(WSSAuthenticationError, WSSConnectionError):
    """The TLS handshake failed; the message names why (the verifier's words).

    An unknown CA, a certificate for another host, an expired certificate, or
    ours refused by a server that requires one. Both an authentication error
    (retrying cannot help, so the client stops instead of reconnecting) and a
    connection error (the connection could not be opened), so code that
    catches either sees it.
    """


class WSSMediaError(WSSError):
    """A call's media connection could not be opened or dropped unexpectedly."""


class BufferFullError(WSSError):
    """``send_audio`` was given more audio than the outgoing buffer has room for."""


class BufferClosedError(WSSError):
    """Audio was written after the call's outgoing buffer was closed."""


class WSSCallError(WSSError):
    """Base class of errors about one call."""


class WSSCallNotAnswered(WSSCallError):
    """An outbound call ended, or was given up, before the called party answered.

    ``reason`` is the platform's ``session.closed`` reason (``CALL_TERMINATED``:
    the callee declined, was busy or did not answer within the platform's ring
    time), or ``None`` when our own ``ring_timeout`` ran out first.
    """

    def __init__(self, message: str, *, reason: str | None = None) -> None:
        super().__init__(message)
        self.reason = reason


class WSSCallClosedError(WSSCallError):
    """The operation needs a live call, but the call has ended."""


class WSSCallStateError(WSSCallError):
    """The command is not allowed in the call's current state; nothing was sent."""


class WSSCallCommandError(WSSCallError):
    """The server refused a call command.

    ``error_code`` is the server's code (for example ``CALL_UNANSWERED`` after
    a ``connect()`` nobody answered; the call then stays active).
    """

    def __init__(
        self, message: str, *, error_code: str | None = None, error_message: str | None = None
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.error_message = error_message


class WSSCallCommandTimeoutError(WSSCallError):
    """No response to a call command arrived before its deadline."""


class WSSRequestError(WSSError):
    """The session manager answered a control request with ``ok: false``.

    ``error_code`` is the server's code and ``error_content`` its details (the
    message says both). Known codes raise the subclasses below (the telcoflow
    1.0.0 names); an unknown code raises this class itself.
    """

    def __init__(
        self,
        message: str,
        *,
        error_code: str | None = None,
        error_content: dict[str, object] | None = None,
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.error_content = error_content


class WSSSessionError(WSSRequestError):
    """The platform refused a request (the classes below name the code, as
    telcoflow 1.0.0 does); an unknown code of a request about a session
    (``session.open``, ``session.create``, REST list and close) raises this
    class itself, of any other request :class:`WSSRequestError`.
    """


class WSSSessionAlreadyExists(WSSSessionError):
    """``session.create`` answered ``created: false``: a session to that address is open.

    ``session_id`` is that session's id.
    """

    def __init__(self, message: str, *, session_id: str) -> None:
        super().__init__(message)
        self.session_id = session_id


class WSSChannelNotConfigured(WSSSessionError):
    """``CHANNEL_NOT_CONFIGURED``: the connector has no such channel (TELCO, WA)."""


class WSSForbidden(WSSSessionError):
    """``FORBIDDEN``: not allowed on this connection, e.g. by its call flow."""


class WSSInvalidRequest(WSSSessionError):
    """``INVALID_REQUEST``: the server could not accept the request's fields."""


class WSSQuotaExceeded(WSSSessionError):
    """``QUOTA_EXCEEDED``: the connector's quota is used up."""


class WSSOutboundOverflow(WSSSessionError):
    """``OUTBOUND_OVERFLOW``: too many outbound sessions at once."""


class WSSSessionBusy(WSSSessionError):
    """``SESSION_BUSY``: another control connection (``bound_sm_ws_id``) holds the session."""

    @property
    def bound_sm_ws_id(self) -> str | None:
        bound = (self.error_content or {}).get("boundSmWsId")
        return bound if isinstance(bound, str) else None


class WSSSessionClosed(WSSSessionError):
    """``SESSION_CLOSED``: the session has ended and cannot be resumed."""


class WSSSessionNotFound(WSSSessionError):
    """``SESSION_NOT_FOUND``: no such session."""


class WSSSessionNotOpen(WSSSessionError):
    """``SESSION_NOT_OPEN``: the session is not open (yet)."""


class WrongChannelError(WSSSessionError):
    """An operation of one channel on a session of another (``send_message`` on TELCO)."""


class WSSMessageError(WSSError):
    """The platform refused a WhatsApp message.

    ``error_code`` is a :class:`~telcoflow_trio.events.MessageErrorCode` value
    (``INVALID_PAYLOAD``, ``SESSION_NOT_OPEN``, ``OVERFLOW``, ...), or the
    server's own string for a code this version does not know.
    """

    def __init__(
        self, message: str, *, error_code: str | None = None, error_content: object = None
    ) -> None:
        super().__init__(message)
        self.error_code = error_code
        self.error_content = error_content


#: The class each control error code raises (``UNAUTHORIZED`` is a credentials error).
REQUEST_ERRORS: dict[str, type[WSSSessionError]] = {
    "CHANNEL_NOT_CONFIGURED": WSSChannelNotConfigured,
    "FORBIDDEN": WSSForbidden,
    "INVALID_REQUEST": WSSInvalidRequest,
    "QUOTA_EXCEEDED": WSSQuotaExceeded,
    "OUTBOUND_OVERFLOW": WSSOutboundOverflow,
    "SESSION_BUSY": WSSSessionBusy,
    "SESSION_CLOSED": WSSSessionClosed,
    "SESSION_NOT_FOUND": WSSSessionNotFound,
    "SESSION_NOT_OPEN": WSSSessionNotOpen,
}


def refusal(
    what: str,
    code: str | None,
    message: str | None = None,
    *,
    content: dict[str, object] | None = None,
    session: bool = False,
) -> WSSError:
    """The exception for a refused control or REST request: ``what`` failed with ``code``.

    The class follows the code (:data:`REQUEST_ERRORS`); ``UNAUTHORIZED`` is a
    :class:`WSSAuthenticationError`. A code this version does not know raises
    :class:`WSSSessionError` for a request about a session (``session``:
    opening, creating, closing one), else :class:`WSSRequestError`. The text
    names ``what``, the code and the server's ``message``.
    """
    text = f"{what} refused: {code or 'no error code'}" + (f" ({message})" if message else "")
    if code == "UNAUTHORIZED":
        return WSSAuthenticationError(text)
    cls = REQUEST_ERRORS.get(code or "", WSSSessionError if session else WSSRequestError)
    return cls(text, error_code=code, error_content=content)


class ProtocolError(WSSError):
    """A frame breaks the Telcoflow wire protocol. Do not raise this class directly."""


class LocalProtocolError(ProtocolError):
    """We were about to build or send a frame that the protocol does not allow."""


class RemoteProtocolError(ProtocolError):
    """The peer sent a frame we cannot accept (malformed, wrong types, too large)."""


class StreamBridgeError(WSSError):
    """A stream bridge ended because of an error; ``__cause__`` holds the details.

    ``result`` tells how the bridge ended (close codes of both sides, traffic),
    when the bridge got as far as producing one.
    """

    def __init__(self, message: str, *, result: BridgeResult | None = None) -> None:
        super().__init__(message)
        self.result = result
