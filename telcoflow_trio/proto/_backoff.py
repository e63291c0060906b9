"""Reconnect backoff, as a pure policy.

Defaults are those of the 1.0.0 SDK (spec B.3): ``0.5 s * 1.5**attempt``, capped
at 10 s, plus 0-20 % jitter, no limit on attempts. Unlike 1.0.0 the caller decides
when to :meth:`Backoff.reset` (after ``setup.done``, not on socket open), and a
limit on attempts or elapsed time can end the retries.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["Backoff", "BackoffPolicy"]


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value < 0:
        raise ValueError(f"{attribute.name} must be >= 0, got {value}")


def _optional_positive(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if value is not None and value <= 0:
        raise ValueError(f"{attribute.name} must be positive or None, got {value}")


@attrs.frozen
class BackoffPolicy:
    """How long to wait before each reconnect attempt, and when to give up."""

    initial: float = attrs.field(default=0.5, validator=_non_negative)
    factor: float = attrs.field(default=1.5, validator=_non_negative)
    max_delay: float = attrs.field(default=10.0, validator=_non_negative)
    #: Extra random delay, as a fraction of the base delay (0.2 = up to +20 %).
    jitter: float = attrs.field(default=0.2, validator=_non_negative)
    #: Give up after this many failed attempts in a row (``None``: never).
    max_attempts: int | None = attrs.field(default=None, validator=_optional_positive)
    #: Give up once this many seconds have passed since the first failure.
    max_elapsed: float | None = attrs.field(default=None, validator=_optional_positive)


class Backoff:
    """The state of one reconnect sequence under a :class:`BackoffPolicy`.

    Args:
        policy: the numbers.
        random_source: returns floats in ``[0, 1)``; pass a seeded
            ``random.Random(seed).random`` for reproducible delays.
    """

    def __init__(
        self, policy: BackoffPolicy, random_source: Callable[[], float] = random.random
    ) -> None:
        self.policy = policy
        self._random = random_source
        self.attempt = 0
        self._started: float | None = None

    def next_delay(self, now: float) -> float | None:
        """Delay before the next attempt, or ``None`` if the policy says give up."""
        p = self.policy
        if self._started is None:
            self._started = now
        if p.max_attempts is not None and self.attempt >= p.max_attempts:
            return None
        base = min(p.initial * p.factor**self.attempt, p.max_delay)
        delay = base + base * p.jitter * self._random()
        if p.max_elapsed is not None and now + delay - self._started > p.max_elapsed:
            return None
        self.attempt += 1
        return delay

    def reset(self) -> None:
        """Start over: the connection is healthy again."""
        self.attempt = 0
        self._started = None
