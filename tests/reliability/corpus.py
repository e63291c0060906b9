"""A corpus of hostile WebSocket messages for both planes, and a fuzzer's strategy.

Each entry is a message a misbehaving peer might send: broken JSON, wrong
shapes and types, unknown types, hostile Unicode and numbers, deep nesting,
binary where text belongs and the reverse, audio that is not PCM16. What a
receiver must do with one is decided by the protocol decoders (the oracle):
a message they refuse is malformed and must be reported and ignored (or
answered with an error, or end the connection with a proper close code); a
message they accept must be handled or ignored. Messages over the receiver's
size limit must close the connection with 1009; see :func:`oversized`.
Add a regression here whenever a message breaks something.
"""

from __future__ import annotations

import json
from typing import Any

from hypothesis import strategies as st

#: ``(name, message)``: read the names as the failing case's description.
COMMON: list[tuple[str, str | bytes]] = [
    ("empty-text", ""),
    ("whitespace", " \t\r\n"),
    ("not-json", "hello, platform"),
    ("truncated-json", '{"type":"session.notify","sessionId":"s'),
    ("trailing-garbage", '{"type":"future.frame"} trailing'),
    ("json-null", "null"),
    ("json-number", "42"),
    ("json-string", '"setup.done"'),
    ("json-array", '[{"type":"setup.done","smWsId":"x"}]'),
    ("json-true", "true"),
    ("no-type", '{"data":{}}'),
    ("type-not-string", '{"type":["call.in"]}'),
    ("type-empty", '{"type":""}'),
    ("unknown-type", '{"type":"future.frame","payload":{"a":[1,2,3]}}'),
    ("unknown-type-with-reqid", '{"type":"future.request","reqId":"r-unknown"}'),
    ("duplicate-keys", '{"type":"session.closed","type":"future.frame","sessionId":"s"}'),
    ("nul-characters", '{"type":"fu\\u0000ture","x":"\\u0000"}'),
    ("lone-surrogate-in-type", '{"type":"\\ud800"}'),
    ("paired-surrogates", '{"type":"future.\\ud83d\\ude00","x":"\\ud83d\\ude00"}'),
    ("nan-and-infinity", '{"type":"future.frame","a":NaN,"b":Infinity,"c":-Infinity}'),
    ("huge-float", '{"type":"future.frame","a":1e999}'),
    ("five-thousand-digit-integer", '{"type":"future.frame","a":' + "9" * 5000 + "}"),
    ("deep-array", "[" * 50_000 + "]" * 50_000),
    ("deep-object", '{"type":"future.frame","a":' + '{"a":' * 20_000 + "1" + "}" * 20_001),
    ("wide-array", '{"type":"future.frame","a":[' + ",".join(["0"] * 20_000) + "]}"),
    ("binary-empty", b""),
    ("binary-one-byte", b"\x00"),
    ("binary-json", b'{"type":"setup.done","smWsId":"binary"}'),
    ("binary-random", bytes(range(256)) * 4),
]

#: Server -> client on the control connection.
CONTROL_TO_CLIENT: list[tuple[str, str | bytes]] = [
    ("setup-done-again", '{"type":"setup.done","smWsId":"second"}'),
    ("setup-done-without-id", '{"type":"setup.done"}'),
    ("response-unknown-reqid", '{"type":"response","reqId":"nobody","ok":true}'),
    ("response-reqid-int", '{"type":"response","reqId":5,"ok":true}'),
    ("response-ok-string", '{"type":"response","reqId":"r","ok":"yes"}'),
    (
        "response-error-content-list",
        '{"type":"response","reqId":"r","ok":false,"errorContent":[]}',
    ),
    ("notify-without-session", '{"type":"session.notify","channel":"TELCO"}'),
    ("notify-created-at-string", '{"type":"session.notify","sessionId":"s","createdAt":"now"}'),
    (
        "notify-created-at-infinite",
        '{"type":"session.notify","sessionId":"n-inf","createdAt":1e999}',
    ),
    ("notify-other-channel", '{"type":"session.notify","sessionId":"wa-1","channel":"WA"}'),
    ("notify-lone-surrogate", '{"type":"session.notify","sessionId":"\\udc00","channel":"TELCO"}'),
    ("notify-empty-session", '{"type":"session.notify","sessionId":"","channel":"TELCO"}'),
    ("call-in-without-token", '{"type":"call.in","sessionId":"s","callId":"c","url":"ws://x/m"}'),
    (
        "call-in-token-int",
        '{"type":"call.in","sessionId":"s","callId":"c","url":"ws://x/m","token":7}',
    ),
    (
        "call-in-unclaimed-bad-url",
        '{"type":"call.in","sessionId":"s-bad","callId":"c-bad","url":"http://x","token":"t"}',
    ),
    (
        "call-in-lone-surrogate-token",
        '{"type":"call.in","sessionId":"s-sur","callId":"c-sur","url":"ws://x/m",'
        '"token":"\\ud800"}',
    ),
    ("closed-unknown-session", '{"type":"session.closed","sessionId":"nobody","reason":"X"}'),
    ("closed-session-null", '{"type":"session.closed","sessionId":null}'),
    ("wa-msg-in-content-list", '{"type":"wa.msg.in","sessionId":"s","sender":"x","content":[]}'),
]

#: Server -> client on a call's media connection.
MEDIA_TO_CLIENT: list[tuple[str, str | bytes]] = [
    ("response-missing-success", '{"type":"command_response","data":{"command_id":"c"}}'),
    ("response-id-int", '{"type":"command_response","data":{"command_id":1,"success":true}}'),
    (
        "response-success-string",
        '{"type":"command_response","data":{"command_id":"c","success":"y"}}',
    ),
    (
        "response-unknown-id",
        '{"type":"command_response","data":{"command_id":"zz","success":true}}',
    ),
    ("response-data-list", '{"type":"command_response","data":[]}'),
    ("request-negative", '{"type":"buffer_request","data":{"requested_bytes":-640}}'),
    ("request-zero", '{"type":"buffer_request","data":{"requested_bytes":0}}'),
    ("request-huge", '{"type":"buffer_request","data":{"requested_bytes":1000000000000000000}}'),
    ("request-string", '{"type":"buffer_request","data":{"requested_bytes":"640"}}'),
    ("request-bool", '{"type":"buffer_request","data":{"requested_bytes":true}}'),
    (
        "request-odd-prefer",
        '{"type":"buffer_request","data":{"requested_bytes":641,"prefer_audio_frame_bytes":-7}}',
    ),
    (
        "request-other-channel",
        '{"type":"buffer_request","data":{"requested_bytes":640,"channelId":3}}',
    ),
    ("event-missing", '{"type":"call_event","data":{}}'),
    ("event-unknown", '{"type":"call_event","data":{"event":"call.future"}}'),
    ("event-error-code-int", '{"type":"call_event","data":{"event":"call.error","error_code":5}}'),
    ("event-lone-surrogate", '{"type":"call_event","data":{"event":"\\udfff"}}'),
    (
        "command-to-client",
        '{"type":"command","data":{"command_id":"c","command":"x","timeout_ms":1}}',
    ),
    ("audio-half-sample", b"\x00\x01"),
    ("audio-odd-length", b"\x00" + b"\x01" * 161),
    ("audio-other-channel", b"\x07" + b"\x00" * 320),
    ("audio-channel-255", b"\xff" + b"\x00" * 2),
]

#: Client -> simulator on the control connection (after ``setup``).
CONTROL_TO_SERVER: list[tuple[str, str | bytes]] = [
    ("setup-again", '{"type":"setup","data":{"sampleRate":8000,"audioMode":"mixed"}}'),
    ("open-reqid-int", '{"type":"session.open","sessionId":"s","reqId":1}'),
    ("open-without-session", '{"type":"session.open","reqId":"r-open"}'),
    ("open-unknown-session", '{"type":"session.open","sessionId":"nobody","reqId":"r-unknown"}'),
    ("open-lone-surrogate", '{"type":"session.open","sessionId":"\\ud800","reqId":"r-sur"}'),
    ("open-lone-surrogate-reqid", '{"type":"session.open","sessionId":"s","reqId":"\\ud800"}'),
    ("ready-unknown-session", '{"type":"session.ready","sessionId":"nobody"}'),
    ("ready-session-int", '{"type":"session.ready","sessionId":5}'),
    ("flow-setup-bad", '{"type":"call_flow.setup","data":{"inboundCall":1},"reqId":"r-flow"}'),
    ("create", '{"type":"session.create","channel":"WA","remoteAddress":"+1","reqId":"r-cr"}'),
    ("unknown-lone-surrogate-reqid", '{"type":"future.request","reqId":"\\udbff"}'),
]


def _command(**data: object) -> str:
    """A ``command`` frame with ``data`` as given (JSON escapes for non-ASCII)."""
    return json.dumps({"type": "command", "data": data}, separators=(",", ":"))


#: Client -> simulator on a call's media connection.
MEDIA_TO_SERVER: list[tuple[str, str | bytes]] = [
    ("command-unknown", _command(command_id="c1", command="x", timeout_ms=1)),
    ("command-no-id", _command(command="call.answer", timeout_ms=1000)),
    ("command-timeout-string", _command(command_id="c2", timeout_ms="1")),
    ("command-negative-timeout", _command(command_id="c3", command="agent.spy", timeout_ms=-1)),
    ("command-huge-timeout", _command(command_id="c4", command="agent.spy", timeout_ms=10**40)),
    (
        "command-ring-string",
        _command(
            command_id="c5", command="call.connect", timeout_ms=1, data={"ringTimeSeconds": "5"}
        ),
    ),
    (
        "command-lone-surrogate-id",
        _command(command_id="\ud800", command="agent.spy", timeout_ms=1),
    ),
    ("command-lone-surrogate-name", _command(command_id="c6", command="\ud800", timeout_ms=1)),
    ("response-to-server", '{"type":"command_response","data":{"command_id":"c","success":true}}'),
    ("buffer-request-to-server", '{"type":"buffer_request","data":{"requested_bytes":640}}'),
    ("audio-other-channel", b"\x07" + b"\x00" * 320),
    ("audio-odd-length", b"\x00" + b"\x01" * 161),
]


def oversized(limit: int, binary: bool = False) -> str | bytes:
    """A message one byte over ``limit`` (well-formed JSON, so only the size is wrong)."""
    if binary:
        return b"\x00" + b"\x00" * limit
    head = '{"type":"future.frame","pad":"'
    return head + "x" * (limit + 1 - len(head) - 2) + '"}'


# -- the fuzzer's messages ----------------------------------------------------------------

_TYPES = [
    "setup", "setup.done", "response", "session.notify", "session.open", "session.ready",
    "session.closed", "session.create", "call_flow.setup", "call.in", "wa.msg.in",
    "wa.msg.out", "command", "command_response", "call_event", "buffer_request", "future.frame",
]  # fmt: skip
_KEYS = [
    "type", "data", "reqId", "ok", "sessionId", "smWsId", "channel", "callId", "url", "token",
    "createdAt", "reason", "command_id", "command", "timeout_ms", "success", "error_code",
    "event", "requested_bytes", "prefer_audio_frame_bytes", "channelId", "sampleRate",
    "audioMode", "errorContent", "content", "ringTimeSeconds",
]  # fmt: skip


def _values() -> st.SearchStrategy[Any]:
    scalars = (
        st.none()
        | st.booleans()
        | st.integers(-(2**70), 2**70)
        | st.floats()
        | st.text(max_size=12)
        | st.sampled_from(_TYPES)
        | st.sampled_from(["\ud800", "\udfff", "\x00", ""])
    )
    return st.recursive(
        scalars,
        lambda inner: (
            st.lists(inner, max_size=3)
            | st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=4), inner, max_size=4)
        ),
        max_leaves=10,
    )


@st.composite
def _json_frames(draw: st.DrawFn) -> str:
    body = draw(st.dictionaries(st.sampled_from(_KEYS), _values(), max_size=6))
    if draw(st.booleans()):
        body["type"] = draw(st.sampled_from(_TYPES))
    if draw(st.booleans()):
        body["data"] = draw(st.dictionaries(st.sampled_from(_KEYS), _values(), max_size=6))
    # ASCII escapes, so that lone surrogates travel as JSON escapes (valid UTF-8).
    return json.dumps(body)


def messages() -> st.SearchStrategy[str | bytes]:
    """Hostile messages: protocol-shaped JSON with random fields, corpus entries, noise."""
    corpus = [m for _, m in COMMON + CONTROL_TO_CLIENT + MEDIA_TO_CLIENT if len(m) < 1000]
    return st.one_of(
        _json_frames(),
        st.sampled_from(corpus),
        st.text(max_size=40),
        st.binary(max_size=40),
        st.binary(min_size=2, max_size=40).map(lambda b: b"\x00" + b),
    )
