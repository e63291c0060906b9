"""The pytest plugin of telcoflow_trio (entry point ``pytest11``: loaded automatically).

Fixtures, usable from pytest-trio tests and from anyio's pytest plugin on the
trio backend alike:

* ``telcoflow_agent`` (sync): a factory; ``async with telcoflow_agent(handler) as
  agent:`` is :func:`~telcoflow_trio.testing.open_agent_test` with the
  simulator configured by ``telcoflow_simulator_config``. A sync factory works
  under any async test plugin, and the harness is entered and left in the test's
  own task. When the test fails, its report gets a "telcoflow calls" section
  describing every call of every harness it opened.
* ``telcoflow_simulator`` (async): a running in-memory
  :class:`~telcoflow_trio.simulator.Simulator`.
* ``telcoflow_simulator_config`` (sync): the
  :class:`~telcoflow_trio.simulator.SimulatorConfig` both use; override it in
  your ``conftest.py`` or module.

Nothing here runs unless a test asks for one of these fixtures.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Generator
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from typing import Any

import pytest

from ..simulator import Simulator, SimulatorConfig, open_simulator
from ._harness import AgentHarness, Handler, open_agent_test

_HARNESSES = pytest.StashKey[list[AgentHarness]]()

AgentFactory = Callable[..., AbstractAsyncContextManager[AgentHarness]]


@pytest.fixture
def telcoflow_simulator_config() -> SimulatorConfig:
    """The simulator configuration of ``telcoflow_agent`` and ``telcoflow_simulator``."""
    return SimulatorConfig()


@pytest.fixture
async def telcoflow_simulator(
    telcoflow_simulator_config: SimulatorConfig,
) -> AsyncIterator[Simulator]:
    """A simulator running in memory for the test (``sim.open_stream`` reaches it)."""
    async with open_simulator(telcoflow_simulator_config) as sim:
        yield sim


@pytest.fixture
def telcoflow_agent(
    request: pytest.FixtureRequest, telcoflow_simulator_config: SimulatorConfig
) -> AgentFactory:
    """``telcoflow_agent(handler, **options)``: ``open_agent_test`` as an async context manager.

    ``options`` are those of :func:`~telcoflow_trio.testing.open_agent_test`;
    ``simulator`` defaults to ``telcoflow_simulator_config``.
    """
    harnesses = request.node.stash.setdefault(_HARNESSES, [])

    @asynccontextmanager
    async def open_agent(
        handler: Handler | None = None, **options: Any
    ) -> AsyncIterator[AgentHarness]:
        options.setdefault("simulator", telcoflow_simulator_config)
        async with open_agent_test(handler, **options) as harness:
            harnesses.append(harness)
            yield harness

    return open_agent


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    harnesses = item.stash.get(_HARNESSES, None)
    if harnesses and report.failed:
        text = "\n".join(harness.describe() for harness in harnesses)
        report.sections.append(("telcoflow calls", text))
    return report
