"""The Teler message helpers (teler.md B): parsing, building, chunk ids, re-chunking."""

from __future__ import annotations

import json

import pytest

from telcoflow_trio.exceptions import RemoteProtocolError
from telcoflow_trio.streams import teler

PCM = bytes(range(256)) * 4  # 1024 bytes, 64 ms at 8 kHz


def test_parse_start() -> None:
    start = teler.parse_start(
        json.dumps(
            {
                "type": "start",
                "account_id": "acc",
                "call_app_id": "app",
                "call_id": "c1",
                "stream_id": "s1",
                "message_id": 1,
                "data": {"encoding": "audio/l16", "sample_rate": 16000, "channels": 1},
            }
        )
    )
    assert start == teler.TelerStart(
        call_id="c1",
        stream_id="s1",
        account_id="acc",
        call_app_id="app",
        message_id=1,
        sample_rate=16000,
    )


def test_parse_audio_nested_and_flat() -> None:
    b64 = teler.encode_audio(PCM)
    nested = teler.parse_audio(
        json.dumps(
            {"type": "audio", "stream_id": "s", "message_id": 7, "data": {"audio_b64": b64}}
        )
    )
    assert nested == teler.TelerAudio(PCM, message_id=7, stream_id="s")
    flat = teler.parse_audio(json.dumps({"type": "audio", "audio_b64": b64, "message_id": 8}))
    assert flat.pcm == PCM
    assert flat.shape is teler.AudioShape.FLAT


@pytest.mark.parametrize("shape", list(teler.AudioShape))
def test_audio_message_shapes_round_trip(shape: teler.AudioShape) -> None:
    message = teler.audio_message(PCM, 42, shape=shape)
    obj = json.loads(message)
    where = obj if shape is teler.AudioShape.FLAT else obj["data"]
    assert set(where) >= {"audio_b64", "chunk_id"}
    assert teler.parse_message(message) == teler.TelerAudio(PCM, chunk_id=42, shape=shape)


def test_clear_and_interrupt() -> None:
    assert json.loads(teler.clear_message()) == {"type": "clear"}
    assert json.loads(teler.interrupt_message(5)) == {"type": "interrupt", "chunk_id": 5}
    assert teler.parse_message(teler.clear_message()) == teler.TelerClear()
    assert teler.parse_message(teler.interrupt_message(5)) == teler.TelerInterrupt(5)


def test_unknown_type_is_kept() -> None:
    parsed = teler.parse_message('{"type": "mark", "name": "x"}')
    assert parsed == teler.TelerUnknown("mark", {"type": "mark", "name": "x"})


@pytest.mark.parametrize(
    ("message", "words"),
    [
        (b"\x00\x01", "binary message of 2 bytes"),
        ("not json", "not valid JSON"),
        ("[1, 2]", "must be a JSON object, got list"),
        ('{"kind": "audio"}', "no string 'type'"),
        ('{"type": "audio", "data": {}}', "no 'audio_b64'"),
        ('{"type": "audio", "audio_b64": "@@@"}', "invalid base64"),
        ('{"type": "audio", "audio_b64": 12}', "'audio_b64' must be str, got int"),
        ('{"type": "start", "stream_id": "s"}', "missing the field 'call_id'"),
        ('{"type": "start", "call_id": "c", "stream_id": "s", "message_id": "1"}', "'message_id'"),
        ('{"type": "interrupt"}', "missing the field 'chunk_id'"),
        ('{"type": "interrupt", "chunk_id": true}', "must be int, got bool"),
    ],
)
def test_malformed_messages_are_named(message: str | bytes, words: str) -> None:
    with pytest.raises(RemoteProtocolError, match=words):
        teler.parse_message(message)


def test_parse_start_and_audio_check_the_type() -> None:
    with pytest.raises(RemoteProtocolError, match="expected a 'start' message, got 'clear'"):
        teler.parse_start(teler.clear_message())
    with pytest.raises(RemoteProtocolError, match="expected an 'audio' message, got 'clear'"):
        teler.parse_audio(teler.clear_message())


def test_chunk_ids() -> None:
    ids = teler.ChunkIds()
    assert [ids.next() for _ in range(3)] == [1, 2, 3]
    assert ids.last == 3
    zero = teler.ChunkIds(start=0)
    assert zero.last is None
    assert zero.next() == 0


def test_base64_round_trip() -> None:
    assert teler.decode_audio(teler.encode_audio(PCM)) == PCM


def test_chunker_holds_audio_until_the_minimum() -> None:
    chunker = teler.AudioChunker(sample_rate=8000, min_chunk_ms=500)
    assert chunker.min_chunk_bytes == 8000
    piece = b"\x01\x02" * 800  # 100 ms
    assert [chunker.push(piece) for _ in range(4)] == [None] * 4
    assert chunker.pending_bytes == 6400
    message = chunker.push(piece + b"\x03")  # 500 ms and half a sample
    assert message is not None
    audio = teler.parse_audio(message)
    assert audio.pcm == piece * 5
    assert audio.chunk_id == 1
    assert audio.shape is teler.AudioShape.FLAT
    assert chunker.pending_bytes == 1  # the odd byte waits for its other half
    assert chunker.push(b"\x04") is None
    tail = chunker.flush()
    assert tail is not None
    assert teler.parse_audio(tail) == teler.TelerAudio(b"\x03\x04", chunk_id=2, shape=audio.shape)
    assert chunker.flush() is None


def test_chunker_at_16k_nested() -> None:
    chunker = teler.AudioChunker(16000, 500, teler.AudioShape.NESTED)
    assert chunker.min_chunk_bytes == 16000
    assert chunker.push(b"\x00" * 15998) is None
    message = chunker.push(b"\x00" * 4)
    assert message is not None
    assert "data" in json.loads(message)
    assert len(teler.parse_audio(message).pcm) == 16002


def test_chunker_clear_drops_pending_audio() -> None:
    chunker = teler.AudioChunker()
    chunker.push(b"\x00" * 100)
    assert chunker.clear() == teler.clear_message()
    assert chunker.pending_bytes == 0
    assert chunker.flush() is None


def test_chunker_validates_its_settings() -> None:
    with pytest.raises(ValueError, match="sample_rate"):
        teler.AudioChunker(sample_rate=0)
