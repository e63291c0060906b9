"""The bounded in-memory stream pair: a trio Stream, and its buffers hold at most ``capacity``."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from telcoflow_trio._memory_stream import bounded_stream_pair


async def test_it_is_a_well_behaved_trio_stream() -> None:
    async def pair() -> tuple[trio.abc.Stream, trio.abc.Stream]:
        return bounded_stream_pair()

    await trio.testing.check_two_way_stream(pair, None)


async def test_send_all_waits_while_capacity_bytes_are_unread(
    autojump_clock: trio.testing.MockClock,
) -> None:
    a, b = bounded_stream_pair(capacity=10)
    await a.send_all(b"0123456789")  # fits
    assert a.statistics() == (10, 0)
    with trio.move_on_after(5) as stuck:
        await a.send_all(b"x")  # the reader never reads
    assert stuck.cancelled_caught
    assert b.statistics() == (0, 10)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(a.send_all, b"abcdefghijklmnopqrst")  # 20 bytes through 10
        got = b""
        while len(got) < 30:
            got += await b.receive_some(7)
            assert a.statistics()[0] <= 10
    assert got == b"0123456789abcdefghijklmnopqrst"


async def test_close_ends_the_peer_and_breaks_its_sends() -> None:
    a, b = bounded_stream_pair(capacity=4)
    await a.send_all(b"last")
    await a.aclose()
    assert await b.receive_some() == b"last"
    assert await b.receive_some() == b""
    with pytest.raises(trio.BrokenResourceError):
        await b.send_all(b"x")
    with pytest.raises(trio.ClosedResourceError):
        await a.receive_some()


def test_capacity_must_be_positive() -> None:
    with pytest.raises(ValueError, match="capacity must be a positive number of bytes, got 0"):
        bounded_stream_pair(capacity=0)
