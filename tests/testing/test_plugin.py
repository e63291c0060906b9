"""The pytest plugin: its fixtures under pytest-trio (this suite) and, in inner
pytest runs, under anyio's plugin on the trio backend and pytest-trio's strict mode."""

from __future__ import annotations

from collections.abc import Callable
from contextlib import AbstractAsyncContextManager

import pytest
import trio
import trio.testing

from telcoflow_trio import ActiveCall
from telcoflow_trio.simulator import Simulator, SimulatorConfig
from telcoflow_trio.testing import AgentHarness, CallerScript, open_agent_test

pytest_plugins = ["pytester"]


@pytest.fixture
def telcoflow_simulator_config() -> SimulatorConfig:
    """Overridden for this module: every command takes 0.1 s."""
    return SimulatorConfig(command_latency=0.1)


async def answer_and_hold(call: ActiveCall) -> None:
    await call.answer()
    await trio.sleep(1)


async def test_agent_factory_fixture(
    telcoflow_agent: Callable[..., AbstractAsyncContextManager[AgentHarness]],
    autojump_clock: trio.testing.MockClock,
) -> None:
    async with telcoflow_agent(answer_and_hold, sample_rate=8000) as agent:
        report = await agent.place_call()
    report.assert_commands("call.answer", "call.close")
    assert [c.latency for c in report.result.commands] == pytest.approx([0.1, 0.1])
    assert report.sample_rate == 8000


async def test_simulator_fixture(
    telcoflow_simulator: Simulator, autojump_clock: trio.testing.MockClock
) -> None:
    assert telcoflow_simulator.config.command_latency == 0.1
    async with open_agent_test(answer_and_hold, simulator=telcoflow_simulator) as agent:
        report = await agent.place_call(CallerScript(hangup_after=0.5))
    report.assert_ended_by("caller_hangup")
    assert telcoflow_simulator.results()[-1].call_id == report.call_id


ANYIO_TESTS = """
import pytest
import trio
import trio.testing

from telcoflow_trio.testing import CallerScript, open_agent_test

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend():
    return "trio", {"clock": trio.testing.MockClock(autojump_threshold=0)}


async def answer(call):
    await call.answer()
    await trio.sleep(60)


async def test_agent_factory(telcoflow_agent):
    async with telcoflow_agent(answer) as agent:
        report = await agent.place_call()
    report.assert_commands("call.answer", "call.close")
    assert trio.current_time() >= 60  # virtual time


async def test_simulator_fixture(telcoflow_simulator):
    async with open_agent_test(answer, simulator=telcoflow_simulator) as agent:
        report = await agent.place_call(CallerScript(hangup_after=1))
    report.assert_ended_by("caller_hangup")
"""

STRICT_TRIO_TESTS = """
import pytest
import trio

from telcoflow_trio.testing import open_agent_test


async def answer(call):
    await call.answer()


@pytest.mark.trio
async def test_agent_factory(telcoflow_agent, autojump_clock):
    async with telcoflow_agent(answer) as agent:
        report = await agent.place_call()
    report.assert_commands("call.answer", "call.close")


@pytest.mark.trio
async def test_simulator_fixture(telcoflow_simulator, autojump_clock):
    async with open_agent_test(answer, simulator=telcoflow_simulator) as agent:
        await agent.place_call()
"""

UNRELATED_TESTS = """
import asyncio

import pytest


def test_sync():
    assert True


@pytest.mark.anyio
@pytest.mark.parametrize("anyio_backend", ["asyncio"])
async def test_asyncio(anyio_backend):
    await asyncio.sleep(0)
"""

FAILING_TEST = """
import pytest

from telcoflow_trio.testing import CallerScript


async def silent(call):
    await call.answer()


@pytest.mark.trio
async def test_fails(telcoflow_agent, autojump_clock):
    async with telcoflow_agent(silent) as agent:
        report = await agent.place_call(CallerScript(hangup_after=2))
        report.assert_agent_audio(min_seconds=1)
"""


def run_inner(pytester: pytest.Pytester, source: str, *args: str) -> pytest.RunResult:
    pytester.makeini("[pytest]\nfilterwarnings = error\n")
    pytester.makepyfile(source)
    return pytester.runpytest_inprocess("-p", "no:cacheprovider", *args)


def test_with_anyio_on_trio(pytester: pytest.Pytester) -> None:
    run_inner(pytester, ANYIO_TESTS).assert_outcomes(passed=2)


def test_with_pytest_trio_strict_mode(pytester: pytest.Pytester) -> None:
    run_inner(pytester, STRICT_TRIO_TESTS).assert_outcomes(passed=2)


def test_runs_that_do_not_use_it_are_untouched(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, UNRELATED_TESTS, "-p", "no:trio")
    result.assert_outcomes(passed=2)
    assert "telcoflow calls" not in result.stdout.str()


def test_a_failing_test_reports_its_calls(pytester: pytest.Pytester) -> None:
    result = run_inner(pytester, FAILING_TEST)
    result.assert_outcomes(failed=1)
    result.stdout.fnmatch_lines(["*the agent sent 0.000 s of audio, expected >= 1*"])
    section = result.stdout.str().split(" telcoflow calls ")[1]
    assert "commands=['call.answer', 'call.close']" in section
    assert "ended_by='agent_close'" in section
