"""Log records of a call carry its id (CallIdFilter, current_call_id)."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest
import trio
import trio.testing

from telcoflow_trio import ActiveCall, CallIdFilter, current_call_id, events
from telcoflow_trio.simulator import CallerScript

from .conftest import open_pair

agent_log = logging.getLogger("agent.under.test")


class Keep(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []
        self.addFilter(CallIdFilter())

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def kept() -> Iterator[Keep]:
    keep = Keep()
    loggers = [logging.getLogger("telcoflow_trio"), agent_log]
    levels = [lg.level for lg in loggers]
    for lg in loggers:
        lg.addHandler(keep)
        lg.setLevel(logging.DEBUG)
    try:
        yield keep
    finally:
        for lg, level in zip(loggers, levels, strict=True):
            lg.removeHandler(keep)
            lg.setLevel(level)


async def test_records_of_a_call_carry_its_id(
    autojump_clock: trio.testing.MockClock, kept: Keep
) -> None:
    seen: dict[str, str | None] = {}

    async def handler(call: ActiveCall) -> None:
        seen[call.call_id] = current_call_id()

        @call.on(events.CALL_TERMINATED)
        def ended() -> None:  # runs in the call's event dispatcher task
            agent_log.info("ended")

        agent_log.info("hello")
        await call.answer()
        await call.wait_terminated()

    async with open_pair(handler=handler) as (sim, _client, _):
        calls = [await sim.place_call(CallerScript(hangup_after=1)) for _ in range(2)]
        for call in calls:
            await call.wait_result()
        await trio.sleep(0.1)
        assert current_call_id() is None
    ids = {call.call_id for call in calls}
    assert seen == {i: i for i in ids}
    by_message: dict[str, set[str]] = {}
    for record in kept.records:
        by_message.setdefault(record.getMessage().split(" ")[0], set()).add(record.call_id)
    assert by_message["hello"] == ids
    assert by_message["ended"] == ids
    media = [r for r in kept.records if "media connected" in r.getMessage()]
    assert {r.call_id for r in media} == ids
    for record in kept.records:
        message = record.getMessage()
        mentioned = [i for i in ids if i in message]
        if mentioned:  # every library record about a call carries that call's id
            assert [record.call_id] == mentioned, message
    setup = [r for r in kept.records if "set up (smWsId" in r.getMessage()]
    assert setup
    assert {r.call_id for r in setup} == {"-"}


def test_filter_keeps_an_explicit_call_id_and_drops_nothing() -> None:
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    record.call_id = "given"
    assert CallIdFilter().filter(record)
    assert record.call_id == "given"
    other = logging.LogRecord("x", logging.INFO, __file__, 1, "m", None, None)
    assert CallIdFilter(default="none").filter(other)
    assert other.call_id == "none"
