"""Fault injection: what a test or an operator can make the platform do wrong."""

from __future__ import annotations

import logging
from typing import Protocol, final

import trio

from ..proto import CallEventFrame, MessageErrorCode
from ._connection import Connection, ControlConnection

__all__ = ["FaultHost", "SimulatorFaults"]

_MESSAGE_ERROR_CODES = tuple(MessageErrorCode)

logger = logging.getLogger(__name__)


class _FaultableCall(Protocol):
    """What a fault does to one call (``SimulatedCall`` has it)."""

    def _drop_media(self) -> None: ...

    def _media_connection(self) -> Connection: ...

    def _finish(self, ended_by: str, reason: str) -> None: ...


class FaultHost(Protocol):
    """What the faults act on (the ``Simulator`` is one): no import of it."""

    def get_call(self, call_id: str) -> _FaultableCall | None: ...

    def _control_connections(self) -> list[ControlConnection]: ...


@final
class SimulatorFaults:
    """The faults of one simulator (``sim.faults``). Switches stay on until turned off."""

    def __init__(self, sim: FaultHost) -> None:
        self._sim = sim
        #: Control connections do not answer WebSocket pings.
        self.pings_stalled = False
        #: Seconds every media command response is held back.
        self.response_delay = 0.0
        #: Media command responses are never sent (the commands still take effect).
        self.responses_dropped = False
        #: Every WebSocket upgrade is answered with HTTP 401.
        self.auth_rejected = False
        #: Agent audio frames played (and pulled) per real-time frame; below 1 is slow.
        self.pull_rate = 1.0
        #: Every ``wa.msg.out`` is refused with this ``MessageErrorCode``.
        self.wa_error: str | None = None
        #: Seconds before each ``wa.msg.out`` is acknowledged.
        self.wa_ack_delay = 0.0
        #: Every REST request is answered with this HTTP status (a 5xx).
        self.rest_status: int | None = None
        #: Seconds before each ``session.create`` is answered.
        self.create_delay = 0.0
        #: ``(code, message)`` every ``session.create`` is refused with, or ``None``.
        self.create_refusal: tuple[str, str] | None = None

    def _call(self, call_id: str) -> _FaultableCall:
        call = self._sim.get_call(call_id)
        if call is None:
            raise LookupError(f"no active call {call_id!r}")
        return call

    def drop_control(self) -> int:
        """Drop every control connection abruptly (no close handshake).

        Returns:
            How many connections were dropped.
        """
        connections = self._sim._control_connections()
        for control in connections:
            control.connection.abort()
        logger.info("fault: dropped %d control connection(s)", len(connections))
        return len(connections)

    def stall_pings(self, stalled: bool = True) -> None:
        """Stop (or resume) answering WebSocket pings on control connections."""
        self.pings_stalled = stalled
        logger.info("fault: control pings %s", "stalled" if stalled else "answered")

    def drop_media(self, call_id: str) -> None:
        """Drop a call's media connection abruptly; the call ends as ``media_lost``.

        Raises:
            LookupError: no such active call, or it has no media connection.
        """
        self._call(call_id)._drop_media()
        logger.info("fault: dropped the media connection of call %s", call_id)

    def delay_responses(self, seconds: float) -> None:
        """Hold back every media command response by ``seconds`` (0 turns it off)."""
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds!r}")
        self.response_delay = seconds

    def drop_responses(self, dropped: bool = True) -> None:
        """Stop (or resume) sending media command responses."""
        self.responses_dropped = dropped

    def reject_auth(self, rejected: bool = True) -> None:
        """Answer (or stop answering) every WebSocket upgrade with HTTP 401."""
        self.auth_rejected = rejected

    def slow_buffer_requests(self, factor: float) -> None:
        """Pull and play agent audio ``factor`` times slower than real time (1 is normal).

        Raises:
            ValueError: ``factor`` is below 1.
        """
        if factor < 1:
            raise ValueError(f"factor must be at least 1, got {factor!r}")
        self.pull_rate = 1.0 / factor

    def fail_wa_messages(self, code: str | None) -> None:
        """Refuse every ``wa.msg.out`` with ``code`` (a ``MessageErrorCode``; ``None``: stop).

        Raises:
            ValueError: not a ``MessageErrorCode`` value.
        """
        if code is not None and code not in _MESSAGE_ERROR_CODES:
            raise ValueError(f"{code!r} is not one of {', '.join(_MESSAGE_ERROR_CODES)}")
        self.wa_error = code

    def delay_wa_acks(self, seconds: float) -> None:
        """Acknowledge each ``wa.msg.out`` only after ``seconds`` (0 turns it off)."""
        if seconds < 0:
            raise ValueError(f"seconds must not be negative, got {seconds!r}")
        self.wa_ack_delay = seconds

    def fail_rest(self, status: int | None = 503) -> None:
        """Answer every REST request with HTTP ``status`` (``None``: stop).

        Raises:
            ValueError: ``status`` is not a 5xx.
        """
        if status is not None and not 500 <= status <= 599:
            raise ValueError(f"status must be a 5xx, got {status!r}")
        self.rest_status = status

    async def send_control(self, raw: str | bytes) -> int:
        """Send ``raw`` as-is to every control connection (malformed, oversized, unknown...).

        Returns:
            How many connections it was queued for.
        """
        connections = self._sim._control_connections()
        for control in connections:
            control.send_nowait(raw)
        await trio.lowlevel.checkpoint()
        return len(connections)

    async def send_media(self, call_id: str, raw: str | bytes) -> None:
        """Send ``raw`` as-is on one call's media connection.

        Raises:
            LookupError: no such active call, or it has no media connection.
            WSSConnectionClosed: the media connection closed meanwhile.
        """
        await self._call(call_id)._media_connection().send(raw)

    def delay_creates(self, seconds: float) -> None:
        """Answer every ``session.create`` ``seconds`` late (0: at once)."""
        if seconds < 0:
            raise ValueError(f"the delay must be non-negative; got {seconds!r}")
        self.create_delay = seconds

    def refuse_creates(self, code: str | None, message: str = "refused by a fault") -> None:
        """Refuse every ``session.create`` (TELCO and WA) with ``code`` (``None``: stop)."""
        self.create_refusal = None if code is None else (code, message)

    def close_session(self, call_id: str, reason: str = "FORCE_CLOSE") -> None:
        """The platform closes a call's session now (``session.closed`` with ``reason``),
        ringing or not; the call ends ``server``.

        Raises:
            LookupError: no such active call.
        """
        self._call(call_id)._finish("server", reason)

    async def call_error(
        self,
        call_id: str,
        error_code: str = "TTS_SESSION_ERROR",
        error_message: str | None = None,
    ) -> None:
        """Send a ``call_event`` ``call.error`` on a call's media connection.

        Raises:
            LookupError: no such active call, or it has no media connection.
            WSSConnectionClosed: the media connection closed meanwhile.
        """
        frame = call_error_frame(error_code, error_message)
        await self._call(call_id)._media_connection().send(frame)


def call_error_frame(error_code: str, error_message: str | None = None) -> str:
    """The ``call_event`` text of a ``call.error`` (the call goes on)."""
    fields: dict[str, object] = {"error_code": error_code}
    if error_message is not None:
        fields["error_message"] = error_message
    return CallEventFrame("call.error", fields).encode()
