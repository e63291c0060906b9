"""The REST plane (spec B.1), sans-IO: URLs, request targets and the JSON it answers.

The platform serves ``GET /public/v1/sessions`` and ``POST
/public/v1/sessions/{id}/close`` on the host of the WebSocket base URL
(``ws`` -> ``http``, ``wss`` -> ``https``). Errors carry ``{"code", "message"}``.
The client and the simulator both use these readers and writers, so they
cannot disagree about the shape.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import quote, urlencode, urlsplit, urlunsplit

import attrs

from ..exceptions import RemoteProtocolError

__all__ = [
    "SESSIONS_PATH",
    "CloseResult",
    "SessionInfo",
    "close_path",
    "decode_close",
    "decode_error",
    "decode_sessions",
    "encode_error",
    "encode_sessions",
    "http_base_url",
    "sessions_target",
]

SESSIONS_PATH = "/public/v1/sessions"

_dumps = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False).encode


def http_base_url(ws_base_url: str) -> str:
    """The REST base of a WebSocket base URL: same host and port, ``ws``/``wss`` -> ``http(s)``.

    Raises:
        ValueError: ``ws_base_url`` is not a ``ws://`` or ``wss://`` URL.
    """
    parts = urlsplit(ws_base_url)
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme)
    if scheme is None:
        raise ValueError(f"not a ws:// or wss:// URL: {parts.scheme}://...")
    return urlunsplit((scheme, parts.netloc, parts.path.rstrip("/"), "", ""))


def sessions_target(
    channel: str | None = None, remote_address: str | None = None, state: str | None = "OPEN"
) -> str:
    """The path and query of a session listing (``None`` filters are left out)."""
    params = {"channel": channel, "remoteAddress": remote_address, "state": state}
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return SESSIONS_PATH + (f"?{query}" if query else "")


def close_path(session_id: str) -> str:
    """The path that closes ``session_id``.

    Raises:
        ValueError: ``session_id`` is empty.
    """
    if not session_id:
        raise ValueError("session_id must be a non-empty string")
    return f"{SESSIONS_PATH}/{quote(session_id, safe='')}/close"


@attrs.frozen(kw_only=True)
class SessionInfo:
    """One session as the REST listing describes it (times in epoch seconds)."""

    id: str
    channel: str
    initiator: str = ""
    state: str = ""
    remote_address: str = ""
    local_address: str = ""
    opened_at: int | None = None
    closed_at: int | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "channel": self.channel,
            "initiator": self.initiator,
            "state": self.state,
            "remoteAddress": self.remote_address,
            "localAddress": self.local_address,
            "openedAt": self.opened_at,
            "closedAt": self.closed_at,
        }


@attrs.frozen(kw_only=True)
class CloseResult:
    """The answer to a close: when, and why (``NOT_FOUND``: it was gone already)."""

    closed_at: int | None
    reason: str

    def to_json(self) -> dict[str, Any]:
        return {"closedAt": self.closed_at, "reason": self.reason}


def _object(body: bytes, what: str) -> dict[str, Any]:
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        raise RemoteProtocolError(f"{what}: the body is not JSON") from None
    if not isinstance(obj, dict):
        raise RemoteProtocolError(f"{what}: the body must be a JSON object")
    return obj


def _field(obj: dict[str, Any], key: str, kind: type | tuple[type, ...], what: str) -> Any:
    value = obj.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, kind)):
        raise RemoteProtocolError(f"{what}: field {key!r} has the wrong type")
    return value


def _session(item: object) -> SessionInfo:
    what = "session listing item"
    if not isinstance(item, dict):
        raise RemoteProtocolError(f"{what} must be an object")
    session_id = _field(item, "id", str, what)
    if not session_id:
        raise RemoteProtocolError(f"{what} has no 'id'")
    return SessionInfo(
        id=session_id,
        channel=_field(item, "channel", str, what) or "",
        initiator=_field(item, "initiator", str, what) or "",
        state=_field(item, "state", str, what) or "",
        remote_address=_field(item, "remoteAddress", str, what) or "",
        local_address=_field(item, "localAddress", str, what) or "",
        opened_at=_field(item, "openedAt", int, what),
        closed_at=_field(item, "closedAt", int, what),
    )


def decode_sessions(body: bytes) -> list[SessionInfo]:
    """The sessions of a ``200`` listing body ``{"items": [...]}``.

    Raises:
        RemoteProtocolError: not that shape.
    """
    items = _object(body, "session listing").get("items", [])
    if not isinstance(items, list):
        raise RemoteProtocolError("session listing: 'items' must be a list")
    return [_session(item) for item in items]


def encode_sessions(sessions: list[SessionInfo]) -> bytes:
    return _dumps({"items": [s.to_json() for s in sessions]}).encode()


def decode_close(body: bytes) -> CloseResult:
    """The result of a ``200`` close body ``{"closedAt", "reason"}``.

    Raises:
        RemoteProtocolError: not that shape.
    """
    obj = _object(body, "session close")
    reason = _field(obj, "reason", str, "session close")
    return CloseResult(
        closed_at=_field(obj, "closedAt", int, "session close"), reason=reason or ""
    )


def encode_error(code: str, message: str) -> bytes:
    return _dumps({"code": code, "message": message}).encode()


def decode_error(status: int, body: bytes) -> tuple[str | None, str]:
    """``(code, message)`` of an error answer; a body that is not the JSON shape is the message."""
    try:
        obj = json.loads(body)
    except (ValueError, RecursionError):
        obj = None
    if isinstance(obj, dict) and isinstance(obj.get("code"), str):
        message = obj.get("message")
        return obj["code"], message if isinstance(message, str) else ""
    text = body[:200].decode("utf-8", "replace").strip()
    return None, text or f"HTTP {status}"
