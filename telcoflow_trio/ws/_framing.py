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
    )

    def __init__(self, *, client: bool, max_message_size: int, leftover: bytes = b"") -> None:
        self._client = client
        self._buf = bytes(leftover)
        self._pos = 0
        self._max = max_message_size
        self._frag: list[bytes] = []
        self._frag_op = 0  # opcode of the fragmented message in progress, 0: none
        self._frag_size = 0
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
        """Add bytes from the peer after what is still unparsed."""
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
            end = start + length
            if len(buf) < end:
                return None
            payload = buf[start:end]
            if b1 & 0x80:
                payload = mask(payload, buf[start - 4 : start])
            self._pos = end
            if opcode >= 8:
                return opcode, payload
            if opcode == CONT:
                if not self._frag_op:
                    raise FrameError(1002, "continuation frame without a message to continue")
            elif self._frag_op:
                raise FrameError(1002, "new message before the fragmented one ended")
            elif fin:
                return decode(opcode, payload)
            else:
                self._frag_op = opcode
            self._frag.append(payload)
            self._frag_size += length
            if fin:
                opcode, whole = self._frag_op, b"".join(self._frag)
                self._frag.clear()
                self._frag_op = self._frag_size = 0
                return decode(opcode, whole)

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
        self._frag_size = 0
        return True
