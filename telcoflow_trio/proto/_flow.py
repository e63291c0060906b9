"""Pull-based flow control for agent audio, without I/O.

The server pulls agent audio with ``buffer_request`` frames. The 1.0.0 SDK
queued every request forever, sent whole requests as one frame and held back the
last bytes of an utterance until more audio came (spec D items 2-4). Here:

* credit is one number, capped so stale requests from a silent stretch cannot
  turn into a burst later (:meth:`SendCredit.grant`);
* frames are at most ``prefer_audio_frame_bytes`` (or 20 ms at the call's rate)
  and always whole 16-bit samples;
* whatever is buffered goes out as soon as there is credit for it, even when it
  is less than a frame: written audio is never stuck.

:class:`OutgoingAudio` is the bounded byte buffer behind ``send_audio``.
"""

from __future__ import annotations

import collections

from ..exceptions import BufferClosedError, BufferFullError

__all__ = ["SAMPLE_WIDTH", "OutgoingAudio", "SendCredit", "frame_bytes"]

#: Bytes per sample: PCM16 mono.
SAMPLE_WIDTH = 2


def frame_bytes(sample_rate: int, frame_ms: int = 20) -> int:
    """Bytes in ``frame_ms`` of PCM16 mono audio at ``sample_rate`` (whole samples)."""
    return sample_rate * frame_ms // 1000 * SAMPLE_WIDTH


class SendCredit:
    """How many bytes of agent audio the server has asked for and not yet received.

    Args:
        default_frame_bytes: frame size when the server states no preference.
        max_credit_bytes: cap on credit accumulated across requests; a single
            request larger than this is still granted in full.
    """

    __slots__ = ("_frame", "available", "default_frame_bytes", "max_credit_bytes")

    def __init__(self, default_frame_bytes: int, max_credit_bytes: int) -> None:
        if default_frame_bytes < SAMPLE_WIDTH or default_frame_bytes % SAMPLE_WIDTH:
            raise ValueError(
                f"default_frame_bytes must be a positive even number, got {default_frame_bytes}"
            )
        self.default_frame_bytes = default_frame_bytes
        self.max_credit_bytes = max_credit_bytes
        self._frame = default_frame_bytes
        #: Bytes the server may receive now.
        self.available = 0

    def grant(self, requested_bytes: int, prefer_frame_bytes: int = 0) -> None:
        """Add a ``buffer_request``'s bytes; a non-positive request is ignored."""
        if requested_bytes <= 0:
            return
        cap = max(self.max_credit_bytes, requested_bytes)
        self.available = min(self.available + requested_bytes, cap)
        prefer = prefer_frame_bytes - prefer_frame_bytes % SAMPLE_WIDTH
        self._frame = prefer if prefer > 0 else self.default_frame_bytes

    def next_frame(self, buffered: int) -> int:
        """Size of the next frame to send given ``buffered`` bytes; 0 means wait."""
        n = min(self._frame, self.available, buffered)
        return n - n % SAMPLE_WIDTH

    def consume(self, sent: int) -> None:
        """Account for ``sent`` bytes that went out."""
        self.available -= sent

    def reset(self) -> None:
        """Forget all credit (the connection is gone)."""
        self.available = 0


class OutgoingAudio:
    """A bounded FIFO of agent audio bytes, all-or-nothing on write.

    Reads and writes are O(chunk), independent of how much is buffered.
    """

    __slots__ = ("_chunks", "_closed", "_head", "_size", "capacity")

    def __init__(self, capacity: int) -> None:
        if capacity <= 0:
            raise ValueError(f"capacity must be positive, got {capacity}")
        self.capacity = capacity
        self._chunks: collections.deque[bytes] = collections.deque()
        self._head = 0  # bytes of _chunks[0] already read
        self._size = 0
        self._closed = False

    def __len__(self) -> int:
        return self._size

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def free(self) -> int:
        """Bytes that can still be written."""
        return self.capacity - self._size

    def write(self, data: bytes) -> None:
        """Append ``data`` whole.

        Raises:
            BufferClosedError: after :meth:`close`.
            BufferFullError: ``data`` does not fit; nothing was written.
        """
        if self._closed:
            raise BufferClosedError("the call's audio buffer is closed")
        if len(data) > self.capacity - self._size:
            raise BufferFullError(
                f"{len(data)} bytes do not fit: {self.capacity - self._size} of "
                f"{self.capacity} bytes free"
            )
        if data:
            self._chunks.append(bytes(data))
            self._size += len(data)

    def read(self, n: int) -> bytes:
        """Remove and return up to ``n`` bytes from the front."""
        out: list[bytes] = []
        want = min(n, self._size)
        self._size -= want
        while want:
            chunk = self._chunks[0]
            take = chunk[self._head : self._head + want]
            out.append(take)
            want -= len(take)
            self._head += len(take)
            if self._head == len(chunk):
                self._chunks.popleft()
                self._head = 0
        return out[0] if len(out) == 1 else b"".join(out)

    def unread(self, data: bytes) -> None:
        """Put back ``data`` that :meth:`read` just returned (it could not be sent)."""
        if self._head:
            self._chunks[0] = self._chunks[0][self._head :]
            self._head = 0
        self._chunks.appendleft(data)
        self._size += len(data)

    def clear(self) -> int:
        """Drop everything buffered; return how many bytes were dropped."""
        dropped = self._size
        self._chunks.clear()
        self._head = 0
        self._size = 0
        return dropped

    def close(self) -> None:
        """Refuse further writes; what is buffered stays readable."""
        self._closed = True
