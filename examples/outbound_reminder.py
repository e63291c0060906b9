"""Outbound reminder: call a number, play a message once answered, hang up.

``python outbound_reminder.py +15550100`` against ``telcoflow-trio simulate``
(whose simulated callee answers after a second). The message is a tone standing
in for a recorded prompt. A callee who declines or does not answer within
``RING_SECONDS`` is reported, not retried.
"""

import math
import sys

import trio

from telcoflow_trio import TelcoflowClient
from telcoflow_trio.exceptions import WSSCallNotAnswered

RING_SECONDS = 30


def message(sample_rate: int, seconds: float = 2.0, hz: float = 520.0) -> bytes:
    """A sine tone as PCM16LE: the example's stand-in for "your appointment is tomorrow"."""
    step = 2 * math.pi * hz / sample_rate
    samples = (int(6000 * math.sin(step * i)) for i in range(int(sample_rate * seconds)))
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


async def remind(client: TelcoflowClient, number: str) -> bool:
    """Call ``number`` and play the message; whether it was answered."""
    try:
        async with client.place_call(number, ring_timeout=RING_SECONDS) as call:
            await call.write_audio(message(call.sample_rate))
            await call.wait_audio_sent()  # all of it pulled by the platform
    except WSSCallNotAnswered as exc:
        print(f"{number}: no answer ({exc})")
        return False
    print(f"{number}: reminded")  # leaving the block hung up
    return True


async def main(number: str) -> None:
    from _run import config_from_env

    async with TelcoflowClient(config_from_env()) as client:
        await remind(client, number)


if __name__ == "__main__":
    trio.run(main, sys.argv[1] if len(sys.argv) > 1 else "+15550100")
