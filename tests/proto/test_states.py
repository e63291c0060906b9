"""The call state table, row by row against spec A.5."""

from __future__ import annotations

import itertools

import pytest

from telcoflow_trio.exceptions import WSSCallClosedError, WSSCallStateError
from telcoflow_trio.proto import TRANSITIONS, CallCommand, CallState, check_command, next_state

P, A, C, D = CallState.PENDING, CallState.ANSWERED, CallState.CONNECTED, CallState.DISCONNECTED
CMD = CallCommand

# (state, command, after success, after failure): spec A.5's transition table,
# plus the documented additions (decline in PENDING, interrupt while audio plays).
SPEC_ROWS = [
    (P, CMD.ANSWER, A, P),
    (P, CMD.CONNECT, C, P),
    (P, CMD.CLOSE, D, P),
    (P, CMD.DISCONNECT, D, P),
    (A, CMD.CONNECT, C, A),  # CALL_UNANSWERED: "the call remains active"
    (A, CMD.CLOSE, D, A),
    (A, CMD.DISCONNECT, D, A),
    (A, CMD.INTERRUPT, A, A),
    (C, CMD.BARGE, C, C),
    (C, CMD.WHISPER, C, C),
    (C, CMD.SPY, C, C),
    (C, CMD.CLOSE, D, C),
    (C, CMD.DISCONNECT, D, C),
    (C, CMD.INTERRUPT, C, C),
]


@pytest.mark.parametrize(("state", "command", "ok", "failed"), SPEC_ROWS)
def test_row(state: CallState, command: CallCommand, ok: CallState, failed: CallState) -> None:
    check_command(state, command)
    assert next_state(state, command, success=True) is ok
    assert next_state(state, command, success=False) is failed


def test_table_has_exactly_the_spec_rows() -> None:
    assert set(TRANSITIONS) == {(s, c) for s, c, _, _ in SPEC_ROWS}


@pytest.mark.parametrize(
    ("state", "command"),
    [(s, c) for s, c in itertools.product([P, A, C], CallCommand) if (s, c) not in TRANSITIONS],
)
def test_illegal_commands_name_state_and_command(state: CallState, command: CallCommand) -> None:
    with pytest.raises(WSSCallStateError) as info:
        check_command(state, command)
    message = str(info.value)
    assert str(command) in message
    assert str(state) in message
    assert "allowed:" in message
    assert next_state(state, command, success=True) is state


@pytest.mark.parametrize("command", list(CallCommand))
def test_nothing_is_allowed_after_the_end(command: CallCommand) -> None:
    with pytest.raises(WSSCallClosedError, match="ended"):
        check_command(D, command)


def test_spy_whisper_barge_need_a_conference() -> None:
    with pytest.raises(WSSCallStateError, match=r"agent.spy in state ANSWERED"):
        check_command(A, CMD.SPY)
