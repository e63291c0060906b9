"""An agent under test: the simulator, a client running your handler, and call reports.

:func:`open_agent_test` starts an in-process simulator and a
:class:`~telcoflow_trio.TelcoflowClient` connected to it over in-memory streams
(no sockets), with your ``INCOMING_CALL`` handler registered. Scripted callers
then ring it, and each call comes back as a :class:`CallReport`: what the
platform saw (commands, states, the agent's audio, who ended the call) and what
the agent saw (how its :class:`~telcoflow_trio.ActiveCall` ended, the exceptions
its handlers raised). Under trio's ``MockClock`` with autojump, a test of a
minute-long call takes milliseconds and gives the same result on every run.
"""

from __future__ import annotations

import inspect
import logging
import math
import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from typing import Any, TypeAlias, final

import attrs
import trio
import trio.testing

from .._call import ActiveCall, CallStatistics, TerminationInfo
from .._client import TelcoflowClient
from ..config import TelcoflowClientConfig
from ..events import INCOMING_CALL
from ..proto import CallState
from ..simulator import (
    CallerScript,
    CallResult,
    SimulatedCall,
    Simulator,
    SimulatorConfig,
    SimulatorFaults,
    WaSession,
    open_simulator,
)
from ._audio import audio_seconds, tone_share

__all__ = ["AgentHandlerError", "AgentHarness", "CallReport", "open_agent_test"]

logger = logging.getLogger(__name__)

#: An ``INCOMING_CALL`` handler, sync or async.
Handler: TypeAlias = Callable[[ActiveCall], object]
ErrorHook: TypeAlias = Callable[[ActiveCall, BaseException], object]

#: How long :meth:`AgentHarness.place_call` waits for a call to end, by default.
DEFAULT_CALL_TIMEOUT = 600.0


@attrs.frozen
class CallReport:
    """How one call went, from both sides.

    Attributes:
        result: the platform's record (the simulator's
            :class:`~telcoflow_trio.simulator.CallResult`): every command with
            its outcome, the state history, the agent's audio, who ended it.
        termination: how the agent's :class:`~telcoflow_trio.ActiveCall` ended;
            ``None`` if the agent never got the call.
        handler_errors: exceptions raised by the agent's handlers for this call
            (the ``INCOMING_CALL`` handler and its ``call.on`` handlers).
        agent_statistics: the agent's call counters at the end, if it got the call.
    """

    result: CallResult
    termination: TerminationInfo | None
    handler_errors: tuple[BaseException, ...]
    agent_statistics: CallStatistics | None

    @property
    def call_id(self) -> str:
        return self.result.call_id

    @property
    def commands(self) -> tuple[str, ...]:
        """Wire names of the commands the agent sent, in order (``"call.answer"``, ...)."""
        return tuple(record.name for record in self.result.commands)

    @property
    def states(self) -> tuple[CallState, ...]:
        """The platform's state history, starting with ``PENDING``."""
        return tuple(state for _, state in self.result.states)

    @property
    def ended_by(self) -> str:
        """``caller_hangup``, ``agent_close``, ``agent_disconnect``, ``media_lost``,
        ``unanswered_timeout`` or ``server`` (see
        :class:`~telcoflow_trio.simulator.CallResult`)."""
        return self.result.ended_by

    @property
    def agent_audio(self) -> bytes:
        """The agent's audio as the platform received it (PCM16LE at :attr:`sample_rate`)."""
        return self.result.agent_audio

    @property
    def sample_rate(self) -> int | None:
        """The call's sample rate; ``None`` if no agent claimed the call."""
        return self.result.sample_rate

    def _fail(self, what: str) -> AssertionError:
        return AssertionError(f"call {self.call_id}: {what}\n  {self._summary()}")

    def _summary(self) -> str:
        agent = "never got the call" if self.termination is None else self.termination.reason
        return (
            f"commands={list(self.commands)} states={[str(s) for s in self.states]} "
            f"ended_by={self.ended_by!r} agent={agent} "
            f"agent_audio={self.result.agent_audio_seconds:.3f}s "
            f"handler_errors={list(self.handler_errors)!r}"
        )

    def assert_commands(self, *expected: str) -> None:
        """Assert the agent sent exactly these commands, in this order.

        Raises:
            AssertionError: it did not; the message shows what it sent.
        """
        if self.commands != expected:
            raise self._fail(f"the agent sent {list(self.commands)}, expected {list(expected)}")

    def assert_states(self, *expected: CallState | str) -> None:
        """Assert the call went through exactly these states (``PENDING`` first).

        Raises:
            AssertionError: it did not.
        """
        if self.states != tuple(CallState(state) for state in expected):
            want = [str(CallState(state)) for state in expected]
            raise self._fail(f"states were {[str(s) for s in self.states]}, expected {want}")

    def assert_ended_by(self, expected: str) -> None:
        """Assert who ended the call (see :attr:`ended_by`).

        Raises:
            AssertionError: someone else did.
        """
        if self.ended_by != expected:
            raise self._fail(f"ended by {self.ended_by!r}, expected {expected!r}")

    def assert_agent_audio(
        self,
        *,
        min_seconds: float = 0.0,
        max_seconds: float | None = None,
        tone: float | None = None,
        min_share: float = 0.5,
    ) -> None:
        """Assert how much the agent said, and optionally that it was a tone of ``tone`` Hz.

        Args:
            min_seconds: at least this much agent audio reached the platform.
            max_seconds: at most this much (``None``: no limit).
            tone: the kept agent audio must contain a tone of this frequency, with
                at least ``min_share`` of its power (see
                :func:`~telcoflow_trio.testing.tone_share`).
            min_share: see ``tone``.

        Raises:
            AssertionError: it did not.
        """
        seconds = self.result.agent_audio_seconds
        if seconds < min_seconds:
            raise self._fail(f"the agent sent {seconds:.3f} s of audio, expected >= {min_seconds}")
        if max_seconds is not None and seconds > max_seconds:
            raise self._fail(f"the agent sent {seconds:.3f} s of audio, expected <= {max_seconds}")
        if tone is not None:
            rate = self.sample_rate
            audio = self.agent_audio
            share = tone_share(audio, tone, rate) if rate and audio else 0.0
            if share < min_share:
                kept = audio_seconds(audio, rate) if rate else 0.0
                raise self._fail(
                    f"a {tone:g} Hz tone carries {share:.1%} of the agent's audio "
                    f"({kept:.3f} s kept), expected >= {min_share:.0%}"
                )

    def assert_no_handler_errors(self) -> None:
        """Assert none of the agent's handlers raised for this call.

        Raises:
            AssertionError: one did (the first is the ``__cause__``).
        """
        if self.handler_errors:
            raise self._fail(
                f"the agent's handlers raised {list(self.handler_errors)!r}"
            ) from self.handler_errors[0]


class AgentHandlerError(AssertionError):
    """The agent's handlers raised while being tested; the first exception is the ``__cause__``.

    Raised by :meth:`AgentHarness.place_call` / :meth:`AgentHarness.wait_call`, and
    on leaving :func:`open_agent_test`, unless ``raise_handler_errors=False``.

    Attributes:
        errors: ``(call_id, exception)`` of each.
        report: the call's report, when raised for one call.
    """

    def __init__(self, errors: list[tuple[str, BaseException]]) -> None:
        listed = ", ".join(f"call {call_id}: {exc!r}" for call_id, exc in errors)
        super().__init__(f"the agent's handlers raised: {listed}")
        self.errors = errors
        self.report: CallReport | None = None


@attrs.define(eq=False)
class _AgentSide:
    """What the harness knows about one call on the agent's side."""

    call: ActiveCall | None = None
    started: trio.Event = attrs.Factory(trio.Event)
    done: trio.Event = attrs.Factory(trio.Event)
    errors: list[BaseException] = attrs.Factory(list)


def _no_jitter() -> float:
    return 0.0


@final
class AgentHarness:
    """A running agent test. Get one from :func:`open_agent_test`.

    Attributes:
        sim: the simulator (place calls, read results, inject faults).
        client: the agent's client.
        network_down: while true, every new connection (control or media) is
            refused, like a network outage; connections already open stay up.
        connection_attempts: when each connection was attempted (control and
            media), in seconds since the harness started.
        reports: the report of every call :meth:`wait_call` waited for.
        call_timeout: how long :meth:`wait_call` and :meth:`place_call` wait for a
            call to end (seconds of trio's clock; ``None``: forever). Under
            autojump a call that never ends would otherwise spin until the
            test's watchdog fires.
    """

    def __init__(
        self,
        sim: Simulator,
        handler: Handler | None = None,
        *,
        random_source: Callable[[], float] | None = None,
        on_handler_error: ErrorHook | None = None,
        raise_handler_errors: bool = True,
        call_timeout: float | None = DEFAULT_CALL_TIMEOUT,
        **config_options: Any,
    ) -> None:
        self.sim = sim
        self.call_timeout = call_timeout
        self.network_down = False
        self.connection_attempts: list[float] = []
        self.reports: list[CallReport] = []
        self._raise_handler_errors = raise_handler_errors
        self._started_at = trio.current_time()
        self._agent: dict[str, _AgentSide] = {}
        self._surfaced: set[int] = set()
        self._attempted = trio.lowlevel.ParkingLot()
        self._dialled: list[SimulatedCall] = []  # outbound calls not yet waited for
        self._dialled_lot = trio.lowlevel.ParkingLot()
        self.client = TelcoflowClient(
            self.client_config(**config_options),
            open_stream=self.open_stream,
            random_source=random_source or _no_jitter,
            on_handler_error=self._hook(on_handler_error),
        )
        if handler is not None:
            self.client.on(INCOMING_CALL)(self._wrap(handler))

    def __repr__(self) -> str:
        return f"<AgentHarness calls={len(self.reports)} sim={self.sim!r}>"

    @property
    def faults(self) -> SimulatorFaults:
        """The simulator's fault injection (``drop_control()``, ``stall_pings()``, ...)."""
        return self.sim.faults

    async def send_wa_message(
        self, remote_address: str, content: dict[str, Any] | str
    ) -> WaSession:
        """A simulated WhatsApp user ``remote_address`` writes ``content`` to the agent.

        The session is offered to the client (an ``INCOMING_MESSAGE`` handler
        claims it) or delivered on the one it holds; ``session.received`` then
        records the agent's answers (``await session.wait_received(n)``).

        Raises:
            ValueError: a malformed address.
        """
        return await self.sim.wa.send_from_user(remote_address, content)

    def elapsed(self) -> float:
        """Seconds (of trio's clock) since the harness started."""
        return trio.current_time() - self._started_at

    def client_config(self, **options: Any) -> TelcoflowClientConfig:
        """A client configuration for this simulator; ``options`` are config fields."""
        return TelcoflowClientConfig.sandbox(
            self.sim.api_key, self.sim.connector_uuid, base_url=self.sim.base_url, **options
        )

    async def open_stream(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        """The in-memory :data:`StreamOpener` to the simulator, with :attr:`network_down`.

        Pass it as ``open_stream=`` to more clients (other workers) or bridges.

        Raises:
            ConnectionRefusedError: :attr:`network_down` is set.
        """
        self.connection_attempts.append(self.elapsed())
        self._attempted.unpark_all()
        if self.network_down:
            await trio.lowlevel.checkpoint()
            raise ConnectionRefusedError("refused: the test set network_down")
        return await self.sim.open_stream(host, port, ssl_context)

    async def wait_connection_attempts(self, count: int) -> float:
        """Wait until ``count`` connections have been attempted in all.

        Returns:
            the time of the ``count``-th attempt (seconds since the start).

        Raises:
            ValueError: ``count`` is below 1.
        """
        if count < 1:
            raise ValueError(f"count must be at least 1; got {count}")
        await trio.lowlevel.checkpoint()
        while len(self.connection_attempts) < count:
            await self._attempted.park()
        return self.connection_attempts[count - 1]

    # -- calls --------------------------------------------------------------------------

    async def start_call(
        self,
        script: CallerScript | None = None,
        *,
        caller: str = "+15550100",
        callee: str = "+15550199",
    ) -> SimulatedCall:
        """Ring the agent and return at once; the call runs by ``script``.

        Use it to act during the call (``call.hang_up()``, ``call.wait_state()``,
        a fault for ``call.call_id``), then :meth:`wait_call` for the report.
        """
        return await self.sim.place_call(script, caller=caller, callee=callee)

    async def place_call(
        self,
        script: CallerScript | None = None,
        *,
        caller: str = "+15550100",
        callee: str = "+15550199",
    ) -> CallReport:
        """Ring the agent, wait until the call has ended on both sides; its report.

        Raises:
            AssertionError: the call did not end within :attr:`call_timeout`.
            AgentHandlerError: the agent's handlers raised (see :func:`open_agent_test`).
        """
        call = await self.start_call(script, caller=caller, callee=callee)
        return await self.wait_call(call)

    async def wait_call(self, call: SimulatedCall) -> CallReport:
        """Wait until ``call`` has ended and the agent's handler has returned; its report.

        Raises:
            AssertionError: that took longer than :attr:`call_timeout`.
            AgentHandlerError: the agent's handlers raised (see :func:`open_agent_test`).
        """
        side: _AgentSide | None = None
        timeout = self.call_timeout
        with trio.move_on_after(math.inf if timeout is None else timeout) as scope:
            result = await call.wait_result()
            # Whatever the end set off on the agent's side (its handler starting
            # late, event handlers) runs before everything waits again.
            await trio.testing.wait_all_tasks_blocked()
            side = self._agent.get(call.call_id)
            if side is not None and side.call is not None:
                await side.done.wait()
                await side.call.wait_terminated()
                await trio.testing.wait_all_tasks_blocked()
        if scope.cancelled_caught:
            waiting = "to end" if call.result is None else "for the agent's handler to return"
            raise AssertionError(
                f"call {call.call_id} ({call.state}) was still waiting {waiting} "
                f"after {timeout:g} s"
            )
        active = side.call if side is not None else None
        report = CallReport(
            result=result,
            termination=active.termination if active is not None else None,
            handler_errors=tuple(side.errors) if side is not None else (),
            agent_statistics=active.statistics() if active is not None else None,
        )
        self.reports.append(report)
        if self._raise_handler_errors and report.handler_errors:
            self._surfaced.update(map(id, report.handler_errors))
            error = AgentHandlerError([(call.call_id, exc) for exc in report.handler_errors])
            error.report = report
            raise error from report.handler_errors[0]
        return report

    async def wait_dialled(self, number: str | None = None) -> SimulatedCall:
        """Wait for the next outbound call the agent places (to ``number``, if given).

        Returns the simulator's side as soon as it rings; script its callee
        beforehand with ``sim.expect_callee``, then :meth:`wait_call` for the
        report (without the agent's termination: no handler holds the call).

        Raises:
            AssertionError: no such call within :attr:`call_timeout`.
        """
        timeout = self.call_timeout
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await trio.lowlevel.checkpoint()
            while True:
                for call in self._dialled:
                    if number is None or call.callee == number:
                        self._dialled.remove(call)
                        return call
                await self._dialled_lot.park()
        raise AssertionError(
            f"the agent placed no call to {number or 'any number'} within {timeout:g} s"
        )

    def _observe_dialled(self, call: SimulatedCall, event: str) -> None:
        if event == "placed" and call.outbound:
            self._dialled.append(call)
            del self._dialled[: -self.sim.config.max_finished_calls]  # bounded
            self._dialled_lot.unpark_all()

    def agent_call(self, call_id: str) -> ActiveCall | None:
        """The agent's :class:`~telcoflow_trio.ActiveCall` for ``call_id`` (also once
        ended), or ``None`` if its handler has not been given the call."""
        side = self._agent.get(call_id)
        return side.call if side is not None else None

    async def wait_agent_call(self, call: SimulatedCall | str) -> ActiveCall:
        """Wait until the agent's handler has been given the call; its ``ActiveCall``.

        Raises:
            AssertionError: that did not happen within :attr:`call_timeout`.
        """
        call_id = call if isinstance(call, str) else call.call_id
        side = self._side(call_id)
        timeout = self.call_timeout
        with trio.move_on_after(math.inf if timeout is None else timeout):
            await side.started.wait()
        if side.call is None:
            raise AssertionError(
                f"the agent's handler was not given call {call_id} within {timeout:g} s"
            )
        return side.call

    def handler_errors(self) -> list[tuple[str, BaseException]]:
        """``(call_id, exception)`` of every handler exception so far."""
        return [(call_id, exc) for call_id, side in self._agent.items() for exc in side.errors]

    def describe(self) -> str:
        """A few lines on every call so far, for a failing test's report."""
        lines = [f"call {r.call_id}: {r._summary()}" for r in self.reports]
        reported = {r.call_id for r in self.reports}
        for call in self.sim.active_calls():
            if call.call_id not in reported:
                lines.append(f"call {call.call_id}: still active, state {call.state}")
        for result in self.sim.results():
            if result.call_id not in reported:
                lines.append(
                    f"call {result.call_id}: ended_by={result.ended_by!r} "
                    f"commands={[c.name for c in result.commands]} (not waited for)"
                )
        return "\n".join(lines) or "no calls"

    # -- internals ----------------------------------------------------------------------

    def _side(self, call_id: str) -> _AgentSide:
        side = self._agent.get(call_id)
        if side is None:
            side = self._agent[call_id] = _AgentSide()
        return side

    def _wrap(self, handler: Handler) -> Callable[[ActiveCall], Any]:
        async def run_agent(call: ActiveCall) -> None:
            side = self._side(call.call_id)
            side.call = call
            side.started.set()
            try:
                result = handler(call)
                if inspect.isawaitable(result):
                    await result
            finally:
                side.done.set()

        return run_agent

    def _hook(self, user_hook: ErrorHook | None) -> ErrorHook:
        async def handler_failed(call: ActiveCall, exc: BaseException) -> None:
            self._side(call.call_id).errors.append(exc)
            if user_hook is not None:
                result = user_hook(call, exc)
                if inspect.isawaitable(result):
                    await result

        return handler_failed

    def _unsurfaced_errors(self) -> list[tuple[str, BaseException]]:
        return [(c, exc) for c, exc in self.handler_errors() if id(exc) not in self._surfaced]


@asynccontextmanager
async def open_agent_test(
    handler: Handler | None = None,
    *,
    simulator: SimulatorConfig | Simulator | None = None,
    random_source: Callable[[], float] | None = None,
    on_handler_error: ErrorHook | None = None,
    raise_handler_errors: bool = True,
    call_timeout: float | None = DEFAULT_CALL_TIMEOUT,
    **config_options: Any,
) -> AsyncIterator[AgentHarness]:
    """Run your agent against an in-process simulator for the duration of the block.

    The client connects over in-memory streams (no sockets) and is connected on
    entry; leaving the block closes the client (calls in progress end as
    ``CLIENT_SHUTDOWN``) and then the simulator. Run it under
    ``trio.testing.MockClock(autojump_threshold=0)`` for fast, exact tests.

    Args:
        handler: your ``INCOMING_CALL`` handler (sync or async). Without one the
            client takes no calls.
        simulator: a :class:`~telcoflow_trio.simulator.SimulatorConfig` for a new
            simulator, or a running :class:`~telcoflow_trio.simulator.Simulator`
            (for example the ``telcoflow_simulator`` fixture's) to use as it is.
        random_source: the client's reconnect jitter; by default none, so
            reconnect delays are exact (0.5 s, 0.75 s, ...).
        on_handler_error: also called when one of your handlers raises.
        raise_handler_errors: raise :class:`AgentHandlerError` when your handlers
            raised: from :meth:`AgentHarness.wait_call` for that call's errors, and
            on leaving the block for any not raised yet. With ``False``, read
            them from :attr:`CallReport.handler_errors` instead.
        call_timeout: see :attr:`AgentHarness.call_timeout`.
        config_options: :class:`~telcoflow_trio.TelcoflowClientConfig` fields
            (``sample_rate=8000``, ``heartbeat_interval=...``).

    Raises:
        AgentHandlerError: see ``raise_handler_errors``.
        WSSError: the client could not connect (for example a bad option).
    """
    sim_cm: AbstractAsyncContextManager[Simulator] = (
        nullcontext(simulator) if isinstance(simulator, Simulator) else open_simulator(simulator)
    )
    async with sim_cm as sim:
        harness = AgentHarness(
            sim,
            handler,
            random_source=random_source,
            on_handler_error=on_handler_error,
            raise_handler_errors=raise_handler_errors,
            call_timeout=call_timeout,
            **config_options,
        )
        sim.add_observer(harness._observe_dialled)
        try:
            async with harness.client:
                yield harness
        finally:
            sim.remove_observer(harness._observe_dialled)
    unsurfaced = harness._unsurfaced_errors()
    if raise_handler_errors and unsurfaced:
        raise AgentHandlerError(unsurfaced) from unsurfaced[0][1]
