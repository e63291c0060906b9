"""Typed frames of the Telcoflow wire protocol and their JSON/binary encoding.

Every frame of both planes, in both directions, is a frozen attrs class with an
``encode()`` method that returns the exact wire message. ``decode_control`` and
``decode_media`` turn a received message back into a frame; they serve the
client and the simulator alike. Anything malformed raises
:class:`~telcoflow_trio.exceptions.RemoteProtocolError` naming the frame type and
the field; a well-formed frame of a type we do not know becomes
:class:`UnknownFrame`, so newer servers do not break older clients.

Field names follow the wire (spec B.4-B.7): camelCase on the control plane and
snake_case inside media ``data`` objects, with the odd ``channelId``.
"""

from __future__ import annotations

import enum
import json
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeAlias

import attrs

from ..exceptions import RemoteProtocolError

__all__ = [
    "MAX_MESSAGE_BYTES",
    "AudioFrame",
    "BufferRequest",
    "CallEventFrame",
    "CallFlowSetup",
    "CallIn",
    "ChannelType",
    "Command",
    "CommandResponse",
    "ControlFrame",
    "MediaFrame",
    "MessageErrorCode",
    "Response",
    "SessionClosed",
    "SessionCreate",
    "SessionNotify",
    "SessionOpen",
    "SessionReady",
    "Setup",
    "SetupDone",
    "UnknownFrame",
    "WaMsgIn",
    "WaMsgOut",
    "decode_control",
    "decode_media",
]

#: Largest message either decoder accepts (the 1 MiB default of the websockets
#: library that the official SDK uses).
MAX_MESSAGE_BYTES = 1 << 20

JSON: TypeAlias = Any
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode
_loads = json.JSONDecoder().decode


class ChannelType(enum.StrEnum):
    """The channel of a session: a phone call or WhatsApp."""

    TELCO = "TELCO"
    WA = "WA"


class MessageErrorCode(enum.StrEnum):
    """Why the platform refused a WhatsApp message (``WSSMessageError.error_code``)."""

    INVALID_PAYLOAD = "INVALID_PAYLOAD"
    SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
    SESSION_NOT_OPEN = "SESSION_NOT_OPEN"
    INVALID_CHANNEL = "INVALID_CHANNEL"
    OVERFLOW = "OVERFLOW"
    INTERNAL_ERROR = "INTERNAL_ERROR"
    REMOTE_ERROR = "REMOTE_ERROR"


# -- field readers -----------------------------------------------------------------
# Each takes the object, the key and the frame type (for the error message).


def _missing(frame: str, key: str) -> RemoteProtocolError:
    return RemoteProtocolError(f"{frame!r} frame is missing the field {key!r}")


def _wrong(frame: str, key: str, want: str, value: object) -> RemoteProtocolError:
    return RemoteProtocolError(
        f"{frame!r} frame field {key!r} must be {want}, got {type(value).__name__}"
    )


def _str(obj: Mapping[str, JSON], key: str, frame: str) -> str:
    try:
        value = obj[key]
    except KeyError:
        raise _missing(frame, key) from None
    if not isinstance(value, str):
        raise _wrong(frame, key, "a string", value)
    return value


def _opt_str(obj: Mapping[str, JSON], key: str, frame: str) -> str | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, str):
        raise _wrong(frame, key, "a string", value)
    return value


def _int(obj: Mapping[str, JSON], key: str, frame: str, default: int | None = None) -> int:
    value = obj.get(key, default)
    if value is None:
        if default is not None:
            return default
        raise _missing(frame, key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise _wrong(frame, key, "an integer", value)
    return value


def _bool(obj: Mapping[str, JSON], key: str, frame: str) -> bool:
    try:
        value = obj[key]
    except KeyError:
        raise _missing(frame, key) from None
    if not isinstance(value, bool):
        raise _wrong(frame, key, "a boolean", value)
    return value


def _dict(obj: Mapping[str, JSON], key: str, frame: str) -> dict[str, JSON]:
    try:
        value = obj[key]
    except KeyError:
        raise _missing(frame, key) from None
    if not isinstance(value, dict):
        raise _wrong(frame, key, "an object", value)
    return value


def _opt_dict(obj: Mapping[str, JSON], key: str, frame: str) -> dict[str, JSON] | None:
    value = obj.get(key)
    if value is not None and not isinstance(value, dict):
        raise _wrong(frame, key, "an object", value)
    return value


def _secret_repr(value: str | None) -> str:
    return "None" if value is None else "'***'"


# -- control plane: client -> server -------------------------------------------------


@attrs.frozen
class Setup:
    """``setup``: the first frame on a control connection; fixes its audio format."""

    TYPE: ClassVar[str] = "setup"
    sample_rate: int
    audio_mode: str

    def encode(self) -> str:
        data = {"sampleRate": self.sample_rate, "audioMode": self.audio_mode}
        return _dumps({"type": self.TYPE, "data": data})

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> Setup:
        data = _dict(obj, "data", cls.TYPE)
        return cls(_int(data, "sampleRate", cls.TYPE), _str(data, "audioMode", cls.TYPE))


@attrs.frozen
class SessionOpen:
    """``session.open``: claim the session of a notification (answered by ``response``)."""

    TYPE: ClassVar[str] = "session.open"
    session_id: str
    req_id: str

    def encode(self) -> str:
        return _dumps({"type": self.TYPE, "sessionId": self.session_id, "reqId": self.req_id})

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> SessionOpen:
        return cls(_str(obj, "sessionId", cls.TYPE), _str(obj, "reqId", cls.TYPE))


@attrs.frozen
class SessionReady:
    """``session.ready``: we are ready for the session's ``call.in`` (no reply)."""

    TYPE: ClassVar[str] = "session.ready"
    session_id: str

    def encode(self) -> str:
        return _dumps({"type": self.TYPE, "sessionId": self.session_id})

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> SessionReady:
        return cls(_str(obj, "sessionId", cls.TYPE))


@attrs.frozen
class SessionCreate:
    """``session.create``: ask for a new session towards ``remote_address``."""

    TYPE: ClassVar[str] = "session.create"
    channel: str
    remote_address: str
    req_id: str

    def encode(self) -> str:
        return _dumps(
            {
                "type": self.TYPE,
                "channel": self.channel,
                "remoteAddress": self.remote_address,
                "reqId": self.req_id,
            }
        )

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> SessionCreate:
        t = cls.TYPE
        return cls(_str(obj, "channel", t), _str(obj, "remoteAddress", t), _str(obj, "reqId", t))


@attrs.frozen
class CallFlowSetup:
    """``call_flow.setup``: which kinds of traffic this connection wants."""

    TYPE: ClassVar[str] = "call_flow.setup"
    inbound_call: str
    outbound_call: bool
    inbound_message: bool
    outbound_message: bool
    req_id: str

    def encode(self) -> str:
        data = {
            "inboundCall": self.inbound_call,
            "outboundCall": self.outbound_call,
            "inboundMessage": self.inbound_message,
            "outboundMessage": self.outbound_message,
        }
        return _dumps({"type": self.TYPE, "data": data, "reqId": self.req_id})

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> CallFlowSetup:
        t = cls.TYPE
        data = _dict(obj, "data", t)
        return cls(
            _str(data, "inboundCall", t),
            _bool(data, "outboundCall", t),
            _bool(data, "inboundMessage", t),
            _bool(data, "outboundMessage", t),
            _str(obj, "reqId", t),
        )


@attrs.frozen
class WaMsgOut:
    """``wa.msg.out``: a WhatsApp message (kept for protocol completeness)."""

    TYPE: ClassVar[str] = "wa.msg.out"
    session_id: str
    client_msg_id: str
    api_version: str
    data: dict[str, JSON]
    req_id: str

    def encode(self) -> str:
        data = {
            "sessionId": self.session_id,
            "clientMsgId": self.client_msg_id,
            "apiVersion": self.api_version,
            "data": self.data,
        }
        return _dumps({"type": self.TYPE, "data": data, "reqId": self.req_id})

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> WaMsgOut:
        t = cls.TYPE
        data = _dict(obj, "data", t)
        return cls(
            _str(data, "sessionId", t),
            _str(data, "clientMsgId", t),
            _str(data, "apiVersion", t),
            _dict(data, "data", t),
            _str(obj, "reqId", t),
        )


# -- control plane: server -> client -------------------------------------------------


@attrs.frozen
class SetupDone:
    """``setup.done``: the connection is set up; ``sm_ws_id`` names it."""

    TYPE: ClassVar[str] = "setup.done"
    sm_ws_id: str

    def encode(self) -> str:
        return _dumps({"type": self.TYPE, "smWsId": self.sm_ws_id})

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> SetupDone:
        return cls(_str(obj, "smWsId", cls.TYPE))


@attrs.frozen
class Response:
    """``response``: the answer to a request carrying ``reqId``."""

    TYPE: ClassVar[str] = "response"
    req_id: str
    ok: bool
    content: JSON = None
    error_code: str | None = None
    error_content: dict[str, JSON] | None = None

    @property
    def error_message(self) -> str | None:
        """The server's own words on a refusal (``errorContent.message``), if any."""
        message = (self.error_content or {}).get("message")
        return message if isinstance(message, str) else None

    def encode(self) -> str:
        obj: dict[str, JSON] = {"type": self.TYPE, "reqId": self.req_id, "ok": self.ok}
        if self.content is not None:
            obj["content"] = self.content
        if self.error_code is not None:
            obj["errorCode"] = self.error_code
        if self.error_content is not None:
            obj["errorContent"] = self.error_content
        return _dumps(obj)

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> Response:
        t = cls.TYPE
        return cls(
            _str(obj, "reqId", t),
            _bool(obj, "ok", t),
            obj.get("content"),
            _opt_str(obj, "errorCode", t),
            _opt_dict(obj, "errorContent", t),
        )


@attrs.frozen
class SessionNotify:
    """``session.notify``: a session (for us, an inbound call) is waiting to be claimed."""

    TYPE: ClassVar[str] = "session.notify"
    session_id: str
    channel: str = "TELCO"
    remote_address: str = ""
    local_address: str = ""
    activity: str = "NEW_INCOMING_CALL"
    created_at: float = 0

    def encode(self) -> str:
        return _dumps(
            {
                "type": self.TYPE,
                "sessionId": self.session_id,
                "channel": self.channel,
                "remoteAddress": self.remote_address,
                "localAddress": self.local_address,
                "activity": self.activity,
                "createdAt": self.created_at,
            }
        )

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> SessionNotify:
        t = cls.TYPE
        created = obj.get("createdAt", 0)
        if isinstance(created, bool) or not isinstance(created, int | float):
            raise _wrong(t, "createdAt", "a number", created)
        return cls(
            _str(obj, "sessionId", t),
            _opt_str(obj, "channel", t) or "",
            _opt_str(obj, "remoteAddress", t) or "",
            _opt_str(obj, "localAddress", t) or "",
            _opt_str(obj, "activity", t) or "",
            created,
        )


@attrs.frozen
class CallIn:
    """``call.in``: the call of a ready session, with its media URL and bearer token."""

    TYPE: ClassVar[str] = "call.in"
    session_id: str
    call_id: str
    caller: str
    callee: str
    url: str
    token: str = attrs.field(repr=_secret_repr)
    org_uuid: str = ""

    def encode(self) -> str:
        return _dumps(
            {
                "type": self.TYPE,
                "sessionId": self.session_id,
                "callId": self.call_id,
                "orgUuid": self.org_uuid,
                "from": self.caller,
                "to": self.callee,
                "url": self.url,
                "token": self.token,
            }
        )

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> CallIn:
        t = cls.TYPE
        return cls(
            _str(obj, "sessionId", t),
            _str(obj, "callId", t),
            _opt_str(obj, "from", t) or "",
            _opt_str(obj, "to", t) or "",
            _str(obj, "url", t),
            _str(obj, "token", t),
            _opt_str(obj, "orgUuid", t) or "",
        )


@attrs.frozen
class SessionClosed:
    """``session.closed``: the session ended; ``reason`` is ``SDK_REQUEST``,
    ``FORCE_CLOSE`` or ``CALL_TERMINATED``."""

    TYPE: ClassVar[str] = "session.closed"
    session_id: str
    reason: str = "FORCE_CLOSE"

    def encode(self) -> str:
        return _dumps({"type": self.TYPE, "sessionId": self.session_id, "reason": self.reason})

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> SessionClosed:
        t = cls.TYPE
        return cls(_str(obj, "sessionId", t), _opt_str(obj, "reason", t) or "FORCE_CLOSE")


@attrs.frozen
class WaMsgIn:
    """``wa.msg.in``: an inbound WhatsApp message (kept for protocol completeness)."""

    TYPE: ClassVar[str] = "wa.msg.in"
    session_id: str
    sender: str
    content: dict[str, JSON]

    def encode(self) -> str:
        return _dumps(
            {
                "type": self.TYPE,
                "sessionId": self.session_id,
                "sender": self.sender,
                "content": self.content,
            }
        )

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> WaMsgIn:
        t = cls.TYPE
        return cls(_str(obj, "sessionId", t), _str(obj, "sender", t), _dict(obj, "content", t))


@attrs.frozen
class UnknownFrame:
    """A well-formed JSON frame whose ``type`` this version does not know."""

    type: str
    body: dict[str, JSON]

    def encode(self) -> str:
        return _dumps({**self.body, "type": self.type})


# -- media plane -----------------------------------------------------------------------


@attrs.frozen
class Command:
    """``command``: a call command; the server answers with ``command_response``."""

    TYPE: ClassVar[str] = "command"
    command_id: str
    command: str
    timeout_ms: int
    data: dict[str, JSON] | None = None

    def encode(self) -> str:
        body: dict[str, JSON] = {
            "command_id": self.command_id,
            "command": self.command,
            "timeout_ms": self.timeout_ms,
        }
        if self.data is not None:
            body["data"] = self.data
        return _dumps({"type": self.TYPE, "data": body})

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> Command:
        t = cls.TYPE
        data = _dict(obj, "data", t)
        return cls(
            _str(data, "command_id", t),
            _str(data, "command", t),
            _int(data, "timeout_ms", t),
            _opt_dict(data, "data", t),
        )


@attrs.frozen
class CommandResponse:
    """``command_response``: the outcome of the command with ``command_id``."""

    TYPE: ClassVar[str] = "command_response"
    command_id: str
    success: bool
    result: JSON = None
    error_code: str | None = None
    error_message: str | None = None

    def encode(self) -> str:
        body: dict[str, JSON] = {"command_id": self.command_id, "success": self.success}
        if self.result is not None:
            body["result"] = self.result
        if self.error_code is not None:
            body["error_code"] = self.error_code
        if self.error_message is not None:
            body["error_message"] = self.error_message
        return _dumps({"type": self.TYPE, "data": body})

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> CommandResponse:
        t = cls.TYPE
        data = _dict(obj, "data", t)
        return cls(
            _str(data, "command_id", t),
            _bool(data, "success", t),
            data.get("result"),
            _opt_str(data, "error_code", t),
            _opt_str(data, "error_message", t),
        )


@attrs.frozen
class CallEventFrame:
    """``call_event``: something happened to the call (``call.terminated``, ``call.error``)."""

    TYPE: ClassVar[str] = "call_event"
    event: str
    fields: dict[str, JSON] = attrs.field(factory=dict)

    def encode(self) -> str:
        return _dumps({"type": self.TYPE, "data": {**self.fields, "event": self.event}})

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> CallEventFrame:
        data = _dict(obj, "data", cls.TYPE)
        event = _str(data, "event", cls.TYPE)
        return cls(event, {k: v for k, v in data.items() if k != "event"})


@attrs.frozen
class BufferRequest:
    """``buffer_request``: the server pulls up to ``requested_bytes`` more agent audio."""

    TYPE: ClassVar[str] = "buffer_request"
    requested_bytes: int
    prefer_audio_frame_bytes: int = 0
    channel_id: int = 0

    def encode(self) -> str:
        data = {
            "requested_bytes": self.requested_bytes,
            "prefer_audio_frame_bytes": self.prefer_audio_frame_bytes,
            "channelId": self.channel_id,
        }
        return _dumps({"type": self.TYPE, "data": data})

    @classmethod
    def _decode(cls, obj: dict[str, JSON]) -> BufferRequest:
        t = cls.TYPE
        data = _dict(obj, "data", t)
        return cls(
            _int(data, "requested_bytes", t),
            _int(data, "prefer_audio_frame_bytes", t, 0),
            _int(data, "channelId", t, 0),
        )


@attrs.frozen
class AudioFrame:
    """A binary media frame: one channel byte, then PCM16LE mono samples."""

    channel: int
    pcm: bytes

    def encode(self) -> bytes:
        return self.channel.to_bytes(1, "little") + self.pcm


ControlFrame: TypeAlias = (
    Setup
    | SessionOpen
    | SessionReady
    | SessionCreate
    | CallFlowSetup
    | WaMsgOut
    | SetupDone
    | Response
    | SessionNotify
    | CallIn
    | SessionClosed
    | WaMsgIn
    | UnknownFrame
)
MediaFrame: TypeAlias = (
    Command | CommandResponse | CallEventFrame | BufferRequest | AudioFrame | UnknownFrame
)

_Decoder: TypeAlias = Callable[[dict[str, JSON]], Any]
_CONTROL: dict[str, _Decoder] = {
    c.TYPE: c._decode
    for c in (
        Setup,
        SessionOpen,
        SessionReady,
        SessionCreate,
        CallFlowSetup,
        WaMsgOut,
        SetupDone,
        Response,
        SessionNotify,
        CallIn,
        SessionClosed,
        WaMsgIn,
    )
}
_MEDIA: dict[str, _Decoder] = {
    c.TYPE: c._decode for c in (Command, CommandResponse, CallEventFrame, BufferRequest)
}


def _decode_json(message: str, table: dict[str, _Decoder], max_size: int) -> Any:
    if len(message) > max_size:
        raise RemoteProtocolError(f"text frame of {len(message)} characters exceeds {max_size}")
    try:
        obj = _loads(message)
    except ValueError as exc:
        raise RemoteProtocolError(f"text frame is not valid JSON ({exc})") from None
    except RecursionError:
        raise RemoteProtocolError("text frame is nested too deeply") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"text frame must be a JSON object, got {type(obj).__name__}")
    if "\\u" in message:
        # An escape can spell a lone UTF-16 surrogate, which is not text: a frame
        # holding one could never be encoded (sent back, logged) as UTF-8.
        try:
            _dumps(obj).encode()
        except (UnicodeEncodeError, RecursionError):
            raise RemoteProtocolError("text frame holds an unpaired surrogate escape") from None
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise RemoteProtocolError("text frame has no string field 'type'")
    decoder = table.get(kind)
    return UnknownFrame(kind, obj) if decoder is None else decoder(obj)


def decode_control(message: str | bytes, *, max_size: int = MAX_MESSAGE_BYTES) -> ControlFrame:
    """Decode one control-plane message (either direction).

    Raises:
        RemoteProtocolError: binary message, invalid JSON, missing or mistyped field,
            or a message larger than ``max_size``.
    """
    if not isinstance(message, str):
        raise RemoteProtocolError("control connection got a binary frame; it carries JSON text")
    frame: ControlFrame = _decode_json(message, _CONTROL, max_size)
    return frame


def decode_media(message: str | bytes, *, max_size: int = MAX_MESSAGE_BYTES) -> MediaFrame:
    """Decode one media-plane message (either direction).

    Binary messages are audio: byte 0 is the channel, the rest PCM16LE.

    Raises:
        RemoteProtocolError: as :func:`decode_control`, or an audio frame with no
            samples, with half a sample (PCM16 is whole 2-byte samples) or larger
            than ``max_size``.
    """
    if isinstance(message, str):
        frame: MediaFrame = _decode_json(message, _MEDIA, max_size)
        return frame
    size = len(message)
    if size < 2:
        raise RemoteProtocolError(f"audio frame of {size} byte(s) carries no audio")
    if size > max_size:
        raise RemoteProtocolError(f"audio frame of {size} bytes exceeds {max_size}")
    if not size % 2:
        raise RemoteProtocolError(f"audio frame of {size - 1} PCM bytes ends in half a sample")
    return AudioFrame(message[0], message[1:])
