"""The REST plane's sans-IO part: URLs, targets, the JSON shapes both ways, error bodies."""

from __future__ import annotations

import json

import pytest

from telcoflow_trio import proto
from telcoflow_trio.exceptions import RemoteProtocolError


def test_sans_io_shapes() -> None:
    assert proto.http_base_url("wss://h.example:8443/") == "https://h.example:8443"
    assert proto.http_base_url("ws://127.0.0.1:8080") == "http://127.0.0.1:8080"
    with pytest.raises(ValueError, match="ws://"):
        proto.http_base_url("http://x")
    assert proto.sessions_target() == "/public/v1/sessions?state=OPEN"
    assert (
        proto.sessions_target("WA", "+1 555", None)
        == "/public/v1/sessions?channel=WA&remoteAddress=%2B1+555"
    )
    assert proto.close_path("a/b") == "/public/v1/sessions/a%2Fb/close"
    info = proto.SessionInfo(id="s", channel="WA", initiator="SDK", state="OPEN", opened_at=5)
    assert proto.decode_sessions(proto.encode_sessions([info])) == [info]
    result = proto.CloseResult(closed_at=7, reason="SDK_REQUEST")
    assert proto.decode_close(json.dumps(result.to_json()).encode()) == result
    assert proto.decode_error(500, proto.encode_error("X", "m")) == ("X", "m")
    assert proto.decode_error(502, b"<html>bad gateway</html>") == (
        None,
        "<html>bad gateway</html>",
    )
    assert proto.decode_error(502, b"") == (None, "HTTP 502")
    for body in (b"[]", b"nope", b'{"items": 3}', b'{"items": [{"id": 3}]}', b'{"items": [{}]}'):
        with pytest.raises(RemoteProtocolError):
            proto.decode_sessions(body)
