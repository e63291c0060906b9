"""A simulated call: the caller's script, the call's state and its media connection.

Time in a call is driven by two tasks. The call task (:meth:`SimulatedCall._run`)
owns the caller's clock before the answer (ringing, hanging up unanswered) and
the ``hangup_after`` timer. While the media connection is open, one ticker task
does all per-frame work every ``frame_ms``, on absolute deadlines so nothing
drifts (rounded up to the millisecond: the simulator's ``SlotTimer``): it sends
a caller frame, plays one frame of agent audio out of the playout buffer
(counting underruns), and tops up the agent's pull credit with ``buffer_request``
so that ``playout_target_frames`` stay buffered or in flight; a tick's frames go
out in one write. The caller stops speaking at ``hangup_after``.
Commands run in tasks of their own, because ``call.connect`` rings for seconds
and must not stall audio or other commands.
"""

from __future__ import annotations

import collections
import contextlib
import hmac
import logging
import math
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol, final

import trio

from ..exceptions import RemoteProtocolError, WSSConnectionClosed
from ..proto import (
    TRANSITIONS,
    BufferRequest,
    CallCommand,
    CallEventFrame,
    CallState,
    Command,
    CommandResponse,
    decode_media,
    frame_bytes,
    next_state,
)
from ._audio import Silence, mix, write_wav
from ._clock import SlotTimer
from ._connection import Connection, ControlConnection, salvage_field
from ._faults import SimulatorFaults, call_error_frame
from ._model import CallerScript, CallResult, CommandRecord, SimulatorConfig

__all__ = ["CallHost", "CallObserver", "SimulatedCall"]

logger = logging.getLogger(__name__)


class CallHost(Protocol):
    """What a call needs of its simulator (the ``Simulator`` is one): no import of it."""

    config: SimulatorConfig
    faults: SimulatorFaults
    ticks: SlotTimer
    _malformed_frames: int

    def _observe(self, call: SimulatedCall, event: str) -> None: ...

    def _call_ended(self, call: SimulatedCall) -> None: ...

    def _record_result(self, call: SimulatedCall, result: CallResult) -> None: ...

    def _outbound_answered(self, call: SimulatedCall) -> None: ...


#: Called as ``observer(call, event)`` for ``placed``, ``claimed``, ``media``, each
#: new state name and ``ended``.
CallObserver = Callable[["SimulatedCall", str], None]

_P, _A, _C, _D = CallState.PENDING, CallState.ANSWERED, CallState.CONNECTED, CallState.DISCONNECTED
_LIVE = (_A, _C)
_MODES = {
    CallCommand.WHISPER: "whisper",
    CallCommand.BARGE: "barge",
    CallCommand.SPY: "spy",
}
#: How a call ends when its media connection goes away without a command: no
#: party hung up, so the platform closes the session (``FORCE_CLOSE``).
_MEDIA_LOST = ("media_lost", "FORCE_CLOSE")
#: Ticks the ticker may fall behind before it re-anchors instead of catching up.
_MAX_LAG_TICKS = 5


@final
class SimulatedCall:
    """One call placed into the simulator by :meth:`Simulator.place_call`.

    The caller behaves as its :class:`CallerScript` says; the agent drives the
    call over the control and media planes. Await :meth:`wait_result` for the
    outcome.
    """

    def __init__(
        self,
        sim: CallHost,
        script: CallerScript,
        *,
        call_id: str,
        session_id: str,
        caller: str,
        callee: str,
        outbound: bool = False,
    ) -> None:
        self._sim = sim
        self.script = script
        self.call_id = call_id
        self.session_id = session_id
        self.caller = caller
        self.callee = callee
        #: Placed by the agent (``session.create``): ``callee`` is the number it
        #: called, and the script is the called party's.
        self.outbound = outbound
        self._remote_hangup = "callee_hangup" if outbound else "caller_hangup"
        self.placed_at = trio.current_time()
        config = sim.config

        self._state = _P
        self._states: list[tuple[float, CallState]] = [(self.placed_at, _P)]
        self._state_changed = trio.Event()
        self._answered = trio.Event()  # ANSWERED or CONNECTED reached: audio may flow
        self._settled = trio.Event()  # left PENDING, one way or another
        self._ended = trio.Event()
        self._done = trio.Event()  # result available

        # Control plane: who claimed the session, the media credential.
        self.sample_rate: int | None = None
        self.audio_mode = "mixed"
        self._bound: ControlConnection | None = None
        self._ever_bound = False
        #: Unclaimed for ``missed_call_after`` (or nobody took all calls): see _server.
        self._missed = False
        self._miss_timer = False
        self._call_in_sent = False
        self._ready = False  # outbound: session.ready came; call.in goes out on the answer
        self._token: str | None = None
        self._token_expires = 0.0
        self._used_token: str | None = None  # to say "already used" to a second connection
        self._media: Connection | None = None
        self._media_used = False

        # Commands.
        self._commands: collections.deque[CommandRecord] = collections.deque(
            maxlen=config.max_command_records
        )
        self._pending: dict[str, tuple[Command, float]] = {}
        self._busy: CallCommand | None = None
        self._mode: str | None = None

        # Agent audio: playout buffer, pull credit, underrun detection.
        self._playout = bytearray()
        self._outstanding = 0
        self._play_credit = 0.0
        self._playing = False
        self._gap_started: float | None = None
        self._last_play_at: float | None = None
        self._underruns = 0
        self._agent_bytes = 0
        self._caller_bytes = 0
        self._agent_audio = bytearray()
        self._first_agent_at: float | None = None
        self._interrupted = 0
        self._overflow = 0
        self._unrequested = 0
        self._max_playout = 0
        self._keep_bytes = 0

        self._caller_track: bytearray | None = None
        self._agent_track: bytearray | None = None
        self._record_limit = 0
        #: Receives each played frame of agent audio (the softphone listens here).
        self._tap: Callable[[bytes], None] | None = None

        self._answered_at: float | None = None
        self._ended_at: float | None = None
        self._ended_by = ""
        self._termination_reason = ""
        self._media_close_code: int | None = None
        self._result: CallResult | None = None
        self._wrapping_up = False

    def __repr__(self) -> str:
        return f"<SimulatedCall {self.call_id} {self._state} {self.caller}->{self.callee}>"

    # -- public -------------------------------------------------------------------

    @property
    def state(self) -> CallState:
        """The call's state as the platform sees it."""
        return self._state

    @property
    def ended(self) -> bool:
        return self._ended.is_set()

    @property
    def result(self) -> CallResult | None:
        """The result once the call has ended and its recordings are written."""
        return self._result

    async def wait_result(self) -> CallResult:
        """Wait until the call has ended; return how it went."""
        await self._done.wait()
        assert self._result is not None
        return self._result

    async def wait_state(self, *states: CallState) -> CallState:
        """Wait until the call is in one of ``states``; return that state.

        Raises:
            ValueError: no states were given.
        """
        if not states:
            raise ValueError("give at least one state to wait for")
        while self._state not in states:
            await self._state_changed.wait()
        return self._state

    async def hang_up(self) -> None:
        """The caller (of an outbound call: the callee) hangs up now (a no-op once ended)."""
        self._finish(self._remote_hangup, "CALL_TERMINATED")
        await trio.lowlevel.checkpoint()

    async def answer(self) -> None:
        """The called party of a ringing outbound call answers now.

        Raises:
            RuntimeError: not an outbound call, or it is not ringing.
        """
        self._check_ringing()
        self._answer_outbound()
        await trio.lowlevel.checkpoint()

    async def reject(self) -> None:
        """The called party of a ringing outbound call declines it (``callee_rejected``).

        Raises:
            RuntimeError: not an outbound call, or it is not ringing.
        """
        self._check_ringing()
        self._finish("callee_rejected", "CALL_TERMINATED")
        await trio.lowlevel.checkpoint()

    def _check_ringing(self) -> None:
        if not self.outbound or self._state is not _P:
            raise RuntimeError(f"{self!r} is not a ringing outbound call")

    # -- state ----------------------------------------------------------------------

    def _set_state(self, state: CallState) -> None:
        if state is self._state:
            return
        self._state = state
        self._states.append((trio.current_time(), state))
        self._state_changed.set()
        self._state_changed = trio.Event()
        if state is not _P:
            self._settled.set()
        self._sim._observe(self, str(state))

    def _finish(self, ended_by: str, reason: str) -> None:
        """End the call (idempotent). Everything waiting on the call wakes up."""
        if self._ended.is_set():
            return
        self._ended_at = trio.current_time()
        self._ended_by = ended_by
        self._termination_reason = reason
        self._ended.set()
        self._set_state(_D)
        self._sim._call_ended(self)
        if self._media is None:
            self._wrap_up()

    def _wrap_up(self) -> None:
        """Build the result (after the media connection is done with), recordings first."""
        if self._wrapping_up:
            return
        self._wrapping_up = True
        paths: tuple[Path, ...] = ()
        if self._caller_track is not None and self.script.record_dir is not None:
            # Written here, synchronously: the tracks are bounded, and a worker
            # thread would let a MockClock's virtual time run ahead meanwhile.
            try:
                paths = self._write_recordings()
            except OSError as exc:
                logger.warning("could not write the recordings of call %s: %s", self.call_id, exc)
        self._complete_now(paths)

    def _write_recordings(self) -> tuple[Path, ...]:
        directory = self.script.record_dir
        caller_track, agent_track, rate = self._caller_track, self._agent_track, self.sample_rate
        assert directory is not None
        assert caller_track is not None
        assert agent_track is not None
        assert rate is not None
        directory.mkdir(parents=True, exist_ok=True)
        caller, agent = directory / "caller.wav", directory / "agent.wav"
        write_wav(caller, bytes(caller_track), rate)
        write_wav(agent, bytes(agent_track), rate)
        return caller, agent

    def _complete_now(self, recordings: tuple[Path, ...]) -> None:
        if self._result is not None:
            return
        per_second = 2 * self.sample_rate if self.sample_rate else 0
        first = None
        if self._first_agent_at is not None and self._answered_at is not None:
            first = self._first_agent_at - self._answered_at
        assert self._ended_at is not None
        self._result = CallResult(
            call_id=self.call_id,
            session_id=self.session_id,
            caller=self.caller,
            callee=self.callee,
            sample_rate=self.sample_rate,
            states=tuple(self._states),
            commands=tuple(self._commands),
            placed_at=self.placed_at,
            answered_at=self._answered_at,
            ended_at=self._ended_at,
            ended_by=self._ended_by,
            termination_reason=self._termination_reason,
            caller_audio_seconds=self._caller_bytes / per_second if per_second else 0.0,
            agent_audio_seconds=self._agent_bytes / per_second if per_second else 0.0,
            agent_audio=bytes(self._agent_audio),
            underruns=self._underruns,
            first_agent_audio_after_answer=first,
            interrupted_bytes=self._interrupted,
            overflow_bytes=self._overflow,
            unrequested_bytes=self._unrequested,
            media_close_code=self._media_close_code,
            recordings=recordings,
            outbound=self.outbound,
        )
        self._done.set()
        self._sim._record_result(self, self._result)

    # -- the caller's clock ---------------------------------------------------------

    async def _run(self) -> None:
        """The caller: ring until answered or given up, then hang up when the script says."""
        if not await (self._ring_callee() if self.outbound else self._ring_agent()):
            return
        hangup = self._hang_up_at()
        if hangup is None:
            return
        with trio.move_on_at(hangup):
            await self._ended.wait()
        self._finish(self._remote_hangup, "CALL_TERMINATED")

    async def _ring_callee(self) -> bool:
        """An outbound call rings its callee; whether it was answered."""
        script = self.script
        ring_end = self.placed_at + self._sim.config.outbound_ring_timeout
        answers = script.answers_after
        picks_up = answers is not None and self.placed_at + answers <= ring_end
        at = self.placed_at + answers if answers is not None and picks_up else ring_end
        with trio.move_on_at(at):
            await self._settled.wait()  # answer()/reject() by a test, or the call ended
        if self._state is not _P:
            return not self._ended.is_set()
        if not picks_up:
            self._finish("unanswered_timeout", "CALL_TERMINATED")
            return False
        if script.rejects:
            self._finish("callee_rejected", "CALL_TERMINATED")
            return False
        self._answer_outbound()
        return True

    def _answer_outbound(self) -> None:
        self._answered_at = trio.current_time()
        self._answered.set()
        self._set_state(_A)
        self._sim._outbound_answered(self)

    async def _ring_agent(self) -> bool:
        """An inbound call rings for an agent; whether it was answered (or connected)."""
        script = self.script
        deadline = self.placed_at + self._sim.config.unanswered_timeout
        ended_by = "unanswered_timeout"
        if script.hangup_before_answer_after is not None:
            hang_up_at = self.placed_at + script.hangup_before_answer_after
            if hang_up_at <= deadline:
                deadline, ended_by = hang_up_at, "caller_hangup"
        with trio.move_on_at(deadline):
            await self._settled.wait()
        if self._state is _P:
            self._finish(ended_by, "CALL_TERMINATED")
            return False
        return True

    def _hang_up_at(self) -> float | None:
        """When the answered caller hangs up (``hangup_after``); ``None``: no such time."""
        if self.script.hangup_after is None or self._answered_at is None:
            return None
        return self._answered_at + self.script.hangup_after

    # -- control plane helpers ------------------------------------------------------

    def _issue_token(self, token: str, expires: float) -> None:
        self._token = token
        self._token_expires = expires
        self._call_in_sent = True

    def _unbind(self) -> None:
        self._bound = None
        self._token = None
        self._call_in_sent = False

    def _take_token(self, presented: str, now: float) -> str | None:
        """Why ``presented`` does not open this call's media, or ``None``: it does.

        The token model (the handoff relies on it): the token of a ``call.in``
        opens one media connection, within ``token_ttl`` of the ``call.in``,
        from any process; it is revoked when the call ends or when the claiming
        control connection goes away before media opened (the call is offered
        again, with a new token to the next claimant).
        """
        used = self._used_token
        if used is not None and hmac.compare_digest(used.encode(), presented.encode()):
            return "media token already used (it opens one media connection)"
        token = self._token
        if (
            token is None
            or self._ended.is_set()
            or not hmac.compare_digest(token.encode(), presented.encode())
        ):
            return "invalid or revoked media token"
        if now > self._token_expires:
            return "media token expired"
        self._token, self._used_token = None, token
        return None

    # -- media plane ------------------------------------------------------------------

    def _media_connection(self) -> Connection:
        if self._media is None:
            raise LookupError(f"call {self.call_id} has no media connection")
        return self._media

    def _drop_media(self) -> None:
        self._media_connection().abort()

    async def _serve_media(self, conn: Connection) -> None:
        """Run the call's media connection until the call ends, then say so and return."""
        config = self._sim.config
        assert self.sample_rate is not None
        self._media = conn
        self._media_used = True
        frame = frame_bytes(self.sample_rate, config.frame_ms)
        self._max_playout = max(
            int(config.max_playout_seconds * 1000 / config.frame_ms) * frame,
            config.playout_target_frames * frame,
        )
        self._keep_bytes = int(config.keep_agent_audio_seconds * 2 * self.sample_rate)
        if self.script.record_dir is not None:
            self._caller_track, self._agent_track = bytearray(), bytearray()
            self._record_limit = int(config.max_record_seconds * 2 * self.sample_rate)
        self._sim._observe(self, "media")
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._media_reader, conn, nursery)
                nursery.start_soon(self._ticker, conn)
                await self._ended.wait()
                nursery.cancel_scope.cancel()
            if not conn.peer_closed:
                with trio.move_on_after(config.close_timeout):
                    await self._say_goodbye(conn)
        finally:
            # Still running here: the connection was dropped (a fault), or the
            # simulator is being torn down.
            self._media = None
            if conn.abrupt:
                self._finish(*_MEDIA_LOST)
            else:
                self._finish("server", "FORCE_CLOSE")
            self._wrap_up()

    async def _say_goodbye(self, conn: Connection) -> None:
        """Fail the commands still in flight, then send ``call.terminated``."""
        try:
            for command_id in list(self._pending):
                await conn.send(
                    CommandResponse(
                        command_id,
                        False,
                        error_code="CALL_TERMINATED",
                        error_message="the call ended before the command completed",
                    ).encode()
                )
                self._settle(command_id, trio.current_time(), False, "CALL_TERMINATED")
            event = CallEventFrame("call.terminated", {"reason": self._termination_reason})
            await conn.send(event.encode())
        except WSSConnectionClosed:
            pass
        finally:
            for command_id in list(self._pending):  # never answered
                self._settle(command_id, None, None, None)

    async def _media_reader(self, conn: Connection, nursery: trio.Nursery) -> None:
        config = self._sim.config
        max_size = config.max_message_size
        while True:
            try:
                message = await conn.receive()
            except WSSConnectionClosed as exc:
                self._media_close_code = exc.code
                self._finish(*_MEDIA_LOST)
                return
            if isinstance(message, bytes):
                self._on_agent_audio(message)
                continue
            try:
                frame = decode_media(message, max_size=max_size)
            except RemoteProtocolError as exc:
                self._sim._malformed_frames += 1
                command_id = salvage_field(message, "command_id", nested=True)
                if command_id is None:
                    logger.warning(
                        "call %s: closing media after a bad frame: %s", self.call_id, exc
                    )
                    self._finish(*_MEDIA_LOST)
                    conn.close(1008, f"bad frame: {exc}")
                    return
                response = CommandResponse(
                    command_id, False, error_code="INVALID_COMMAND", error_message=str(exc)
                )
                with contextlib.suppress(WSSConnectionClosed):  # the next receive sees it
                    await conn.send(response.encode())
                continue
            if not isinstance(frame, Command):
                logger.debug("call %s: ignoring a %r frame", self.call_id, type(frame).__name__)
                continue
            received_at = trio.current_time()
            if len(self._pending) >= config.max_commands_in_flight:
                response = CommandResponse(
                    frame.command_id,
                    False,
                    error_code="INVALID_COMMAND",
                    error_message=f"more than {config.max_commands_in_flight} commands in flight",
                )
                with contextlib.suppress(WSSConnectionClosed):
                    await conn.send(response.encode())
                self._record(frame, received_at, trio.current_time(), False, "INVALID_COMMAND")
                continue
            self._pending[frame.command_id] = (frame, received_at)
            nursery.start_soon(self._run_command, conn, frame, received_at)

    def _on_agent_audio(self, message: bytes) -> None:
        """Agent audio arrived (hot path: one call per frame)."""
        size = len(message) - 1
        if size < 1 or message[0] != 0:
            self._sim._malformed_frames += 1
            return
        self._agent_bytes += size
        if self._state not in _LIVE or self._mode == "spy":
            return
        if self._first_agent_at is None:
            self._first_agent_at = trio.current_time()
        if size > self._outstanding:
            self._unrequested += size - self._outstanding
            self._outstanding = 0
        else:
            self._outstanding -= size
        if len(self._playout) + size > self._max_playout:
            self._overflow += size
            return
        pcm = memoryview(message)[1:]
        self._playout += pcm
        room = self._keep_bytes - len(self._agent_audio)
        if room > 0:
            self._agent_audio += pcm[:room]

    def _play(self, frame: int, now: float) -> None:
        """Play one frame of agent audio out of the playout buffer."""
        buffer = self._playout
        have = len(buffer)
        if have:
            if self._gap_started is not None:
                if now - self._gap_started <= self._sim.config.underrun_max_gap:
                    self._underruns += 1
                self._gap_started = None
            if have >= frame:
                played = bytes(buffer[:frame])
                del buffer[:frame]
                self._playing = True
            else:
                # The end of an utterance, or the agent is late: pad, and a gap begins.
                played = bytes(buffer) + bytes(frame - have)
                buffer.clear()
                self._playing = False
                self._gap_started = now
            self._last_play_at = now
            if self._tap is not None:
                self._tap(played)
        else:
            played = bytes(frame)
            if self._playing:
                self._playing = False
                self._gap_started = now
        track = self._agent_track
        if track is not None and len(track) < self._record_limit:
            track += played

    async def _ticker(self, conn: Connection) -> None:
        """Per-frame work of a live call; see the module docstring."""
        await self._answered.wait()
        config = self._sim.config
        faults = self._sim.faults
        script = self.script
        assert self.sample_rate is not None
        rate = self.sample_rate
        frame = frame_bytes(rate, config.frame_ms)
        period = config.frame_ms / 1000
        target = frame * config.playout_target_frames
        silence = bytes(frame)
        caller_frames = script.audio.frames(rate, frame)
        callee_frames = script.callee_audio.frames(rate, frame)
        callee_silent = isinstance(script.callee_audio, Silence)
        talk_ticks = None if script.talk_for is None else round(script.talk_for / period)
        silent_limit = script.hangup_after_agent_silent
        isolated = self.audio_mode == "isolated"
        requests: dict[int, str] = {}
        send_many = conn.send_many
        sleep_until = self._sim.ticks.sleep_until
        start = trio.current_time()
        answered_at = self._answered_at if self._answered_at is not None else start
        hang_up_at = self._hang_up_at()
        errors = collections.deque((answered_at + at, code) for at, code in script.call_errors)
        tick = 0
        # A closed socket ends the loop; the reader sees the close and ends the call.
        with contextlib.suppress(WSSConnectionClosed):
            while True:
                now = trio.current_time()
                if hang_up_at is not None and now >= hang_up_at:
                    return  # the caller hangs up now: no more frames (the call task ends it)
                # 1. The caller (and, once connected, the callee) speaks.
                pcm = (
                    next(caller_frames, silence)
                    if talk_ticks is None or tick < talk_ticks
                    else silence
                )
                if self._state is _C:
                    callee = next(callee_frames, silence)
                    out: list[str | bytes] = [
                        b"\x00" + (pcm if callee_silent else mix(pcm, callee))
                    ]
                    if isolated:
                        out += (b"\x01" + pcm, b"\x02" + callee)
                else:
                    out = [b"\x00" + pcm]
                    if isolated:
                        out.append(b"\x01" + pcm)
                # 2. Play agent audio (slower than real time under the slow-pull fault).
                self._play_credit += faults.pull_rate
                while self._play_credit >= 1:
                    self._play_credit -= 1
                    self._play(frame, now)
                # 3. Keep the agent's pull credit topped up.
                if self._mode != "spy":
                    want = target - len(self._playout) - self._outstanding
                    if want >= frame:
                        request = requests.get(want)
                        if request is None:
                            request = requests[want] = BufferRequest(want, frame).encode()
                        out.append(request)
                        self._outstanding += want
                while errors and now >= errors[0][0]:
                    out.append(call_error_frame(errors.popleft()[1], "scripted call error"))
                self._caller_bytes += frame
                track = self._caller_track
                if track is not None and len(track) < self._record_limit:
                    track += pcm
                # The tick's frames go out together: one write, not one per frame.
                await send_many(out)
                # 4. A caller who waits for the agent to stop talking.
                if silent_limit is not None:
                    last = self._last_play_at if self._last_play_at is not None else answered_at
                    if now - max(last, answered_at) >= silent_limit:
                        self._finish(self._remote_hangup, "CALL_TERMINATED")
                        return
                tick += 1
                deadline = start + tick * period
                late = trio.current_time() - deadline
                if late > _MAX_LAG_TICKS * period:
                    start += late  # re-anchor rather than burst to catch up
                    deadline += late
                await sleep_until(deadline)

    # -- commands ---------------------------------------------------------------------

    def _record(
        self,
        command: Command,
        received_at: float,
        responded_at: float | None,
        success: bool | None,
        error_code: str | None,
    ) -> None:
        self._commands.append(
            CommandRecord(
                name=command.command,
                data=command.data,
                received_at=received_at,
                responded_at=responded_at,
                success=success,
                error_code=error_code,
                command_id=command.command_id,
            )
        )

    def _settle(
        self, command_id: str, responded_at: float | None, success: bool | None, code: str | None
    ) -> None:
        """A pending command is over: record it, once (whoever answers it first)."""
        pending = self._pending.pop(command_id, None)
        if pending is not None:
            command, received_at = pending
            self._record(command, received_at, responded_at, success, code)

    def _refusal(self, command: CallCommand) -> str | None:
        """Why ``command`` is not allowed now, or ``None``."""
        if (self._state, command) not in TRANSITIONS:
            allowed = ", ".join(c for (s, c) in TRANSITIONS if s is self._state) or "none"
            return f"{command} is not allowed in state {self._state} (allowed: {allowed})"
        if self._busy is not None and command in (CallCommand.ANSWER, CallCommand.CONNECT):
            return f"{self._busy} is still in progress"
        return None

    async def _run_command(self, conn: Connection, frame: Command, received_at: float) -> None:
        with contextlib.suppress(WSSConnectionClosed):  # the reader sees it and ends the call
            await self._execute(conn, frame, received_at)

    async def _execute(self, conn: Connection, frame: Command, received_at: float) -> None:
        try:
            command = CallCommand(frame.command)
        except ValueError:
            await self._refuse(conn, frame, f"unknown command {frame.command!r}")
            return
        refusal = self._refusal(command)
        if refusal is not None:
            await self._refuse(conn, frame, refusal)
            return
        deadline = received_at + frame.timeout_ms / 1000 if frame.timeout_ms > 0 else math.inf
        done_at = received_at + self._sim.config.command_latency
        success, code, message = True, None, None
        if command is CallCommand.CONNECT:
            ring = (frame.data or {}).get("ringTimeSeconds", 60)
            if isinstance(ring, bool) or not isinstance(ring, int) or not 1 <= ring <= 120:
                message = f"ringTimeSeconds must be an integer from 1 to 120, got {ring!r}"
                await self._refuse(conn, frame, message)
                return
            answers = self.script.callee_answers_after
            if answers is not None and answers <= ring:
                done_at += answers
            else:
                done_at += ring
                success, code = False, "CALL_UNANSWERED"
                message = f"the callee did not answer within {ring} s"
        if done_at > deadline:
            # Decided up front, so a tie between the deadline and the work never races.
            done_at, success, code = deadline, False, "TIMEOUT"
            message = f"{command} did not complete within {frame.timeout_ms} ms"
        long_running = command in (CallCommand.ANSWER, CallCommand.CONNECT)
        if long_running:
            self._busy = command
        try:
            await trio.sleep_until(done_at)
        finally:
            if long_running:
                self._busy = None
        result: Any = None
        if success:
            refusal = self._refusal(command)  # the state may have moved while we worked
            if refusal is not None:
                success, code, message = False, "INVALID_COMMAND", refusal
            else:
                result = self._apply(command)
        await self._respond(conn, frame, success, code, message, result)
        if success and command is CallCommand.CLOSE:
            self._finish("agent_close", "SDK_REQUEST")
        elif success and command is CallCommand.DISCONNECT:
            self._finish("agent_disconnect", "SDK_REQUEST")

    def _apply(self, command: CallCommand) -> Any:
        """Carry out a successful command (except ending the call, done after the response)."""
        new = next_state(self._state, command, success=True)
        if command is CallCommand.INTERRUPT:
            self._interrupted += len(self._playout)
            self._playout.clear()
            self._playing = False
            self._gap_started = None
        elif command in _MODES:
            self._mode = _MODES[command]
        if new in _LIVE and self._state is _P:
            self._answered_at = trio.current_time()
            self._answered.set()
        if new is not _D:
            self._set_state(new)
        return None

    async def _refuse(self, conn: Connection, frame: Command, message: str) -> None:
        await self._respond(conn, frame, False, "INVALID_COMMAND", message)

    async def _respond(
        self,
        conn: Connection,
        frame: Command,
        success: bool,
        code: str | None,
        message: str | None,
        result: Any = None,
    ) -> None:
        faults = self._sim.faults
        responded_at = None
        if faults.responses_dropped:
            logger.debug("call %s: dropping the response to %s", self.call_id, frame.command)
        else:
            if faults.response_delay > 0:
                await trio.sleep(faults.response_delay)
            response = CommandResponse(frame.command_id, success, result, code, message)
            await conn.send(response.encode())
            responded_at = trio.current_time()
        self._settle(frame.command_id, responded_at, success, code)
