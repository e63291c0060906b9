"""The seam between the protocol and the network.

Everything above this module sees a :class:`MessageStream`: whole text or binary
messages in and out, and a close with a code. Everything below is trio-websocket
on a trio byte stream. Two decisions live here:

* **Opening is bounded as a whole.** trio-websocket's own ``connect_timeout`` can
  hang when a server accepts TCP and never answers the upgrade, so
  :func:`open_websocket` puts one deadline around TCP, TLS and the handshake.
* **Exceptions are translated at this boundary**, once: a closed socket is
  :class:`~telcoflow_trio.exceptions.WSSConnectionClosed`, a refused upgrade with
  401/403 is :class:`~telcoflow_trio.exceptions.WSSAuthenticationError` and a TLS failure
  :class:`~telcoflow_trio.exceptions.WSSTLSError` (both never retried),
  anything else that stops a connection from opening is
  :class:`~telcoflow_trio.exceptions.WSSConnectionError`. The exception of the
  code inside ``async with open_websocket(...)`` passes through unchanged.

Two WebSocket implementations sit behind the seam, chosen with ``transport=``:
``"lean"`` (the default: :mod:`telcoflow_trio.ws._connection`, a frame codec run in
the caller's task, no reader task, about half the CPU and memory per
connection; see docs/performance.md) and ``"trio-websocket"``. Both pass the
same protocol tests.

The byte stream comes from a :data:`~telcoflow_trio.ws._streams.StreamOpener`
(:mod:`~telcoflow_trio.ws._streams` makes TCP and TLS streams), so tests and the
in-process simulator can hand over one end of an in-memory stream pair (the testing
kit's memory server uses ``_memory_stream``, whose buffers are bounded like a socket's)
and run the very same WebSocket code with no sockets and under ``MockClock``.
"""

from __future__ import annotations

import contextlib
import ssl
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager
from typing import Literal, Protocol, TypeAlias, cast, final
from urllib.parse import urlsplit

import trio
import trio_websocket
from trio_websocket import ConnectionClosed, ConnectionRejected, HandshakeError
from wsproto.connection import ConnectionState
from wsproto.events import CloseConnection

from ..exceptions import (
    WSSAuthenticationError,
    WSSConnectionClosed,
    WSSConnectionError,
    WSSError,
    WSSTLSError,
)
from . import _errors
from ._connection import lean_client_handshake
from ._handshake import check_headers
from ._streams import StreamOpener, open_tcp

__all__ = [
    "TRANSPORTS",
    "ClientWebSocket",
    "MessageStream",
    "Transport",
    "WebSocket",
    "open_websocket",
    "redact_url",
]


class MessageStream(Protocol):
    """Whole WebSocket messages in and out; what every I/O module talks to."""

    async def send_message(self, message: str | bytes) -> None:
        """Send one text (``str``) or binary (``bytes``) message.

        Raises:
            WSSConnectionClosed: the connection is closed.
        """

    async def get_message(self) -> str | bytes:
        """The next message.

        Raises:
            WSSConnectionClosed: the connection closed (after every message that
                arrived before the close was delivered).
        """
        ...

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code`` and ``reason``; bounded in time, idempotent."""


class ClientWebSocket(MessageStream, Protocol):
    """What :func:`open_websocket` yields, whichever transport is under it."""

    close_timeout: float

    @property
    def closed(self) -> tuple[int, str | None] | None:
        """``(code, reason)`` once closed, else ``None``."""

    @property
    def path(self) -> str:
        """The request path (with query string) the connection was opened for."""

    async def ping(self, payload: bytes) -> None:
        """Send a ping and wait for its pong; bound it in time.

        Raises:
            WSSConnectionClosed: the connection is closed.
        """

    async def send_messages(self, messages: Sequence[str | bytes]) -> None:
        """Send several messages in order (with one write where the transport can).

        Raises:
            WSSConnectionClosed: the connection is closed.
        """

    def send_message_nowait(self, message: bytes) -> bool:
        """Send a binary message without waiting, if the transport can right now.

        ``False``: nothing was taken; use :meth:`send_message`. ``True``: taken;
        the transport writes it before anything sent after it.
        """


#: The WebSocket implementation under :func:`open_websocket`.
Transport: TypeAlias = Literal["trio-websocket", "lean"]
TRANSPORTS: tuple[Transport, ...] = ("trio-websocket", "lean")
#: What every ``transport=`` defaults to (the benchmarks chose it).
DEFAULT_TRANSPORT: Transport = "lean"


def redact_url(url: str) -> str:
    """``url`` without its query string and user info, fit for logs and errors."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    netloc = f"{host}:{parts.port}" if parts.port else host
    return f"{parts.scheme}://{netloc}{parts.path}"


#: What a WebSocket closes with when it refuses the peer's data.
_OUR_CLOSE_CODES = frozenset({1002, 1007, 1009})
_NOT_PEER_CLOSED = frozenset({ConnectionState.OPEN, ConnectionState.LOCAL_CLOSING})


def _closed(exc: ConnectionClosed) -> WSSConnectionClosed:
    reason = exc.reason
    return (
        WSSConnectionClosed(1006)
        if reason is None
        else WSSConnectionClosed(reason.code, reason.reason)
    )


@final
class WebSocket:
    """A :class:`MessageStream` over a trio-websocket connection."""

    __slots__ = ("_conn", "close_timeout")

    def __init__(
        self, conn: trio_websocket.WebSocketConnection, close_timeout: float = 2.0
    ) -> None:
        self._conn = conn
        self.close_timeout = close_timeout

    @property
    def closed(self) -> tuple[int, str | None] | None:
        """``(code, reason)`` once closed, else ``None``."""
        reason = self._conn.closed
        return None if reason is None else (reason.code, reason.reason)

    @property
    def path(self) -> str:
        """The request path (with query string) the connection was opened for."""
        return self._conn.path or ""

    async def send_message(self, message: str | bytes) -> None:
        try:
            await self._conn.send_message(message)
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def get_message(self) -> str | bytes:
        try:
            return await self._conn.get_message()
        except ConnectionClosed as exc:
            raise await self._closed_on_receive(exc) from None

    async def _closed_on_receive(self, exc: ConnectionClosed) -> WSSConnectionClosed:
        """Who closed, which trio-websocket does not say, and the close it owes.

        For data it refuses, wsproto reports a close "from the peer" with 1002 or
        1007 and sends nothing (trio-websocket itself sends 1009): the
        connection is still OPEN, or LOCAL_CLOSING if it dropped meanwhile,
        where a peer's close leaves it REMOTE_CLOSING or CLOSED. The close
        frame owed for 1002/1007 is sent here, as the lean transport does.
        """
        reason = exc.reason
        # trio-websocket 0.12 keeps the protocol state private (pinned below 0.13).
        state = self._conn._wsproto.state
        if reason is None or reason.code not in _OUR_CLOSE_CODES or state not in _NOT_PEER_CLOSED:
            return _closed(exc)
        code, text = int(reason.code), reason.reason
        if state is ConnectionState.OPEN:
            with trio.move_on_after(self.close_timeout), contextlib.suppress(ConnectionClosed):
                await self._conn._send(CloseConnection(code=code, reason=text or ""))
        return WSSConnectionClosed(code, text, by_peer=False)

    async def send_messages(self, messages: Sequence[str | bytes]) -> None:
        """One ``send_message`` after another (trio-websocket writes each frame itself)."""
        for message in messages:
            await self.send_message(message)

    def send_message_nowait(self, message: bytes) -> bool:
        """Always ``False``: trio-websocket sends only from a task."""
        return False

    async def ping(self, payload: bytes) -> None:
        """Send a ping and wait for its pong. Never returns if the peer dies: bound it.

        Raises:
            WSSConnectionClosed: the connection is closed.
        """
        try:
            await self._conn.ping(payload)
        except ConnectionClosed as exc:
            raise _closed(exc) from None

    async def aclose(self, code: int = 1000, reason: str | None = None) -> None:
        """Close with ``code``; waits at most ``close_timeout``, even when cancelled."""
        with trio.CancelScope(shield=True, deadline=trio.current_time() + self.close_timeout):
            await self._conn.aclose(code, reason)


def _translate_open_error(exc: BaseException, url: str, timeout: float) -> WSSError | None:
    """The library error an exception raised while opening stands for."""
    where = redact_url(url)
    if isinstance(exc, ConnectionRejected | _errors.ConnectionRejected):
        status = exc.status_code
        body = (exc.body or b"").decode("utf-8", "replace").strip()[:200]
        detail = f"{where} refused the WebSocket upgrade with HTTP {status}" + (
            f": {body}" if body else ""
        )
        if status in (401, 403):
            return WSSAuthenticationError(detail)
        return WSSConnectionError(detail)
    if isinstance(exc, ssl.SSLError) or isinstance(exc.__cause__, ssl.SSLError):
        return WSSTLSError(f"TLS handshake with {where} failed: {exc.__cause__ or exc}")
    if isinstance(exc, trio.TooSlowError):
        return WSSConnectionError(f"opening {where} took longer than {timeout:g} s")
    if isinstance(exc, HandshakeError | OSError | trio.BrokenResourceError | ConnectionClosed):
        return WSSConnectionError(f"could not open {where}: {type(exc).__name__}: {exc}")
    return None


@final
class _WatchedStream(trio.abc.Stream):
    """The byte stream under a new trio-websocket connection, watched while it opens.

    trio-websocket's reader gives up without a word when its stream fails or
    ends before the upgrade response (a TLS alert after a TLS 1.3 handshake, a
    server hanging up), and the opening would wait for its deadline. This
    cancels :attr:`opening` at once instead and keeps the cause for the error.
    """

    __slots__ = ("_opening_over", "cause", "opening", "stream")

    def __init__(self, stream: trio.abc.Stream) -> None:
        self.stream = stream
        self.opening = trio.CancelScope()
        self.cause: BaseException | None = None
        self._opening_over = False

    def broke_while_opening(self) -> bool:
        """End the watch; whether the stream broke or ended while it lasted."""
        self._opening_over = True
        return self.opening.cancel_called

    def _broke(self, cause: BaseException | None) -> None:
        if not self._opening_over:
            self.cause = cause
            self.opening.cancel()

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._broke(exc)
            raise

    async def wait_send_all_might_not_block(self) -> None:
        await self.stream.wait_send_all_might_not_block()

    async def receive_some(self, max_bytes: int | None = None) -> bytes | bytearray:
        try:
            data = await self.stream.receive_some(max_bytes)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            self._broke(exc)
            raise
        if not data:
            self._broke(None)
        return data

    async def aclose(self) -> None:
        await self.stream.aclose()


def _broken_while_opening(cause: BaseException | None, url: str, timeout: float) -> WSSError:
    translated = None if cause is None else _translate_open_error(cause, url, timeout)
    return translated or WSSConnectionError(
        f"{redact_url(url)} closed the connection during the WebSocket handshake"
    )


class _Opening:
    """What :func:`_opening` must close if the opening fails."""

    __slots__ = ("stream",)

    def __init__(self) -> None:
        self.stream: trio.abc.Stream | None = None


@asynccontextmanager
async def _opening(url: str, connect_timeout: float) -> AsyncIterator[_Opening]:
    """Bound an opening by ``connect_timeout``; on failure close its stream and
    raise the library error the failure stands for (both transports share this)."""
    opening = _Opening()
    try:
        with trio.fail_after(connect_timeout):
            yield opening
    except BaseException as exc:
        if opening.stream is not None:
            await trio.aclose_forcefully(opening.stream)
        translated = _translate_open_error(exc, url, connect_timeout)
        if translated is None:
            raise
        raise translated from None


@asynccontextmanager
async def open_websocket(
    url: str,
    *,
    headers: Sequence[tuple[str, str]] = (),
    subprotocols: Sequence[str] = (),
    ssl_context: ssl.SSLContext | None = None,
    open_stream: StreamOpener = open_tcp,
    connect_timeout: float = 10.0,
    close_timeout: float = 2.0,
    max_message_size: int = 1 << 20,
    message_queue_size: int = 1,
    transport: Transport = DEFAULT_TRANSPORT,
) -> AsyncIterator[ClientWebSocket]:
    """Open a client WebSocket to ``url`` for the duration of the block.

    ``connect_timeout`` bounds the whole opening. On leaving the block the
    connection is closed with 1000, bounded by ``close_timeout``. ``transport``
    picks the implementation (``message_queue_size`` applies to trio-websocket
    only: the lean transport has no queue, it reads in the caller's task).

    Raises:
        WSSAuthenticationError: HTTP 401/403 on the upgrade, or TLS failed.
        WSSConnectionError: anything else that kept the connection from opening,
            or the connection's reader failing (``__cause__`` has the group).
    """
    parts = urlsplit(url)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"not a ws:// or wss:// URL: {redact_url(url)!r}")
    secure = parts.scheme == "wss"
    port = parts.port or (443 if secure else 80)
    resource = parts.path or "/"
    if parts.query:
        resource += "?" + parts.query
    host_header = parts.hostname if parts.port is None else f"{parts.hostname}:{parts.port}"
    check_headers(headers)
    if secure and ssl_context is None:
        ssl_context = ssl.create_default_context()
    if transport == "lean":
        async with _open_lean(
            url,
            parts.hostname,
            port,
            host_header,
            resource,
            headers=headers,
            subprotocols=subprotocols,
            ssl_context=ssl_context if secure else None,
            open_stream=open_stream,
            connect_timeout=connect_timeout,
            close_timeout=close_timeout,
            max_message_size=max_message_size,
        ) as lean:
            yield lean
        return
    if transport != "trio-websocket":
        raise ValueError(f"transport must be one of {TRANSPORTS}, got {transport!r}")
    extra = [(k.encode(), v.encode()) for k, v in headers]

    body_error: BaseException | None = None
    try:
        async with trio.open_nursery() as nursery:
            async with _opening(url, connect_timeout) as opening:
                opening.stream = await open_stream(
                    parts.hostname, port, ssl_context if secure else None
                )
                watched = _WatchedStream(opening.stream)
                with watched.opening:
                    conn = await trio_websocket.wrap_client_stream(
                        nursery,
                        cast(trio.SocketStream, watched),
                        host_header,
                        resource,
                        subprotocols=list(subprotocols) or None,
                        extra_headers=extra,
                        message_queue_size=message_queue_size,
                        max_message_size=max_message_size,
                    )
                if watched.broke_while_opening():
                    raise _broken_while_opening(watched.cause, url, connect_timeout)
            ws = WebSocket(conn, close_timeout)
            try:
                yield ws
            except BaseException as exc:
                # The caller's own exception: keep it out of the nursery's group.
                body_error = exc
            finally:
                await ws.aclose()
                nursery.cancel_scope.cancel()
                # trio-websocket leaves the stream open when the peer closed first.
                await trio.aclose_forcefully(watched.stream)
    except BaseExceptionGroup as group:
        if group.split(trio.Cancelled)[1] is None:
            # Cancelled from outside: the reader task's Cancelled belongs to that
            # scope, so let it (or the body's own exception) through untranslated.
            if body_error is not None:
                raise body_error  # noqa: B904
            raise
        # What lands here: our own translated opening error, or whatever the
        # trio-websocket reader task raised (a refused upgrade, an internal bug).
        leaf: BaseException = group
        while isinstance(leaf, BaseExceptionGroup) and len(leaf.exceptions) == 1:
            leaf = leaf.exceptions[0]
        if isinstance(leaf, WSSError):
            raise leaf from None
        translated = _translate_open_error(leaf, url, connect_timeout)
        raise translated or WSSConnectionError(
            f"connection to {redact_url(url)} failed"
        ) from group
    if body_error is not None:
        raise body_error


@asynccontextmanager
async def _open_lean(
    url: str,
    hostname: str,
    port: int,
    host_header: str,
    resource: str,
    *,
    headers: Sequence[tuple[str, str]],
    subprotocols: Sequence[str],
    ssl_context: ssl.SSLContext | None,
    open_stream: StreamOpener,
    connect_timeout: float,
    close_timeout: float,
    max_message_size: int,
) -> AsyncIterator[ClientWebSocket]:
    """:func:`open_websocket` on :mod:`~telcoflow_trio.ws._connection` (no reader task)."""
    async with _opening(url, connect_timeout) as opening:
        opening.stream = await open_stream(hostname, port, ssl_context)
        ws = await lean_client_handshake(
            opening.stream,
            host_header,
            resource,
            headers=headers,
            subprotocols=subprotocols,
            max_message_size=max_message_size,
            close_timeout=close_timeout,
        )
    try:
        yield ws
    finally:
        await ws.aclose()
