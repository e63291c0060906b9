"""The call state machine of SDK 0.24, as data.

Rule: everything that decides whether a command may be sent, and where its
outcome leads, lives in :data:`TRANSITIONS`. The client checks it before sending,
the simulator checks it before accepting, and the docs draw their diagram from it,
so the three cannot drift apart.
"""

from __future__ import annotations

import enum

from ..exceptions import WSSCallClosedError, WSSCallStateError

__all__ = ["TRANSITIONS", "CallCommand", "CallState", "check_command", "next_state"]


class CallState(enum.StrEnum):
    """Where a call is, from the agent's point of view."""

    #: Just arrived; the caller hears ringing. ``answer()`` or ``connect()`` next.
    PENDING = "PENDING"
    #: Answered; audio flows between the agent and the caller.
    ANSWERED = "ANSWERED"
    #: ``connect()`` succeeded: caller, original callee and agent in conference.
    CONNECTED = "CONNECTED"
    #: Ended, by a command, the server, or a party hanging up. Nothing is allowed.
    DISCONNECTED = "DISCONNECTED"


class CallCommand(enum.StrEnum):
    """The media-plane commands, by their wire names."""

    ANSWER = "call.answer"
    CONNECT = "call.connect"
    WHISPER = "agent.whisper"
    BARGE = "agent.barge"
    SPY = "agent.spy"
    DISCONNECT = "call.disconnect"
    CLOSE = "call.close"
    INTERRUPT = "agent.interrupt"


_P, _A, _C, _D = CallState.PENDING, CallState.ANSWERED, CallState.CONNECTED, CallState.DISCONNECTED

#: ``(state, command) -> (state after success, state after failure)``.
#: A pair that is not here is illegal. Spec A.5, plus two documented additions:
#: ``close``/``disconnect`` in PENDING decline the call (the 1.0.0 SDK left the
#: caller ringing), and ``agent.interrupt`` wherever agent audio can play.
TRANSITIONS: dict[tuple[CallState, CallCommand], tuple[CallState, CallState]] = {
    (_P, CallCommand.ANSWER): (_A, _P),
    (_P, CallCommand.CONNECT): (_C, _P),
    (_P, CallCommand.CLOSE): (_D, _P),
    (_P, CallCommand.DISCONNECT): (_D, _P),
    (_A, CallCommand.CONNECT): (_C, _A),
    (_A, CallCommand.CLOSE): (_D, _A),
    (_A, CallCommand.DISCONNECT): (_D, _A),
    (_A, CallCommand.INTERRUPT): (_A, _A),
    (_C, CallCommand.WHISPER): (_C, _C),
    (_C, CallCommand.BARGE): (_C, _C),
    (_C, CallCommand.SPY): (_C, _C),
    (_C, CallCommand.CLOSE): (_D, _C),
    (_C, CallCommand.DISCONNECT): (_D, _C),
    (_C, CallCommand.INTERRUPT): (_C, _C),
}


def check_command(state: CallState, command: CallCommand) -> None:
    """Raise unless ``command`` may be sent in ``state``.

    Raises:
        WSSCallClosedError: the call is DISCONNECTED.
        WSSCallStateError: the command is not allowed in ``state``; the message
            names both and what is allowed instead.
    """
    if (state, command) in TRANSITIONS:
        return
    if state is CallState.DISCONNECTED:
        raise WSSCallClosedError(f"cannot send {command}: the call has ended")
    allowed = ", ".join(c for (s, c) in TRANSITIONS if s is state)
    raise WSSCallStateError(f"cannot send {command} in state {state} (allowed: {allowed})")


def next_state(state: CallState, command: CallCommand, *, success: bool) -> CallState:
    """The state after ``command``'s outcome; ``state`` itself if the pair is illegal."""
    outcomes = TRANSITIONS.get((state, command))
    if outcomes is None:
        return state
    return outcomes[0] if success else outcomes[1]
