"""Reconnect backoff and command correlation."""

from __future__ import annotations

import random

import pytest

from telcoflow_trio.exceptions import WSSCallCommandError, WSSCallCommandTimeoutError
from telcoflow_trio.proto import (
    Backoff,
    BackoffPolicy,
    CallCommand,
    CommandResponse,
    CommandTracker,
    response_error,
)


def test_default_sequence_matches_the_sdk_without_jitter() -> None:
    backoff = Backoff(BackoffPolicy(), random_source=lambda: 0.0)
    delays = [backoff.next_delay(0.0) for _ in range(10)]
    assert delays == pytest.approx([0.5, 0.75, 1.125, 1.6875, 2.53125, 3.796875, 5.6953125,
                                    8.54296875, 10.0, 10.0])  # fmt: skip


def test_seeded_jitter_is_exact_and_bounded() -> None:
    a = Backoff(BackoffPolicy(), random_source=random.Random(7).random)
    b = Backoff(BackoffPolicy(), random_source=random.Random(7).random)
    seq_a = [a.next_delay(0.0) for _ in range(12)]
    assert seq_a == [b.next_delay(0.0) for _ in range(12)]
    rng = random.Random(7)
    bases = [min(0.5 * 1.5**n, 10.0) for n in range(12)]
    expected = [base + base * 0.2 * rng.random() for base in bases]
    assert seq_a == expected
    assert all(d is not None and d <= 12.0 for d in seq_a)


def test_reset_starts_over_and_limits_end_retries() -> None:
    backoff = Backoff(BackoffPolicy(jitter=0, max_attempts=2))
    assert backoff.next_delay(0) == 0.5
    assert backoff.next_delay(0) == 0.75
    assert backoff.next_delay(0) is None
    backoff.reset()
    assert backoff.next_delay(0) == 0.5
    elapsed = Backoff(BackoffPolicy(jitter=0, max_elapsed=1.0))
    assert elapsed.next_delay(100.0) == 0.5
    assert elapsed.next_delay(100.5) is None  # 100.5 + 0.75 is past 101


def test_policy_validation_names_the_field() -> None:
    with pytest.raises(ValueError, match="max_attempts must be positive"):
        BackoffPolicy(max_attempts=0)
    with pytest.raises(ValueError, match="initial must be >= 0"):
        BackoffPolicy(initial=-1)


def test_commands_get_unique_ids_and_deadlines() -> None:
    tracker = CommandTracker(grace=5.0)
    first = tracker.start(CallCommand.ANSWER, now=100.0, timeout=10.0)
    second = tracker.start(
        CallCommand.CONNECT, now=101.0, timeout=30.0, data={"ringTimeSeconds": 30}
    )
    assert first.frame.command_id != second.frame.command_id
    assert first.frame.timeout_ms == 10_000
    assert first.deadline == 115.0
    assert second.deadline == 136.0
    assert len(tracker) == 2
    assert tracker.resolve(CommandResponse(second.frame.command_id, True)) is second
    assert (
        tracker.resolve(CommandResponse(second.frame.command_id, True)) is None
    )  # late duplicate
    assert tracker.resolve(CommandResponse("unknown", True)) is None
    assert tracker.drain() == [first]
    assert len(tracker) == 0


def test_response_errors() -> None:
    assert response_error(CommandResponse("c", True)) is None
    err = response_error(CommandResponse("c", False, None, "CALL_UNANSWERED", "no answer"))
    assert isinstance(err, WSSCallCommandError)
    assert err.error_code == "CALL_UNANSWERED"
    assert err.error_message == "no answer"
    timeout = response_error(CommandResponse("c", False, None, "TIMEOUT"))
    assert isinstance(timeout, WSSCallCommandTimeoutError)
    bare = response_error(CommandResponse("c", False))
    assert isinstance(bare, WSSCallCommandError)
    assert "no error code" in str(bare)
