"""The sans-IO RFC 6455 framing and upgrade helpers, without trio or sockets."""

from __future__ import annotations

import h11
import pytest
from hypothesis import given, strategies as st
from ws_wire import frame

from telcoflow_trio.exceptions import WSSConnectionError
from telcoflow_trio.ws import _framing as framing, _handshake as handshake
from telcoflow_trio.ws._framing import (
    BINARY,
    CLOSE,
    CONT,
    PING,
    PONG,
    TEXT,
    FrameCodec,
    FrameError,
)

KEY = b"\x11\x22\x33\x44"


def server() -> FrameCodec:
    return FrameCodec(client=False, max_message_size=1000)


@pytest.mark.parametrize("n", [0, 1, 125, 126, 65535, 65536])
def test_header_length_forms(n: int) -> None:
    header = framing.frame_header(BINARY, n, False)
    assert header == frame(BINARY, b"\0" * n)[: len(header)]
    assert len(header) == (2 if n < 126 else 4 if n < 65536 else 10)


@given(st.binary(max_size=300), st.binary(min_size=4, max_size=4))
def test_mask_is_xor_with_the_repeated_key_and_its_own_inverse(data: bytes, key: bytes) -> None:
    masked = framing.mask(data, key)
    assert masked == bytes(b ^ key[i % 4] for i, b in enumerate(data))
    assert framing.mask(masked, key) == data


@given(st.lists(st.one_of(st.text(max_size=200), st.binary(max_size=200)), max_size=8))
def test_what_a_client_frames_a_server_parses_in_any_chunking(
    messages: list[str | bytes],
) -> None:
    client = FrameCodec(client=True, max_message_size=1 << 20)
    wire = b"".join(client.message_frame(m) for m in messages)
    ours = server()
    got: list[object] = []
    for i in range(0, len(wire), 7):  # 7-byte pieces split headers and keys
        ours.receive_data(wire[i : i + 7])
        while (message := ours.next_frame()) is not None:
            got.append(message)
    assert got == messages


@given(
    st.text(max_size=300),
    st.lists(st.integers(0, 60), max_size=6),
    st.integers(1, 40),
)
def test_text_cut_anywhere_into_fragments_and_reads_comes_out_whole(
    text: str, cuts: list[int], chunk: int
) -> None:
    """Fragment and read boundaries inside characters: decoded as it comes, whole at the end."""
    data, parts = text.encode(), []
    for cut in cuts:
        parts.append(data[:cut])
        data = data[cut:]
    parts.append(data)
    last = len(parts) - 1
    wire = b"".join(
        frame(CONT if i else TEXT, part, fin=i == last, mask=KEY) for i, part in enumerate(parts)
    )
    ours = FrameCodec(client=False, max_message_size=1 << 20)
    got: list[object] = []
    for i in range(0, len(wire), chunk):
        ours.receive_data(wire[i : i + chunk])
        while (message := ours.next_frame()) is not None:
            got.append(message)
    assert got == [text]


def test_client_frames_are_masked_with_fresh_keys_server_frames_are_not() -> None:
    client = FrameCodec(client=True, max_message_size=100)
    one, two = client.frame(BINARY, b"abcd"), client.frame(BINARY, b"abcd")
    assert one[1] & 0x80
    assert two[1] & 0x80
    assert one[2:6] != two[2:6]
    assert server().frame(BINARY, b"abcd") == b"\x82\x04abcd"


def test_fragments_are_reassembled_with_control_frames_in_between() -> None:
    ours = server()
    ours.receive_data(
        frame(TEXT, "hé".encode()[:2], fin=False, mask=KEY)
        + frame(PING, b"p", mask=KEY)
        + frame(CONT, "hé".encode()[2:], fin=False, mask=KEY)
        + frame(CONT, b"!", mask=KEY)
    )
    assert ours.next_frame() == (PING, b"p")
    assert ours.next_frame() == "hé!"
    assert ours.next_frame() is None


@pytest.mark.parametrize(
    ("wire", "code", "what"),
    [
        (frame(BINARY, b"x"), 1002, "unmasked"),
        (bytes([0x80 | 0x40 | BINARY, 0x80]) + KEY, 1002, "reserved bits"),
        (frame(0x3, b"", mask=KEY), 1002, "unknown opcode"),
        (frame(0xB, b"", mask=KEY), 1002, "unknown opcode"),
        (frame(PING, b"", fin=False, mask=KEY), 1002, "fragmented control"),
        (frame(PING, b"x" * 126, mask=KEY), 1002, "longer than 125"),
        (frame(CONT, b"x", mask=KEY), 1002, "continuation"),
        (
            frame(TEXT, b"a", fin=False, mask=KEY) + frame(TEXT, b"b", mask=KEY),
            1002,
            "new message",
        ),
        (frame(TEXT, b"\xff", mask=KEY), 1007, "UTF-8"),
        (bytes([0x82, 0xFF]) + (1 << 63).to_bytes(8, "big") + KEY, 1002, "significant bit"),
    ],
)
def test_protocol_violations_name_their_close_code(wire: bytes, code: int, what: str) -> None:
    ours = server()
    ours.receive_data(wire)
    with pytest.raises(FrameError, match=what) as info:
        ours.next_frame()
    assert info.value.code == code


def test_a_server_masked_frame_is_refused_by_a_client() -> None:
    client = FrameCodec(client=True, max_message_size=100)
    client.receive_data(frame(BINARY, b"x", mask=KEY))
    with pytest.raises(FrameError, match="masked") as info:
        client.next_frame()
    assert info.value.code == 1002


def test_an_oversized_message_is_1009_from_its_header_and_skipped_to_the_close() -> None:
    ours = server()
    big = frame(BINARY, b"x" * 1001, mask=KEY)
    ours.receive_data(big[:20])  # the header alone decides
    with pytest.raises(FrameError) as info:
        ours.next_frame()
    assert info.value.code == 1009
    assert ours.oversized == len(big)
    assert not ours.discard_oversized()
    ours.receive_data(big[20:] + frame(CLOSE, b"\x03\xe8", mask=KEY))
    assert ours.discard_oversized()
    assert ours.oversized == 0
    assert ours.next_frame() == (CLOSE, b"\x03\xe8")


def test_a_fragmented_message_counts_all_its_fragments_against_the_limit() -> None:
    ours = server()
    ours.receive_data(frame(BINARY, b"x" * 600, fin=False, mask=KEY))
    assert ours.next_frame() is None
    ours.receive_data(frame(CONT, b"x" * 600, mask=KEY))
    with pytest.raises(FrameError) as info:
        ours.next_frame()
    assert info.value.code == 1009


@pytest.mark.parametrize(
    ("payload", "parsed"),
    [
        (b"", (1005, None)),
        (b"\x03\xe8", (1000, None)),
        (b"\x0f\xa1bye", (4001, "bye")),
        (b"\x0b\xb8\xc3\xa9", (3000, "é")),
    ],
)
def test_close_payloads_parse(payload: bytes, parsed: tuple[int, str | None]) -> None:
    assert framing.parse_close(payload) == parsed


@pytest.mark.parametrize(
    ("payload", "code"),
    [(b"\x03", 1002), (b"\x03\xed", 1002), (b"\x03\xe7", 1002), (b"\x03\xe8\xff", 1007)],
)
def test_bad_close_payloads_are_refused(payload: bytes, code: int) -> None:
    with pytest.raises(FrameError) as info:
        framing.parse_close(payload)
    assert info.value.code == code


@pytest.mark.parametrize("code", [1000, 1001, 1011, 1014, 3000, 4999])
def test_sendable_close_codes(code: int) -> None:
    assert framing.valid_close_code(code)


@pytest.mark.parametrize("code", [999, 1004, 1005, 1006, 1015, 2999, 5000])
def test_unsendable_close_codes(code: int) -> None:
    assert not framing.valid_close_code(code)


def test_a_close_reason_is_cut_to_125_bytes_on_a_character_boundary() -> None:
    payload = framing.close_payload(4000, "é" * 100)
    assert len(payload) <= 125
    assert framing.parse_close(payload) == (4000, "é" * 61)


def test_pong_and_text_frames_come_back_as_values() -> None:
    ours = server()
    ours.receive_data(frame(PONG, b"hb", mask=KEY) + frame(TEXT, b"", mask=KEY))
    assert ours.next_frame() == (PONG, b"hb")
    assert ours.next_frame() == ""


def test_message_frame_refuses_other_types() -> None:
    with pytest.raises(TypeError, match="bytearray"):
        server().message_frame(bytearray(b"x"))  # type: ignore[arg-type]


# -- the upgrade ------------------------------------------------------------------------


def upgrade(
    subprotocols: tuple[str, ...] = ("a", "b"),
) -> tuple[h11.Connection, h11.Request, bytes]:
    """The client's request as the server's h11 sees it, and the nonce."""
    request, nonce = handshake.client_request(
        "h:1", "/p?q=1", subprotocols=subprotocols, headers=[("x-api-key", "k")]
    )
    client, server_conn = h11.Connection(h11.CLIENT), h11.Connection(h11.SERVER)
    server_conn.receive_data(client.send(request) or b"")
    event = server_conn.next_event()
    assert isinstance(event, h11.Request)
    return server_conn, event, nonce


def test_the_upgrade_round_trip_agrees_on_a_subprotocol() -> None:
    _, request, nonce = upgrade()
    assert request.target == b"/p?q=1"
    assert handshake.check_upgrade_request(request) is None
    assert handshake.header_values(list(request.headers), b"x-api-key") == [b"k"]
    assert handshake.header_values(list(request.headers), b"sec-websocket-protocol") == [
        b"a",
        b"b",
    ]
    key = handshake.header_values(list(request.headers), b"sec-websocket-key")[0]
    assert key == nonce
    response = handshake.accept_response(key, "b", [("x-served-by", "t")])
    assert response.status_code == 101
    assert handshake.check_switch(list(response.headers), nonce, ["a", "b"]) == "b"


@pytest.mark.parametrize(
    ("drop", "why"),
    [(b"upgrade", b"not a WebSocket"), (b"sec-websocket-key", b"Sec-WebSocket-Key")],
)
def test_a_request_without_the_upgrade_headers_is_refused(drop: bytes, why: bytes) -> None:
    _, request, _ = upgrade()
    headers = [(k, v) for k, v in request.headers if k != drop]
    bad = h11.Request(method="GET", target=b"/", headers=headers)
    assert why in (handshake.check_upgrade_request(bad) or b"")


def test_a_post_is_not_an_upgrade() -> None:
    _, request, _ = upgrade()
    post = h11.Request(method="POST", target=b"/", headers=[*request.headers])
    assert handshake.check_upgrade_request(post) == b"a WebSocket upgrade must be a GET"


@pytest.mark.parametrize(
    ("change", "what"),
    [
        ({b"sec-websocket-accept": b"wrong"}, "Accept"),
        ({b"upgrade": b"h2c"}, "Upgrade"),
        ({b"sec-websocket-extensions": b"permessage-deflate"}, "extension"),
        ({b"sec-websocket-protocol": b"c"}, "not offered"),
    ],
)
def test_a_bad_101_is_refused(change: dict[bytes, bytes], what: str) -> None:
    _, request, nonce = upgrade()
    key = handshake.header_values(list(request.headers), b"sec-websocket-key")[0]
    headers = dict(handshake.accept_response(key, None).headers)
    headers.update(change)
    with pytest.raises(WSSConnectionError, match=what):
        handshake.check_switch(list(headers.items()), nonce, ["a", "b"])


def test_a_refusal_for_a_wrong_version_names_ours() -> None:
    _, request, _ = upgrade()
    assert handshake.refusal_headers(request) == []
    headers = [(k, b"8" if k == b"sec-websocket-version" else v) for k, v in request.headers]
    old = h11.Request(method="GET", target=b"/", headers=headers)
    assert b"Version" in (handshake.check_upgrade_request(old) or b"")
    assert handshake.refusal_headers(old) == [("Sec-WebSocket-Version", "13")]


def test_a_rejection_is_a_whole_http_response() -> None:
    conn, _, _ = upgrade()
    data = handshake.reject_bytes(conn, 401, b"no key")
    client = h11.Connection(h11.CLIENT)
    client.send(h11.Request(method="GET", target=b"/", headers=[(b"Host", b"h")]))
    client.receive_data(data)
    response = client.next_event()
    assert isinstance(response, h11.Response)
    assert response.status_code == 401
    body = client.next_event()
    assert isinstance(body, h11.Data)
    assert body.data == b"no key"
