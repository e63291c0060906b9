"""RFC 6455 framing, sans-IO: frame headers, masking, close payloads, message reassembly.

Nothing here reads a socket or a clock: :class:`FrameCodec` is fed bytes with
:meth:`~FrameCodec.receive_data` and hands back whole messages and control
frames from :meth:`~FrameCodec.next_frame`; it builds the bytes of outgoing
frames with :meth:`~FrameCodec.frame`. The I/O connection
(:class:`~telcoflow_trio.ws._connection.LeanWebSocket`) *is* a codec (a
subclass, not a wrapper), so the receive loop calls the parser with no extra
indirection per frame.

A peer's protocol violation raises :class:`FrameError` with the close code to
answer with: 1002 (reserved bits, unknown opcodes, bad fragmentation, oversized
or fragmented control frames, invalid close codes), 1007 (text that is not
UTF-8) or 1009 (a message over ``max_message_size``; the rest of that frame is
then skipped with :meth:`~FrameCodec.discard_oversized`). No extensions.
"""

from __future__ import annotations

import codecs
import os
import struct
from typing import Final

__all__ = [
    "BINARY",
    "CLOSE",
    "CONT",
    "PING",
    "PONG",
    "TEXT",
    "FrameCodec",
    "FrameError",
    "close_payload",
    "decode",
    "frame_header",
    "mask",
    "parse_close",
    "valid_close_code",
]

CONT: Final = 0x0
TEXT: Final = 0x1
BINARY: Final = 0x2
CLOSE: Final = 0x8
PING: Final = 0x9
PONG: Final = 0xA

#: Close codes a peer may send (RFC 6455 7.4 and the IANA registry); 3000-4999 too.
_VALID_CLOSE: Final = frozenset(
    {1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014}
)
_UTF8: Final = codecs.getincrementaldecoder("utf-8")


def valid_close_code(code: int) -> bool:
    """Whether ``code`` may appear in a close frame on the wire."""
    return code in _VALID_CLOSE or 3000 <= code <= 4999


def mask(data: bytes, key: bytes) -> bytes:
    """``data`` XOR the repeated 4-byte ``key`` (masking and unmasking are the same)."""
    n = len(data)
    if not n:
        return data
    pad = (key * ((n + 3) // 4))[:n]
    return (int.from_bytes(data, "little") ^ int.from_bytes(pad, "little")).to_bytes(n, "little")


def frame_header(opcode: int, length: int, masked: bool) -> bytes:
    """The header of a final (FIN) frame, without the masking key."""
    b0 = 0x80 | opcode
    bit = 0x80 if masked else 0
    if length < 126:
        return bytes((b0, bit | length))
    if length < 65536:
        return struct.pack("!BBH", b0, bit | 126, length)
    return struct.pack("!BBQ", b0, bit | 127, length)


class FrameError(Exception):
    """A protocol violation by the peer: close with ``code`` (1002, 1007 or 1009)."""

    def __init__(self, code: int, reason: str) -> None:
        super().__init__(code, reason)
        self.code = code
        self.reason = reason


def decode(opcode: int, payload: bytes) -> str | bytes:
    """A whole message's value: ``bytes`` for binary, ``str`` for text.

    Raises:
        FrameError: 1007, the text is not valid UTF-8.
    """
    if opcode == BINARY:
        return payload
    try:
        return payload.decode()
    except UnicodeDecodeError:
        raise FrameError(1007, "text message is not valid UTF-8") from None


def parse_close(payload: bytes) -> tuple[int, str | None]:
    """``(code, reason)`` of a close frame's payload; an empty one reads as 1005.

    Raises:
        FrameError: 1002 (1-byte payload, invalid code) or 1007 (reason not UTF-8).
    """
    if not payload:
        return 1005, None
    if len(payload) == 1:
        raise FrameError(1002, "close frame with a 1-byte payload")
    code = (payload[0] << 8) | payload[1]
    if not valid_close_code(code):
        raise FrameError(1002, f"invalid close code {code}")
    try:
        reason = payload[2:].decode()
    except UnicodeDecodeError:
        raise FrameError(1007, "close reason is not valid UTF-8") from None
    return code, reason or None


def close_payload(code: int, reason: str | None) -> bytes:
    """A close frame's payload: ``code`` and ``reason`` cut to fit 125 bytes, whole characters."""
    data = reason.encode()[:123] if reason else b""
    data = data.decode("utf-8", "ignore").encode()  # never cut a character in two
    return code.to_bytes(2, "big") + data


class FrameCodec:
    """One side of a WebSocket's framing: parse what the peer sent, build what we send.

    ``client``: our frames are masked and the peer's must not be (and the other
    way round for a server). Messages longer than ``max_message_size`` bytes
    (fragments included) raise :class:`FrameError` 1009.
    """

    __slots__ = (
        "_body_at",
        "_body_fin",
        "_body_key",
        "_body_left",
        "_buf",
        "_client",
        "_frag",
        "_frag_op",
        "_frag_size",
        "_mask_at",
        "_masks",
        "_max",
        "_pos",
        "_skip",
        "_text",
        "_utf8",
    )

    def __init__(self, *, client: bool, max_message_size: int, leftover: bytes = b"") -> None:
        self._client = client
        self._buf = bytes(leftover)
        self._pos = 0
        self._max = max_message_size
        # The message in progress (fragmented, or one frame still arriving):
        # its opcode (0: none), binary parts, text decoded so far, and size.
        self._frag: list[bytes] = []
        self._frag_op = 0
        self._text: list[str] = []
        self._frag_size = 0
        # Text in parts is decoded as it comes, so invalid UTF-8 fails at the
        # part that has it (RFC 6455 8.1); a message in one frame never needs it.
        self._utf8: codecs.IncrementalDecoder | None = None
        # A data frame whose payload is still arriving is taken out of the
        # buffer as it comes, so reassembly is linear in the message's size:
        # payload bytes still to come, bytes seen, its masking key, its FIN bit.
        self._body_left = 0
        self._body_at = 0
        self._body_key = b""
        self._body_fin = False
        self._skip = 0  # bytes of an oversized frame still to discard (after a 1009)
        self._masks = b""  # random masking keys, drawn 4 bytes at a time from _mask_at
        self._mask_at = 0

    # -- sending ------------------------------------------------------------------------

    def frame(self, opcode: int, payload: bytes) -> bytes:
        """The bytes of one final frame (masked with a fresh random key on the client side)."""
        if not self._client:
            return frame_header(opcode, len(payload), False) + payload
        at = self._mask_at
        if at + 4 > len(self._masks):
            self._masks, at = os.urandom(4096), 0
        key = self._masks[at : at + 4]
        self._mask_at = at + 4
        return frame_header(opcode, len(payload), True) + key + mask(payload, key)

    def message_frame(self, message: str | bytes) -> bytes:
        """A text (``str``) or binary (``bytes``) message as one frame.

        Raises:
            TypeError: ``message`` is neither ``str`` nor ``bytes``.
        """
        if type(message) is str:
            return self.frame(TEXT, message.encode())
        if isinstance(message, bytes):
            return self.frame(BINARY, message)
        raise TypeError(f"message must be str or bytes, got {type(message).__name__}")

    def close_frame(self, code: int, reason: str | None) -> bytes:
        """A close frame with ``code`` and ``reason`` (see :func:`close_payload`)."""
        return self.frame(CLOSE, close_payload(code, reason))

    # -- receiving ----------------------------------------------------------------------

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer after what is still unparsed (usually nothing: no copy).

        What stays unparsed is short (a frame header, a control frame): the
        payload of a data frame leaves the buffer as it arrives.
        """
        if self._pos >= len(self._buf):
            self._buf = data if type(data) is bytes else bytes(data)
        else:
            self._buf = self._buf[self._pos :] + data
        self._pos = 0

    def next_frame(self) -> str | bytes | tuple[int, bytes] | None:
        """The next whole data message, or control frame ``(opcode, payload)``.

        ``None``: more bytes are needed. Fragments are reassembled; text is
        decoded (and so validated as UTF-8).

        Raises:
            FrameError: the peer broke the protocol, or sent too much (1009:
                :meth:`discard_oversized` then skips the rest of that frame).
        """
        while True:
            buf = self._buf
            pos = self._pos
            avail = len(buf) - pos
            if self._body_left:
                if not avail:
                    return None
                message = self._take_body(buf[pos : pos + self._body_left])
                if message is not None:
                    return message
                continue
            if avail < 2:
                return None
            b0 = buf[pos]
            b1 = buf[pos + 1]
            length = b1 & 0x7F
            start = pos + 2
            if length == 126:
                if avail < 4:
                    return None
                length = (buf[pos + 2] << 8) | buf[pos + 3]
                start = pos + 4
            elif length == 127:
                if avail < 10:
                    return None
                length = int.from_bytes(buf[pos + 2 : pos + 10], "big")
                start = pos + 10
                if length >> 63:
                    raise FrameError(1002, "frame length has the most significant bit set")
            opcode = b0 & 0x0F
            fin = b0 & 0x80
            if b0 & 0x70:
                raise FrameError(1002, "reserved bits set without an extension")
            if b1 & 0x80:
                if self._client:
                    raise FrameError(1002, "the server masked a frame")
                start += 4
            elif not self._client:
                raise FrameError(1002, "the client sent an unmasked frame")
            if opcode >= 8:
                if opcode not in (CLOSE, PING, PONG):
                    raise FrameError(1002, f"unknown opcode {opcode:#x}")
                if not fin:
                    raise FrameError(1002, "fragmented control frame")
                if length > 125:
                    raise FrameError(1002, "control frame longer than 125 bytes")
            elif opcode > BINARY:
                raise FrameError(1002, f"unknown opcode {opcode:#x}")
            elif self._frag_size + length > self._max:
                # Well-formed, only too big: after our 1009 the rest of the
                # frame is skipped and the peer's close is still read.
                self._skip = start + length - pos
                if not fin:
                    self._frag_op = self._frag_op or opcode  # more fragments follow
                elif opcode == CONT:
                    self._frag_op = 0  # this frame ended the message
                raise FrameError(1009, f"message longer than {self._max} bytes")
            elif opcode == CONT:
                if not self._frag_op:
                    raise FrameError(1002, "continuation frame without a message to continue")
            elif self._frag_op:
                raise FrameError(1002, "new message before the fragmented one ended")
            end = start + length
            if len(buf) < end:
                if opcode >= 8 or len(buf) < start:
                    return None  # a header or a control frame: short, wait in the buffer
                # A data frame still arriving: its payload leaves the buffer as
                # it comes (never copied again), text checked on the way.
                if opcode:
                    self._frag_op = opcode
                self._body_left, self._body_at, self._body_fin = length, 0, bool(fin)
                self._body_key = buf[start - 4 : start] if b1 & 0x80 else b""
                self._pos = start
                continue
            payload = buf[start:end]
            if b1 & 0x80:
                payload = mask(payload, buf[start - 4 : start])
            self._pos = end
            if opcode >= 8:
                return opcode, payload
            if opcode and fin:
                return decode(opcode, payload)  # a message in one frame: the fast path
            if opcode:
                self._frag_op = opcode
            message = self._add_part(payload, bool(fin))
            if message is not None:
                return message

    def _take_body(self, data: bytes) -> str | bytes | None:
        """``data``: the next bytes of the frame in progress; the message if they end it."""
        self._pos += len(data)
        if self._body_key:
            at = self._body_at & 3
            data = mask(data, self._body_key[at:] + self._body_key[:at])
        self._body_at += len(data)
        self._body_left -= len(data)
        return self._add_part(data, self._body_fin and not self._body_left)

    def _add_part(self, data: bytes, last: bool) -> str | bytes | None:
        """Add ``data`` to the message in progress; the whole message if ``last``.

        Raises:
            FrameError: 1007, the text so far cannot be (or, ``last``, is not) UTF-8.
        """
        self._frag_size += len(data)
        if self._frag_op == TEXT:
            if self._utf8 is None:
                self._utf8 = _UTF8()
            try:
                self._text.append(self._utf8.decode(data, last))
            except UnicodeDecodeError:
                raise FrameError(1007, "text message is not valid UTF-8") from None
        else:
            self._frag.append(data)
        if not last:
            return None
        whole: str | bytes
        if self._frag_op == TEXT:
            whole = "".join(self._text)
            self._text.clear()
            self._utf8 = None
        else:
            whole = b"".join(self._frag)
            self._frag.clear()
        self._frag_op = self._frag_size = 0
        return whole

    @property
    def oversized(self) -> int:
        """Bytes of an oversized frame (after a 1009) not yet skipped."""
        return self._skip

    def discard_oversized(self) -> bool:
        """Skip the buffered part of an oversized frame; whether all of it is gone.

        Once it is, the message it belonged to is dropped and parsing goes on
        with whatever follows (the peer's close, we hope), whatever its size.
        """
        self._max = 1 << 62  # what follows is discarded, whatever its size
        taken = min(len(self._buf) - self._pos, self._skip)
        self._pos += taken
        self._skip -= taken
        if self._skip:
            return False
        self._frag.clear()
        self._text.clear()
        self._frag_size = self._body_left = 0
        self._utf8 = None
        return True
