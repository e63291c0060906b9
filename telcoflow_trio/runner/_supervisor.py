"""``run --workers N``: keep N worker processes serving; drain them all on a signal.

:class:`Supervisor` holds the policy and knows nothing of processes: it calls a
:data:`Launch` function per worker and reacts to what it returns, so tests drive
it with trio tasks under ``MockClock``. :func:`launch_process` is the real one.

* A worker that exits before it reported ready failed at start-up; one that
  failed ``start_failures`` times in a row makes the supervisor give up: it
  drains the others and returns 1. A worker that exits after it was ready is
  restarted, with the backoff starting over.
* A worker exiting with :data:`~._worker.EXIT_FATAL` (credentials rejected, the
  agent's setup failed) is not restarted: the supervisor drains the others and
  returns 1.
* The first signal is forwarded to every worker (which drains) and nothing is
  restarted; a second is forwarded too (the workers end their calls at once)
  and the result is 130. A worker still running ``stop_grace`` seconds after
  its drain should have ended is killed (result 1).
"""

from __future__ import annotations

import contextlib
import logging
import random
import signal
import socket
import subprocess
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from typing import Final, Protocol

import attrs
import trio

from ..proto import Backoff, BackoffPolicy
from ._worker import EXIT_FAILED, EXIT_FATAL, EXIT_INTERRUPTED, EXIT_OK, READY_LINE

__all__ = ["Launch", "RestartPolicy", "Supervisor", "WorkerHandle", "WorkerSlot", "launch_process"]

logger = logging.getLogger("telcoflow_trio.runner")


class WorkerHandle(Protocol):
    """A running worker, as far as the supervisor needs it (:class:`trio.Process` is one)."""

    @property
    def pid(self) -> int: ...

    def send_signal(self, sig: int) -> None: ...

    def kill(self) -> None: ...


@attrs.frozen
class RestartPolicy:
    """When to restart a worker and when to give up."""

    #: Delay before each restart; it starts over once a restarted worker is ready.
    backoff: BackoffPolicy = attrs.field(
        factory=lambda: BackoffPolicy(initial=0.25, factor=2.0, max_delay=30.0)
    )
    #: Give up after this many start-up failures of one worker in a row.
    start_failures: int = 3
    #: How long past its drain timeout (or a second signal) a worker may take to exit.
    stop_grace: float = 10.0


@attrs.define(eq=False)
class WorkerSlot:
    """One of the N workers, across its restarts; a :data:`Launch` reports through it."""

    index: int
    _supervisor: Supervisor
    handle: WorkerHandle | None = None
    was_ready: bool = False

    def started(self, handle: WorkerHandle) -> None:
        """The worker's process is running (signals go to ``handle`` from now on)."""
        self.handle = handle
        self.was_ready = False
        self._supervisor._started(self)

    def ready(self) -> None:
        """The worker is connected and serving."""
        if not self.was_ready:
            self.was_ready = True
            self._supervisor._ready(self)


#: Start worker ``slot.index``, call ``slot.started(handle)`` and ``slot.ready()``,
#: return its exit status once it has exited (negative: killed by that signal).
Launch = Callable[[WorkerSlot], Awaitable[int]]

_FIRST_READY: Final = "all %d workers ready"


def describe_status(status: int) -> str:
    if status < 0:
        try:
            return f"signal {signal.Signals(-status).name}"
        except ValueError:
            return f"signal {-status}"
    return f"status {status}"


class Supervisor:
    """Keeps ``workers`` workers going (see the module docstring for the rules).

    Args:
        launch: starts one worker and waits for it to exit.
        workers: how many.
        drain_timeout: the workers' drain timeout (the kill deadline is counted from it).
        policy: restart and give-up numbers.
        random_source: floats in ``[0, 1)`` for the backoff jitter.
    """

    def __init__(
        self,
        launch: Launch,
        workers: int,
        *,
        drain_timeout: float,
        policy: RestartPolicy | None = None,
        random_source: Callable[[], float] = random.random,
    ) -> None:
        self._launch = launch
        self._slots = [WorkerSlot(index, self) for index in range(workers)]
        self._drain_timeout = drain_timeout
        self.policy = policy or RestartPolicy()
        self._random = random_source
        self._stopping = trio.Event()
        self._stop_signal: int = signal.SIGTERM
        self._status = EXIT_OK
        self._ready_once = False
        self._kill_at = trio.Event()  # set when the kill deadline changes
        self._kill_deadline = float("inf")

    async def run(self, signals: AsyncIterator[int]) -> int:
        """Run until every worker has exited; the ``run`` command's exit status."""
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._watch_signals, signals)
            nursery.start_soon(self._kill_late_workers)
            async with trio.open_nursery() as slots:
                for slot in self._slots:
                    slots.start_soon(self._keep, slot)
            nursery.cancel_scope.cancel()
        return self._status

    # -- per worker --------------------------------------------------------------------

    async def _keep(self, slot: WorkerSlot) -> None:
        backoff = Backoff(self.policy.backoff, self._random)
        failures = 0
        while not self._stopping.is_set():
            try:
                status = await self._launch(slot)
            except OSError as exc:  # the process could not be started at all
                logger.error("worker %d could not be started: %s", slot.index, exc)
                status = EXIT_FAILED
            slot.handle = None
            if self._stopping.is_set():
                self._exited_while_stopping(slot, status)
                return
            if status == EXIT_FATAL:
                self._give_up(f"worker {slot.index} cannot start (see above); stopping")
                return
            if slot.was_ready:
                failures = 0
                backoff.reset()
            else:
                failures += 1
                if failures >= self.policy.start_failures:
                    self._give_up(
                        f"worker {slot.index} failed at start-up {failures} times in a row "
                        f"(last: {describe_status(status)}); giving up"
                    )
                    return
            delay = backoff.next_delay(trio.current_time())
            assert delay is not None  # the policy sets no limit; start_failures is the limit
            logger.warning(
                "worker %d exited with %s%s; restarting in %.2f s",
                slot.index,
                describe_status(status),
                "" if slot.was_ready else " during start-up",
                delay,
            )
            with trio.move_on_after(delay):
                await self._stopping.wait()

    def _exited_while_stopping(self, slot: WorkerSlot, status: int) -> None:
        # -signal: it had not taken the signals over yet (still starting), so the
        # signal ended it, as it should.
        if status in (EXIT_OK, EXIT_INTERRUPTED, -self._stop_signal):
            logger.info("worker %d exited (%s)", slot.index, describe_status(status))
            return
        logger.error(
            "worker %d exited with %s while stopping", slot.index, describe_status(status)
        )
        if self._status == EXIT_OK:
            self._status = EXIT_FAILED

    def _started(self, slot: WorkerSlot) -> None:
        if self._stopping.is_set() and slot.handle is not None:
            self._signal(slot.handle, self._stop_signal)

    def _ready(self, slot: WorkerSlot) -> None:
        if not self._ready_once and all(s.was_ready for s in self._slots):
            self._ready_once = True
            logger.info(_FIRST_READY, len(self._slots))

    # -- stopping ----------------------------------------------------------------------

    def _give_up(self, message: str) -> None:
        logger.error(message)
        self._status = EXIT_FAILED
        self._stop(signal.SIGTERM, self._drain_timeout)

    async def _watch_signals(self, signals: AsyncIterator[int]) -> None:
        count = 0
        async for signum in signals:
            count += 1
            name = signal.Signals(signum).name
            if count == 1:
                logger.info("%s: draining %d worker(s)", name, len(self._slots))
                self._stop(signum, self._drain_timeout)
            else:
                logger.warning("second signal (%s): the workers end their calls now", name)
                self._status = EXIT_INTERRUPTED
                self._stop(signum, 0.0)
                return

    def _stop(self, signum: int, drain_time: float) -> None:
        """Signal every running worker; kill those still running after ``drain_time`` + grace."""
        self._stop_signal = signum
        self._stopping.set()
        for slot in self._slots:
            if slot.handle is not None:
                self._signal(slot.handle, signum)
        deadline = trio.current_time() + drain_time + self.policy.stop_grace
        if deadline < self._kill_deadline:
            self._kill_deadline = deadline
            self._kill_at.set()

    def _signal(self, handle: WorkerHandle, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):  # it has just exited
            handle.send_signal(signum)

    async def _kill_late_workers(self) -> None:
        while True:
            self._kill_at = trio.Event()
            with trio.move_on_at(self._kill_deadline):
                await self._kill_at.wait()
                continue
            for slot in self._slots:
                if slot.handle is not None:
                    logger.error(
                        "worker %d (pid %d) did not stop in time: killing it",
                        slot.index,
                        slot.handle.pid,
                    )
                    slot.handle.kill()
                    if self._status == EXIT_OK:
                        self._status = EXIT_FAILED
            self._kill_deadline = float("inf")


async def launch_process(
    slot: WorkerSlot, *, command: Sequence[str], environ: Mapping[str, str]
) -> int:
    """Run ``command + [INDEX, FD]`` as worker ``slot.index``; its exit status.

    The worker gets one end of a socket pair as ``fd``: it writes
    ``READY_LINE`` there once serving, and sees the supervisor die as the
    socket's end. It runs in its own process group, so a Ctrl-C in the terminal
    reaches only the supervisor, which forwards it.
    """
    ours, theirs = socket.socketpair()
    with ours:
        try:
            process = await trio.lowlevel.open_process(
                [*command, str(slot.index), str(theirs.fileno())],
                env=dict(environ),
                pass_fds=(theirs.fileno(),),
                stdin=subprocess.DEVNULL,
                process_group=0,
            )
        finally:
            theirs.close()
        try:
            slot.started(process)
            status = trio.socket.from_stdlib_socket(ours)
            buffered = b""
            while chunk := await status.recv(64):  # until the worker's end closes: it exited
                buffered += chunk
                if READY_LINE in buffered:
                    slot.ready()
                    buffered = b""
            return await process.wait()
        finally:
            if process.returncode is None:  # we are being cancelled: do not leave it behind
                process.kill()
                with trio.CancelScope(shield=True), trio.move_on_after(5):
                    await process.wait()


def worker_command(target: str) -> list[str]:
    """How the supervisor starts a worker serving ``target`` (the index and fd are appended).

    No secret is on it: every user of the machine can read it with ``ps``.
    """
    return [sys.executable, "-m", "telcoflow_trio.runner", target]
