"""In-memory byte streams with bounded buffers, like a socket pair's.

``trio.testing.memory_stream_pair()`` buffers without limit: a peer that never
reads lets its writer write forever, so an in-memory bridge, simulator or test
holds every byte sent to it, while over TCP the writer would block once the
kernel's buffers were full. :func:`bounded_stream_pair` blocks ``send_all``
while ``capacity`` bytes sent one way are still unread, so backpressure works
in memory as it does on a socket (and under ``MockClock``).
"""

from __future__ import annotations

import operator
from typing import final

import trio

__all__ = ["DEFAULT_CAPACITY", "BoundedStream", "bounded_stream_pair"]

#: Bytes one direction buffers before ``send_all`` waits (a loopback socket holds more).
DEFAULT_CAPACITY = 64 * 1024


@final
class _Pipe:
    """One direction: the bytes written and not yet read, at most ``capacity``."""

    __slots__ = ("buffer", "capacity", "changed", "reader_closed", "writer_closed")

    def __init__(self, capacity: int) -> None:
        self.capacity = capacity
        self.buffer = bytearray()
        self.writer_closed = False
        self.reader_closed = False
        self.changed = trio.lowlevel.ParkingLot()


@final
class BoundedStream(trio.abc.Stream):
    """One end of a :func:`bounded_stream_pair`.

    ``send_all`` waits while the peer has ``capacity`` bytes unread (it may be
    left half-written when cancelled, as on a socket). After the peer closed:
    ``send_all`` raises ``trio.BrokenResourceError`` and ``receive_some``
    returns what is left, then ``b""``.
    """

    __slots__ = ("_closed", "_in", "_out", "_receiving", "_sending")

    def __init__(self, incoming: _Pipe, outgoing: _Pipe) -> None:
        self._in = incoming
        self._out = outgoing
        self._closed = False
        self._sending = False
        self._receiving = False

    def statistics(self) -> tuple[int, int]:
        """``(sent and unread by the peer, received and unread here)``, in bytes."""
        return len(self._out.buffer), len(self._in.buffer)

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            pipe, view = self._out, memoryview(data)
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("this stream is closed")
                if pipe.reader_closed:
                    raise trio.BrokenResourceError("the peer closed its end")
                room = pipe.capacity - len(pipe.buffer)
                if room > 0 and view:
                    pipe.buffer += view[:room]
                    view = view[room:]
                    pipe.changed.unpark_all()
                if not view:
                    return
                await pipe.changed.park()
        finally:
            self._sending = False

    async def wait_send_all_might_not_block(self) -> None:
        if self._sending:
            raise trio.BusyResourceError("another task is already sending on this stream")
        self._sending = True
        try:
            await trio.lowlevel.checkpoint()
            pipe = self._out
            while len(pipe.buffer) >= pipe.capacity and not (pipe.reader_closed or self._closed):
                await pipe.changed.park()
            if self._closed:
                raise trio.ClosedResourceError("this stream is closed")
        finally:
            self._sending = False

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        if max_bytes is not None and operator.index(max_bytes) < 1:
            raise ValueError("max_bytes must be at least 1")
        if self._receiving:
            raise trio.BusyResourceError("another task is already receiving on this stream")
        self._receiving = True
        try:
            await trio.lowlevel.checkpoint()
            pipe = self._in
            while True:
                if self._closed:
                    raise trio.ClosedResourceError("this stream is closed")
                if pipe.buffer or pipe.writer_closed:
                    break
                await pipe.changed.park()
            size = len(pipe.buffer) if max_bytes is None else min(max_bytes, len(pipe.buffer))
            data = bytes(pipe.buffer[:size])
            del pipe.buffer[:size]
            pipe.changed.unpark_all()
            return data
        finally:
            self._receiving = False

    async def aclose(self) -> None:
        if not self._closed:
            self._closed = True
            self._out.writer_closed = True
            self._in.reader_closed = True
            self._in.buffer.clear()  # nobody will read it
            self._out.changed.unpark_all()
            self._in.changed.unpark_all()
        await trio.lowlevel.checkpoint()


def bounded_stream_pair(capacity: int = DEFAULT_CAPACITY) -> tuple[BoundedStream, BoundedStream]:
    """Two connected in-memory streams, each direction buffering at most ``capacity`` bytes.

    Raises:
        ValueError: ``capacity`` is not positive.
    """
    if capacity < 1:
        raise ValueError(f"capacity must be a positive number of bytes, got {capacity!r}")
    a_to_b, b_to_a = _Pipe(capacity), _Pipe(capacity)
    return BoundedStream(b_to_a, a_to_b), BoundedStream(a_to_b, b_to_a)
