"""The claim policy's arithmetic, the lag meter and the latency histogram (sans-IO)."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
from hypothesis import given, strategies as st

from telcoflow_trio import TelcoflowClientConfig
from telcoflow_trio.proto import (
    CLAIM_LATENCY_BUCKETS,
    ClaimMode,
    ClaimPolicy,
    LagMeter,
    LatencyHistogram,
)


def test_defaults_are_load_aware_and_idle_means_no_delay() -> None:
    policy = ClaimPolicy()
    assert policy.mode is ClaimMode.LOAD_AWARE
    assert policy.delay(0, None, 0.0) == 0.0
    assert policy.delay(0, 10, policy.lag_tolerance) == 0.0  # timer noise is no load
    assert ClaimPolicy.first_come().delay(9, 10, 1.0) == 0.0


def test_load_by_calls_and_lag() -> None:
    policy = ClaimPolicy(max_delay=0.1, half_load_calls=10, lag_tolerance=0.0, half_load_lag=0.1)
    assert policy.load(5, 10, 0.0) == 0.5
    assert policy.load(15, 10, 0.0) == 1.0  # at or past max_calls: full
    assert policy.load(10, None, 0.0) == 0.5
    assert policy.load(0, None, 0.1) == 0.5
    assert policy.load(5, 10, 0.1) == pytest.approx(0.75)
    assert policy.delay(5, 10, 0.1) == pytest.approx(0.075)


@given(
    calls=st.integers(0, 10_000),
    max_calls=st.one_of(st.none(), st.integers(1, 1000)),
    lag=st.floats(0, 100),
)
def test_delay_is_bounded_and_grows_with_load(
    calls: int, max_calls: int | None, lag: float
) -> None:
    policy = ClaimPolicy()
    delay = policy.delay(calls, max_calls, lag)
    assert 0.0 <= delay <= policy.max_delay
    assert policy.delay(calls + 1, max_calls, lag) >= delay
    assert policy.delay(calls, max_calls, lag + 0.01) >= delay
    if max_calls is None or calls + 1 < max_calls:  # below max, one more call always shows
        assert policy.delay(calls + 1, max_calls, 0.0) > policy.delay(calls, max_calls, 0.0)


@pytest.mark.parametrize(
    ("options", "fragment"),
    [
        ({"mode": "fastest"}, "mode must be one of 'load_aware', 'first_come'; got 'fastest'"),
        ({"max_delay": 0}, r"max_delay must be a number of seconds in \(0, 1\]; got 0"),
        ({"max_delay": 5.0}, r"max_delay must be a number of seconds in \(0, 1\]; got 5.0"),
        ({"max_delay": True}, "max_delay must be a number"),
        ({"half_load_calls": 0}, "half_load_calls must be a positive integer; got 0"),
        ({"half_load_calls": 2.5}, "half_load_calls must be a positive integer; got 2.5"),
        ({"lag_interval": -1}, "lag_interval must be a positive number; got -1"),
        ({"lag_tolerance": -0.1}, "lag_tolerance must be a number >= 0; got -0.1"),
        ({"half_load_lag": "x"}, "half_load_lag must be a positive number; got 'x'"),
    ],
)
def test_policy_validation_names_the_field(options: dict[str, Any], fragment: str) -> None:
    with pytest.raises(ValueError, match=fragment):
        ClaimPolicy(**options)


def test_config_fields() -> None:
    config = TelcoflowClientConfig.sandbox("k", "c")
    assert (config.max_calls, config.claim_policy) == (None, ClaimPolicy())
    config = TelcoflowClientConfig.sandbox("k", "c", max_calls=8, claim_policy="first_come")
    assert (config.max_calls, config.claim_policy) == (8, ClaimPolicy.first_come())
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="max_calls must be a positive integer or None"):
            TelcoflowClientConfig.sandbox("k", "c", max_calls=bad)
    with pytest.raises(ValueError, match="mode must be one of"):
        TelcoflowClientConfig.sandbox("k", "c", claim_policy="eager")
    with pytest.raises(TypeError, match="claim_policy"):
        TelcoflowClientConfig.sandbox("k", "c", claim_policy=0.1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        ClaimPolicy().max_delay = 1.0  # type: ignore[misc]


def test_lag_meter_sees_a_stall_at_once_and_forgets_it() -> None:
    meter = LagMeter()
    meter.tick(1.0, 1.0005)
    assert meter.lag == pytest.approx(0.0005)
    meter.tick(2.0, 2.3)
    assert meter.lag == pytest.approx(0.3)
    for n in range(1, 7):
        meter.tick(2.0 + n, 2.0 + n)
    assert meter.lag == pytest.approx(0.3 / 64)
    meter.tick(10.0, 9.99)  # early (a coarse clock) counts as no lag
    assert meter.lag >= 0.0


def test_latency_histogram() -> None:
    empty = LatencyHistogram()
    assert (empty.count, empty.sum, empty.max) == (0, 0.0, 0.0)
    assert len(empty.counts) == len(CLAIM_LATENCY_BUCKETS) + 1
    h = empty.observe(0.0).observe(0.005).observe(0.007).observe(60.0)
    assert empty.count == 0  # immutable
    assert (h.count, h.max) == (4, 60.0)
    assert h.sum == pytest.approx(60.012)
    cumulative = h.cumulative()
    assert cumulative[0] == (0.005, 2)  # <= 5 ms: 0 and exactly 5 ms
    assert cumulative[1] == (0.01, 3)
    assert cumulative[-2] == (10.0, 3)
    assert cumulative[-1] == (float("inf"), 4)
