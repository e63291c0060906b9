"""What every ``telcoflow-trio`` command needs around its trio run."""

from __future__ import annotations

import logging
import signal
import ssl
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import trio

__all__ = ["command_status", "run_command", "warnings_to_stderr"]

T = TypeVar("T")


def run_command(prog: str, async_fn: Callable[[], Awaitable[T]]) -> T:
    """``trio.run(async_fn)`` for the command ``prog``, stopped cleanly by Ctrl+C.

    Left to trio, SIGINT raises ``KeyboardInterrupt`` wherever the program happens
    to be, usually inside a nursery, so it comes out wrapped in nested exception
    groups (a traceback, not the command's ``except KeyboardInterrupt``), and it
    can break off code halfway. Here the first SIGINT cancels the run instead:
    everything closes as on any cancellation, without the warnings that closing
    connections cause, then a bare ``KeyboardInterrupt`` is raised. A second
    Ctrl+C stops waiting for that shutdown. Meanwhile the library's warnings
    print on stderr (:func:`warnings_to_stderr`).

    Raises:
        KeyboardInterrupt: Ctrl+C (also when the result was ready just then).
    """
    with warnings_to_stderr(prog) as handler:
        try:
            return trio.run(_cancelled_by_sigint, async_fn, handler)
        except BaseExceptionGroup as group:
            # A SIGINT before the watcher was listening, or the second Ctrl+C.
            if group.subgroup(KeyboardInterrupt) is None:
                raise
            raise KeyboardInterrupt from None


def command_status(prog: str, async_fn: Callable[[], Awaitable[object]]) -> int:
    """:func:`run_command`, with the usual outcomes as exit statuses and one-line messages.

    0 done; 1 an unreachable server, a refusal, an unreadable file or a bad
    value (``OSError``, ``ValueError``, ``ssl.SSLError``, ``WSSError``); 2 a
    usage error; 130 Ctrl+C.
    """
    from ._cli_secrets import UsageError
    from .exceptions import WSSError

    try:
        run_command(prog, async_fn)
    except KeyboardInterrupt:
        sys.stderr.write(f"{prog}: interrupted\n")
        return 130
    except UsageError as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 2
    except (OSError, ValueError, ssl.SSLError, WSSError) as exc:
        sys.stderr.write(f"{prog}: {exc}\n")
        return 1
    return 0


async def _cancelled_by_sigint(
    async_fn: Callable[[], Awaitable[T]], handler: logging.Handler | None
) -> T:
    work = trio.CancelScope()
    error: BaseException | None = None
    async with trio.open_nursery() as nursery:
        await nursery.start(_cancel_on_sigint, work, handler)
        try:
            with work:
                result = await async_fn()
        except BaseException as exc:
            error = exc  # as the command raised it, not wrapped in this nursery's group
        finally:
            nursery.cancel_scope.cancel()
    if work.cancel_called:
        raise KeyboardInterrupt  # what failed while shutting down was a consequence
    if error is not None:
        raise error
    return result


async def _cancel_on_sigint(
    work: trio.CancelScope,
    handler: logging.Handler | None,
    *,
    task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED,
) -> None:
    with trio.open_signal_receiver(signal.SIGINT) as signals:
        task_status.started()
        async for _ in signals:
            if work.cancel_called:
                raise KeyboardInterrupt  # a second Ctrl+C: do not wait for the shutdown
            if handler is not None:
                handler.setLevel(logging.CRITICAL + 1)
            work.cancel()


@contextmanager
def warnings_to_stderr(prog: str) -> Iterator[logging.Handler | None]:
    """While a command runs, print the library's warnings and errors on stderr.

    The package logger has only a ``NullHandler`` (a library leaves output to the
    application); a command is the application, so it shows them, unless logging
    is configured already (the root logger has a handler: then this yields ``None``).
    """
    if logging.getLogger().handlers:
        yield None
        return
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter(f"{prog}: %(levelname)s: %(message)s"))
    package = logging.getLogger("telcoflow_trio")
    package.addHandler(handler)
    try:
        yield handler
    finally:
        package.removeHandler(handler)
