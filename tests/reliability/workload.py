"""The agent under test and the bookkeeping behind the per-call invariants.

:class:`Workload` draws, for call ``i`` of a run with seed ``s``, a caller script
and an agent behaviour from ``random.Random(f"{s}/{i}")``: what happens to a call
depends on the seed and its index only. The agent runs every command through
:meth:`Workload.command`, which measures it against its deadline in virtual time
and accepts only the documented exceptions; anything else escapes the handler
and is caught by :meth:`Workload.on_handler_error`. Violations are collected as
text, never raised, so a run reports all of them with its seed.
"""

from __future__ import annotations

import contextlib
import math
import random
from collections.abc import Awaitable, Callable
from typing import Any

import attrs
import trio

from telcoflow_trio import ActiveCall, TelcoflowClientConfig, TerminationInfo, events
from telcoflow_trio.exceptions import BufferClosedError, BufferFullError, WSSCallError
from telcoflow_trio.simulator import CallerScript, noise, tone

#: What commands and audio calls may raise under faults (all documented).
ALLOWED = (WSSCallError, BufferClosedError, BufferFullError)
#: Leeway on deadlines for float rounding (virtual time is exact otherwise).
EPSILON = 1e-6


class AgentFailure(Exception):
    """Raised on purpose by the agent (a handler that fails)."""


@attrs.define(eq=False)
class CallRecord:
    """What one handled call did, for the invariants."""

    index: int
    behaviour: str
    call: ActiveCall
    ended_before_handler: bool
    terminated_events: list[TerminationInfo] = attrs.Factory(list)
    waited: TerminationInfo | None = None
    handler_done: bool = False
    commands: list[tuple[str, float, float, str]] = attrs.Factory(list)


BEHAVIOURS = (
    "return_at_once",
    "answer_hold",
    "echo",
    "slow_reader",
    "two_readers",
    "connect",
    "answer_then_connect",
    "disconnect",
    "decline",
    "raise",
    "event_handler_raises",
    "never_answer",
    "writer",
    "interrupter",
)


def caller_number(index: int) -> str:
    return f"+1555{index:07d}"


def call_index(call: ActiveCall) -> int:
    return int(call.caller_number[5:])


class Workload:
    """Per-call plans, the agent, and what the invariants need to know."""

    def __init__(
        self, seed: int, config: TelcoflowClientConfig, scan: Callable[[str, str], None]
    ) -> None:
        self.seed = seed
        self.config = config
        self._scan = scan
        self.records: dict[int, CallRecord] = {}
        self.violations: list[str] = []
        self.expected_handler_errors = 0
        self.hook_errors = 0
        self.nursery: trio.Nursery | None = None  # where wait_terminated watchers run
        self.handlers_running = 0

    def violation(self, text: str) -> None:
        self.violations.append(f"t={trio.current_time():.3f} {text}")

    # -- plans -----------------------------------------------------------------------

    def rng(self, index: int) -> random.Random:
        return random.Random(f"{self.seed}/{index}")

    def script(self, index: int) -> CallerScript:
        """The caller of call ``index``: hangs up while ringing, answered, connecting..."""
        r = self.rng(index)
        audio = tone(r.uniform(200, 900)) if r.random() < 0.7 else noise(index)
        callee = None if r.random() < 0.2 else r.uniform(0.2, 2.5)
        kind = r.choice(("at_once", "ringing", "answered", "connecting", "connected", "patient"))
        if kind == "at_once":  # races the claim, call.in and the media connection
            return CallerScript(audio, hangup_before_answer_after=r.choice((0, 0.001, 0.01)))
        if kind == "ringing":
            return CallerScript(audio, hangup_before_answer_after=r.uniform(0, 2.5))
        if kind == "answered":
            return CallerScript(audio, hangup_after=r.uniform(0, 3), callee_answers_after=callee)
        if kind == "connecting":  # hangs up while the callee of call.connect rings
            return CallerScript(
                audio,
                hangup_before_answer_after=r.uniform(0.2, 2.0),
                hangup_after=r.uniform(0, 0.5),
                callee_answers_after=2.5,
            )
        if kind == "connected":
            return CallerScript(audio, hangup_after=r.uniform(0.5, 4), callee_answers_after=0.3)
        return CallerScript(audio, callee_answers_after=callee)  # the agent ends it

    def behaviour(self, index: int) -> str:
        r = self.rng(index)
        r.random()  # the script's draws come first; keep them independent
        return r.choice(BEHAVIOURS)

    # -- measured commands -------------------------------------------------------------

    def deadline(self, ring: int | None = None) -> float:
        """How long a command may wait: the server's deadline plus the grace period."""
        server = float(ring) if ring is not None else self.config.command_timeout
        return server + self.config.command_grace

    async def command(
        self, record: CallRecord, name: str, run: Callable[[], Awaitable[object]], limit: float
    ) -> str:
        """Run one command; record its outcome and virtual duration against ``limit``."""
        started = trio.current_time()
        outcome = "ok"
        try:
            await run()
        except ALLOWED as exc:
            outcome = type(exc).__name__
            self._scan(f"{exc!r} {exc}", f"call {record.index} {name} error")
        finally:
            elapsed = trio.current_time() - started
            record.commands.append((name, elapsed, limit, outcome))
            if elapsed > limit + EPSILON:
                self.violation(
                    f"call {record.index}: {name} waited {elapsed:.3f} s, past its {limit:g} s"
                )
        return outcome

    # -- the agent -----------------------------------------------------------------------

    async def handle(self, call: ActiveCall) -> None:
        """The INCOMING_CALL handler."""
        index = call_index(call)
        behaviour = self.behaviour(index)
        record = CallRecord(index, behaviour, call, ended_before_handler=call.terminated)
        if index in self.records:
            self.violation(f"call {index} was handed to the agent twice")
        self.records[index] = record
        call.on(events.CALL_TERMINATED)(record.terminated_events.append)
        self._scan(repr(call), f"call {index} repr")
        assert self.nursery is not None
        self.nursery.start_soon(self._watch, record)
        self.handlers_running += 1
        try:
            await getattr(self, f"_agent_{behaviour}")(record, self.rng(index + 1_000_000))
        finally:
            record.handler_done = True
            self.handlers_running -= 1

    async def _watch(self, record: CallRecord) -> None:
        record.waited = await record.call.wait_terminated()

    def on_handler_error(self, call: ActiveCall, exc: BaseException) -> None:
        self.hook_errors += 1
        self._scan(f"{exc!r} {exc}", "handler error")
        if not isinstance(exc, AgentFailure):
            self.violation(f"call {call_index(call)}: an undocumented exception escaped: {exc!r}")

    def _fail(self) -> None:
        self.expected_handler_errors += 1
        raise AgentFailure("the agent fails on purpose")

    async def _answer(self, record: CallRecord) -> str:
        return await self.command(record, "answer", record.call.answer, self.deadline())

    async def _agent_return_at_once(self, record: CallRecord, r: random.Random) -> None:
        await trio.lowlevel.checkpoint()

    async def _agent_answer_hold(self, record: CallRecord, r: random.Random) -> None:
        await self._answer(record)
        await trio.sleep(r.uniform(0.5, 4))

    async def _echo(self, record: CallRecord, seconds: float) -> None:
        call = record.call
        with trio.move_on_after(seconds), contextlib.suppress(BufferClosedError):
            async for chunk in call.audio_stream():
                with contextlib.suppress(BufferFullError):
                    call.send_audio(chunk)

    async def _agent_echo(self, record: CallRecord, r: random.Random) -> None:
        await self._answer(record)
        await self._echo(record, r.uniform(1, 5))

    async def _agent_slow_reader(self, record: CallRecord, r: random.Random) -> None:
        await self._answer(record)
        with trio.move_on_after(r.uniform(2, 6)):
            async for _ in record.call.audio_stream():
                await trio.sleep(1.0)  # ten times slower than the caller talks

    async def _agent_two_readers(self, record: CallRecord, r: random.Random) -> None:
        await self._answer(record)
        idle_reader = record.call.audio_stream()  # never read: must stay bounded
        await self._echo(record, r.uniform(1, 4))
        del idle_reader

    async def _conference(self, record: CallRecord, r: random.Random) -> None:
        call = record.call
        for _ in range(r.randint(0, 3)):
            name = r.choice(("whisper", "barge", "spy"))
            await self.command(record, name, getattr(call, name), self.deadline())
        ending = r.choice(("disconnect", "close", "return"))
        if ending != "return":
            await self.command(record, ending, getattr(call, ending), self.deadline())

    async def _agent_connect(self, record: CallRecord, r: random.Random) -> None:
        ring = r.randint(1, 3)
        outcome = await self.command(
            record, "connect", lambda: record.call.connect(ring), self.deadline(ring)
        )
        if outcome == "ok":
            await self._conference(record, r)

    async def _agent_answer_then_connect(self, record: CallRecord, r: random.Random) -> None:
        await self._answer(record)
        await trio.sleep(r.uniform(0, 1))
        await self._agent_connect(record, r)

    async def _agent_disconnect(self, record: CallRecord, r: random.Random) -> None:
        await self._answer(record)
        await trio.sleep(r.uniform(0, 2))
        await self.command(record, "disconnect", record.call.disconnect, self.deadline())

    async def _agent_decline(self, record: CallRecord, r: random.Random) -> None:
        await self.command(record, "close", record.call.close, self.deadline())

    async def _agent_raise(self, record: CallRecord, r: random.Random) -> None:
        await self._answer(record)
        await trio.sleep(r.uniform(0, 1))
        self._fail()

    async def _agent_event_handler_raises(self, record: CallRecord, r: random.Random) -> None:
        record.call.on(events.CALL_ANSWERED)(self._fail)
        await self._answer(record)
        await trio.sleep(r.uniform(0.5, 2))

    async def _agent_never_answer(self, record: CallRecord, r: random.Random) -> None:
        with trio.move_on_after(r.uniform(1, 6)):
            await record.call.wait_terminated()

    async def _agent_writer(self, record: CallRecord, r: random.Random) -> None:
        call = record.call
        await self._answer(record)
        pcm = bytes(2 * call.sample_rate * r.randint(1, 4))  # 1-4 s of silence
        with trio.move_on_after(3):
            await self.command(record, "write_audio", lambda: call.write_audio(pcm), math.inf)
            await self.command(record, "wait_audio_sent", call.wait_audio_sent, math.inf)
        await self.command(record, "interrupt", call.clear_send_audio_buffer, self.deadline())

    async def _agent_interrupter(self, record: CallRecord, r: random.Random) -> None:
        call = record.call
        await self._answer(record)
        for _ in range(r.randint(1, 4)):
            with contextlib.suppress(BufferFullError, BufferClosedError):
                call.send_audio(bytes(3200))
            await trio.sleep(r.uniform(0, 0.5))
            await self.command(record, "interrupt", call.clear_send_audio_buffer, self.deadline())

    # -- after the run ---------------------------------------------------------------------

    def check_calls(self) -> dict[str, Any]:
        """The per-call invariants; returns counts of what happened, for coverage checks."""
        reasons: dict[str, int] = {}
        outcomes: dict[str, int] = {}
        for record in self.records.values():
            index, call = record.index, record.call
            info = call.termination
            if info is None or not call.terminated:
                self.violation(f"call {index} ({record.behaviour}) never terminated")
                continue
            expected = 0 if record.ended_before_handler else 1
            if len(record.terminated_events) != expected:
                self.violation(
                    f"call {index} ({record.behaviour}): CALL_TERMINATED fired "
                    f"{len(record.terminated_events)} times, not {expected}"
                )
            if any(event is not info for event in record.terminated_events):
                self.violation(f"call {index}: CALL_TERMINATED payload is not the termination")
            if record.waited is not info:
                self.violation(f"call {index}: wait_terminated() gave {record.waited!r}")
            if not record.handler_done:
                self.violation(f"call {index}: the handler is still running")
            if _WHO.get(info.reason) != info.who:
                self.violation(f"call {index}: ended {info.reason} by {info.who}?")
            reasons[info.reason] = reasons.get(info.reason, 0) + 1
            for _, _, _, outcome in record.commands:
                outcomes[outcome] = outcomes.get(outcome, 0) + 1
        return {"reasons": reasons, "outcomes": outcomes}


_WHO = {
    "server": "server",
    "caller_hangup": "caller",
    "session_closed": "server",
    "media_lost": "network",
    "closed": "agent",
    "disconnected": "agent",
    "handler_returned": "agent",
    "handler_failed": "agent",
    "client_shutdown": "client",
}
