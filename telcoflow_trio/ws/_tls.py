"""TLS on the fast path: a non-blocking ``ssl.SSLSocket`` driven by the run's poller.

Why: ``trio.SSLStream`` runs OpenSSL over memory BIOs and moves every record
through trio's stream machinery; what TLS adds to an echo round trip there is
several times what it adds on a non-blocking ``SSLSocket``
(docs/performance.md, benchmarks/tls_echo.py). Here OpenSSL reads
and writes the socket itself; a read or write that would block raises
``SSLWantReadError``/``SSLWantWriteError`` and the task waits on the shared
epoll set (``_poller.py``), which reports room as well as data.

What edge triggering asks of TLS: OpenSSL returns at most one record per read
and may hold decrypted bytes (``SSLSocket.pending()``) that epoll never shows,
so a short read says nothing: before waiting, read until ``SSLWantReadError``
(:meth:`TLSSocketStream.receive_some` always reads first) or check that
nothing is held (:meth:`TLSSocketStream.drained`, which
:class:`~telcoflow_trio.ws._connection.LeanWebSocket` uses). A
write that raised ``SSLWantWriteError`` may have been taken in part: it must be
retried with the same bytes before anything else is written.

The end: the peer's close_notify and a TCP close without one both read as
``b""``; the WebSocket layer tells a clean end (its close handshake done) from
an abrupt one (1006). :meth:`TLSSocketStream.aclose` sends our close_notify
without waiting for the peer's, and waits for room at most ``close_timeout``.

``_streams.py`` picks this path for a ``trio.SocketStream`` when the run has
a poller (Linux), and ``trio.SSLStream`` otherwise (in-memory streams, other
systems).
"""

from __future__ import annotations

import array
import fcntl
import socket
import ssl
import termios
from collections.abc import Callable

import trio

from ._poller import EpollPoller

__all__ = ["TLSSocketStream", "send_all", "tls_over_socket"]

_RECEIVE_SIZE = 65536


class TLSSocketStream(trio.abc.Stream):
    """A ``trio.abc.Stream`` on a non-blocking ``ssl.SSLSocket``, from :func:`tls_over_socket`.

    One task may receive and one send at a time. The socket is registered with
    ``poller``; the stream owns it and closes it in :meth:`aclose`.
    """

    __slots__ = ("_nread", "_rest", "close_timeout", "poller", "socket")

    def __init__(
        self, sock: ssl.SSLSocket, poller: EpollPoller, close_timeout: float = 2.0
    ) -> None:
        self.socket = sock
        self.poller = poller
        self.close_timeout = close_timeout
        self._rest = b""  # what a cancelled send_all left: OpenSSL wants it first
        self._nread = array.array("i", [0])  # FIONREAD's answer
        poller.register(sock.fileno())

    async def do_handshake(self) -> None:
        """Run the TLS handshake; the caller bounds it in time.

        Raises:
            ssl.SSLError: the handshake failed (``SSLCertVerificationError``
                names the cause in ``verify_message``).
            OSError: the connection broke.
        """
        while True:
            try:
                self.socket.do_handshake()
                return
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                await self.poller.wait_ready(self.socket)

    def drained(self) -> bool:
        """After a read: whether the next would block (no decrypted bytes held by
        OpenSSL, none in the kernel), so that waiting for an edge cannot miss data.

        Cheaper than the read that would raise ``SSLWantReadError`` (about 1 µs
        against 7 here): the exception and OpenSSL's error queue cost the most.
        """
        sock = self.socket
        if sock.pending():
            return False
        try:
            fcntl.ioctl(sock.fileno(), termios.FIONREAD, self._nread)
        except OSError:  # closed meanwhile: the next read says so
            return False
        return not self._nread[0]

    async def receive_some(self, max_bytes: int | None = None) -> bytes:
        """Some decrypted bytes; ``b""`` at the end (close_notify or a TCP close).

        Raises:
            trio.BrokenResourceError: the connection broke (a reset, a bad record).
            trio.ClosedResourceError: the stream was closed.
        """
        sock = self.socket
        await trio.lowlevel.checkpoint_if_cancelled()
        while True:
            try:
                data = sock.recv(max_bytes or _RECEIVE_SIZE)
            except (ssl.SSLWantReadError, ssl.SSLWantWriteError):
                await self.poller.wait_ready(sock)
                continue
            except ssl.SSLZeroReturnError:
                data = b""
            except OSError as exc:
                if sock.fileno() < 0:
                    raise trio.ClosedResourceError("the stream was closed") from None
                raise trio.BrokenResourceError(f"TLS receive failed: {exc}") from exc
            # As trio's sockets: a reader never starves others, and a cancel
            # here cannot lose the bytes already read (the checkpoint is shielded).
            await trio.lowlevel.cancel_shielded_checkpoint()
            return data

    async def send_all(self, data: bytes | bytearray | memoryview) -> None:
        """Encrypt and send all of ``data``.

        Raises:
            trio.BrokenResourceError: the connection broke.
        """
        if self._rest:
            rest, self._rest = self._rest, b""
            await send_all(self.socket, rest, self._keep)
        await send_all(self.socket, data, self._keep)
        await trio.lowlevel.checkpoint()

    def _keep(self, rest: bytes) -> None:
        self._rest = rest

    async def wait_send_all_might_not_block(self) -> None:
        await trio.lowlevel.wait_writable(self.socket)

    async def aclose(self) -> None:
        """Send close_notify (without waiting for the peer's) and close the socket.

        Waits for room for the close_notify at most ``close_timeout``; when
        cancelled, closes at once.
        """
        sock = self.socket
        fd = sock.fileno()
        if fd < 0:
            await trio.lowlevel.checkpoint()
            return
        self.poller.forget(fd)
        try:
            with trio.move_on_after(self.close_timeout):
                await _send_close_notify(sock)
        finally:
            sock.close()


async def _send_close_notify(sock: ssl.SSLSocket) -> None:
    while True:
        try:
            sock.unwrap()  # sends ours, then would read the peer's: WantRead
            return
        except ssl.SSLWantWriteError:
            await trio.lowlevel.wait_writable(sock)
        except (OSError, ValueError):  # WantRead: ours is out; or the connection is gone
            return


async def send_all(
    sock: socket.socket,
    data: bytes | bytearray | memoryview,
    keep: Callable[[bytes], None],
) -> None:
    """Write all of ``data`` to a non-blocking socket, plain or TLS, waiting for room.

    A TLS write that would block is retried with the same bytes, as OpenSSL
    requires; so when cancelled while waiting, ``keep(rest)`` is called with
    what is still to go, which the caller must write before anything else
    (for TLS, OpenSSL may have taken part of it; for TCP, it ends a frame).

    Raises:
        trio.BrokenResourceError: the connection is gone.
    """
    view = memoryview(data)
    while True:
        try:
            sent = sock.send(view)
        except (BlockingIOError, ssl.SSLWantWriteError):
            sent = 0
        except ssl.SSLWantReadError:
            # TLS 1.2 renegotiation: the write needs the peer's answer, which the
            # reader may consume first; so look again after a short wait.
            try:
                with trio.move_on_after(0.01):
                    await trio.lowlevel.wait_readable(sock)
            except trio.Cancelled:
                keep(bytes(view))
                raise
            continue
        except OSError as exc:
            raise trio.BrokenResourceError(f"socket send failed: {exc}") from exc
        if sent == len(view):
            return
        view = view[sent:]
        try:
            await trio.lowlevel.wait_writable(sock)
        except trio.ClosedResourceError as exc:
            raise trio.BrokenResourceError("socket closed during send") from exc
        except trio.Cancelled:
            keep(bytes(view))
            raise


async def tls_over_socket(
    stream: trio.SocketStream,
    ssl_context: ssl.SSLContext,
    poller: EpollPoller,
    *,
    server_side: bool,
    server_hostname: str | None,
    close_timeout: float = 2.0,
) -> TLSSocketStream:
    """TLS on ``stream``'s own socket, handshake done; the socket is closed on failure.

    ``stream`` gives its socket up (it is left detached). The caller bounds
    the handshake in time; a cancellation closes the socket too.

    Raises:
        trio.BrokenResourceError: the handshake failed; ``__cause__`` is the
            ``ssl.SSLError`` (a certificate's ``verify_message`` names why) or
            the ``OSError``.
    """
    raw = socket.socket(fileno=stream.socket.detach())
    try:
        raw.setblocking(False)
        sock = ssl_context.wrap_socket(
            raw,
            server_side=server_side,
            server_hostname=server_hostname,
            do_handshake_on_connect=False,
        )
    except BaseException:
        raw.close()
        raise
    try:
        tls = TLSSocketStream(sock, poller, close_timeout)
        await tls.do_handshake()
    except BaseException as exc:
        poller.forget(sock.fileno())
        sock.close()
        if isinstance(exc, OSError):
            raise trio.BrokenResourceError(f"TLS handshake failed: {exc}") from exc
        raise
    return tls
