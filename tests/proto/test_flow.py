"""Flow-control arithmetic: frame sizes, credit, and the outgoing buffer."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from telcoflow_trio.exceptions import BufferClosedError, BufferFullError
from telcoflow_trio.proto import OutgoingAudio, SendCredit, frame_bytes


@pytest.mark.parametrize(("rate", "expected"), [(8000, 320), (16000, 640), (24000, 960)])
def test_twenty_ms_frames(rate: int, expected: int) -> None:
    assert frame_bytes(rate) == expected


def _drain(credit: SendCredit, buffer: OutgoingAudio) -> list[int]:
    """What a sender does: frames until there is nothing to send or no credit."""
    sizes = []
    while n := credit.next_frame(len(buffer)):
        assert len(buffer.read(n)) == n
        credit.consume(n)
        sizes.append(n)
    return sizes


@pytest.mark.parametrize("rate", [8000, 16000, 24000])
def test_frames_are_capped_at_twenty_ms_and_tail_is_not_stuck(rate: int) -> None:
    frame = frame_bytes(rate)
    credit = SendCredit(frame, max_credit_bytes=10 * frame)
    buffer = OutgoingAudio(1 << 20)
    buffer.write(b"\x01" * (3 * frame + 100))  # three frames and a 50-sample tail
    credit.grant(10 * frame)
    assert _drain(credit, buffer) == [frame, frame, frame, 100]
    assert len(buffer) == 0


def test_prefer_frame_bytes_wins_and_is_made_even() -> None:
    credit = SendCredit(960, max_credit_bytes=100_000)
    buffer = OutgoingAudio(1 << 20)
    buffer.write(b"\x00" * 2000)
    credit.grant(2000, prefer_frame_bytes=501)
    assert _drain(credit, buffer) == [500, 500, 500, 500]


def test_odd_byte_waits_for_its_other_half() -> None:
    credit = SendCredit(960, max_credit_bytes=100_000)
    buffer = OutgoingAudio(1 << 20)
    credit.grant(960)
    buffer.write(b"\x00" * 3)
    assert _drain(credit, buffer) == [2]
    assert credit.next_frame(len(buffer)) == 0  # half a sample never goes out alone
    buffer.write(b"\x00")
    assert _drain(credit, buffer) == [2]


def test_no_credit_no_frames_and_stale_requests_are_capped() -> None:
    credit = SendCredit(320, max_credit_bytes=1000)
    buffer = OutgoingAudio(1 << 20)
    buffer.write(b"\x00" * 100_000)
    assert credit.next_frame(len(buffer)) == 0
    for _ in range(50):  # a silent agent while the server keeps asking
        credit.grant(320)
    assert credit.available == 1000  # no burst of 50 frames later
    credit.grant(5000)  # one large request is still honoured in full
    assert credit.available == 5000
    credit.grant(0)
    credit.grant(-5)
    assert credit.available == 5000


def test_invalid_default_frame() -> None:
    with pytest.raises(ValueError, match="positive even"):
        SendCredit(3, 100)


def test_buffer_is_all_or_nothing_and_closes() -> None:
    buffer = OutgoingAudio(8)
    buffer.write(b"12345")
    with pytest.raises(BufferFullError, match="4 bytes do not fit: 3 of 8 bytes free"):
        buffer.write(b"abcd")
    assert len(buffer) == 5
    assert buffer.free == 3
    assert buffer.read(2) == b"12"
    assert buffer.clear() == 3
    buffer.close()
    with pytest.raises(BufferClosedError):
        buffer.write(b"x")


@given(st.lists(st.binary(max_size=50), max_size=30), st.lists(st.integers(0, 70), max_size=40))
def test_buffer_is_a_fifo(writes: list[bytes], reads: list[int]) -> None:
    buffer = OutgoingAudio(1 << 16)
    for chunk in writes:
        buffer.write(chunk)
    expected = b"".join(writes)
    got = b"".join(buffer.read(n) for n in reads) + buffer.read(len(buffer))
    assert got == expected
    assert len(buffer) == 0


@given(
    st.lists(st.binary(max_size=50), max_size=30),
    st.lists(st.tuples(st.integers(0, 70), st.booleans()), max_size=40),
)
def test_a_read_put_back_is_read_again(writes: list[bytes], reads: list[tuple[int, bool]]) -> None:
    buffer = OutgoingAudio(1 << 16)
    for chunk in writes:
        buffer.write(chunk)
    got = []
    for n, put_back in reads:
        data = buffer.read(n)
        if put_back:
            buffer.unread(data)
        else:
            got.append(data)
    assert b"".join(got) + buffer.read(len(buffer)) == b"".join(writes)
    assert len(buffer) == 0
