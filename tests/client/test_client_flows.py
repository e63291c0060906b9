"""Telcoflow 1.0.0 features: isolated channel audio, ``call.error``, call flow setup."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from telcoflow_trio import ActiveCall, CallErrorCode, CallErrorInfo, CallState, events
from telcoflow_trio.simulator import CallerScript, tone
from telcoflow_trio.simulator._audio import mix

from .conftest import open_pair


async def take(stream: Any, n: int) -> list[bytes]:
    out: list[bytes] = []
    async for chunk in stream:
        out.append(chunk)
        if len(out) == n:
            break
    return out


# -- isolated channel audio ------------------------------------------------------------


async def test_isolated_channels_carry_each_leg(autojump_clock: trio.testing.MockClock) -> None:
    script = CallerScript(audio=tone(440), callee_audio=tone(1000), callee_answers_after=0.5)
    got: dict[int, list[bytes]] = {0: [], 1: [], 2: []}

    async def collect(stream: Any, into: list[bytes]) -> None:
        async for chunk in stream:
            into.append(chunk)

    async def handler(call: ActiveCall) -> None:
        async with trio.open_nursery() as nursery:
            for channel, chunks in got.items():
                nursery.start_soon(collect, call.audio_stream(channel), chunks)
            await call.answer()
            await trio.sleep(0.5)
            await call.connect()
            await trio.sleep(0.5)
            await call.close()

    async with open_pair(handler=handler, audio_mode="isolated") as (sim, _, _):
        simulated = await sim.place_call(script)
        with trio.fail_after(30):
            await simulated.wait_result()
    mixed, caller, callee = got[0], got[1], got[2]
    assert len(mixed) == len(caller) > len(callee) >= 20  # 20 ms frames, both legs
    alone = len(mixed) - len(callee)
    assert mixed[:alone] == caller[:alone]  # alone on the line: the mix is the caller
    assert any(any(c) for c in callee)
    assert callee[0] != caller[alone]
    assert mixed[alone:] == [mix(a, b) for a, b in zip(caller[alone:], callee, strict=True)]


async def test_mixed_mode_has_only_channel_0(autojump_clock: trio.testing.MockClock) -> None:
    counts: list[int] = []

    async def handler(call: ActiveCall) -> None:
        leg = call.audio_stream(1)
        await call.answer()
        await take(call.audio_stream(), 5)
        await call.close()
        counts.append(len([c async for c in leg]))  # ends with the call, never blocks
        done.set()

    done = trio.Event()
    async with open_pair(handler=handler) as (sim, _, _):
        await sim.place_call(CallerScript(audio=tone(440)))
        with trio.fail_after(30):
            await done.wait()
    assert counts == [0]


@pytest.mark.parametrize("bad", [-1, 256, True, "1"])
async def test_audio_stream_rejects_a_bad_channel(
    autojump_clock: trio.testing.MockClock, bad: Any
) -> None:
    errors: list[str] = []

    async def handler(call: ActiveCall) -> None:
        with pytest.raises(ValueError, match="channel_id") as info:
            call.audio_stream(bad)
        errors.append(str(info.value))

    async with open_pair(handler=handler) as (sim, _, _):
        simulated = await sim.place_call(CallerScript())
        with trio.fail_after(30):
            await simulated.wait_result()
    assert len(errors) == 1


async def test_isolated_legs_are_bounded_when_unread(
    autojump_clock: trio.testing.MockClock,
) -> None:
    stats: list[Any] = []

    async def handler(call: ActiveCall) -> None:
        await call.answer()
        await trio.sleep(2)  # 100 frames on channels 0 and 1, nobody reading
        stats.append(call.statistics())
        await call.close()

    async with open_pair(handler=handler, audio_mode="isolated", inbound_queue_chunks=10) as (
        sim,
        _,
        _,
    ):
        simulated = await sim.place_call(CallerScript(audio=tone(440)))
        with trio.fail_after(30):
            await simulated.wait_result()
    assert stats[0].inbound_dropped_chunks >= 2 * 85  # both channels kept at most 10


# -- call.error ------------------------------------------------------------------------


async def test_scripted_call_errors_reach_call_handlers(
    autojump_clock: trio.testing.MockClock,
) -> None:
    script = CallerScript(call_errors=[(2, "OTHER_ERROR"), (1, CallErrorCode.TTS_SESSION_ERROR)])
    seen: list[tuple[float, CallErrorInfo, CallState]] = []

    async def handler(call: ActiveCall) -> None:
        @call.on(events.CALL_ERROR)
        def on_error(info: CallErrorInfo) -> None:
            seen.append((trio.current_time() - answered, info, call.state))

        await call.answer()
        answered = trio.current_time()
        await trio.sleep(3)
        assert call.state is CallState.ANSWERED  # call.error does not end the call
        await call.close()

    async with open_pair(handler=handler) as (sim, _, _):
        simulated = await sim.place_call(script)
        with trio.fail_after(30):
            result = await simulated.wait_result()
    assert result.ended_by == "agent_close"
    assert [(round(t, 1), i.error_code, s) for t, i, s in seen] == [
        (1.0, "TTS_SESSION_ERROR", CallState.ANSWERED),
        (2.0, "OTHER_ERROR", CallState.ANSWERED),
    ]
    assert seen[0][1].error_message == "scripted call error"


@pytest.mark.parametrize(
    ("errors", "match"),
    [([(-1, "X")], "non-negative"), ([(1, "")], "not an error code"), ([1], "pairs")],
)
def test_call_errors_script_is_checked(errors: Any, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        CallerScript(call_errors=errors)
