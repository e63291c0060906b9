"""The WebSocket upgrade (RFC 6455 section 4) over h11, sans-IO.

What the two sides write and check: the client's request and the server's
``101 Switching Protocols``, or an HTTP error for a request that is not an
upgrade. The I/O (reading h11 events off a stream, bounded in size) is in
:mod:`telcoflow_trio.ws._connection`. The nonce and accept token come from
wsproto's helpers; permessage-deflate and other extensions are never
negotiated.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Final, TypeAlias

import h11
from wsproto.utilities import generate_accept_token, generate_nonce

from ..exceptions import WSSConnectionError

__all__ = [
    "MAX_HANDSHAKE",
    "MAX_REJECT_BODY",
    "Headers",
    "accept_response",
    "check_headers",
    "check_switch",
    "check_upgrade_request",
    "client_request",
    "header_values",
    "refusal_headers",
    "reject_bytes",
    "str_headers",
]

#: Most bytes an upgrade request or response may take.
MAX_HANDSHAKE: Final = 16384
#: Most bytes of a rejection's body a client keeps.
MAX_REJECT_BODY: Final = 4096


def header_values(headers: Sequence[tuple[bytes, bytes]], name: bytes) -> list[bytes]:
    """Every comma-separated value of the headers called ``name`` (lower case), stripped."""
    return [v.strip() for k, v in headers for v in v.split(b",") if k.lower() == name]


_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
_VALUE = re.compile(r"[^\x00-\x1f\x7f]*")


def check_headers(headers: Sequence[tuple[str, str]]) -> None:
    """Refuse headers the handshake would reject, without echoing values (often secrets).

    Raises:
        ValueError: a name is not an HTTP token, or a value has control characters
            or leading/trailing white space.
    """
    for name, value in headers:
        if not _TOKEN.fullmatch(name):
            raise ValueError(f"invalid HTTP header name {name!r}")
        if not _VALUE.fullmatch(value) or value != value.strip():
            raise ValueError(
                f"invalid value for HTTP header {name!r}: control characters or "
                "leading/trailing white space (value not shown)"
            )


#: Extra HTTP headers: ``(name, value)`` pairs of ``str``, or of ``bytes`` (as trio-websocket).
Headers: TypeAlias = Sequence[tuple[str, str]] | Sequence[tuple[bytes, bytes]]


def str_headers(headers: Headers | None) -> list[tuple[str, str]]:
    """``headers`` as checked ``str`` pairs (``bytes`` decoded as UTF-8).

    Raises:
        ValueError: as :func:`check_headers`, or bytes that are not UTF-8.
    """
    pairs = [
        (k.decode() if isinstance(k, bytes) else k, v.decode() if isinstance(v, bytes) else v)
        for k, v in headers or ()
    ]
    check_headers(pairs)
    return pairs


def client_request(
    host: str,
    resource: str,
    *,
    subprotocols: Sequence[str] = (),
    headers: Sequence[tuple[str, str]] = (),
) -> tuple[h11.Request, bytes]:
    """The client's upgrade request and the nonce its answer must match."""
    nonce = generate_nonce()
    request_headers = [
        (b"Host", host.encode()),
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Key", nonce),
        (b"Sec-WebSocket-Version", b"13"),
    ]
    if subprotocols:
        request_headers.append((b"Sec-WebSocket-Protocol", ", ".join(subprotocols).encode()))
    request_headers += [(k.encode(), v.encode()) for k, v in headers]
    request = h11.Request(method="GET", target=resource.encode(), headers=request_headers)
    return request, nonce


def check_switch(
    headers: Sequence[tuple[bytes, bytes]], nonce: bytes, subprotocols: Sequence[str]
) -> str | None:
    """Check the headers of a server's 101; the subprotocol it chose, if any.

    Raises:
        WSSConnectionError: not a valid WebSocket upgrade for our request.
    """
    if b"websocket" not in [v.lower() for v in header_values(headers, b"upgrade")]:
        raise WSSConnectionError("the server's 101 response lacks 'Upgrade: websocket'")
    if header_values(headers, b"sec-websocket-accept") != [generate_accept_token(nonce)]:
        raise WSSConnectionError("the server's Sec-WebSocket-Accept does not match our key")
    if header_values(headers, b"sec-websocket-extensions"):
        raise WSSConnectionError("the server accepted an extension we did not offer")
    chosen = header_values(headers, b"sec-websocket-protocol")
    subprotocol = chosen[0].decode() if chosen else None
    if subprotocol is not None and subprotocol not in subprotocols:
        raise WSSConnectionError(f"the server chose subprotocol {subprotocol!r}, not offered")
    return subprotocol


def check_upgrade_request(request: h11.Request) -> bytes | None:
    """Why ``request`` is not a WebSocket upgrade we accept (for a 400), or ``None``."""
    headers = list(request.headers)
    upgrade = [v.lower() for v in header_values(headers, b"upgrade")]
    connection = [v.lower() for v in header_values(headers, b"connection")]
    if request.method != b"GET":
        return b"a WebSocket upgrade must be a GET"
    if b"websocket" not in upgrade or b"upgrade" not in connection:
        return b"not a WebSocket upgrade request"
    if header_values(headers, b"sec-websocket-version") != [b"13"]:
        return b"unsupported Sec-WebSocket-Version (13 only)"
    if len(header_values(headers, b"sec-websocket-key")) != 1:
        return b"missing Sec-WebSocket-Key"
    return None


def refusal_headers(request: h11.Request) -> list[tuple[str, str]]:
    """Headers of the 400 to a refused ``request``: the version we speak, if it asked for
    another (RFC 6455 4.2.2), so the client can retry with it."""
    if header_values(list(request.headers), b"sec-websocket-version") != [b"13"]:
        return [("Sec-WebSocket-Version", "13")]
    return []


def accept_response(
    key: bytes, subprotocol: str | None, extra_headers: Sequence[tuple[str, str]] = ()
) -> h11.InformationalResponse:
    """The server's ``101 Switching Protocols`` for a request with ``Sec-WebSocket-Key: key``."""
    headers = [
        (b"Upgrade", b"websocket"),
        (b"Connection", b"Upgrade"),
        (b"Sec-WebSocket-Accept", generate_accept_token(key)),
    ]
    if subprotocol is not None:
        headers.append((b"Sec-WebSocket-Protocol", subprotocol.encode()))
    headers += [(k.encode(), v.encode()) for k, v in extra_headers]
    return h11.InformationalResponse(
        status_code=101, headers=headers, reason=b"Switching Protocols"
    )


def reject_bytes(
    conn: h11.Connection, status: int, body: bytes, extra_headers: Sequence[tuple[str, str]] = ()
) -> bytes:
    """An HTTP error response with ``body`` (the connection closes after it).

    Raises:
        h11.LocalProtocolError: ``conn`` cannot send a response now, or ``status``
            is not an error status.
    """
    headers = [(b"Content-Length", str(len(body)).encode()), (b"Connection", b"close")]
    headers += [(k.encode(), v.encode()) for k, v in extra_headers]
    data = conn.send(h11.Response(status_code=status, headers=headers)) or b""
    return data + (conn.send(h11.Data(data=body)) or b"") + (conn.send(h11.EndOfMessage()) or b"")
