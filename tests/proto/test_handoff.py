"""The handoff document: 1.0.0's exact shape, and every field checked."""

from __future__ import annotations

import json
from typing import Any

import pytest

from telcoflow_trio import proto

TOKEN = "tok-" + "9" * 40
GOOD: dict[str, Any] = {
    "channel": "TELCO",
    "id": "call-1",
    "caller": "+1",
    "callee": "+2",
    "session_url": "wss://media.example/v1/media/call-1",
    "session_token": TOKEN,
}


def test_round_trip_is_the_1_0_0_shape() -> None:
    call_in = proto.CallIn("sess", "call-1", "+1", "+2", GOOD["session_url"], TOKEN)
    text = proto.encode_handoff(call_in)
    assert json.loads(text) == GOOD
    handoff = proto.decode_handoff(text)
    assert (handoff.sample_rate, handoff.audio_mode) == (None, None)
    back = handoff.call_in
    assert (back.call_id, back.caller, back.callee, back.url, back.token) == (
        "call-1",
        "+1",
        "+2",
        GOOD["session_url"],
        TOKEN,
    )
    assert back.session_id == ""
    assert proto.decode_handoff(text.encode()) == handoff
    assert proto.decode_handoff({**GOOD, "extra": 1}) == handoff  # 1.0.0 ignores extra keys


def test_the_media_audio_travels_beside_the_1_0_0_keys() -> None:
    call_in = proto.CallIn("sess", "call-1", "+1", "+2", GOOD["session_url"], TOKEN)
    text = proto.encode_handoff(call_in, sample_rate=16000, audio_mode="isolated")
    assert json.loads(text) == {**GOOD, "sample_rate": 16000, "audio_mode": "isolated"}
    handoff = proto.decode_handoff(text)
    assert (handoff.sample_rate, handoff.audio_mode) == (16000, "isolated")
    assert handoff.call_in == proto.decode_handoff(GOOD).call_in


def _without(key: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != key}


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ("{not json", "not JSON"),
        (" " * (proto.MAX_HANDOFF_BYTES + 1), "larger than 65536 bytes"),
        (b"\xff\xfe", "not JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        (_without("channel"), "'channel' must be 'TELCO'.*got NoneType"),
        ({**GOOD, "channel": "WA"}, "'channel' must be 'TELCO'.*got 'WA'"),
        (_without("session_token"), "missing the field 'session_token'"),
        (_without("id"), "missing the field 'id'"),
        ({**GOOD, "caller": 15550100}, "'caller' must be a string, got int"),
        ({**GOOD, "session_token": None}, "'session_token' must be a string, got NoneType"),
        ({**GOOD, "session_token": ""}, "'session_token' is empty"),
        ({**GOOD, "id": ""}, "'id' is empty"),
        ({**GOOD, "session_url": "https://media.example/x"}, "ws:// or wss://.*'https'"),
        ({**GOOD, "session_url": "wss:///no-host"}, "has no host"),
        ({**GOOD, "session_url": "ws://h:99999/x"}, "not a valid URL"),
        ({**GOOD, "sample_rate": "16000"}, "'sample_rate' must be a positive integer"),
        ({**GOOD, "sample_rate": True}, "'sample_rate' must be a positive integer"),
        ({**GOOD, "sample_rate": 0}, "'sample_rate' must be a positive integer"),
        ({**GOOD, "audio_mode": "stereo"}, "'audio_mode' must be 'mixed' or 'isolated'"),
    ],
)
def test_bad_documents_are_refused_by_name(data: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message) as caught:
        proto.decode_handoff(data if isinstance(data, str | bytes) else json.dumps(data))
    assert TOKEN not in str(caught.value)
    assert "media.example" not in str(caught.value)
