"""The package logger: silent in an application that has not configured logging."""

from __future__ import annotations

import logging
import subprocess
import sys
import textwrap
from pathlib import Path

import telcoflow_trio

# A client loses its control connection and reconnects (a WARNING from
# telcoflow_trio._control), in a process that never configures logging.
RECONNECT = textwrap.dedent(
    """
    import logging, sys
    import trio, trio.testing
    from telcoflow_trio import TelcoflowClient, TelcoflowClientConfig
    from telcoflow_trio.simulator import open_simulator

    async def main():
        async with open_simulator() as sim:
            config = TelcoflowClientConfig.sandbox(
                sim.api_key, sim.connector_uuid, base_url=sim.base_url
            )
            async with TelcoflowClient(config, open_stream=sim.open_stream) as client:
                await client.wait_connected()
                sim.faults.drop_control()
                with trio.fail_after(30):
                    while client.statistics().reconnects < 1:
                        await trio.sleep(0.1)
        print("reconnects", client.statistics().reconnects)

    assert not logging.getLogger().handlers, "logging must not be configured here"
    trio.run(main, clock=trio.testing.MockClock(autojump_threshold=0))
    """
)


def test_package_logger_has_a_null_handler() -> None:
    handlers = logging.getLogger("telcoflow_trio").handlers
    assert any(isinstance(h, logging.NullHandler) for h in handlers)


def test_library_warnings_print_nothing_without_logging_configured() -> None:
    done = subprocess.run(
        [sys.executable, "-c", RECONNECT],
        cwd=Path(telcoflow_trio.__file__).parents[1],  # this telcoflow_trio, not another
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "reconnects 1"
    assert done.stderr == ""


# The same process as a command line: the command shows the warnings itself.
COMMAND = textwrap.dedent(
    """
    import logging
    from telcoflow_trio._command import warnings_to_stderr

    log = logging.getLogger("telcoflow_trio._control")
    with warnings_to_stderr("telcoflow-trio simulate"):
        log.info("not shown: below WARNING")
        log.warning("shown: %s", "lost")
    log.warning("not shown: after the command")
    """
)


def test_commands_print_the_librarys_warnings_on_stderr() -> None:
    done = subprocess.run(
        [sys.executable, "-c", COMMAND],
        cwd=Path(telcoflow_trio.__file__).parents[1],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr == "telcoflow-trio simulate: WARNING: shown: lost\n"
