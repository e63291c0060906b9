"""``telcoflow-trio run MODULE:ATTR``: run an agent in production.

``ATTR`` is an ``async def on_call(call)`` (the ``INCOMING_CALL`` handler) or a
``def setup(client)`` that registers the handlers on each worker's
:class:`~telcoflow_trio.TelcoflowClient` (see :mod:`._target`).

With ``--workers 1`` (the default) the agent is served in this process; with N
it runs N worker processes, each its own trio run and control connection, kept
going by a supervisor (:mod:`._supervisor`). SIGTERM or SIGINT drains: no new
calls are claimed, live calls go on for up to ``--drain-timeout`` and are then
ended (``client_shutdown``); a second signal ends them at once.

Exit status:

* 0: drained (or stopped before start-up finished);
* 1: a worker failed: the platform unreachable or the credentials rejected, the
  agent's setup failed, a worker failed at start-up several times in a row, or
  did not stop in time;
* 2: a usage error: a bad option, a missing credential, a ``MODULE:ATTR`` that
  does not import or is not a handler or setup function;
* 130: a second signal ended the live calls at once.
"""

from __future__ import annotations

import argparse
import os
import sys
from functools import partial

import trio

from .._cli_secrets import UsageError
from ._options import RunSettings, add_run_arguments, resolve_settings
from ._supervisor import Supervisor, WorkerSlot, launch_process, worker_command
from ._target import load_target
from ._worker import EXIT_INTERRUPTED, STOP_SIGNALS, configure_logging, run_worker

__all__ = ["add_run_arguments", "run_main"]


async def _supervise(settings: RunSettings) -> int:
    environ = dict(os.environ)
    environ.pop("TELCOFLOW_API_KEY_FILE", None)  # the key itself goes in the environment

    async def launch(slot: WorkerSlot) -> int:
        return await launch_process(
            slot,
            command=worker_command(settings.target),
            environ={**environ, **settings.worker_environ(slot.index)},
        )

    supervisor = Supervisor(launch, settings.workers, drain_timeout=settings.drain_timeout)
    with trio.open_signal_receiver(*STOP_SIGNALS) as signals:
        return await supervisor.run(signals)


def run_main(args: argparse.Namespace) -> int:
    """``telcoflow-trio run``: returns the exit status (see the module docstring)."""
    try:
        settings = resolve_settings(vars(args), os.environ)
        install = load_target(settings.target)
    except UsageError as exc:
        sys.stderr.write(f"telcoflow-trio run: {exc}\n")
        return 2
    try:
        if settings.workers == 1:
            configure_logging(settings.log_level, "worker-0")
            return run_worker(settings, install)
        configure_logging(settings.log_level, "supervisor")
        return trio.run(partial(_supervise, settings))
    except KeyboardInterrupt:  # before the signals were taken over
        return EXIT_INTERRUPTED
