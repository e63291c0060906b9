"""Frames: byte-exact encoding, round trips, and decoding of hostile input."""

from __future__ import annotations

import json
from typing import Any

import pytest
from hypothesis import given, settings, strategies as st

from telcoflow_trio.exceptions import RemoteProtocolError
from telcoflow_trio.proto import (
    AudioFrame,
    BufferRequest,
    CallEventFrame,
    CallFlowSetup,
    CallIn,
    Command,
    CommandResponse,
    Response,
    SessionClosed,
    SessionCreate,
    SessionNotify,
    SessionOpen,
    SessionReady,
    Setup,
    SetupDone,
    UnknownFrame,
    WaMsgIn,
    WaMsgOut,
    decode_control,
    decode_media,
)

CONTROL_FRAMES = [
    Setup(24000, "mixed"),
    SessionOpen("s1", "r1"),
    SessionReady("s1"),
    SessionCreate("TELCO", "+1555", "r2"),
    CallFlowSetup("ALL", False, True, False, "r3"),
    WaMsgOut("s1", "m1", "v1", {"text": "hi"}, "r4"),
    SetupDone("ws-1"),
    Response("r1", True, {"session": {"id": "s1"}}),
    Response("r1", False, None, "SESSION_BUSY", {"boundSmWsId": "ws-2"}),
    SessionNotify("s1", "TELCO", "+1555", "+1666", "NEW_INCOMING_CALL", 1700000000),
    CallIn("s1", "c1", "+1555", "+1666", "ws://h/v1/media/c1", "tok", "org"),
    SessionClosed("s1", "CALL_TERMINATED"),
    WaMsgIn("s1", "+1555", {"text": "yo"}),
]
MEDIA_FRAMES = [
    Command("id1", "call.answer", 10000),
    Command("id2", "call.connect", 60000, {"ringTimeSeconds": 60}),
    CommandResponse("id1", True),
    CommandResponse("id2", False, None, "CALL_UNANSWERED", "nobody answered"),
    CallEventFrame("call.terminated"),
    CallEventFrame("call.error", {"error_code": "TTS_SESSION_ERROR"}),
    BufferRequest(960, 960, 0),
    AudioFrame(0, b"\x01\x02\x03\x04"),
    AudioFrame(2, b"\x00\x00"),
]


@pytest.mark.parametrize("frame", CONTROL_FRAMES, ids=lambda f: type(f).__name__)
def test_control_round_trip(frame: Any) -> None:
    assert decode_control(frame.encode()) == frame


@pytest.mark.parametrize("frame", MEDIA_FRAMES, ids=lambda f: type(f).__name__)
def test_media_round_trip(frame: Any) -> None:
    assert decode_media(frame.encode()) == frame


def test_wire_shapes_match_the_official_sdk() -> None:
    """Field names and nesting exactly as the 1.0.0 package reads and writes them."""
    assert json.loads(Setup(16000, "isolated").encode()) == {
        "type": "setup",
        "data": {"sampleRate": 16000, "audioMode": "isolated"},
    }
    assert json.loads(SessionOpen("s", "r").encode()) == {
        "type": "session.open",
        "sessionId": "s",
        "reqId": "r",
    }
    assert json.loads(Command("c", "call.connect", 30000, {"ringTimeSeconds": 30}).encode()) == {
        "type": "command",
        "data": {
            "command_id": "c",
            "command": "call.connect",
            "timeout_ms": 30000,
            "data": {"ringTimeSeconds": 30},
        },
    }
    assert json.loads(BufferRequest(640, 320, 1).encode()) == {
        "type": "buffer_request",
        "data": {"requested_bytes": 640, "prefer_audio_frame_bytes": 320, "channelId": 1},
    }
    call_in = json.loads(CallIn("s", "c", "a", "b", "ws://x/m", "t", "o").encode())
    assert call_in == {
        "type": "call.in",
        "sessionId": "s",
        "callId": "c",
        "orgUuid": "o",
        "from": "a",
        "to": "b",
        "url": "ws://x/m",
        "token": "t",
    }
    assert AudioFrame(0, b"\x10\x20").encode() == b"\x00\x10\x20"


def test_defaults_where_the_wire_omits_fields() -> None:
    frame = decode_media('{"type":"buffer_request","data":{"requested_bytes":960}}')
    assert frame == BufferRequest(960, 0, 0)
    notify = decode_control('{"type":"session.notify","sessionId":"s"}')
    assert notify == SessionNotify("s", "", "", "", "", 0)


def test_unknown_types_are_forward_compatible() -> None:
    frame = decode_control('{"type":"call.notify","x":1}')
    assert frame == UnknownFrame("call.notify", {"type": "call.notify", "x": 1})
    assert isinstance(decode_media('{"type":"flow","data":{}}'), UnknownFrame)


def test_token_is_not_in_repr() -> None:
    frame = CallIn("s", "c", "a", "b", "ws://x/m", "super-secret-token")
    assert "super-secret-token" not in repr(frame)


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('{"no":"type"}', "no string field 'type'"),
        ('{"type": 5}', "no string field 'type'"),
        ('{"type":"setup.done"}', "'setup.done' frame is missing the field 'smWsId'"),
        ('{"type":"setup.done","smWsId":7}', "field 'smWsId' must be a string, got int"),
        ('{"type":"response","reqId":"r","ok":"yes"}', "'ok' must be a boolean, got str"),
        ('{"type":"setup","data":[]}', "field 'data' must be an object, got list"),
        ('{"type":"session.notify","sessionId":"s","createdAt":"x"}', "'createdAt' must be"),
        (b"\x00\x01\x02", "binary frame"),
    ],
)
def test_control_errors_name_what_is_wrong(message: str | bytes, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError, match=fragment):
        decode_control(message)


@pytest.mark.parametrize(
    ("message", "fragment"),
    [
        (b"", "carries no audio"),
        (b"\x00", "carries no audio"),
        ('{"type":"command_response","data":{"command_id":"c"}}', "missing the field 'success'"),
        (
            '{"type":"buffer_request","data":{"requested_bytes":true}}',
            "'requested_bytes' must be an integer, got bool",
        ),
        ('{"type":"call_event","data":{}}', "missing the field 'event'"),
    ],
)
def test_media_errors_name_what_is_wrong(message: str | bytes, fragment: str) -> None:
    with pytest.raises(RemoteProtocolError, match=fragment):
        decode_media(message)


def test_deep_nesting_is_a_protocol_error() -> None:
    with pytest.raises(RemoteProtocolError, match="nested too deeply"):
        decode_control("[" * 100_000 + "]" * 100_000)


def test_oversized_frames_are_refused() -> None:
    with pytest.raises(RemoteProtocolError, match="exceeds 100"):
        decode_media(b"\x00" * 101, max_size=100)
    with pytest.raises(RemoteProtocolError, match="exceeds 100"):
        decode_control(" " * 101, max_size=100)


def _json_values() -> st.SearchStrategy[Any]:
    scalars = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
    return st.recursive(
        scalars,
        lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
        max_leaves=12,
    )


KNOWN_TYPES = [
    "setup", "session.open", "session.ready", "session.create", "call_flow.setup", "wa.msg.out",
    "setup.done", "response", "session.notify", "call.in", "session.closed", "wa.msg.in",
    "command", "command_response", "call_event", "buffer_request",
]  # fmt: skip


@st.composite
def _mutated_frames(draw: st.DrawFn) -> str | bytes:
    """Valid frames with fields dropped or retyped, plus arbitrary text and bytes."""
    kind = draw(st.integers(0, 3))
    if kind == 0:
        return draw(st.binary(max_size=64))
    if kind == 1:
        return draw(st.text(max_size=64))
    base = json.loads(draw(st.sampled_from(CONTROL_FRAMES + MEDIA_FRAMES[:-2])).encode())
    if kind == 2:
        base["type"] = draw(st.sampled_from(KNOWN_TYPES))
    target = (
        base.get("data") if isinstance(base.get("data"), dict) and draw(st.booleans()) else base
    )
    for key in draw(st.lists(st.sampled_from(sorted(target) or ["x"]), max_size=3)):
        if draw(st.booleans()):
            target.pop(key, None)
        else:
            target[key] = draw(_json_values())
    return json.dumps(base)


@settings(max_examples=400, deadline=None)
@given(_mutated_frames())
def test_hostile_input_only_yields_frames_or_protocol_errors(message: str | bytes) -> None:
    for decode in (decode_control, decode_media):
        try:
            frame = decode(message)
        except RemoteProtocolError as exc:
            error = str(exc)
            assert error, "a protocol error must say what was wrong"
        else:
            # Whatever decodes must encode again without error.
            frame.encode()
