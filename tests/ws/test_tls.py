"""TLS on the lean fast path, on loopback with trustme certificates.

Both ends run ``ssl.SSLSocket`` in non-blocking mode on the run's poller
(checked: the stream under the connection is a ``TLSSocketStream``), against
each other and against trio-websocket on ``trio.SSLStream``. Certificate
failures, a silent peer, peers that vanish and full socket buffers are each
bounded; descriptors are counted in ``/proc/self/fd`` (Linux).
"""

from __future__ import annotations

import contextlib
import datetime
import functools
import os
import socket
import ssl
import struct
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import trio
import trio.testing
import trio_websocket
import trustme

from telcoflow_trio.exceptions import (
    WSSAuthenticationError,
    WSSConnectionClosed,
    WSSConnectionError,
    WSSTLSError,
)
from telcoflow_trio.ws import HandshakeError, WebSocketRequest, open_websocket_url, serve_websocket
from telcoflow_trio.ws._connection import LeanWebSocket, accept_lean_websocket
from telcoflow_trio.ws._poller import current_poller
from telcoflow_trio.ws._streams import accept_tls, start_tls
from telcoflow_trio.ws._tls import TLSSocketStream
from telcoflow_trio.ws._transport import open_websocket

pytestmark = pytest.mark.skipif(not os.path.isdir("/proc/self/fd"), reason="Linux: epoll, /proc")

NAME = "telcoflow.test"  # reached on 127.0.0.1 through to_loopback (no resolver involved)
MESSAGES = ["hi", b"\x00\x01", "x" * 200_000, os.urandom(3_000_000)]


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def server_context(cert: trustme.LeafCert) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return context


def client_context(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


async def to_loopback(host: str, port: int, ssl_context: ssl.SSLContext | None) -> trio.abc.Stream:
    """A StreamOpener: TCP to 127.0.0.1, TLS for ``host`` (its SNI and hostname check)."""
    assert ssl_context is not None
    tcp = await trio.open_tcp_stream("127.0.0.1", port)
    return await start_tls(tcp, ssl_context, host)


async def echo(ws: LeanWebSocket) -> None:
    assert type(ws._stream) is TLSSocketStream  # the fast path, not trio.SSLStream
    with contextlib.suppress(WSSConnectionClosed):
        while True:
            await ws.send_message(await ws.get_message())


@contextlib.asynccontextmanager
async def lean_server(
    context: ssl.SSLContext,
    handler: Callable[[LeanWebSocket], Awaitable[None]] = echo,
    **options: Any,
) -> AsyncIterator[int]:
    """Our TLS server (the public ``serve_websocket``) on 127.0.0.1; yields its port."""

    async def accept(request: WebSocketRequest) -> None:
        await handler(await request.accept())

    async with trio.open_nursery() as nursery:
        server = await nursery.start(
            functools.partial(
                serve_websocket,
                accept,
                "127.0.0.1",
                0,
                context,
                max_message_size=1 << 23,
                **options,
            )
        )
        yield server.port
        nursery.cancel_scope.cancel()


def our_client(ca: trustme.CA, port: int) -> contextlib.AbstractAsyncContextManager[Any]:
    """Our client, on the fast path (checked by the caller), to ``NAME`` at ``port``."""
    return open_websocket(
        f"wss://{NAME}:{port}/",
        ssl_context=client_context(ca),
        open_stream=to_loopback,
        max_message_size=1 << 23,
    )


async def check_echo(conn: Any) -> None:
    """Each of ``MESSAGES`` comes back as it went (any connection with these two methods)."""
    for message in MESSAGES:
        await conn.send_message(message)
        assert await conn.get_message() == message


async def test_echo_ours_against_ours_both_ways(ca: trustme.CA) -> None:
    current_poller()
    before = open_fds()
    with trio.fail_after(30):
        async with lean_server(server_context(ca.issue_cert(NAME))) as port:
            async with our_client(ca, port) as ws:
                assert type(ws._stream) is TLSSocketStream
                assert ws._stream.socket.server_hostname == NAME  # SNI and the name checked
                await check_echo(ws)
                await ws.send_messages(["a", "b"])
                assert [await ws.get_message(), await ws.get_message()] == ["a", "b"]
            await trio.testing.wait_all_tasks_blocked()
    assert open_fds() == before


async def test_our_client_against_trio_websocket_on_sslstream(ca: trustme.CA) -> None:
    async def handler(request: trio_websocket.WebSocketRequest) -> None:
        conn = await request.accept()
        with contextlib.suppress(trio_websocket.ConnectionClosed):
            while True:
                await conn.send_message(await conn.get_message())

    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:
            server = await nursery.start(
                lambda task_status: trio_websocket.serve_websocket(
                    handler,
                    "127.0.0.1",
                    0,
                    server_context(ca.issue_cert(NAME)),
                    max_message_size=1 << 23,
                    task_status=task_status,
                )
            )
            async with our_client(ca, server.port) as ws:
                assert type(ws._stream) is TLSSocketStream
                await check_echo(ws)
            nursery.cancel_scope.cancel()


async def test_trio_websocket_on_sslstream_against_our_server(ca: trustme.CA) -> None:
    with trio.fail_after(30):
        async with (
            lean_server(server_context(ca.issue_cert("127.0.0.1"))) as port,
            trio_websocket.open_websocket_url(
                f"wss://127.0.0.1:{port}/", client_context(ca), max_message_size=1 << 23
            ) as conn,
        ):
            assert isinstance(conn._stream, trio.SSLStream)
            await check_echo(conn)


async def test_a_server_that_never_answers_tls_times_out_and_leaks_nothing(
    autojump_clock: trio.testing.MockClock,
) -> None:
    current_poller()
    before = open_fds()
    with socket.socket() as silent:  # accepts TCP (the backlog) and never speaks
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        port = silent.getsockname()[1]
        with pytest.raises(WSSConnectionError, match="longer than 3 s"):
            async with open_websocket(f"wss://127.0.0.1:{port}/", connect_timeout=3):
                pass  # pragma: no cover
    assert open_fds() == before


@pytest.mark.parametrize("silent_after", ["tcp", "tls"])
async def test_a_client_that_goes_silent_is_dropped_at_the_handshake_timeout(
    ca: trustme.CA, silent_after: str, autojump_clock: trio.testing.MockClock
) -> None:
    """Silent after TCP (no TLS hello) or after TLS (no upgrade request)."""
    async with lean_server(
        server_context(ca.issue_cert("127.0.0.1")), handshake_timeout=5
    ) as port:
        current_poller()  # the run's epoll set exists before the count
        before = open_fds()
        start = trio.current_time()
        stream: trio.abc.Stream = await trio.open_tcp_stream("127.0.0.1", port)
        if silent_after == "tls":
            stream = await start_tls(stream, client_context(ca), "127.0.0.1")
        assert await stream.receive_some() == b""  # the server hung up
        assert trio.current_time() - start == pytest.approx(5)
        await stream.aclose()
        await trio.testing.wait_all_tasks_blocked()
        assert open_fds() == before


def expired(ca: trustme.CA) -> trustme.LeafCert:
    now = datetime.datetime.now(datetime.UTC)
    return ca.issue_cert(
        "127.0.0.1",
        not_before=now - datetime.timedelta(days=2),
        not_after=now - datetime.timedelta(days=1),
    )


@pytest.mark.parametrize(
    ("issue", "trusted", "cause"),
    [
        (lambda ca: ca.issue_cert("127.0.0.1"), False, "unable to get local issuer certificate"),
        (lambda ca: ca.issue_cert("elsewhere.example"), True, "IP address mismatch"),
        (expired, True, "certificate has expired"),
    ],
    ids=["unknown-ca", "wrong-host", "expired"],
)
async def test_certificate_problems_are_refused_naming_the_cause(
    ca: trustme.CA, issue: Callable[[trustme.CA], trustme.LeafCert], trusted: bool, cause: str
) -> None:
    context = client_context(ca) if trusted else ssl.create_default_context()
    current_poller()
    with trio.fail_after(10):
        async with lean_server(server_context(issue(ca))) as port:
            before = open_fds()
            with pytest.raises(WSSTLSError, match="TLS handshake") as info:
                async with open_websocket(
                    f"wss://127.0.0.1:{port}/", ssl_context=context, connect_timeout=5
                ):
                    pass  # pragma: no cover
            assert cause in str(info.value)
            # Not retried by the client (authentication), and a connection error all the same.
            assert isinstance(info.value, WSSAuthenticationError)
            assert isinstance(info.value, WSSConnectionError)
            # The public client names the cause too.
            with pytest.raises(HandshakeError, match=cause):
                async with open_websocket_url(
                    f"wss://127.0.0.1:{port}/", ssl_context=context, connect_timeout=5
                ):
                    pass  # pragma: no cover
            await trio.testing.wait_all_tasks_blocked()  # the server's side is gone too
            assert open_fds() == before


async def test_mtls_accepts_a_client_certificate_and_refuses_none(ca: trustme.CA) -> None:
    server = server_context(ca.issue_cert("127.0.0.1"))
    server.verify_mode = ssl.CERT_REQUIRED
    ca.configure_trust(server)
    with_cert = client_context(ca)
    ca.issue_cert("agent@telcoflow.test").configure_cert(with_cert)
    current_poller()
    with trio.fail_after(10):
        async with lean_server(server) as port:
            url = f"wss://127.0.0.1:{port}/"
            async with open_websocket(url, ssl_context=with_cert) as ws:
                await ws.send_message("in")
                assert await ws.get_message() == "in"
            before = open_fds()
            with pytest.raises(WSSTLSError, match="certificate required"):
                async with open_websocket(url, ssl_context=client_context(ca)):
                    pass  # pragma: no cover
            await trio.testing.wait_all_tasks_blocked()
            assert open_fds() == before


async def test_a_cancelled_receive_loses_no_bytes(ca: trustme.CA) -> None:
    """Cancelled before or while it reads, receive_some leaves the bytes for the next."""
    arrived = trio.Event()

    async def peer(tcp: trio.SocketStream) -> None:
        tls = await accept_tls(tcp, server_context(ca.issue_cert("127.0.0.1")))
        await tls.send_all(b"first")
        await arrived.wait()
        await tls.aclose()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            serve = functools.partial(trio.serve_tcp, peer, 0, host="127.0.0.1")
            listeners = await nursery.start(serve)
            port = listeners[0].socket.getsockname()[1]
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            tls = await start_tls(tcp, client_context(ca), "127.0.0.1")
            assert type(tls) is TLSSocketStream
            await trio.lowlevel.wait_readable(tls.socket.fileno())  # "first" is here
            with trio.CancelScope() as scope:
                scope.cancel()
                await tls.receive_some()
            assert scope.cancelled_caught
            assert await tls.receive_some() == b"first"
            arrived.set()
            assert await tls.receive_some() == b""
            await tls.aclose()
            nursery.cancel_scope.cancel()


async def test_close_sends_close_notify(ca: trustme.CA) -> None:
    """The peer (trio.SSLStream, which raises on an EOF without close_notify) sees a clean end."""
    ended = trio.Event()
    clean: list[bool] = []

    async def peer(tcp: trio.SocketStream) -> None:
        tls = trio.SSLStream(tcp, server_context(ca.issue_cert("127.0.0.1")), server_side=True)
        request = await accept_lean_websocket(tls)
        assert request is not None
        await request.accept()  # from here on, raw bytes: answer a close frame by hand
        try:
            while data := await tls.receive_some():
                if data[0] == 0x88:
                    await tls.send_all(b"\x88\x02\x03\xe8")
            clean.append(True)
        except trio.BrokenResourceError:
            clean.append(False)
        ended.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            listeners = await nursery.start(
                functools.partial(trio.serve_tcp, host="127.0.0.1"), peer, 0
            )
            port = listeners[0].socket.getsockname()[1]
            async with open_websocket(f"wss://127.0.0.1:{port}/", ssl_context=client_context(ca)):
                pass
            await ended.wait()
            nursery.cancel_scope.cancel()
    assert clean == [True]


@pytest.mark.parametrize("end", ["fin", "reset"])
async def test_a_peer_that_vanishes_mid_message_does_not_hang_the_reader(
    ca: trustme.CA, end: str
) -> None:
    seen: list[int] = []
    done = trio.Event()

    async def handler(ws: LeanWebSocket) -> None:
        try:
            await ws.get_message()
        except WSSConnectionClosed as exc:
            seen.append(exc.code)
        done.set()

    current_poller()
    with trio.fail_after(10):
        async with lean_server(server_context(ca.issue_cert("127.0.0.1")), handler) as port:
            before = open_fds()
            tcp = await trio.open_tcp_stream("127.0.0.1", port)
            tls = await start_tls(tcp, client_context(ca), "127.0.0.1")
            assert isinstance(tls, TLSSocketStream)
            await tls.send_all(
                b"GET / HTTP/1.1\r\nHost: h\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
            )
            assert (await tls.receive_some()).startswith(b"HTTP/1.1 101 ")
            # A masked text frame announcing 1000 bytes, of which 10 are sent.
            await tls.send_all(struct.pack("!BBH", 0x81, 0x80 | 126, 1000) + b"\0" * 14)
            await trio.testing.wait_all_tasks_blocked()
            sock = tls.socket
            tls.poller.forget(sock.fileno())
            if end == "fin":
                sock.shutdown(socket.SHUT_WR)  # TCP FIN, no close_notify
            else:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
            await done.wait()
            sock.close()
            await trio.testing.wait_all_tasks_blocked()
            assert open_fds() == before
    assert seen == [1006]


async def test_a_large_message_against_full_socket_buffers_completes(ca: trustme.CA) -> None:
    """The server reads nothing until the client's send is stuck on a full socket
    (SSLWantWriteError, again and again); then 8 MB go through, and back."""
    reading = trio.Event()

    async def late_echo(ws: LeanWebSocket) -> None:
        await reading.wait()
        await echo(ws)

    message = os.urandom(8 << 20)
    with trio.fail_after(30):
        async with (
            lean_server(server_context(ca.issue_cert("127.0.0.1")), late_echo) as port,
            open_websocket(
                f"wss://127.0.0.1:{port}/",
                ssl_context=client_context(ca),
                max_message_size=1 << 24,
            ) as ws,
        ):
            async with trio.open_nursery() as nursery:
                nursery.start_soon(ws.send_message, message)
                await trio.testing.wait_all_tasks_blocked()  # the send waits for room
                assert not reading.is_set()
                reading.set()
            assert await ws.get_message() == message


async def test_a_send_cancelled_on_a_full_socket_is_finished_before_the_next(
    ca: trustme.CA,
) -> None:
    """OpenSSL holds part of a write that would block and wants the same bytes
    again: the rest of a cancelled send goes out first, so the stream stays whole."""
    reading = trio.Event()

    async def late_echo(ws: LeanWebSocket) -> None:
        await reading.wait()
        await echo(ws)

    message = os.urandom(8 << 20)
    with trio.fail_after(30):
        async with (
            lean_server(server_context(ca.issue_cert(NAME)), late_echo) as port,
            our_client(ca, port) as ws,
        ):
            with trio.CancelScope() as scope:
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(ws.send_message, message)
                    await trio.testing.wait_all_tasks_blocked()  # stuck on a full socket
                    scope.cancel()
            assert scope.cancelled_caught
            reading.set()
            await ws.send_message("after")
            assert await ws.get_message() == message
            assert await ws.get_message() == "after"
