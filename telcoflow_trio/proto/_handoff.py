"""The cross-node handoff document of a call (telcoflow 1.0.0 ``Call.to_json``).

A call whose media connection is not open yet can move to another process: its
id, numbers, media URL and bearer token travel as one JSON object,
``{"channel": "TELCO", "id", "caller", "callee", "session_url",
"session_token"}``, the exact shape of the 1.0.0 SDK, so either side may be
that SDK. The token is a live credential: whoever holds the document can open
the call's media, once. Messages here never contain the token or the URL.

Two optional keys go beyond 1.0.0 (which ignores unknown keys, both ways):
``sample_rate`` and ``audio_mode``, what the claiming worker's ``setup`` fixed
for the call's media. The adopter cannot choose them, so it checks its own
against them instead of playing audio at the wrong rate.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from urllib.parse import urlsplit

import attrs

from ._frames import CallIn

__all__ = ["AUDIO_MODES", "MAX_HANDOFF_BYTES", "Handoff", "decode_handoff", "encode_handoff"]

_FIELDS = ("id", "caller", "callee", "session_url", "session_token")
#: A document is a URL, a token and three short strings: anything bigger is not one.
MAX_HANDOFF_BYTES = 64 * 1024
AUDIO_MODES = ("mixed", "isolated")


@attrs.frozen
class Handoff:
    """A checked handoff document: the call (``session_id`` empty: the document
    does not carry it, and the adopter does not own the session) and, when the
    sender said, the media's sample rate and audio mode (``None`` from 1.0.0)."""

    call_in: CallIn
    sample_rate: int | None = None
    audio_mode: str | None = None


def encode_handoff(
    call_in: CallIn, *, sample_rate: int | None = None, audio_mode: str | None = None
) -> str:
    """The handoff JSON of ``call_in`` (a secret: it holds the media token)."""
    document: dict[str, object] = {
        "channel": "TELCO",
        "id": call_in.call_id,
        "caller": call_in.caller,
        "callee": call_in.callee,
        "session_url": call_in.url,
        "session_token": call_in.token,
    }
    if sample_rate is not None:
        document["sample_rate"] = sample_rate
    if audio_mode is not None:
        document["audio_mode"] = audio_mode
    return json.dumps(document)


def decode_handoff(data: str | bytes | Mapping[str, object]) -> Handoff:
    """Check a handoff document and return what it says.

    Unknown extra keys are ignored, as 1.0.0 does.

    Raises:
        ValueError: larger than ``MAX_HANDOFF_BYTES``, not JSON, not an object,
            a missing or non-string field, an empty ``id`` or
            ``session_token``, a ``channel`` other than
            ``"TELCO"``, a ``session_url`` that is not a ``ws://``/``wss://``
            URL with a host, a ``sample_rate`` that is not a positive integer,
            or an ``audio_mode`` other than ``"mixed"``/``"isolated"``. The
            message names the field, never its secret value.
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
    call_in = CallIn(
        "",
        values["id"],
        values["caller"],
        values["callee"],
        values["session_url"],
        values["session_token"],
    )
    rate = obj.get("sample_rate")
    if rate is not None and (type(rate) is not int or rate <= 0):
        raise ValueError(f"the handoff 'sample_rate' must be a positive integer, got {rate!r}")
    mode = obj.get("audio_mode")
    if mode is not None and mode not in AUDIO_MODES:
        raise ValueError(f"the handoff 'audio_mode' must be 'mixed' or 'isolated', got {mode!r}")
    return Handoff(call_in, rate, mode)


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
