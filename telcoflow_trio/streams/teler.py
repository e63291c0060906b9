"""The Teler media-stream messages, without I/O.

Teler talks JSON text over the call's WebSocket (teler.md B): it sends ``start``
first, then ``audio`` chunks of base64 16-bit little-endian PCM (mono, 8 or
16 kHz); the app sends back ``audio`` (queued and played), ``clear`` (drop the
whole playback queue) and ``interrupt`` (drop one queued chunk by ``chunk_id``).

The platform's documents and FreJun's own bridges disagree on two shapes, so:

* parsing accepts inbound audio both nested (``data.audio_b64``, the documented
  shape) and flat (a top-level ``audio_b64``);
* building outbound audio takes an :class:`AudioShape`: ``FLAT``
  (``{"type": "audio", "audio_b64": ..., "chunk_id": ...}``, what every FreJun
  example sends, the default) or ``NESTED`` (the documented
  ``{"type": "audio", "data": {"audio_b64": ..., "chunk_id": ...}}``).

Teler advises sending at least 500 ms of audio per message; :class:`AudioChunker`
re-chunks whatever a voice AI produces to that size.

Everything malformed raises :class:`~telcoflow_trio.exceptions.RemoteProtocolError`
naming the message type and the field.
"""

from __future__ import annotations

import binascii
import enum
import json
from base64 import b64decode, b64encode
from typing import Any, TypeAlias

import attrs

from ..exceptions import RemoteProtocolError

__all__ = [
    "SAMPLE_WIDTH",
    "AudioChunker",
    "AudioShape",
    "ChunkIds",
    "TelerAudio",
    "TelerClear",
    "TelerInterrupt",
    "TelerMessage",
    "TelerStart",
    "TelerUnknown",
    "audio_message",
    "clear_message",
    "decode_audio",
    "encode_audio",
    "interrupt_message",
    "parse_audio",
    "parse_message",
    "parse_start",
]

#: Bytes per sample of Teler's ``audio/l16`` (mono).
SAMPLE_WIDTH = 2

_loads = json.JSONDecoder().decode
_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


class AudioShape(enum.Enum):
    """Where an outbound ``audio`` message puts ``audio_b64`` and ``chunk_id``."""

    #: ``{"type": "audio", "audio_b64": ..., "chunk_id": ...}``: FreJun's examples.
    FLAT = "flat"
    #: ``{"type": "audio", "data": {"audio_b64": ..., "chunk_id": ...}}``: the docs.
    NESTED = "nested"


# -- base64 ----------------------------------------------------------------------------


def encode_audio(pcm: bytes) -> str:
    """``pcm`` as base64 text."""
    return b64encode(pcm).decode("ascii")


def decode_audio(audio_b64: str) -> bytes:
    """The PCM bytes of base64 ``audio_b64``.

    Raises:
        RemoteProtocolError: ``audio_b64`` is not valid base64.
    """
    try:
        return b64decode(audio_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise RemoteProtocolError(f"'audio' message has invalid base64 audio: {exc}") from None


# -- inbound (Teler -> app) and, for test peers, outbound parsing -----------------------


@attrs.frozen
class TelerStart:
    """The ``start`` message, always Teler's first: who the stream belongs to."""

    call_id: str
    stream_id: str
    account_id: str | None = None
    call_app_id: str | None = None
    message_id: int | None = None
    encoding: str = "audio/l16"
    sample_rate: int = 8000
    channels: int = 1


@attrs.frozen
class TelerAudio:
    """An ``audio`` message with its audio decoded.

    Teler's own messages carry ``stream_id`` and ``message_id``; an app's carry
    ``chunk_id``. Whatever the message lacks is ``None``.
    """

    pcm: bytes
    message_id: int | None = None
    stream_id: str | None = None
    chunk_id: int | None = None
    #: Which shape the message used.
    shape: AudioShape = AudioShape.NESTED


@attrs.frozen
class TelerClear:
    """``clear``: drop every queued chunk."""


@attrs.frozen
class TelerInterrupt:
    """``interrupt``: drop the queued chunk ``chunk_id``."""

    chunk_id: int


@attrs.frozen
class TelerUnknown:
    """A well-formed JSON object whose ``type`` we do not know (kept, not an error)."""

    type: str
    fields: dict[str, Any]


TelerMessage: TypeAlias = TelerStart | TelerAudio | TelerClear | TelerInterrupt | TelerUnknown


def _object(message: str | bytes) -> dict[str, Any]:
    if isinstance(message, bytes):
        raise RemoteProtocolError(
            f"Teler messages are JSON text; got a binary message of {len(message)} bytes"
        )
    try:
        obj = _loads(message)
    except ValueError as exc:
        raise RemoteProtocolError(f"Teler message is not valid JSON: {exc}") from None
    except RecursionError:
        raise RemoteProtocolError("Teler message is nested too deeply") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"Teler message must be a JSON object, got {type(obj).__name__}")
    if "\\u" in message:
        # An escape can spell a lone UTF-16 surrogate, which is not text: a value
        # holding one could never be sent on (or logged) as UTF-8.
        try:
            _dumps(obj).encode()
        except (UnicodeEncodeError, RecursionError):
            raise RemoteProtocolError("Teler message holds an unpaired surrogate escape") from None
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise RemoteProtocolError("Teler message has no string 'type' field")
    return obj


def _field(obj: dict[str, Any], key: str, kind: type, frame: str, default: Any = ...) -> Any:
    value = obj.get(key, default)
    if value is ...:
        raise RemoteProtocolError(f"{frame!r} message is missing the field {key!r}")
    if value is not default and (not isinstance(value, kind) or isinstance(value, bool)):
        raise RemoteProtocolError(
            f"{frame!r} message field {key!r} must be {kind.__name__}, got {type(value).__name__}"
        )
    return value


def _start(obj: dict[str, Any]) -> TelerStart:
    data = _field(obj, "data", dict, "start", {})
    return TelerStart(
        call_id=_field(obj, "call_id", str, "start"),
        stream_id=_field(obj, "stream_id", str, "start"),
        account_id=_field(obj, "account_id", str, "start", None),
        call_app_id=_field(obj, "call_app_id", str, "start", None),
        message_id=_field(obj, "message_id", int, "start", None),
        encoding=_field(data, "encoding", str, "start", "audio/l16"),
        sample_rate=_field(data, "sample_rate", int, "start", 8000),
        channels=_field(data, "channels", int, "start", 1),
    )


def _audio(obj: dict[str, Any]) -> TelerAudio:
    data = obj.get("data")
    if isinstance(data, dict) and "audio_b64" in data:
        where, shape = data, AudioShape.NESTED
    elif "audio_b64" in obj:
        where, shape = obj, AudioShape.FLAT
    else:
        raise RemoteProtocolError(
            "'audio' message has no 'audio_b64' (looked in 'data' and at the top level)"
        )
    return TelerAudio(
        pcm=decode_audio(_field(where, "audio_b64", str, "audio")),
        message_id=_field(obj, "message_id", int, "audio", None),
        stream_id=_field(obj, "stream_id", str, "audio", None),
        chunk_id=_field(where, "chunk_id", int, "audio", None),
        shape=shape,
    )


def parse_message(message: str | bytes) -> TelerMessage:
    """Parse any Teler media-stream message, either direction.

    Raises:
        RemoteProtocolError: not a JSON object with a string ``type``, or a known
            type with a missing or mistyped field.
    """
    obj = _object(message)
    kind = obj["type"]
    if kind == "audio":
        return _audio(obj)
    if kind == "start":
        return _start(obj)
    if kind == "clear":
        return TelerClear()
    if kind == "interrupt":
        return TelerInterrupt(_field(obj, "chunk_id", int, "interrupt"))
    return TelerUnknown(kind, obj)


def parse_start(message: str | bytes) -> TelerStart:
    """Parse a ``start`` message.

    Raises:
        RemoteProtocolError: malformed, or not a ``start`` message.
    """
    obj = _object(message)
    if obj["type"] != "start":
        raise RemoteProtocolError(f"expected a 'start' message, got {obj['type']!r}")
    return _start(obj)


def parse_audio(message: str | bytes) -> TelerAudio:
    """Parse an ``audio`` message (nested ``data.audio_b64`` or flat ``audio_b64``).

    Raises:
        RemoteProtocolError: malformed, or not an ``audio`` message.
    """
    obj = _object(message)
    if obj["type"] != "audio":
        raise RemoteProtocolError(f"expected an 'audio' message, got {obj['type']!r}")
    return _audio(obj)


# -- outbound (app -> Teler) -------------------------------------------------------------


def audio_message(pcm: bytes, chunk_id: int, *, shape: AudioShape = AudioShape.FLAT) -> str:
    """An ``audio`` message that plays ``pcm`` (16-bit PCM at the stream's rate)."""
    audio_b64 = b64encode(pcm).decode("ascii")
    if shape is AudioShape.FLAT:
        return _dumps({"type": "audio", "audio_b64": audio_b64, "chunk_id": chunk_id})
    return _dumps({"type": "audio", "data": {"audio_b64": audio_b64, "chunk_id": chunk_id}})


_CLEAR = _dumps({"type": "clear"})


def clear_message() -> str:
    """``{"type": "clear"}``: Teler drops every chunk it has queued for playback."""
    return _CLEAR


def interrupt_message(chunk_id: int) -> str:
    """``{"type": "interrupt", "chunk_id": ...}``: Teler drops that one queued chunk."""
    return _dumps({"type": "interrupt", "chunk_id": chunk_id})


@attrs.define(eq=False)
class ChunkIds:
    """Allocates ``chunk_id``s for one stream: ``start``, ``start + 1``, ...

    Give every bridge its own: ids shared between calls make ``interrupt``
    ambiguous.
    """

    start: int = 1
    #: The last id handed out, ``None`` before the first.
    last: int | None = attrs.field(default=None, init=False)

    def next(self) -> int:
        """The next unused id."""
        self.last = self.start if self.last is None else self.last + 1
        return self.last


@attrs.define(eq=False)
class AudioChunker:
    """Re-chunks outgoing PCM into Teler ``audio`` messages of at least ``min_chunk_ms``.

    Voice AIs send audio in small pieces (often 20-100 ms); Teler plays chunks
    under about 500 ms choppily. Feed every piece to :meth:`push`, send what it
    returns, and at the end of a response call :meth:`flush` so the tail is not
    held back. On barge-in call :meth:`clear`: the buffered audio is dropped
    and you get the ``clear`` message to send. A bridge flushes the chunker it
    handed out (:meth:`BridgeContext.audio_out`) when it ends normally.

    Args:
        sample_rate: Hz of the PCM (8000 or 16000 for Teler).
        min_chunk_ms: smallest message to send, in milliseconds.
        shape: outbound message shape.
        chunk_ids: the id allocator (one per stream).
    """

    sample_rate: int = attrs.field(default=8000, validator=attrs.validators.gt(0))
    min_chunk_ms: int = attrs.field(default=500, validator=attrs.validators.ge(0))
    shape: AudioShape = AudioShape.FLAT
    chunk_ids: ChunkIds = attrs.field(factory=ChunkIds)
    _buffer: bytearray = attrs.field(factory=bytearray, init=False)

    @property
    def min_chunk_bytes(self) -> int:
        """``min_chunk_ms`` in bytes, whole samples."""
        return self.sample_rate * self.min_chunk_ms // 1000 * SAMPLE_WIDTH

    @property
    def pending_bytes(self) -> int:
        """Audio buffered and not yet returned in a message."""
        return len(self._buffer)

    def push(self, pcm: bytes) -> str | None:
        """Buffer ``pcm``; a message with all whole samples once ``min_chunk_ms`` is reached.

        Returns:
            an ``audio`` message to send, or ``None`` while still under the minimum.
        """
        buffer = self._buffer
        buffer += pcm
        if len(buffer) < self.min_chunk_bytes or len(buffer) < SAMPLE_WIDTH:
            return None
        return self._take()

    def flush(self) -> str | None:
        """The buffered audio as one message, whatever its length (end of a response).

        Returns:
            an ``audio`` message, or ``None`` when less than one sample is buffered.
        """
        if len(self._buffer) < SAMPLE_WIDTH:
            return None
        return self._take()

    def clear(self) -> str:
        """Drop the buffered audio (barge-in) and return the ``clear`` message to send."""
        self._buffer.clear()
        return _CLEAR

    def _take(self) -> str:
        buffer = self._buffer
        size = len(buffer) - len(buffer) % SAMPLE_WIDTH
        pcm = bytes(buffer[:size])
        del buffer[:size]
        return audio_message(pcm, self.chunk_ids.next(), shape=self.shape)
