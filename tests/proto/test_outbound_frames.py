"""The frames of an outbound call: ``session.create`` and its reply, as 1.0.0 has them."""

from __future__ import annotations

import json

import pytest

from telcoflow_trio.exceptions import RemoteProtocolError
from telcoflow_trio.proto import Response, SessionCreate, decode_control


def test_session_create_round_trips_in_the_sdk_shape() -> None:
    frame = SessionCreate("TELCO", "+15550100", "r1")
    assert json.loads(frame.encode()) == {
        "type": "session.create",
        "channel": "TELCO",
        "remoteAddress": "+15550100",
        "reqId": "r1",
    }
    assert decode_control(frame.encode()) == frame


def test_create_reply_round_trips() -> None:
    reply = Response("r1", True, {"sessionId": "s1", "created": True})
    assert decode_control(reply.encode()) == reply
    refused = Response("r1", False, None, "QUOTA_EXCEEDED", {"message": "too many"})
    assert json.loads(refused.encode()) == {
        "type": "response",
        "reqId": "r1",
        "ok": False,
        "errorCode": "QUOTA_EXCEEDED",
        "errorContent": {"message": "too many"},
    }
    assert decode_control(refused.encode()) == refused


@pytest.mark.parametrize(
    "raw",
    [
        '{"type":"session.create","channel":"TELCO","reqId":"r"}',
        '{"type":"session.create","channel":"TELCO","remoteAddress":5,"reqId":"r"}',
    ],
)
def test_malformed_session_create_is_rejected(raw: str) -> None:
    with pytest.raises(RemoteProtocolError, match="remoteAddress"):
        decode_control(raw)
