"""The cross-node handoff document of a call (telcoflow 1.0.0 ``Call.to_json``).

A call whose media connection is not open yet can move to another process: its
id, numbers, media URL and bearer token travel as one JSON object,
``{"channel": "TELCO", "id", "caller", "callee", "session_url",
"session_token"}``, the exact shape of the 1.0.0 SDK, so either side may be
that SDK. The token is a live credential: whoever holds the document can open
the call's media, once. Messages here never contain the token or the URL.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import urlsplit

from ._frames import CallIn

__all__ = ["MAX_HANDOFF_BYTES", "decode_handoff", "encode_handoff"]

_FIELDS = ("id", "caller", "callee", "session_url", "session_token")
#: A document is a URL, a token and three short strings: anything bigger is not one.
MAX_HANDOFF_BYTES = 64 * 1024


def encode_handoff(call_in: CallIn) -> str:
    """The handoff JSON of ``call_in`` (a secret: it holds the media token)."""
    return json.dumps(
        {
            "channel": "TELCO",
            "id": call_in.call_id,
            "caller": call_in.caller,
            "callee": call_in.callee,
            "session_url": call_in.url,
            "session_token": call_in.token,
        }
    )


def decode_handoff(data: str | bytes | Mapping[str, object]) -> CallIn:
    """Check a handoff document and return its call (``session_id`` is empty:
    the document does not carry it, and the adopter does not own the session).

    Unknown extra keys are ignored, as 1.0.0 does.

    Raises:
        ValueError: larger than ``MAX_HANDOFF_BYTES``, not JSON, not an object,
            a missing or non-string field, an empty ``id`` or
            ``session_token``, a ``channel`` other than
            ``"TELCO"``, or a ``session_url`` that is not a ``ws://``/``wss://``
            URL with a host. The message names the field, never its secret value.
    """
    if isinstance(data, str | bytes | bytearray):
        if len(data) > MAX_HANDOFF_BYTES:
            raise ValueError(f"the handoff data is larger than {MAX_HANDOFF_BYTES} bytes")
        try:
            obj = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ValueError(f"the handoff data is not JSON: {exc}") from None
    else:
        obj = data
    if not isinstance(obj, Mapping):
        raise ValueError(f"the handoff data must be a JSON object, got {type(obj).__name__}")
    channel = obj.get("channel")
    if channel != "TELCO":
        got = repr(channel) if isinstance(channel, str) else type(channel).__name__
        raise ValueError(f"the handoff 'channel' must be 'TELCO' (only calls move), got {got}")
    values: dict[str, str] = {}
    for key in _FIELDS:
        if key not in obj:
            raise ValueError(f"the handoff data is missing the field {key!r}")
        value = obj[key]
        if not isinstance(value, str):
            raise ValueError(
                f"the handoff field {key!r} must be a string, got {type(value).__name__}"
            )
        values[key] = value
    for key in ("id", "session_token"):
        if not values[key]:
            raise ValueError(f"the handoff field {key!r} is empty")
    _check_url(values["session_url"])
    return CallIn(
        "",
        values["id"],
        values["caller"],
        values["callee"],
        values["session_url"],
        values["session_token"],
    )


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        host = parts.hostname
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError:
        raise ValueError("the handoff 'session_url' is not a valid URL") from None
    if parts.scheme not in ("ws", "wss"):
        raise ValueError(
            f"the handoff 'session_url' must be a ws:// or wss:// URL, got scheme {parts.scheme!r}"
        )
    if not host:
        raise ValueError("the handoff 'session_url' has no host")
