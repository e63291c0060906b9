"""The lean transport on loopback TCP against peers that go away: every end is seen, nothing leaks.

The peer is a raw socket driven by hand (the handshake, one masked frame, then a
FIN or a reset written back to back with it), so the server meets the case
edge-triggered readiness makes hard: the end of the stream arriving with the
last data. Descriptors are counted in ``/proc/self/fd`` (Linux).
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct

import pytest
import trio
import trio.testing

from telcoflow_trio.exceptions import WSSConnectionClosed
from telcoflow_trio.ws._connection import LeanWebSocket, serve_lean_websocket
from telcoflow_trio.ws._poller import current_poller

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="counts /proc/self/fd")

TEXT = 0x1
_UPGRADE = (
    b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
    b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
)


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def text_frame(payload: bytes, *, masked: bool) -> bytes:
    """One text frame; a client's is masked with a zero key (the payload goes as is)."""
    n, bit = len(payload), 0x80 if masked else 0
    if n < 126:
        head = struct.pack("!BB", 0x80 | TEXT, bit | n)
    elif n < 65536:
        head = struct.pack("!BBH", 0x80 | TEXT, bit | 126, n)
    else:
        head = struct.pack("!BBQ", 0x80 | TEXT, bit | 127, n)
    return head + (b"\0\0\0\0" if masked else b"") + payload


async def send_all(sock: socket.socket, data: bytes) -> None:
    """Write ``data``; the last write returns without a checkpoint (nothing runs after it)."""
    view = memoryview(data)
    while view:
        try:
            view = view[sock.send(view) :]
        except BlockingIOError:
            await trio.lowlevel.wait_writable(sock)


async def receive_until_eof(sock: socket.socket) -> bytes:
    got = b""
    while True:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
            continue
        except ConnectionResetError:
            return got
        if not data:
            return got
        got += data


async def raw_client(port: int) -> socket.socket:
    """A loopback socket that has completed the upgrade (the 101 read, nothing after it)."""
    sock = socket.socket()
    sock.setblocking(False)
    try:
        sock.connect(("127.0.0.1", port))
    except BlockingIOError:
        await trio.lowlevel.wait_writable(sock)
    await send_all(sock, _UPGRADE)
    answer = b""
    while not answer.endswith(b"\r\n\r\n"):
        try:
            data = sock.recv(1)  # byte by byte: nothing past the 101 is consumed
        except BlockingIOError:
            await trio.lowlevel.wait_readable(sock)
            continue
        assert data, "the server closed during the upgrade"
        answer += data
    assert answer.startswith(b"HTTP/1.1 101 ")
    return sock


@pytest.mark.parametrize("size", [5, 200_000], ids=["small", "large"])
@pytest.mark.parametrize("end", ["fin", "reset"])
async def test_a_peer_that_ends_right_after_its_last_message_is_seen_every_time(
    end: str, size: int
) -> None:
    """Many times over (it is a race): a client sends one message and at once
    half-closes or resets. Every server handler sees the end (none waits
    forever on a peer that is gone), a half-closed client gets its answer and
    then the end of the connection, and no descriptor is left open."""
    connections = 200 if size < 1000 else 60
    message = os.urandom(size).hex().encode()[:size]
    saw_the_end = 0
    all_saw_it = trio.Event()

    async def answer(ws: LeanWebSocket) -> None:
        nonlocal saw_the_end
        with contextlib.suppress(WSSConnectionClosed):
            while True:  # a short answer: a full send buffer would wake the reader
                await ws.send_message(str(len(await ws.get_message())))
        saw_the_end += 1  # not when cancelled: a handler left waiting is a failure
        if saw_the_end == connections:
            all_saw_it.set()

    async def one(port: int, limit: trio.CapacityLimiter, settle: bool) -> None:
        async with limit:
            sock = await raw_client(port)
            with sock:
                if settle:  # the server's reader is waiting when everything arrives
                    await trio.testing.wait_all_tasks_blocked()
                await send_all(sock, text_frame(message, masked=True))
                if end == "fin":
                    sock.shutdown(socket.SHUT_WR)
                    answer = await receive_until_eof(sock)
                    assert answer == text_frame(str(size).encode(), masked=False)
                else:
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))

    current_poller()  # the run's epoll set exists before the count
    async with trio.open_nursery() as server:
        listeners = await server.start(serve_lean_websocket, answer, "127.0.0.1", 0)
        port = listeners[0].socket.getsockname()[1]
        before = open_fds()
        limit = trio.CapacityLimiter(20)
        with trio.move_on_after(20):  # a hang is a failure, reported below
            async with trio.open_nursery() as clients:
                for i in range(connections):
                    clients.start_soon(one, port, limit, i % 2 == 0)
            await all_saw_it.wait()
            await trio.testing.wait_all_tasks_blocked()  # the handlers' closes are done
        after = open_fds()
        server.cancel_scope.cancel()
    assert saw_the_end == connections, (
        f"{connections - saw_the_end} of {connections} never saw the {end}"
    )
    assert after == before


async def test_closing_the_stream_without_aclose_closes_the_connection() -> None:
    """A lean socket abandoned without ``aclose`` (as the simulator drops a
    connection): whoever closes its stream closes the TCP connection, so the
    peer sees the end at once, and no descriptor stays open while the
    WebSocket object lives on."""
    current_poller()
    listener = (await trio.open_tcp_listeners(0, host="127.0.0.1"))[0]
    async with listener:
        before = open_fds()
        with socket.socket() as peer:
            peer.setblocking(False)
            with contextlib.suppress(BlockingIOError):
                peer.connect(listener.socket.getsockname())
            stream = await listener.accept()
            ws = LeanWebSocket(stream, client=False)
            await ws.send_message("last words")
            await trio.lowlevel.checkpoint()  # trio's batch is done: the write goes out
            await trio.aclose_forcefully(stream)  # not ws.aclose()
            with trio.fail_after(5):
                assert await receive_until_eof(peer) == text_frame(b"last words", masked=False)
        assert open_fds() == before
        with pytest.raises(WSSConnectionClosed) as info:
            await ws.get_message()
        assert info.value.code == 1006
        await ws.aclose()  # nothing left to close: returns at once
        assert open_fds() == before
