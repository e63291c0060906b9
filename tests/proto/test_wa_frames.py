"""The WhatsApp frames on the wire (spec B.4-B.6): exact shapes and round trips."""

from __future__ import annotations

import json
from typing import Any

import pytest

from telcoflow_trio.exceptions import RemoteProtocolError
from telcoflow_trio.proto import (
    ChannelType,
    MessageErrorCode,
    Response,
    SessionCreate,
    SessionNotify,
    WaMsgIn,
    WaMsgOut,
    decode_control,
)

FRAMES = [
    SessionCreate("WA", "+15550100", "r1"),
    Response("r1", True, {"sessionId": "s1", "created": True}),
    Response("r1", True, {"sessionId": "s1", "created": False}),
    SessionNotify("s1", "WA", "+15550100", "+15550000", "NEW_INCOMING_MESSAGE", 1700000000),
    WaMsgOut("s1", "9b1d", "v1", {"type": "text", "text": {"body": "hi"}}, "r2"),
    Response("r2", True, {"messageId": "wamid.1", "status": "accepted"}),
    Response("r2", False, None, "OVERFLOW", {"message": "16 messages await their ack"}),
    WaMsgIn("s1", "+15550100", {"type": "text", "text": {"body": "yo"}}),
]


@pytest.mark.parametrize("frame", FRAMES, ids=lambda f: type(f).__name__)
def test_round_trip(frame: Any) -> None:
    assert decode_control(frame.encode()) == frame


def test_wire_shapes() -> None:
    out = json.loads(WaMsgOut("s1", "m1", "v1", {"x": 1}, "r2").encode())
    # sessionId sits inside data for wa.msg.out, at top level for session.* frames
    assert out == {
        "type": "wa.msg.out",
        "data": {"sessionId": "s1", "clientMsgId": "m1", "apiVersion": "v1", "data": {"x": 1}},
        "reqId": "r2",
    }
    create = json.loads(SessionCreate("WA", "+15550100", "r1").encode())
    assert create == {
        "type": "session.create",
        "channel": "WA",
        "remoteAddress": "+15550100",
        "reqId": "r1",
    }
    assert [c.value for c in ChannelType] == ["TELCO", "WA"]
    assert {c.value for c in MessageErrorCode} == {
        "INVALID_PAYLOAD",
        "SESSION_NOT_FOUND",
        "SESSION_NOT_OPEN",
        "INVALID_CHANNEL",
        "OVERFLOW",
        "INTERNAL_ERROR",
        "REMOTE_ERROR",
    }


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ('{"type":"wa.msg.in","sessionId":"s","sender":"+1","content":"text"}', "content"),
        ('{"type":"wa.msg.in","sessionId":"s","content":{}}', "sender"),
        ('{"type":"wa.msg.out","data":{"sessionId":"s","clientMsgId":"m","apiVersion":"v1"},'
         '"reqId":"r"}', "data"),
        ('{"type":"session.create","channel":"WA","reqId":"r"}', "remoteAddress"),
    ],
)  # fmt: skip
def test_malformed_frames_name_the_field(raw: str, field: str) -> None:
    with pytest.raises(RemoteProtocolError, match=repr(field)):
        decode_control(raw)
