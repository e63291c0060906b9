"""The REST client (session listing and close), httpx on the client's own streams.

httpx builds the requests and reads the answers; the bytes go through a
transport that opens each connection with the client's
:data:`~telcoflow_trio.ws._streams.StreamOpener`, so REST gets exactly the
WebSockets' TCP, TLS (verification on, the config's SSL context) and
connect timeout, and the in-memory simulator in tests. One request per
connection (``Connection: close``): the calls are rare.

Errors are translated here: transport failures become
:class:`~telcoflow_trio.exceptions.WSSConnectionError` (a failed TLS handshake
:class:`~telcoflow_trio.exceptions.WSSTLSError`, as on the WebSockets), an error body
``{"code", "message"}`` the exception :func:`~telcoflow_trio.exceptions.refusal`
names. The API key is in the headers only, never in a log line or message.
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Final, TypeVar

import h11
import httpx
import trio

from . import proto
from ._control import client_ssl_context
from .config import TelcoflowClientConfig
from .exceptions import (
    RemoteProtocolError,
    WSSAuthenticationError,
    WSSConnectionError,
    WSSError,
    WSSTLSError,
    refusal,
)
from .ws._streams import StreamOpener

__all__ = ["RestClient"]

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Largest answer body accepted.
MAX_BODY: Final = 1 << 20


class _StreamTransport(httpx.AsyncBaseTransport):
    """An httpx transport speaking HTTP/1.1 (h11) over streams from a ``StreamOpener``."""

    def __init__(
        self,
        open_stream: StreamOpener,
        ssl_context: ssl.SSLContext | None,
        connect_timeout: float,
    ) -> None:
        self._open_stream = open_stream
        self._ssl_context = ssl_context
        self._connect_timeout = connect_timeout

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        https = url.scheme == "https"
        port = url.port or (443 if https else 80)
        body = await request.aread()
        try:
            with trio.fail_after(self._connect_timeout):
                stream = await self._open_stream(
                    url.host, port, self._ssl_context if https else None
                )
        except (OSError, trio.BrokenResourceError, trio.TooSlowError) as exc:
            raise httpx.ConnectError(f"could not connect: {type(exc).__name__}") from exc
        try:
            return await _exchange(stream, request, body)
        except (trio.BrokenResourceError, trio.ClosedResourceError, h11.ProtocolError) as exc:
            raise httpx.ReadError(f"the connection broke: {type(exc).__name__}") from exc
        finally:
            await trio.aclose_forcefully(stream)


async def _exchange(
    stream: trio.abc.Stream, request: httpx.Request, body: bytes
) -> httpx.Response:
    conn = h11.Connection(h11.CLIENT, max_incomplete_event_size=MAX_BODY)
    headers = [(k, v) for k, v in request.headers.raw if k.lower() != b"connection"]
    headers.append((b"connection", b"close"))
    out = conn.send(
        h11.Request(method=request.method, target=request.url.raw_path, headers=headers)
    )
    out = (out or b"") + (conn.send(h11.Data(data=body)) or b"") if body else out or b""
    await stream.send_all(out + (conn.send(h11.EndOfMessage()) or b""))
    head: h11.Response | None = None
    chunks: list[bytes] = []
    size = 0
    while True:
        event = conn.next_event()
        if event is h11.NEED_DATA:
            data = await stream.receive_some(65536)
            conn.receive_data(bytes(data))  # b"" is the end of the stream
            continue
        if isinstance(event, h11.Response):
            head = event
        elif isinstance(event, h11.Data):
            size += len(event.data)
            if size > MAX_BODY:
                raise h11.RemoteProtocolError(f"the answer is over {MAX_BODY} bytes")
            chunks.append(bytes(event.data))
        elif isinstance(event, h11.EndOfMessage | h11.ConnectionClosed):
            break
    if head is None:
        raise h11.RemoteProtocolError("the connection closed before an answer")
    return httpx.Response(head.status_code, headers=list(head.headers), content=b"".join(chunks))


def _ssl_cause(exc: BaseException | None) -> ssl.SSLError | None:
    while exc is not None:
        if isinstance(exc, ssl.SSLError):
            return exc
        exc = exc.__cause__
    return None


class RestClient:
    """The client's REST plane, usable from :meth:`open` to :meth:`aclose` (the
    client's ``async with``), so that its HTTP client is always closed.

    Args:
        config: base URL, credentials, TLS and timeouts (those of the WebSockets).
        open_stream: how to open each connection's byte stream.
    """

    def __init__(self, config: TelcoflowClientConfig, open_stream: StreamOpener) -> None:
        self._config = config
        self._open_stream = open_stream
        self._http: httpx.AsyncClient | None = None
        self._open = False
        #: The scopes of the requests in flight, cancelled by :meth:`aclose`.
        self._in_flight: set[trio.CancelScope] = set()

    def __repr__(self) -> str:
        return f"<RestClient {proto.http_base_url(self._config.base_url)}>"

    def open(self) -> None:
        """Allow requests (the HTTP client itself is made at the first one)."""
        self._open = True

    def _client(self) -> httpx.AsyncClient:
        if not self._open:
            raise RuntimeError("use `async with TelcoflowClient(config) as client:` first")
        if self._http is None:
            config = self._config
            ssl_context = client_ssl_context(config)
            transport = _StreamTransport(self._open_stream, ssl_context, config.connect_timeout)
            self._http = httpx.AsyncClient(
                base_url=proto.http_base_url(config.base_url),
                headers=config.auth_headers(),
                transport=transport,
                timeout=config.request_timeout,
                follow_redirects=False,
            )
        return self._http

    async def aclose(self) -> None:
        """Close the HTTP client; requests in flight fail (``WSSConnectionError``) at
        once, later ones raise ``RuntimeError`` until :meth:`open`."""
        self._open = False
        for scope in self._in_flight:
            scope.cancel()
        http, self._http = self._http, None
        if http is not None:
            await http.aclose()

    async def _send(self, method: str, target: str, what: str) -> httpx.Response:
        timeout = self._config.request_timeout
        try:
            with trio.fail_after(timeout), trio.CancelScope() as scope:
                self._in_flight.add(scope)
                try:
                    response = await self._client().request(method, target)
                finally:
                    self._in_flight.discard(scope)
            if scope.cancelled_caught:
                raise WSSConnectionError(f"{what}: the client closed")
        except trio.TooSlowError:
            raise WSSConnectionError(f"{what}: no answer within {timeout:g} s") from None
        except httpx.HTTPError as exc:
            tls = _ssl_cause(exc)
            if tls is not None:
                raise WSSTLSError(f"{what}: the TLS handshake failed: {tls}") from exc
            raise WSSConnectionError(f"{what} failed: {exc}") from exc
        logger.debug("REST %s %s -> %d", method, target.split("?")[0], response.status_code)
        return response

    def _decode(self, response: httpx.Response, what: str, decode: Callable[[bytes], T]) -> T:
        """The body of a ``200`` answer, read by ``decode``; anything else raises."""
        if response.status_code != 200:
            raise self._error(response, what)
        try:
            return decode(response.content)
        except RemoteProtocolError as exc:
            raise WSSConnectionError(f"{what}: {exc}") from None

    def _error(self, response: httpx.Response, what: str) -> WSSError:
        code, message = proto.decode_error(response.status_code, response.content)
        if code is None:
            if response.status_code in (401, 403):
                return WSSAuthenticationError(f"{what}: HTTP {response.status_code}: {message}")
            return WSSConnectionError(f"{what}: HTTP {response.status_code}: {message}")
        return refusal(f"{what} (HTTP {response.status_code})", code, message, session=True)

    async def list_sessions(
        self, channel: str | None, remote_address: str | None, state: str | None
    ) -> list[proto.SessionInfo]:
        """``GET /public/v1/sessions``.

        Raises:
            WSSConnectionError: the request failed, timed out or got a non-JSON answer.
            WSSSessionError, WSSAuthenticationError: the server refused it.
        """
        what = "listing sessions"
        response = await self._send(
            "GET", proto.sessions_target(channel, remote_address, state), what
        )
        return self._decode(response, what, proto.decode_sessions)

    async def close_session(self, session_id: str) -> proto.CloseResult:
        """``POST /public/v1/sessions/{id}/close``; a 404 means it was gone already.

        Raises:
            ValueError: ``session_id`` is empty.
            WSSConnectionError, WSSSessionError, WSSAuthenticationError: as :meth:`list_sessions`.
        """
        what = f"closing session {session_id}"
        response = await self._send("POST", proto.close_path(session_id), what)
        if response.status_code == 404:
            return proto.CloseResult(closed_at=None, reason="NOT_FOUND")
        return self._decode(response, what, proto.decode_close)
