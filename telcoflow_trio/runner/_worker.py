"""One worker: a :class:`~telcoflow_trio.TelcoflowClient` that serves calls until it is drained.

The first signal (SIGTERM or SIGINT) drains: the control connection is closed, so
no new call is claimed (other workers take them), and the live calls go on for up
to the drain timeout; the ones still live then are ended (``client_shutdown``:
the handler is cancelled and the call closed). A second signal ends them at once.

:func:`serve_worker` is the whole life of a worker, whether the ``run`` command
runs it in its own process (``--workers 1``) or a supervised child does
(:func:`child_main`, started by :mod:`~telcoflow_trio.runner._supervisor`).
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import sys
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from contextlib import contextmanager
from functools import partial
from typing import Final

import trio

from .._client import TelcoflowClient, _leaves
from .._logging import CallIdFilter
from ..exceptions import WSSAuthenticationError, WSSError
from ..metrics import serve_metrics
from ..ws._streams import StreamOpener
from ..ws._transport import redact_url
from ._options import RunSettings, resolve_settings
from ._target import Install, SetupError, load_target

__all__ = [
    "EXIT_FAILED",
    "EXIT_FATAL",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "child_main",
    "configure_logging",
    "run_worker",
    "serve_worker",
]

logger = logging.getLogger("telcoflow_trio.runner")

EXIT_OK: Final = 0
#: The worker failed in a way a restart may mend (the platform was unreachable).
EXIT_FAILED: Final = 1
#: Restarting cannot help: credentials rejected, the agent's setup failed (children only).
EXIT_FATAL: Final = 3
#: A second signal ended the live calls at once.
EXIT_INTERRUPTED: Final = 130

STOP_SIGNALS: Final = (signal.SIGTERM, signal.SIGINT)
#: What a child writes on its status socket once it is serving.
READY_LINE: Final = b"ready\n"


def configure_logging(level: str, tag: str) -> None:
    """Log to standard error, each line tagged with the process's role and the call's id."""
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CallIdFilter())
    handler.setFormatter(
        logging.Formatter(
            f"%(asctime)s {tag} %(levelname)s %(name)s [call %(call_id)s]: %(message)s"
        )
    )
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(level)


@contextmanager
def _lone_errors() -> Iterator[None]:
    """Raise a nursery's only exception (apart from cancellations) as itself."""
    try:
        yield
    except BaseExceptionGroup as group:
        rest = group.split(trio.Cancelled)[1]
        leaves = _leaves(rest) if rest is not None else []
        if len(leaves) == 1:
            raise leaves[0] from group
        raise


async def serve_worker(
    settings: RunSettings,
    install: Install,
    signals: AsyncIterator[int],
    *,
    index: int = 0,
    on_ready: Callable[[TelcoflowClient], None] = lambda client: None,
    open_stream: StreamOpener | None = None,
) -> int:
    """Connect, set the client up with ``install``, serve until ``signals`` says stop; drain.

    ``on_ready`` is called once the client is connected and set up.

    Returns:
        :data:`EXIT_OK` once drained (or stopped before it was ready), or
        :data:`EXIT_INTERRUPTED` after a second signal.

    Raises:
        WSSAuthenticationError: the platform rejected the credentials.
        WSSConnectionError: the platform could not be reached, or reconnecting gave up.
        SetupError: the agent's setup function failed.
        OSError: the metrics port cannot be bound.
    """
    status = EXIT_OK
    ready = False
    drain = trio.Event()
    stop = trio.CancelScope()

    async def watch_signals() -> None:
        nonlocal status
        count = 0
        async for signum in signals:
            count += 1
            name = signal.Signals(signum).name
            if count == 1 and ready:
                logger.info("worker %d: %s: draining", index, name)
                drain.set()
                continue
            if ready:
                status = EXIT_INTERRUPTED
                logger.warning("worker %d: second signal (%s): ending the calls now", index, name)
            else:
                logger.info("worker %d: %s before start-up finished: stopping", index, name)
            stop.cancel()
            return

    def became_ready(client: TelcoflowClient) -> None:
        nonlocal ready
        ready = True
        on_ready(client)

    with _lone_errors():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_signals)
            with stop:
                async with TelcoflowClient(settings.client_config(), open_stream=open_stream) as c:
                    install(c)
                    await _serve(c, settings, drain, index=index, on_ready=became_ready)
            logger.info("worker %d: stopped", index)
            nursery.cancel_scope.cancel()
    return status


async def _serve(
    client: TelcoflowClient,
    settings: RunSettings,
    drain: trio.Event,
    *,
    index: int,
    on_ready: Callable[[TelcoflowClient], None],
) -> None:
    serving_done = trio.Event()
    failure: WSSError | None = None

    async def serve() -> None:
        nonlocal failure
        try:
            await client.run_forever()  # returns after disconnect() once no call is live
        except WSSError as exc:
            failure = exc
        finally:
            serving_done.set()
            drain.set()

    async with trio.open_nursery() as nursery:
        metrics = ""
        port = settings.metrics_port_of(index)
        if port is not None:
            port = await nursery.start(serve_metrics, client, settings.metrics_host, port)
            metrics = f", metrics on http://{settings.metrics_host}:{port}/metrics"
        nursery.start_soon(serve)
        logger.info(
            "worker %d ready: pid %d, serving %s%s",
            index,
            os.getpid(),
            redact_url(settings.server),
            metrics,
        )
        on_ready(client)
        await drain.wait()
        if not serving_done.is_set():
            live = client.statistics().calls_active
            logger.info(
                "worker %d: taking no new calls; %d live call(s) may go on for up to %g s",
                index,
                live,
                settings.drain_timeout,
            )
            await client.disconnect()
            with trio.move_on_after(settings.drain_timeout):
                await serving_done.wait()
            live = client.statistics().calls_active
            if live:
                logger.warning(
                    "worker %d: drain timeout: ending %d live call(s) (client_shutdown)",
                    index,
                    live,
                )
            else:
                logger.info("worker %d: drained: no live calls", index)
        nursery.cancel_scope.cancel()
    if failure is not None:
        raise failure


def _failure_status(exc: BaseException, index: int) -> int:
    """Log why the worker failed, in one line; its exit status."""
    if isinstance(exc, WSSAuthenticationError):
        logger.error("worker %d: the platform rejected the credentials: %s", index, exc)
        return EXIT_FATAL
    if isinstance(exc, SetupError):
        logger.error("worker %d: %s", index, exc)
        return EXIT_FATAL
    logger.error("worker %d failed: %s", index, exc)
    return EXIT_FAILED


async def _run_in_process(settings: RunSettings, install: Install) -> int:
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        return await serve_worker(settings, install, signals)


def run_worker(settings: RunSettings, install: Install) -> int:
    """``run --workers 1``: serve in this process. Returns the exit status (0, 1 or 130)."""
    try:
        return trio.run(_run_in_process, settings, install)
    except (WSSError, SetupError, OSError) as exc:
        _failure_status(exc, 0)
        return EXIT_FAILED  # EXIT_FATAL only tells a supervisor not to restart


async def _run_child(
    settings: RunSettings, install: Install, index: int, status: socket.socket
) -> int:
    """A supervised worker: signals from the supervisor, and its end of the status socket.

    The supervisor's end closing (it died) drains the worker like a SIGTERM.
    """
    send, receive = trio.open_memory_channel[int](len(STOP_SIGNALS) * 2)
    status_socket = trio.socket.from_stdlib_socket(status)

    def stop_request(signum: int) -> None:
        with contextlib.suppress(trio.WouldBlock):  # two are all serve_worker reads
            send.send_nowait(signum)

    async def forward(signals: AsyncIterator[int]) -> None:
        async for signum in signals:
            stop_request(signum)

    async def watch_parent() -> None:
        while await status_socket.recv(64):
            pass
        logger.warning("worker %d: the supervisor is gone: draining", index)
        stop_request(signal.SIGTERM)

    def ready(client: TelcoflowClient) -> None:
        # A few bytes into an empty socket buffer: never blocks. If the supervisor
        # is gone, watch_parent is draining the worker already.
        with contextlib.suppress(OSError):
            status.send(READY_LINE)

    with trio.open_signal_receiver(*STOP_SIGNALS) as signals, _lone_errors():
        async with trio.open_nursery() as nursery:
            nursery.start_soon(forward, signals)
            nursery.start_soon(watch_parent)
            code = await serve_worker(settings, install, receive, index=index, on_ready=ready)
            nursery.cancel_scope.cancel()
    return code


def child_main(argv: Sequence[str]) -> int:
    """``python -m telcoflow_trio.runner MODULE:ATTR INDEX FD``: one supervised worker.

    Settings come from the environment (see :meth:`RunSettings.worker_environ`);
    ``FD`` is the worker's end of its status socket.
    """
    if len(argv) != 3 or not argv[1].isdigit() or not argv[2].isdigit():
        sys.stderr.write(
            "python -m telcoflow_trio.runner is the worker of `telcoflow-trio run`; "
            "use that command\n"
        )
        return 2
    target, index, fd = argv[0], int(argv[1]), int(argv[2])
    try:
        status = socket.socket(fileno=fd)
    except OSError as exc:
        sys.stderr.write(f"python -m telcoflow_trio.runner: no status socket {fd}: {exc}\n")
        return 2
    status.set_inheritable(False)
    try:
        settings = resolve_settings({"target": target}, os.environ)
        configure_logging(settings.log_level, f"worker-{index}")
        install = load_target(target)
        return trio.run(partial(_run_child, settings, install, index, status))
    except (WSSError, SetupError, OSError) as exc:
        return _failure_status(exc, index)
    except Exception as exc:  # the supervisor checked these; only a changed file gets here
        logger.error("worker %d could not start: %s", index, exc)
        return EXIT_FATAL
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        status.close()
