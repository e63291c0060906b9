"""The call tickers' shared timer: on time to the slot, one trio sleep per slot, cancellable."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import pytest
import trio
import trio.testing

from telcoflow_trio.simulator._clock import SlotTimer

Q = 0.001


def counting_sleeps(monkeypatch: pytest.MonkeyPatch) -> list[float]:
    """Record every ``trio.sleep_until`` deadline from now on."""
    seen: list[float] = []
    real: Callable[[float], Awaitable[None]] = trio.sleep_until

    async def sleep_until(deadline: float) -> None:
        seen.append(deadline)
        await real(deadline)

    monkeypatch.setattr(trio, "sleep_until", sleep_until)
    return seen


async def test_a_slot_wakes_together_never_early_with_one_sleep(
    autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    timer = SlotTimer(Q)
    sleeps = counting_sleeps(monkeypatch)
    woke: dict[float, float] = {}

    async def sleeper(deadline: float) -> None:
        await timer.sleep_until(deadline)
        woke[deadline] = trio.current_time()

    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            for deadline in (0.0101, 0.0104, 0.0109, 0.0112):
                nursery.start_soon(sleeper, deadline)
    for deadline, at in woke.items():
        assert deadline <= at + 1e-12
        assert at < deadline + Q
    assert woke[0.0101] == woke[0.0104] == woke[0.0109] != woke[0.0112]
    assert len(sleeps) == 2  # one per slot, not one per sleeper
    assert timer._slots == {}


@pytest.mark.parametrize("cancelled", [0, 1], ids=["the-leader", "a-follower"])
async def test_cancelling_one_sleeper_keeps_the_others_on_time(
    autojump_clock: trio.testing.MockClock, cancelled: int
) -> None:
    timer = SlotTimer(Q)
    woke: list[int] = []
    scopes = [trio.CancelScope() for _ in range(3)]

    async def sleeper(i: int) -> None:
        with scopes[i]:
            await timer.sleep_until(0.0205)
            woke.append(i)

    with trio.fail_after(1):
        async with trio.open_nursery() as nursery:
            for i in range(3):
                nursery.start_soon(sleeper, i)
                await trio.testing.wait_all_tasks_blocked()  # sleeper 0 leads
            scopes[cancelled].cancel()
        assert trio.current_time() == pytest.approx(0.021)
    assert sorted(woke) == sorted({0, 1, 2} - {cancelled})
    assert scopes[cancelled].cancelled_caught
    assert timer._slots == {}


async def test_a_past_deadline_is_a_checkpoint(autojump_clock: trio.testing.MockClock) -> None:
    timer = SlotTimer(Q)
    await trio.sleep(1)
    with trio.CancelScope() as scope:
        scope.cancel()
        await timer.sleep_until(0.5)
    assert scope.cancelled_caught
    await timer.sleep_until(trio.current_time())
    assert trio.current_time() == 1


def test_quantum_must_be_positive() -> None:
    with pytest.raises(ValueError, match="quantum must be positive"):
        SlotTimer(0)
