"""Batched I/O for many sockets: readiness from one epoll set, writes at the end of trio's batch.

Why: trio's epoll backend registers a file descriptor one-shot, so every
``trio.lowlevel.wait_readable`` costs an ``epoll_ctl`` system call and trio's
per-descriptor bookkeeping, and nothing is shared between sockets. A relay of
hundreds of calls waits once per message per leg. Here each socket is
registered once, edge-triggered, in an epoll set of our own; trio watches only
that set's descriptor. Whoever waits first becomes the *leader*: it waits for
the set in trio, then reads every ready descriptor in one ``epoll_wait`` and
wakes their tasks; the others park until woken or handed the lead. No task is
spawned: the waiters take turns.

Writes: a ``send`` that wakes a peer process sleeping on another core costs
about twice one that reaches a peer already awake (on loopback, 14 µs against
7 µs: benchmarks/send_wakeup.py). So a connection may :meth:`EpollPoller.defer` its small writes;
the poller, which is also an instrument of the run, does them back to back
when trio's batch of tasks is done (before trio waits for I/O), or as soon as
16 sockets have some. The peer is woken once for the lot, and a write waits
at most one batch.

Contract (what :class:`~telcoflow_trio.ws._connection.LeanWebSocket` keeps): one
waiter per descriptor; after a wake-up, read until the socket would block (or
got less than asked) before waiting again, as edge triggering requires; a
wake-up may also mean the socket has room again after a deferred write found
it full, so the waiter finishes that write; :meth:`EpollPoller.forget` before
closing the descriptor. Linux only: :func:`current_poller` returns ``None``
elsewhere and callers use trio's own ``wait_readable`` and write at once.

The end of the stream: a peer's FIN or reset often comes with its last data,
in the same edge, and shows only on the read after the short one, which the
contract above would never make. So once epoll reports the peer gone
(``EPOLLRDHUP``, ``EPOLLHUP`` or ``EPOLLERR``) the descriptor stays ready:
every wait returns at once until :meth:`EpollPoller.forget`, and the waiter
reads on to the EOF or the error, where it stops. Such a read never blocks,
so this costs one bit test per event before the end and cannot spin after it.
"""

from __future__ import annotations

import contextlib
import select
import socket
from collections.abc import Callable
from typing import Final

import outcome
import trio

__all__ = ["EpollPoller", "current_poller"]

_EVENTS: Final = (  # data, room after a full send buffer (see defer), the peer's FIN
    getattr(select, "EPOLLIN", 0)
    | getattr(select, "EPOLLOUT", 0)
    | getattr(select, "EPOLLRDHUP", 0)
)
#: The peer is gone (FIN, reset, or an error): reads no longer block.
_GONE: Final = (
    getattr(select, "EPOLLRDHUP", 0)
    | getattr(select, "EPOLLHUP", 0)
    | getattr(select, "EPOLLERR", 0)
)
_LEAD: Final = "lead"
#: Deferred writes on this many sockets go out at once instead of at the end of
#: trio's batch of tasks: bounds the delay a deferral adds.
_FLUSH_AT: Final = 16


class EpollPoller(trio.abc.Instrument):
    """One per trio run (see :func:`current_poller`); an instrument of that run."""

    __slots__ = ("_deferred", "_epoll", "_gone", "_lead_fd", "_lead_scope", "_parked", "_ready")

    def __init__(self) -> None:
        self._epoll = select.epoll()
        self._parked: dict[int, trio.lowlevel.Task] = {}  # fd -> its parked waiter
        self._ready: set[int] = set()  # edges seen while nobody waited
        self._gone: set[int] = set()  # peer gone: ready for good (see the module docstring)
        self._lead_fd: int | None = None  # the leader's own descriptor, if any leads
        self._lead_scope: trio.CancelScope | None = None
        self._deferred: list[Callable[[], None]] = []

    def defer(self, push: Callable[[], None]) -> None:
        """Call ``push`` (a non-blocking write) before trio next waits for I/O."""
        self._deferred.append(push)
        if len(self._deferred) >= _FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        """Do the deferred writes now (each push must not raise)."""
        pushes, self._deferred = self._deferred, []
        for push in pushes:
            push()

    def before_io_wait(self, timeout: float) -> None:
        """Trio's batch of tasks is done: write what they deferred before waiting."""
        if self._deferred:
            self.flush()

    def after_run(self) -> None:
        """The run is over: close the epoll set."""
        self._epoll.close()

    def register(self, fd: int) -> None:
        """Watch ``fd`` from now on (counts as ready once: it may hold data already)."""
        self._epoll.register(fd, _EVENTS | select.EPOLLET)
        self._ready.add(fd)
        self._gone.discard(fd)  # a number reused after a close without forget()

    def forget(self, fd: int) -> None:
        """Stop watching ``fd``; its waiter, if any, gets ``trio.ClosedResourceError``."""
        self._ready.discard(fd)
        self._gone.discard(fd)
        with contextlib.suppress(OSError, ValueError):  # closed already, or never registered
            self._epoll.unregister(fd)
        task = self._parked.pop(fd, None)
        if task is not None:
            trio.lowlevel.reschedule(task, outcome.Error(trio.ClosedResourceError()))
        elif fd == self._lead_fd and self._lead_scope is not None:
            self._lead_scope.cancel()  # the leader sees its descriptor gone

    async def wait_ready(self, sock: socket.socket) -> None:
        """Wait until ``sock`` (registered) has new data, or room again after a full send buffer.

        Once epoll has reported the peer gone, returns at once (read on to the EOF).

        Raises:
            trio.ClosedResourceError: ``sock`` is closed, or :meth:`forget` was
                called for it while waiting.
            trio.Cancelled: as any trio wait; a readiness seen is never lost.
        """
        while True:
            fd = sock.fileno()
            if fd < 0:
                raise trio.ClosedResourceError("the socket was closed")
            if fd in self._ready:
                await trio.lowlevel.checkpoint_if_cancelled()
                if fd not in self._gone:
                    self._ready.discard(fd)
                await trio.lowlevel.cancel_shielded_checkpoint()
                return
            if self._lead_fd is None:
                if await self._lead(fd):
                    return
                continue
            self._parked[fd] = task = trio.lowlevel.current_task()

            def abort(
                _: trio.lowlevel.RaiseCancelT, fd: int = fd, task: trio.lowlevel.Task = task
            ) -> trio.lowlevel.Abort:
                if self._parked.get(fd) is task:
                    del self._parked[fd]
                return trio.lowlevel.Abort.SUCCEEDED

            if await trio.lowlevel.wait_task_rescheduled(abort) is not _LEAD:
                return

    async def _lead(self, fd: int) -> bool:
        """Wait for the set in trio, wake every ready waiter; whether ``fd`` was ready."""
        self._lead_fd = fd
        scope = self._lead_scope = trio.CancelScope()
        try:
            with scope:
                await trio.lowlevel.wait_readable(self._epoll.fileno())
        except BaseException:
            self._lead_fd = self._lead_scope = None
            self._pass_the_lead()
            raise
        self._lead_fd = self._lead_scope = None
        if scope.cancelled_caught:  # forget(fd)
            self._pass_the_lead()
            raise trio.ClosedResourceError("the socket was closed while waiting")
        mine = False
        for ready_fd, events in self._epoll.poll(0):
            if events & _GONE:
                self._gone.add(ready_fd)
                self._ready.add(ready_fd)  # for every wait from now on
            if ready_fd == fd:
                mine = True
                continue
            task = self._parked.pop(ready_fd, None)
            if task is not None:
                trio.lowlevel.reschedule(task)
            else:
                self._ready.add(ready_fd)
        if mine:
            self._pass_the_lead()
        return mine

    def _pass_the_lead(self) -> None:
        """Hand the lead to a parked waiter (it leads on waking), if there is one."""
        if self._lead_fd is None and self._parked:
            fd = next(iter(self._parked))
            trio.lowlevel.reschedule(self._parked.pop(fd), outcome.Value(_LEAD))


_POLLER: trio.lowlevel.RunVar[EpollPoller | None] = trio.lowlevel.RunVar("telcoflow_poller")


def current_poller() -> EpollPoller | None:
    """This trio run's poller (made on first use); ``None`` without epoll."""
    try:
        return _POLLER.get()
    except LookupError:
        poller = EpollPoller() if hasattr(select, "epoll") else None
        _POLLER.set(poller)
        if poller is not None:
            trio.lowlevel.add_instrument(poller)
        return poller
