"""Hostile input against the stream bridge and its Teler message parsers.

The bridge relays what its handlers give it and must not choke on anything a
peer sends: with the default handlers every message, however malformed,
arrives at the other side unchanged and in order; with a handler that parses
Teler messages, a malformed one ends the bridge with ``StreamBridgeError``
(``__cause__``: the ``RemoteProtocolError``) and the call side is closed with
1011. Nothing hangs and nothing else escapes. The parsers themselves raise
only ``RemoteProtocolError``, and whatever they return can be sent back.
"""

from __future__ import annotations

import json
from typing import Any

import attrs
import pytest
import trio
import trio.testing
from hypothesis import HealthCheck, given, settings, strategies as st
from streams.conftest import MemoryRemote, open_call_pair  # the bridge tests' in-memory legs

from telcoflow_trio.exceptions import RemoteProtocolError, StreamBridgeError, WSSConnectionClosed
from telcoflow_trio.streams import BridgeEnd, CloseInfo, StreamConnector, StreamOp, teler
from telcoflow_trio.ws._transport import TRANSPORTS, Transport, WebSocket

from .conftest import ScriptedServer
from .corpus import COMMON, messages

pytestmark = pytest.mark.reliability

FUZZ = settings(
    max_examples=60,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
PROBE = '{"type":"probe"}'

TELER: list[tuple[str, str | bytes]] = [
    ("start-no-call-id", '{"type":"start","stream_id":"s"}'),
    ("start-data-list", '{"type":"start","call_id":"c","stream_id":"s","data":[]}'),
    (
        "start-rate-string",
        '{"type":"start","call_id":"c","stream_id":"s","data":{"sample_rate":"8k"}}',
    ),
    ("start-lone-surrogate", '{"type":"start","call_id":"\\ud800","stream_id":"s"}'),
    ("start-deeply-nested", '{"type":"start","x":' + "[" * 50_000 + "]" * 50_000 + "}"),
    ("audio-no-b64", '{"type":"audio","data":{}}'),
    ("audio-bad-b64", '{"type":"audio","data":{"audio_b64":"@@@"}}'),
    ("audio-b64-int", '{"type":"audio","audio_b64":5}'),
    ("audio-chunk-id-float", '{"type":"audio","audio_b64":"AAA=","chunk_id":1.5}'),
    ("audio-odd-pcm", '{"type":"audio","audio_b64":"AAAA"}'),
    ("interrupt-no-chunk", '{"type":"interrupt"}'),
    ("clear-extra", '{"type":"clear","x":[1,2]}'),
    ("unknown-lone-surrogate", '{"type":"future","x":"\\udfff"}'),
]  # fmt: skip


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for k, v in value.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(value, list | tuple):
        return [s for v in value for s in _strings(v)]
    return []


def check_parsers(message: str | bytes) -> None:
    """The parsers raise only ``RemoteProtocolError``; what they return re-encodes."""
    for parse in (teler.parse_message, teler.parse_start, teler.parse_audio):
        try:
            parsed = parse(message)
        except RemoteProtocolError as exc:
            error = str(exc)
        else:
            error = None
        if error is not None:
            assert error, "a protocol error must say what was wrong"
            continue
        for text in _strings(attrs.asdict(parsed)):
            text.encode()  # a field an app echoes must be sendable
        if isinstance(parsed, teler.TelerAudio):
            teler.audio_message(parsed.pcm, parsed.chunk_id or 0)


@pytest.mark.parametrize(("name", "message"), COMMON + TELER, ids=[n for n, _ in COMMON + TELER])
def test_teler_parsers_refuse_or_return_sendable_values(name: str, message: str | bytes) -> None:
    check_parsers(message)


@st.composite
def teler_messages(draw: st.DrawFn) -> str:
    body: dict[str, Any] = {
        "type": draw(st.sampled_from(["start", "audio", "clear", "interrupt"]))
    }
    keys = ["call_id", "stream_id", "data", "audio_b64", "chunk_id", "message_id", "sample_rate"]
    values = st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8)
    values = values | st.sampled_from(["AAA=", "@@", "\ud800", ""])
    for key in draw(st.lists(st.sampled_from(keys), max_size=5)):
        body[key] = draw(values | st.dictionaries(st.sampled_from(keys), values, max_size=3))
    return json.dumps(body)


@FUZZ
@given(st.one_of(messages(), teler_messages()))
def test_fuzz_teler_parsers(message: str | bytes) -> None:
    check_parsers(message)


# -- the bridge --------------------------------------------------------------------------


async def echo(ws: WebSocket) -> None:
    while True:
        await ws.send_message(await ws.get_message())


async def parse_teler(message: str | bytes) -> tuple[str | bytes | None, StreamOp]:
    """What an app does: parse, send the caller's PCM on, drop the rest."""
    if message == PROBE:
        return message, StreamOp.RELAY
    parsed = teler.parse_message(message)  # malformed: raises, and ends the bridge
    if isinstance(parsed, teler.TelerAudio):
        return parsed.pcm, StreamOp.RELAY
    return None, StreamOp.PASS


async def run_bridge(hostile: list[str | bytes], handler: Any = None) -> dict[str, Any]:
    """Teler sends ``hostile`` then a probe through a bridge to an echoing remote."""
    outcome: dict[str, Any] = {"received": []}
    with trio.fail_after(60):
        async with trio.open_nursery() as nursery:
            remote = ScriptedServer(nursery, echo)
            options: dict[str, Any] = {"ping_interval": None, "close_timeout": 1.0}
            if handler is not None:
                options["call_stream_handler"] = handler
            connector = StreamConnector(
                remote_url="ws://ai.invalid/agent", open_stream=remote.open_stream, **options
            )
            app_ws, teler_ws = await open_call_pair(nursery)
            done = trio.Event()

            async def bridge() -> None:
                try:
                    outcome["result"] = await connector.bridge_stream(app_ws)
                except StreamBridgeError as exc:
                    outcome["error"] = exc
                finally:
                    done.set()

            nursery.start_soon(bridge)
            try:
                for message in [*hostile, PROBE]:
                    await teler_ws.send_message(message)
                while True:
                    message = await teler_ws.get_message()
                    outcome["received"].append(message)
                    if message == PROBE:
                        break
            except WSSConnectionClosed as exc:
                outcome["closed"] = (exc.code, exc.reason)
            await teler_ws.aclose()
            await done.wait()
            assert remote.errors == []
    return outcome


@pytest.mark.parametrize(("name", "message"), COMMON + TELER, ids=[n for n, _ in COMMON + TELER])
async def test_bridge_relays_hostile_messages_unchanged(
    name: str, message: str | bytes, autojump_clock: trio.testing.MockClock
) -> None:
    outcome = await run_bridge([message])
    assert outcome["received"] == [message, PROBE]
    assert outcome["result"].end is BridgeEnd.CALL_CLOSED


def malformed_for_teler(message: str | bytes) -> bool:
    try:
        teler.parse_message(message)
    except RemoteProtocolError:
        return True
    return False


async def check_parsing_bridge(hostile: list[str | bytes]) -> None:
    outcome = await run_bridge(hostile, parse_teler)
    if any(malformed_for_teler(m) for m in hostile):
        error = outcome.get("error")
        assert isinstance(error, StreamBridgeError), outcome
        assert isinstance(error.__cause__, RemoteProtocolError), repr(error.__cause__)
        assert outcome["closed"][0] == 1011
    else:
        assert outcome["received"][-1:] == [PROBE]
        assert outcome["result"].end is BridgeEnd.CALL_CLOSED


@pytest.mark.parametrize(("name", "message"), COMMON + TELER, ids=[n for n, _ in COMMON + TELER])
async def test_parsing_bridge_ends_with_the_documented_error(
    name: str, message: str | bytes, autojump_clock: trio.testing.MockClock
) -> None:
    await check_parsing_bridge([message])


@FUZZ
@given(st.lists(st.one_of(messages(), teler_messages()), min_size=1, max_size=5))
def test_fuzz_bridge(hostile: list[str | bytes]) -> None:
    async def example() -> None:
        relayed = await run_bridge(hostile)
        assert relayed["received"] == [*hostile, PROBE]
        await check_parsing_bridge(hostile)

    trio.run(example, clock=trio.testing.MockClock(autojump_threshold=0))


# -- frames the remote's WebSocket refuses -----------------------------------------------


def raw_frame(opcode: int, payload: bytes, *, fin: bool = True, rsv: int = 0) -> bytes:
    """One unmasked server frame, as a hostile remote writes it (payload < 126 bytes)."""
    return bytes([(0x80 if fin else 0) | rsv | opcode, len(payload)]) + payload


REFUSED_FRAMES: list[tuple[str, bytes, int]] = [
    ("reserved-bits", raw_frame(0x1, b"x", rsv=0x40), 1002),
    ("unknown-opcode", raw_frame(0x3, b"x"), 1002),
    ("unknown-control-opcode", raw_frame(0xB, b"x"), 1002),
    ("fragmented-ping", raw_frame(0x9, b"x", fin=False), 1002),
    ("stray-continuation", raw_frame(0x0, b"x"), 1002),
    ("interleaved-message", raw_frame(0x1, b"a", fin=False) + raw_frame(0x1, b"b"), 1002),
    ("text-not-utf8", raw_frame(0x1, b"\xff\xfe"), 1007),
    ("close-1-byte", raw_frame(0x8, b"\x03"), 1002),
    ("close-code-1005", raw_frame(0x8, b"\x03\xed"), 1002),
    ("close-reason-not-utf8", raw_frame(0x8, b"\x03\xe8\xff"), 1007),
    ("masked-by-server", bytes([0x81, 0x81]) + b"abcd" + bytes([ord("x") ^ ord("a")]), 1002),
]


@pytest.mark.parametrize("transport", TRANSPORTS)
@pytest.mark.parametrize(
    ("name", "data", "code"), REFUSED_FRAMES, ids=[n for n, _, _ in REFUSED_FRAMES]
)
async def test_refused_remote_frames_are_blamed_on_the_remote_on_both_transports(
    name: str,
    data: bytes,
    code: int,
    transport: Transport,
    autojump_clock: trio.testing.MockClock,
) -> None:
    """Our close (code, ``by_peer=False``), the same on both transports, reaches the remote."""
    with trio.fail_after(30):
        async with trio.open_nursery() as nursery:

            async def hostile(ws: WebSocket) -> None:
                await ws.get_message()
                await remote.streams[0].inner.send_all(data)
                await ws.get_message()

            remote = MemoryRemote(nursery, hostile)
            connector = StreamConnector(
                remote_url="ws://ai.invalid/agent",
                open_stream=remote.open_stream,
                transport=transport,
                ping_interval=None,
                close_timeout=1.0,
            )
            app_ws, teler_ws = await open_call_pair(nursery)
            await teler_ws.send_message(PROBE)
            with pytest.raises(StreamBridgeError) as info:
                await connector.bridge_stream(app_ws)
            await remote.done.wait()
            nursery.cancel_scope.cancel()
    result = info.value.result
    assert result is not None
    assert result.remote_close is not None
    assert (result.remote_close.code, result.remote_close.by_peer) == (code, False)
    assert str(info.value).startswith(
        f"the remote sent data we refused; we closed it with code {code}"
    )
    assert remote.closes == [(code, result.remote_close.reason)]
    assert result.call_close == CloseInfo(1011, "bridge error", by_peer=False)
