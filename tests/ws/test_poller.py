"""The shared epoll poller of the lean transport, on real socket pairs (Linux only).

Readiness is the one thing it must never lose: every test ends with every
reader having seen every byte, under ``trio.fail_after`` so a lost wake-up
fails instead of hanging.
"""

from __future__ import annotations

import contextlib
import random
import select
import socket
from collections.abc import Callable

import pytest
import trio
import trio.testing

from telcoflow_trio.ws._poller import EpollPoller, current_poller

pytestmark = pytest.mark.skipif(not hasattr(select, "epoll"), reason="epoll is Linux only")


def pair(poller: EpollPoller) -> tuple[socket.socket, socket.socket]:
    """``(ours, theirs)``: ``ours`` non-blocking and registered."""
    ours, theirs = socket.socketpair()
    ours.setblocking(False)
    poller.register(ours.fileno())
    return ours, theirs


async def read_exactly(poller: EpollPoller, sock: socket.socket, n: int) -> bytes:
    """What a lean reader does: read until the socket would block, then wait."""
    got = b""
    while len(got) < n:
        try:
            data = sock.recv(65536)
        except BlockingIOError:
            await poller.wait_ready(sock)
            continue
        assert data, "the peer closed early"
        got += data
    return got


async def test_one_poller_per_run() -> None:
    assert current_poller() is current_poller() is not None


async def test_many_readers_see_every_byte_under_random_interleaving() -> None:
    poller = EpollPoller()
    rng = random.Random(7)
    pairs = [pair(poller) for _ in range(40)]
    rounds = 30
    seen: dict[int, bytes] = {}

    async def reader(i: int, sock: socket.socket) -> None:
        seen[i] = await read_exactly(poller, sock, rounds)

    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:
            for i, (ours, _) in enumerate(pairs):
                nursery.start_soon(reader, i, ours)
            for _ in range(rounds):
                for _, theirs in rng.sample(pairs, len(pairs)):
                    theirs.send(b"x")
                await trio.sleep(rng.choice([0, 0, 0.001]))
    assert seen == {i: b"x" * rounds for i in range(len(pairs))}
    for ours, theirs in pairs:
        poller.forget(ours.fileno())
        ours.close()
        theirs.close()


async def test_a_cancelled_leader_hands_the_lead_to_a_parked_waiter() -> None:
    poller = EpollPoller()
    (a, a_peer), (b, b_peer) = pair(poller), pair(poller)
    got: list[bytes] = []
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            leader = trio.CancelScope()

            async def lead() -> None:
                with leader:
                    await read_exactly(poller, a, 1)

            async def follow() -> None:
                got.append(await read_exactly(poller, b, 1))

            nursery.start_soon(lead)
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(follow)
            await trio.testing.wait_all_tasks_blocked()
            leader.cancel()
            await trio.testing.wait_all_tasks_blocked()
            b_peer.send(b"y")
    assert got == [b"y"]
    assert leader.cancelled_caught
    a_peer.send(b"z")  # the readiness of the cancelled reader's socket is kept
    with trio.fail_after(10):
        assert await read_exactly(poller, a, 1) == b"z"
    for s in (a, a_peer, b, b_peer):
        s.close()


@pytest.mark.parametrize("who", ["leader", "parked"])
async def test_forget_wakes_the_waiter_with_closed_resource_error(who: str) -> None:
    poller = EpollPoller()
    (a, a_peer), (b, b_peer) = pair(poller), pair(poller)
    results: dict[str, object] = {}

    async def wait(name: str, sock: socket.socket) -> None:
        try:
            results[name] = await read_exactly(poller, sock, 1)
        except trio.ClosedResourceError:
            results[name] = "closed"

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait, "a", a)  # the first waiter leads
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(wait, "b", b)  # the second one parks
            await trio.testing.wait_all_tasks_blocked()
            gone, other = (a, b_peer) if who == "leader" else (b, a_peer)
            poller.forget(gone.fileno())
            await trio.testing.wait_all_tasks_blocked()
            other.send(b"y")  # the other waiter is still served
    assert results == (
        {"a": "closed", "b": b"y"} if who == "leader" else {"a": b"y", "b": "closed"}
    )
    a.close()
    with pytest.raises(trio.ClosedResourceError, match="closed"):
        await poller.wait_ready(a)
    for s in (a_peer, b, b_peer):
        s.close()


@pytest.mark.parametrize("end", ["shutdown", "close"])
@pytest.mark.parametrize("who", ["leader", "parked"])
async def test_a_peer_gone_with_its_last_data_leaves_the_socket_ready(who: str, end: str) -> None:
    """The last data and the end come in one edge: the short read that takes
    the data does not see the end, so from then on every wait returns at once
    and the read after it finds the EOF (an edge-triggered wait would never wake)."""
    poller = EpollPoller()
    (a, a_peer), (b, b_peer) = pair(poller), pair(poller)
    ours, theirs = (a, a_peer) if who == "leader" else (b, b_peer)
    got: list[bytes] = []
    ended: list[socket.socket] = []

    async def read_to_the_end(sock: socket.socket) -> None:
        while True:
            await poller.wait_ready(sock)
            with contextlib.suppress(BlockingIOError):
                while data := sock.recv(65536):
                    got.append(data)
                    if len(data) < 65536:
                        break  # short: drained, as far as the edge tells
                else:
                    ended.append(sock)  # the EOF
                    return

    with a, a_peer, b, b_peer, trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(read_to_the_end, a)  # the first waiter leads
            await trio.testing.wait_all_tasks_blocked()
            nursery.start_soon(read_to_the_end, b)  # the second one parks
            await trio.testing.wait_all_tasks_blocked()
            theirs.send(b"last")
            if end == "shutdown":
                theirs.shutdown(socket.SHUT_WR)
            else:
                theirs.close()
            await trio.testing.wait_all_tasks_blocked()
            assert (got, ended) == ([b"last"], [ours])
            await poller.wait_ready(ours)  # gone: ready for good
            (a_peer if who == "parked" else b_peer).close()  # the other reader ends too
        assert sorted(ended, key=id) == sorted([a, b], key=id)
        poller.forget(ours.fileno())


async def test_a_wait_cancelled_before_it_starts_keeps_the_readiness() -> None:
    poller = EpollPoller()
    ours, theirs = pair(poller)  # just registered: counts as ready once
    with trio.CancelScope() as scope:
        scope.cancel()
        await poller.wait_ready(ours)
    assert scope.cancelled_caught
    with trio.fail_after(10):
        await poller.wait_ready(ours)  # still ready: returns at once
    ours.close()
    theirs.close()


async def test_deferred_writes_run_when_the_batch_is_done() -> None:
    poller = current_poller()
    assert poller is not None
    done: list[int] = []
    poller.defer(lambda: done.append(1))
    poller.defer(lambda: done.append(2))
    assert done == []  # this task's turn is not over
    await trio.lowlevel.checkpoint()  # trio runs the poller before it waits for I/O
    assert done == [1, 2]


async def test_sixteen_deferred_writes_run_at_once() -> None:
    poller = EpollPoller()  # not an instrument of this run: only the bound flushes
    done: list[int] = []
    for i in range(15):
        poller.defer(lambda i=i: done.append(i))
    assert done == []
    poller.defer(lambda: done.append(15))
    assert done == list(range(16))
    poller.flush()  # nothing left: nothing runs twice
    assert done == list(range(16))


def until_it_would_block(op: Callable[[], object]) -> None:
    with contextlib.suppress(BlockingIOError):
        while True:
            op()


async def test_a_waiter_wakes_when_its_full_socket_has_room() -> None:
    """What lets a reader finish a write a flush left: room is a wake-up too."""
    poller = EpollPoller()
    ours, theirs = pair(poller)
    ours.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    await poller.wait_ready(ours)  # the readiness of registering
    until_it_would_block(lambda: ours.send(b"x" * 4096))
    woke = trio.Event()

    async def wait_for_room() -> None:
        await poller.wait_ready(ours)
        woke.set()

    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(wait_for_room)
            await trio.testing.wait_all_tasks_blocked()
            assert not woke.is_set()
            theirs.setblocking(False)
            until_it_would_block(lambda: theirs.recv(65536))
            await woke.wait()
    ours.close()
    theirs.close()


def test_the_runs_poller_closes_its_epoll_set_when_the_run_ends() -> None:
    async def main() -> EpollPoller | None:
        return current_poller()

    poller = trio.run(main)
    assert poller is not None
    assert poller._epoll.closed
