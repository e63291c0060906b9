"""Who claims a call: the claim policy and its arithmetic, with no I/O.

The platform gives a call to the first worker whose ``session.open`` arrives;
every other worker is answered ``SESSION_BUSY``. Under the load-aware policy
each worker waits before claiming, for a time that grows with its load (active
calls and claims in flight, relative to ``max_calls``, and how late its event
loop runs), so the least-loaded worker's claim arrives first. Every worker
applies the same rule to its own numbers: no coordination service, and it works
across processes and machines as long as the difference in delays is larger
than the difference in network latency to the platform.
"""

from __future__ import annotations

import bisect
import enum
from typing import Any, Final

import attrs

__all__ = ["CLAIM_LATENCY_BUCKETS", "ClaimMode", "ClaimPolicy", "LagMeter", "LatencyHistogram"]

#: Upper bounds (seconds) of the claim latency histogram's buckets (plus +Inf).
CLAIM_LATENCY_BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
#: Longest claim delay a policy may ask for: a ringing caller waits for it.
MAX_CLAIM_DELAY: Final = 1.0
#: How much of the measured loop lag is kept at each tick of the lag timer.
_LAG_DECAY: Final = 0.5


def _number(value: Any) -> bool:
    return not isinstance(value, bool) and isinstance(value, int | float)


def _delay(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _number(value) or not 0 < value <= MAX_CLAIM_DELAY:
        raise ValueError(
            f"{attribute.name} must be a number of seconds in (0, {MAX_CLAIM_DELAY:g}]; "
            f"got {value!r}"
        )


def _positive(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _number(value) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive number; got {value!r}")


def _positive_int(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"{attribute.name} must be a positive integer; got {value!r}")


def _non_negative(_: object, attribute: attrs.Attribute[Any], value: Any) -> None:
    if not _number(value) or value < 0:
        raise ValueError(f"{attribute.name} must be a number >= 0; got {value!r}")


def _mode(value: Any) -> ClaimMode:
    try:
        return ClaimMode(value)
    except ValueError:
        allowed = ", ".join(repr(m.value) for m in ClaimMode)
        raise ValueError(f"mode must be one of {allowed}; got {value!r}") from None


class ClaimMode(enum.StrEnum):
    """How a worker races the others for a call."""

    #: Wait in proportion to load before claiming, so the least-loaded worker wins.
    LOAD_AWARE = "load_aware"
    #: Claim at once: the worker nearest the platform wins every race.
    FIRST_COME = "first_come"


@attrs.frozen(kw_only=True)
class ClaimPolicy:
    """How eagerly a worker claims the calls it is offered (``session.notify``).

    The default is load-aware: a worker with no calls and a prompt event loop
    claims at once, exactly as first-come does, and a loaded one waits up to
    :attr:`max_delay`. Build the other mode with :meth:`first_come`.

    Raises:
        ValueError: a field is out of range (the message names it).
    """

    mode: ClaimMode = attrs.field(default=ClaimMode.LOAD_AWARE, converter=_mode)
    #: The wait at full load, in seconds (at most 1 s). It should exceed the
    #: spread of the workers' network latencies to the platform several times.
    max_delay: float = attrs.field(default=0.05, validator=_delay)
    #: Without ``max_calls``: the number of calls that counts as half load.
    half_load_calls: int = attrs.field(default=50, validator=_positive_int)
    #: Period of the event-loop lag timer, in seconds.
    lag_interval: float = attrs.field(default=0.1, validator=_positive)
    #: Loop lag up to this many seconds counts as none (timer noise).
    lag_tolerance: float = attrs.field(default=0.005, validator=_non_negative)
    #: Loop lag beyond the tolerance that counts as half load, in seconds.
    half_load_lag: float = attrs.field(default=0.05, validator=_positive)

    @classmethod
    def first_come(cls) -> ClaimPolicy:
        """Claim every call at once (the platform's own rule, no balancing)."""
        return cls(mode=ClaimMode.FIRST_COME)

    @property
    def load_aware(self) -> bool:
        return self.mode is ClaimMode.LOAD_AWARE

    def load(self, calls: int, max_calls: int | None, lag: float) -> float:
        """The load in ``[0, 1]`` of a worker with ``calls`` calls and loop lag ``lag``.

        Calls count as ``calls / max_calls`` (or ``calls / (calls +
        half_load_calls)`` without a maximum); lag beyond the tolerance as
        ``excess / (excess + half_load_lag)``. The two combine as
        ``1 - (1 - a) * (1 - b)``: either alone can make a worker look loaded,
        and the result keeps growing with each while below 1.
        """
        if max_calls is not None:
            by_calls = min(calls / max_calls, 1.0)
        else:
            by_calls = calls / (calls + self.half_load_calls)
        excess = max(lag - self.lag_tolerance, 0.0)
        by_lag = excess / (excess + self.half_load_lag)
        return 1.0 - (1.0 - by_calls) * (1.0 - by_lag)

    def delay(self, calls: int, max_calls: int | None, lag: float) -> float:
        """Seconds to wait before claiming: ``max_delay * load`` (0 under first-come)."""
        if not self.load_aware:
            return 0.0
        return self.max_delay * self.load(calls, max_calls, lag)


class LagMeter:
    """How late the event loop runs, from a timer that should wake every ``interval``.

    Each :meth:`tick` measures how late one wake-up was; :attr:`lag` keeps a
    decaying peak (halved at each tick unless a later tick was as late), so a
    stall is seen at once and forgotten within a few intervals.
    """

    def __init__(self) -> None:
        self.lag = 0.0

    def tick(self, expected: float, now: float) -> None:
        """The timer due at ``expected`` woke at ``now``."""
        self.lag = max(now - expected, self.lag * _LAG_DECAY, 0.0)


@attrs.frozen
class LatencyHistogram:
    """Counts of latencies by bucket, with their sum and maximum (immutable).

    Attributes:
        bounds: the buckets' upper bounds in seconds, ascending; a last bucket
            (``+Inf``) holds the rest.
        counts: observations per bucket (not cumulative), ``len(bounds) + 1``.
        count: all observations.
        sum: their total, in seconds.
        max: the largest, in seconds (0 before any).
    """

    bounds: tuple[float, ...] = CLAIM_LATENCY_BUCKETS
    counts: tuple[int, ...] = attrs.field()
    count: int = 0
    sum: float = 0.0
    max: float = 0.0

    @counts.default
    def _no_counts(self) -> tuple[int, ...]:
        return (0,) * (len(self.bounds) + 1)

    def observe(self, seconds: float) -> LatencyHistogram:
        """This histogram with one more observation."""
        index = bisect.bisect_left(self.bounds, seconds)
        counts = list(self.counts)
        counts[index] += 1
        return attrs.evolve(
            self,
            counts=tuple(counts),
            count=self.count + 1,
            sum=self.sum + seconds,
            max=max(self.max, seconds),
        )

    def cumulative(self) -> list[tuple[float, int]]:
        """``(upper bound, observations <= bound)`` per bucket, ending with ``+inf``."""
        out: list[tuple[float, int]] = []
        total = 0
        for bound, n in zip((*self.bounds, float("inf")), self.counts, strict=True):
            total += n
            out.append((bound, total))
        return out
