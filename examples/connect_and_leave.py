"""Connect and leave: ring the original callee before answering, then step out.

If the callee picks up, caller and callee talk and the agent leaves the call
(``close()`` after ``connect()`` keeps them connected). If nobody answers in
``RING_SECONDS``, the agent answers itself, apologises and ends the call.
"""

import math

from telcoflow_trio import ActiveCall
from telcoflow_trio.exceptions import WSSCallCommandError

RING_SECONDS = 20


def tone(sample_rate: int, seconds: float, hz: float = 440.0) -> bytes:
    """A sine tone as PCM16LE: the example's stand-in for a recorded prompt."""
    step = 2 * math.pi * hz / sample_rate
    samples = (int(6000 * math.sin(step * i)) for i in range(int(sample_rate * seconds)))
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


async def on_call(call: ActiveCall) -> None:
    try:
        await call.connect(ring_time_seconds=RING_SECONDS)  # from PENDING: a pre-answer connect
    except WSSCallCommandError as exc:
        if exc.error_code != "CALL_UNANSWERED":
            raise
        await call.answer()
        await call.write_audio(tone(call.sample_rate, 1.0, 330))  # "sorry, nobody is free"
        await call.wait_audio_sent()
        await call.disconnect()
        return
    await call.close()  # caller and callee stay connected without us


if __name__ == "__main__":
    from _run import run_agent

    run_agent(on_call)
