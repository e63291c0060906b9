"""WebSocket frames as a peer writes them, built independently of the library (no trio).

Shared by the sans-IO framing tests and the connection's conformance tests
(``tests/ws`` is on ``sys.path`` while they run: it has no ``__init__``).
"""

from __future__ import annotations

import struct

TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def xor(data: bytes, key: bytes) -> bytes:
    return bytes(b ^ key[i % 4] for i, b in enumerate(data))


def frame(
    opcode: int, payload: bytes, *, fin: bool = True, mask: bytes | None = None, rsv: int = 0
) -> bytes:
    """One frame as a peer would write it (``mask``: the 4-byte key, client frames)."""
    head = bytes([(0x80 if fin else 0) | rsv | opcode])
    bit = 0x80 if mask else 0
    n = len(payload)
    if n < 126:
        head += bytes([bit | n])
    elif n < 65536:
        head += struct.pack("!BH", bit | 126, n)
    else:
        head += struct.pack("!BQ", bit | 127, n)
    return head + (mask + xor(payload, mask) if mask else payload)
