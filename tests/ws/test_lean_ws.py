"""Conformance of the lean WebSocket transport (RFC 6455) against a hand-driven peer.

The peer is raw bytes on the other end of a memory stream (so every frame is
exactly what the test wrote), plus interop with trio-websocket in both
directions and one loopback test for the plain-TCP fast path.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing
import trio_websocket
from ws_wire import BINARY, CLOSE, PING, PONG, TEXT, frame, xor

from telcoflow_trio.exceptions import WSSConnectionClosed, WSSConnectionError
from telcoflow_trio.ws import ConnectionRejected, _connection as lean_ws
from telcoflow_trio.ws._connection import (
    LeanWebSocket,
    accept_lean_websocket,
    lean_client_handshake,
    serve_lean_websocket,
)
from telcoflow_trio.ws._transport import open_websocket


class Peer:
    """The raw end of the connection: writes frames, reads and decodes ours."""

    def __init__(self, stream: trio.abc.Stream, *, masks_frames: bool) -> None:
        self.stream = stream
        self.mask = b"\x01\x02\x03\x04" if masks_frames else None
        self.buffer = b""

    async def send(self, opcode: int, payload: bytes = b"", **kw: object) -> None:
        kw.setdefault("mask", self.mask)
        await self.stream.send_all(frame(opcode, payload, **kw))  # type: ignore[arg-type]

    async def read(self) -> tuple[int, bytes, bool]:
        """The next frame we sent: ``(opcode, unmasked payload, was_masked)``."""
        while True:
            if len(self.buffer) >= 2:
                b0, b1 = self.buffer[0], self.buffer[1]
                n, at = b1 & 0x7F, 2
                if n == 126:
                    n, at = struct.unpack("!H", self.buffer[2:4])[0], 4
                elif n == 127:
                    n, at = struct.unpack("!Q", self.buffer[2:10])[0], 10
                masked = bool(b1 & 0x80)
                key = self.buffer[at : at + 4] if masked else b""
                at += len(key)
                if len(self.buffer) >= at + n:
                    payload = self.buffer[at : at + n]
                    self.buffer = self.buffer[at + n :]
                    assert b0 & 0x80, "we never fragment"
                    return b0 & 0x0F, xor(payload, key) if masked else payload, masked
            data = await self.stream.receive_some()
            assert data, "the connection ended"
            self.buffer += data

    async def expect_close(self, code: int) -> str:
        opcode, payload, _ = await self.read()
        assert opcode == CLOSE
        assert struct.unpack("!H", payload[:2])[0] == code
        return payload[2:].decode()


def pair(*, client: bool, max_message_size: int = 1 << 20) -> tuple[LeanWebSocket, Peer]:
    """A lean socket (client or server side) on a memory stream; a raw peer on the other end."""
    ours, theirs = trio.testing.memory_stream_pair()
    ws = LeanWebSocket(ours, client=client, max_message_size=max_message_size)
    return ws, Peer(theirs, masks_frames=not client)


BOTH_SIDES = pytest.mark.parametrize("client", [True, False], ids=["client", "server"])


@BOTH_SIDES
async def test_text_and_binary_both_ways_with_the_right_masking(client: bool) -> None:
    ws, peer = pair(client=client)
    await peer.send(TEXT, "héllo".encode())
    await peer.send(BINARY, b"\x00\xff" * 40_000)  # 64-bit length form
    assert await ws.get_message() == "héllo"
    assert await ws.get_message() == b"\x00\xff" * 40_000
    await ws.send_message("ça va")
    await ws.send_message(b"\x01" * 300)  # 16-bit length form
    assert await peer.read() == (TEXT, "ça va".encode(), client)
    assert await peer.read() == (BINARY, b"\x01" * 300, client)


@BOTH_SIDES
async def test_fragmented_message_with_a_ping_in_between(client: bool) -> None:
    ws, peer = pair(client=client)
    await peer.send(TEXT, b"one ", fin=False)
    await peer.send(0x0, b"two ", fin=False)
    await peer.send(PING, b"p1")
    await peer.send(0x0, b"three", fin=True)
    assert await ws.get_message() == "one two three"
    assert await peer.read() == (PONG, b"p1", client)


async def test_a_frame_split_across_reads_is_reassembled() -> None:
    ws, peer = pair(client=True)
    data = frame(BINARY, b"x" * 1000)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.get_message)
        for i in range(0, len(data), 7):
            await peer.stream.send_all(data[i : i + 7])
            await trio.testing.wait_all_tasks_blocked()
    # The task above got the message; check the next one arrives too.
    await peer.send(TEXT, b"next")
    assert await ws.get_message() == "next"


@BOTH_SIDES
async def test_text_split_mid_character_across_reads_and_fragments(client: bool) -> None:
    """Masked or not, cut anywhere (even inside a character), text comes out whole."""
    ws, peer = pair(client=client)
    text = "héllo wörld ✓ " * 300
    data = text.encode()
    one_frame = frame(TEXT, data, mask=peer.mask)
    two_frames = frame(TEXT, data[:1001], fin=False, mask=peer.mask) + frame(
        0x0, data[1001:], mask=peer.mask
    )
    for wire in (one_frame, two_frames):
        async with trio.open_nursery() as nursery:

            async def feed(wire: bytes = wire) -> None:
                for i in range(0, len(wire), 5):
                    await peer.stream.send_all(wire[i : i + 5])
                    await trio.testing.wait_all_tasks_blocked()

            nursery.start_soon(feed)
            assert await ws.get_message() == text


@BOTH_SIDES
@pytest.mark.parametrize(
    "how",
    ["in the second of three fragments", "in a frame still arriving", "at the end"],
)
async def test_invalid_utf8_fails_at_once_not_at_the_end_of_the_message(
    client: bool, how: str, autojump_clock: trio.testing.MockClock
) -> None:
    """RFC 6455 8.1 (Autobahn 6.4.1-6.4.4): the bad bytes fail the connection when they
    arrive; the rest of the message is never sent here, so waiting for it would hang."""
    ws, peer = pair(client=client)
    bad = "κόσμε".encode() + b"\xf4\x90\x80\x80"  # U+110000: out of range
    if how == "in the second of three fragments":
        await peer.send(TEXT, "κόσμε".encode(), fin=False)
        await peer.send(0x0, b"\xf4\x90\x80\x80", fin=False)
    elif how == "in a frame still arriving":
        wire = frame(TEXT, bad + b"edited" * 10, mask=peer.mask)
        await peer.stream.send_all(wire[: len(wire) - 30])
    else:  # a text message may not end inside a character
        await peer.send(TEXT, "κόσμε".encode(), fin=False)
        await peer.send(0x0, b"\xce")
    with trio.fail_after(1), pytest.raises(WSSConnectionClosed, match="UTF-8") as info:
        await ws.get_message()
    assert info.value.code == 1007
    assert await peer.expect_close(1007)


async def test_a_large_frame_is_not_copied_on_every_read() -> None:
    """Reassembly is linear: while a large frame arrives, nothing accumulates in the
    parse buffer (it held the whole frame so far, copied on every read)."""
    ws, peer = pair(client=False, max_message_size=8 << 20)
    payload = os.urandom(4 << 20)
    wire = frame(BINARY, payload, mask=peer.mask)
    got: list[str | bytes] = []
    largest = 0
    async with trio.open_nursery() as nursery:

        async def reader() -> None:
            got.append(await ws.get_message())

        nursery.start_soon(reader)
        for i in range(0, len(wire), 65536):
            await peer.stream.send_all(wire[i : i + 65536])
            await trio.testing.wait_all_tasks_blocked()
            largest = max(largest, len(ws._buf) - ws._pos)
    assert got == [payload]
    assert largest <= 65536


def start_ping(nursery: trio.Nursery, ws: LeanWebSocket, payload: bytes = b"hb-1") -> trio.Event:
    """Start ``ws.ping(payload)`` in ``nursery``; the event is set once it returns."""
    done = trio.Event()

    async def pinger() -> None:
        await ws.ping(payload)
        done.set()

    nursery.start_soon(pinger)
    return done


async def test_ping_waits_for_its_pong(autojump_clock: trio.testing.MockClock) -> None:
    ws, peer = pair(client=True)
    async with trio.open_nursery() as nursery:
        done = start_ping(nursery, ws)
        nursery.start_soon(ws.get_message)  # the reader sees the pong
        assert await peer.read() == (PING, b"hb-1", True)
        await trio.sleep(1)
        assert not done.is_set()
        await peer.send(PONG, b"other")  # not ours: ignored
        await peer.send(PONG, b"hb-1")
        await done.wait()
        nursery.cancel_scope.cancel()
    with pytest.raises(ValueError, match="at most 125"):
        await ws.ping(b"x" * 126)


async def test_ping_with_no_reader_reads_itself_and_keeps_the_messages(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ws, peer = pair(client=True)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(ws.ping, b"hb-1")  # and nobody in get_message
            assert await peer.read() == (PING, b"hb-1", True)
            await peer.send(TEXT, b"one")
            await peer.send(PING, b"theirs")
            await peer.send(BINARY, b"two")
            assert await peer.read() == (PONG, b"theirs", True)  # answered meanwhile
            await peer.send(PONG, b"hb-1")
        assert await ws.get_message() == "one"  # kept, in order
        assert await ws.get_message() == b"two"
        codes: list[int] = []

        async def pinger() -> None:
            with pytest.raises(WSSConnectionClosed) as info:
                await ws.ping(b"hb-2")
            codes.append(info.value.code)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(pinger)
            assert await peer.read() == (PING, b"hb-2", True)
            await peer.send(CLOSE, struct.pack("!H", 1001))  # the close ends the ping too
        assert codes == [1001]
        assert await peer.read() == (CLOSE, struct.pack("!H", 1001), True)  # the echo


async def test_ping_with_no_reader_stops_at_a_full_inbox(
    autojump_clock: trio.testing.MockClock,
) -> None:
    """The messages a ping keeps are bounded: past max_message_size it waits for a reader."""
    ws, peer = pair(client=True, max_message_size=10)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            done = start_ping(nursery, ws)
            assert await peer.read() == (PING, b"hb-1", True)
            await peer.send(TEXT, b"0123456789")
            await peer.send(PONG, b"hb-1")
            await trio.sleep(1)
            assert not done.is_set()  # the pong sits behind the full inbox, unread
            assert await ws.get_message() == "0123456789"
            await done.wait()


async def test_get_message_takes_the_reading_over_from_a_ping(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ws, peer = pair(client=True)
    with trio.fail_after(5):
        async with trio.open_nursery() as nursery:
            done = start_ping(nursery, ws)
            assert await peer.read() == (PING, b"hb-1", True)
            await trio.testing.wait_all_tasks_blocked()  # the ping waits for data
            got: list[str | bytes] = []

            async def reader() -> None:
                got.append(await ws.get_message())
                got.append(await ws.get_message())

            nursery.start_soon(reader)
            await trio.testing.wait_all_tasks_blocked()
            await peer.send(TEXT, b"first")
            await peer.send(PONG, b"hb-1")  # seen by the reader, in its get_message
            await done.wait()
            assert got == ["first"]
            await peer.send(TEXT, b"second")
        assert got == ["first", "second"]


async def test_ping_in_flight_fails_when_the_connection_drops(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ws, peer = pair(client=True)
    codes: list[int] = []

    async def pinger() -> None:
        with pytest.raises(WSSConnectionClosed) as info:
            await ws.ping(b"hb-1")
        codes.append(info.value.code)

    async def reader() -> None:
        with pytest.raises(WSSConnectionClosed):
            await ws.get_message()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(pinger)
        nursery.start_soon(reader)
        await trio.testing.wait_all_tasks_blocked()
        await peer.stream.aclose()  # TCP gone, no close frame
    assert codes == [1006]


@BOTH_SIDES
async def test_peer_close_code_and_reason_are_reported_and_echoed(client: bool) -> None:
    ws, peer = pair(client=client)
    await peer.send(TEXT, b"last words")
    await peer.send(CLOSE, struct.pack("!H", 4001) + b"call ended")
    assert await ws.get_message() == "last words"
    with pytest.raises(WSSConnectionClosed) as info:
        await ws.get_message()
    assert (info.value.code, info.value.reason) == (4001, "call ended")
    assert ws.closed == (4001, "call ended")
    assert await peer.expect_close(4001) == ""
    with pytest.raises(WSSConnectionClosed):
        await ws.send_message("too late")


async def test_empty_close_frame_reads_as_1005() -> None:
    ws, peer = pair(client=True)
    await peer.send(CLOSE, b"")
    with pytest.raises(WSSConnectionClosed) as info:
        await ws.get_message()
    assert info.value.code == 1005
    opcode, payload, _ = await peer.read()
    assert (opcode, payload) == (CLOSE, b"")


async def test_our_close_sends_code_and_reason_and_waits_for_the_echo(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ws, peer = pair(client=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.aclose, 4000, "bye")
        assert await peer.expect_close(4000) == "bye"
        await trio.sleep(0.5)
        await peer.send(CLOSE, struct.pack("!H", 4000))
    assert ws.closed == (4000, "bye")
    assert await peer.stream.receive_some() == b""  # TCP closed after the echo
    await ws.aclose()  # idempotent
    with pytest.raises(ValueError, match="may not be sent"):
        await ws.aclose(1006)


async def test_close_to_a_dead_peer_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    ws, peer = pair(client=True)
    ws.close_timeout = 1.5
    start = trio.current_time()
    await ws.aclose(1000)
    assert trio.current_time() - start == pytest.approx(1.5)
    assert await peer.expect_close(1000) == ""


async def test_tcp_drop_reads_as_1006() -> None:
    ws, peer = pair(client=True)
    await peer.stream.aclose()
    with pytest.raises(WSSConnectionClosed) as info:
        await ws.get_message()
    assert info.value.code == 1006


@pytest.mark.parametrize(
    ("data", "code", "why"),
    [
        (frame(TEXT, b"x", rsv=0x40), 1002, "reserved bits"),
        (frame(0x3, b"x"), 1002, "unknown opcode"),
        (frame(0xB, b"x"), 1002, "unknown opcode"),
        (frame(PING, b"x" * 126), 1002, "longer than 125"),
        (frame(PING, b"x", fin=False), 1002, "fragmented control"),
        (frame(0x0, b"x"), 1002, "continuation frame without"),
        (frame(TEXT, b"a", fin=False) + frame(TEXT, b"b"), 1002, "new message before"),
        (frame(TEXT, b"\xff\xfe"), 1007, "not valid UTF-8"),
        (frame(CLOSE, b"\x03"), 1002, "1-byte payload"),
        (frame(CLOSE, struct.pack("!H", 1005)), 1002, "invalid close code 1005"),
        (frame(CLOSE, struct.pack("!H", 999)), 1002, "invalid close code 999"),
        (frame(CLOSE, struct.pack("!H", 5000)), 1002, "invalid close code 5000"),
        (frame(CLOSE, struct.pack("!H", 1000) + b"\xff"), 1007, "reason is not valid"),
        (frame(TEXT, b"x", mask=b"abcd"), 1002, "the server masked"),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
async def test_protocol_errors_close_with_the_right_code(data: bytes, code: int, why: str) -> None:
    ws, peer = pair(client=True)
    await peer.stream.send_all(data)
    with pytest.raises(WSSConnectionClosed, match=why) as info:
        await ws.get_message()
    assert info.value.code == code
    assert why in await peer.expect_close(code)
    assert ws.closed is not None
    assert ws.closed[0] == code


async def test_server_side_rejects_unmasked_client_frames() -> None:
    ws, peer = pair(client=False)
    await peer.send(TEXT, b"x", mask=None)
    with pytest.raises(WSSConnectionClosed, match="unmasked") as info:
        await ws.get_message()
    assert info.value.code == 1002


@pytest.mark.parametrize("fragmented", [False, True])
async def test_message_over_max_size_closes_with_1009_and_reads_the_peers_close(
    fragmented: bool, autojump_clock: trio.testing.MockClock
) -> None:
    ws, peer = pair(client=True, max_message_size=100)
    codes: list[int] = []

    async def reader() -> None:
        with pytest.raises(WSSConnectionClosed) as info:
            await ws.get_message()
        codes.append(info.value.code)
        with pytest.raises(WSSConnectionClosed):
            await ws.get_message()  # the rest of the oversized frame is never parsed
        await ws.aclose()  # the owner's close finishes the closing handshake

    async with trio.open_nursery() as nursery:
        nursery.start_soon(reader)
        if fragmented:
            await peer.send(BINARY, b"x" * 60, fin=False)
            data = frame(0x0, b"x" * 60, fin=False)
        else:
            data = frame(BINARY, b"x" * 101)
        # Only the header and a little: the limit is enforced before the payload.
        await peer.stream.send_all(data[:4])
        await peer.expect_close(1009)
        await trio.testing.wait_all_tasks_blocked()
        assert codes == [1009]  # raised at once, not after the peer's answer
        start = trio.current_time()
        # A peer busy sending finishes its frame (and message), then answers.
        await peer.stream.send_all(data[4:])
        if fragmented:
            await peer.send(0x0, b"x" * 10)
        await peer.send(CLOSE, struct.pack("!H", 1009))
    assert codes == [1009]
    assert trio.current_time() - start < 0.1  # the peer's close ended it, not a timeout
    assert await peer.stream.receive_some() == b""  # and then TCP was closed


async def test_after_1009_a_silent_peer_is_waited_for_a_bounded_time(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ws, peer = pair(client=True, max_message_size=100)
    ws.close_timeout = 1.5
    await peer.stream.send_all(frame(BINARY, b"x" * 101)[:2])
    start = trio.current_time()
    with pytest.raises(WSSConnectionClosed) as info:
        await ws.get_message()
    assert info.value.code == 1009
    assert trio.current_time() == start
    await ws.aclose()
    assert trio.current_time() - start == pytest.approx(1.5)
    await peer.expect_close(1009)


async def test_a_close_owed_behind_a_cancelled_send_still_goes_out_on_aclose(
    autojump_clock: trio.testing.MockClock,
) -> None:
    ours, theirs = trio.testing.memory_stream_pair()
    ws = LeanWebSocket(ours, client=True, max_message_size=100)
    peer = Peer(theirs, masks_frames=False)

    pump = ours.send_stream.send_all_hook
    assert pump is not None

    async def stuck() -> None:  # a send that wrote its bytes, then blocked
        await pump()
        await trio.sleep_forever()

    ours.send_stream.send_all_hook = stuck
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.send_message, b"audio")
        await trio.testing.wait_all_tasks_blocked()
        ours.send_stream.send_all_hook = pump
        await peer.stream.send_all(frame(BINARY, b"x" * 101)[:2])
        with pytest.raises(WSSConnectionClosed) as info:
            await ws.get_message()  # its 1009 close is owed behind the blocked send
        assert info.value.code == 1009
        nursery.cancel_scope.cancel()  # the owner cancels the sender, as a call ending does
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.aclose)
        assert await peer.read() == (BINARY, b"audio", True)
        assert await peer.read() == (
            CLOSE,
            struct.pack("!H", 1009) + b"message longer than 100 bytes",
            True,
        )
        await peer.stream.send_all(b"x" * 99)  # the rest of the oversized frame
        await peer.send(CLOSE, struct.pack("!H", 1009))
    assert await peer.stream.receive_some() == b""


async def test_exactly_max_size_is_accepted() -> None:
    ws, peer = pair(client=True, max_message_size=100)
    await peer.send(BINARY, b"x" * 100)
    assert await ws.get_message() == b"x" * 100


async def test_pong_owed_during_a_send_goes_out_after_it() -> None:
    ours, theirs = trio.testing.lockstep_stream_pair()
    ws = LeanWebSocket(ours, client=True)
    peer = Peer(theirs, masks_frames=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.send_message, b"big" * 1000)  # blocks: nobody reads yet
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(ws.get_message)
        await peer.stream.send_all(frame(PING, b"p"))
        await trio.testing.wait_all_tasks_blocked()
        assert await peer.read() == (BINARY, b"big" * 1000, True)
        assert await peer.read() == (PONG, b"p", True)
        nursery.cancel_scope.cancel()


async def test_pongs_owed_to_a_peer_that_pings_and_never_reads_are_coalesced() -> None:
    """While a send waits on a peer that does not read, its pings are answered
    by one pong, to the latest (RFC 6455 5.5.3): what is owed stays bounded."""
    ours, theirs = trio.testing.lockstep_stream_pair()
    ws = LeanWebSocket(ours, client=True)
    peer = Peer(theirs, masks_frames=False)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.send_message, b"stuck")  # blocks: the peer reads nothing
        await trio.testing.wait_all_tasks_blocked()
        nursery.start_soon(ws.get_message)
        for i in range(5000):
            await peer.send(PING, b"%d" % i)
        await trio.testing.wait_all_tasks_blocked()
        assert await peer.read() == (BINARY, b"stuck", True)
        assert await peer.read() == (PONG, b"4999", True)
        await peer.send(PING, b"after")
        assert await peer.read() == (PONG, b"after", True)  # nothing else was owed
        nursery.cancel_scope.cancel()


async def test_send_message_refuses_other_types() -> None:
    ws, _ = pair(client=True)
    with pytest.raises(TypeError, match="str or bytes"):
        await ws.send_message(bytearray(b"x"))  # type: ignore[arg-type]


async def test_concurrent_readers_are_refused() -> None:
    ws, _ = pair(client=True)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(ws.get_message)
        await trio.testing.wait_all_tasks_blocked()
        with pytest.raises(trio.BusyResourceError):
            await ws.get_message()
        nursery.cancel_scope.cancel()


# -- handshakes -----------------------------------------------------------------------


async def test_lean_server_with_trio_websocket_client(
    autojump_clock: trio.testing.MockClock,
) -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def server() -> None:
        request = await accept_lean_websocket(server_stream)
        assert request is not None
        assert request.path == "/media?x=1"
        assert (b"x-api-key", b"k") in request.headers
        assert request.subprotocols == ["a", "b"]
        ws = await request.accept(subprotocol="b", extra_headers=[("x-served-by", "lean")])
        await ws.send_message(await ws.get_message())
        with pytest.raises(WSSConnectionClosed) as info:
            await ws.get_message()
        assert (info.value.code, info.value.reason) == (4002, "done")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        conn = await trio_websocket.wrap_client_stream(
            nursery,
            client_stream,  # type: ignore[arg-type]
            "h",
            "/media?x=1",
            subprotocols=["a", "b"],
            extra_headers=[(b"x-api-key", b"k")],
        )
        assert conn.subprotocol == "b"
        await conn.send_message("echo me")
        assert await conn.get_message() == "echo me"
        await conn.aclose(4002, "done")


async def test_lean_server_rejects_a_plain_http_request() -> None:
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(b"GET / HTTP/1.1\r\nHost: h\r\n\r\n")
    assert await accept_lean_websocket(server) is None
    answer = b""
    while data := await client.receive_some():
        answer += data
    assert answer.startswith(b"HTTP/1.1 400 ")
    assert b"not a WebSocket upgrade request" in answer


async def test_a_wrong_version_is_answered_400_with_the_version_we_speak() -> None:
    """RFC 6455 4.2.2: the refusal names the version the server understands."""
    client, server = trio.testing.memory_stream_pair()
    await client.send_all(
        b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 8\r\n\r\n"
    )
    assert await accept_lean_websocket(server) is None
    answer = b""
    while data := await client.receive_some():
        answer += data
    head = answer.split(b"\r\n\r\n", 1)[0].lower().split(b"\r\n")
    assert head[0].startswith(b"http/1.1 400 ")
    assert b"sec-websocket-version: 13" in head


async def test_lean_request_reject_sends_the_status_and_body() -> None:
    client_stream, server_stream = trio.testing.memory_stream_pair()

    async def server() -> None:
        request = await accept_lean_websocket(server_stream)
        assert request is not None
        await request.reject(401, b"bad key")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        with pytest.raises(ConnectionRejected) as info:
            await lean_client_handshake(client_stream, "h", "/")
    assert (info.value.status_code, info.value.body) == (401, b"bad key")


async def test_client_refuses_a_wrong_accept_token() -> None:
    client, server = trio.testing.memory_stream_pair()

    async def bad_server() -> None:
        while b"\r\n\r\n" not in await server.receive_some():
            pass
        await server.send_all(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
            b"Connection: Upgrade\r\nSec-WebSocket-Accept: bm90IGl0\r\n\r\n"
        )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(bad_server)
        with pytest.raises(WSSConnectionError, match="Sec-WebSocket-Accept"):
            await lean_client_handshake(client, "h", "/")


class _ReadsAfter(trio.abc.ReceiveStream):
    """A receive stream that waits for ``event`` before its first read."""

    def __init__(self, inner: trio.abc.ReceiveStream, event: trio.Event) -> None:
        self.inner, self.event = inner, event

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        await self.event.wait()
        return await self.inner.receive_some(max_bytes)

    async def aclose(self) -> None:
        await self.inner.aclose()


@pytest.mark.parametrize("size", [13, 200_000])
async def test_bytes_right_after_the_101_are_kept(size: int) -> None:
    """A server may send its first frame with its 101: kept, whatever its size (a large
    one used to count against the upgrade's size limit: 'upgrade message too large')."""
    client_stream, server_stream = trio.testing.memory_stream_pair()
    sent = trio.Event()
    client = trio.StapledStream(client_stream, _ReadsAfter(client_stream, sent))
    message = ("hello at once" * size)[:size]

    async def server() -> None:
        request = await accept_lean_websocket(server_stream)
        assert request is not None
        ws = await request.accept()
        await ws.send_message(message)
        sent.set()  # the client reads the 101 and the frame together

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server)
        ws = await lean_client_handshake(client, "h", "/")
        assert await ws.get_message() == message


@pytest.mark.parametrize("poller", ["shared epoll", "trio's wait_readable"])
async def test_loopback_tcp_fast_path_round_trip(
    poller: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real sockets: the lean client and server on 127.0.0.1 (the socket fast path),
    waiting through the run's shared epoll set or, as where there is no epoll,
    through trio's own ``wait_readable``."""
    if poller != "shared epoll":
        monkeypatch.setattr(lean_ws, "current_poller", lambda: None)

    async def echo(ws: LeanWebSocket) -> None:
        try:
            while True:
                await ws.send_message(await ws.get_message())
        except WSSConnectionClosed:
            pass

    big = os.urandom(300_000)  # larger than one receive and one socket buffer
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(serve_lean_websocket, echo, "127.0.0.1", 0)
            port = listeners[0].socket.getsockname()[1]
            async with open_websocket(
                f"ws://127.0.0.1:{port}/x", transport="lean", max_message_size=1 << 20
            ) as ws:
                assert isinstance(ws, LeanWebSocket)
                assert (ws._poller is None) == (poller != "shared epoll")
                for i in range(50):
                    await ws.send_message(f"m{i}")
                    assert await ws.get_message() == f"m{i}"
                await ws.send_message(big)
                assert await ws.get_message() == big
                await ws.aclose(4003, "finished")
            assert ws.closed == (4003, "finished")
            nursery.cancel_scope.cancel()


async def fill_until_a_flush_is_refused(ws: LeanWebSocket, chunk: bytes) -> int:
    """Hand ``chunk`` to ``send_message_nowait`` until a flush finds the socket full; how many."""
    assert ws._raw is not None
    ws._raw.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 16384)
    for count in range(1, 2000):
        assert ws.send_message_nowait(chunk)
        assert ws.unsent == 0  # taken: it waits for the flush, nothing is refused
        await trio.lowlevel.checkpoint()  # trio's batch is done: the poller flushes
        if ws.unsent:
            return count
    raise AssertionError("the socket never filled")


async def lean_pair_on_loopback(
    nursery: trio.Nursery, handler: Callable[[LeanWebSocket], Awaitable[None]]
) -> str:
    listeners = await nursery.start(serve_lean_websocket, handler, "127.0.0.1", 0)
    return f"ws://127.0.0.1:{listeners[0].socket.getsockname()[1]}/"


async def test_send_message_nowait_defers_and_a_full_socket_refuses() -> None:
    """Loopback TCP: ``send_message_nowait`` takes a small message for the
    poller's flush; a large one is refused. Once a flush finds the socket full,
    ``unsent`` counts what it left and nothing more is taken; ``send_message``
    then waits for the peer to read (backpressure) and writes the rest first;
    ``aclose`` writes what is taken. Every byte arrives, in order."""
    received: list[str | bytes] = []
    reading = trio.Event()
    after_the_rest = trio.Event()

    async def collect(ws: LeanWebSocket) -> None:
        await reading.wait()
        with contextlib.suppress(WSSConnectionClosed):
            while True:
                received.append(await ws.get_message())

    async def send_after_the_rest(ws: LeanWebSocket) -> None:
        await ws.send_message("after the rest")
        after_the_rest.set()

    chunk = os.urandom(60_000)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            url = await lean_pair_on_loopback(nursery, collect)
            async with open_websocket(url, transport="lean") as ws:
                assert isinstance(ws, LeanWebSocket)
                assert not ws.send_message_nowait(os.urandom(100_000))  # large: a task's job
                count = await fill_until_a_flush_is_refused(ws, chunk)
                assert not ws.send_message_nowait(b"must wait its turn")
                nursery.start_soon(send_after_the_rest, ws)
                await trio.testing.wait_all_tasks_blocked()
                assert not after_the_rest.is_set()  # the peer reads nothing yet
                reading.set()
                await after_the_rest.wait()
                assert ws.unsent == 0
                assert ws.send_message_nowait(b"small")
            assert not ws.send_message_nowait(b"closed")
            await trio.testing.wait_all_tasks_blocked()
            nursery.cancel_scope.cancel()
    assert received == [chunk] * count + ["after the rest", b"small"]


async def test_the_reader_finishes_a_write_a_full_socket_refused() -> None:
    """With no further send, the rest a flush left is written by the
    connection's reader, woken by the poller when the socket has room: a peer
    that answers only once it has every message does answer."""
    count = 0
    counted = trio.Event()
    chunk = os.urandom(60_000)

    async def answer_when_all_arrived(ws: LeanWebSocket) -> None:
        await counted.wait()
        for _ in range(count):
            assert await ws.get_message() == chunk
        await ws.send_message("all here")
        with contextlib.suppress(WSSConnectionClosed):
            await ws.get_message()

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            url = await lean_pair_on_loopback(nursery, answer_when_all_arrived)
            async with open_websocket(url, transport="lean") as ws:
                assert isinstance(ws, LeanWebSocket)
                count = await fill_until_a_flush_is_refused(ws, chunk)
                counted.set()
                assert await ws.get_message() == "all here"
                assert ws.unsent == 0
            nursery.cancel_scope.cancel()


async def test_send_message_nowait_needs_a_plain_socket() -> None:
    ws, peer = pair(client=False)  # a memory stream: sends happen in a task only
    assert not ws.send_message_nowait(b"x")
    assert ws.unsent == 0
    await ws.flush()  # nothing to write
    await ws.send_message(b"y")
    assert await peer.read() == (BINARY, b"y", False)


async def test_every_client_frame_has_a_fresh_masking_key() -> None:
    ws, peer = pair(client=True)
    count = 1500  # more keys than one draw from os.urandom holds
    async with trio.open_nursery() as nursery:

        async def send_all() -> None:
            for i in range(count):
                await ws.send_message(i.to_bytes(2, "big"))

        nursery.start_soon(send_all)
        raw = b""
        while len(raw) < count * 8:  # 2 header bytes, 4 key bytes, 2 payload bytes
            raw += await peer.stream.receive_some()
    frames = [raw[i : i + 8] for i in range(0, len(raw), 8)]
    keys = {f[2:6] for f in frames}
    assert len(keys) > count - 5  # 32-bit random keys: collisions are rare
    assert [int.from_bytes(xor(f[6:], f[2:6]), "big") for f in frames] == list(range(count))


async def test_send_messages_is_one_write_and_all_or_nothing() -> None:
    ws, peer = pair(client=False)
    await ws.send_messages(["a", b"b", "c"])
    assert await peer.stream.receive_some() == (
        frame(TEXT, b"a") + frame(BINARY, b"b") + frame(TEXT, b"c")
    )
    with pytest.raises(TypeError, match="must be str or bytes"):
        await ws.send_messages(["sent?", 3])  # type: ignore[list-item]
    await ws.send_message("next")
    assert await peer.read() == (TEXT, b"next", False)  # "sent?" never went out
