"""Voicemail: answer, play a beep, record the caller to a WAV file, hang up.

Recording stops when the caller hangs up or after ``MAX_SECONDS``. Files go to
``./voicemail/<call id>.wav``.
"""

import wave
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from telcoflow_trio import ActiveCall

MAX_SECONDS = 30
FOLDER = Path("voicemail")


def beep(sample_rate: int) -> bytes:
    """Half a second of a 1 kHz square wave, PCM16LE."""
    period = sample_rate // 1000
    samples = (3000 if (i % period) < period // 2 else -3000 for i in range(sample_rate // 2))
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


async def save_wav(call_id: str, sample_rate: int, pcm: bytes) -> None:
    """Write ``./voicemail/<call id>.wav`` (in a worker thread: disk I/O blocks)."""
    await trio.to_thread.run_sync(_write_wav, FOLDER / f"{call_id}.wav", sample_rate, pcm)


def _write_wav(path: Path, sample_rate: int, pcm: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)


async def on_call(
    call: ActiveCall, save: Callable[[str, int, bytes], Awaitable[None]] = save_wav
) -> None:
    await call.answer()
    await call.write_audio(beep(call.sample_rate))
    await call.wait_audio_sent()
    message = bytearray()
    with trio.move_on_after(MAX_SECONDS):
        async for chunk in call.audio_stream():
            message += chunk
    if not call.terminated:
        await call.disconnect()
    await save(call.call_id, call.sample_rate, bytes(message))


if __name__ == "__main__":
    from _run import run_agent

    run_agent(on_call)
