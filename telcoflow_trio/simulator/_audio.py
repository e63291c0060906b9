"""Caller audio for the simulator: synthetic sources, WAV files, resampling.

A source is a recipe, not a stream: :meth:`AudioSource.frames` starts a fresh
iterator of PCM16LE mono frames at the call's sample rate, so one
:class:`~telcoflow_trio.simulator.CallerScript` can drive any number of calls.
Synthetic sources precompute one second of audio per (parameters, rate), shared
by every call, and then only slice it: the per-frame cost is one slice.
"""

from __future__ import annotations

import array
import functools
import math
import os
import random
import sys
import wave
from collections.abc import Iterator
from typing import Protocol, runtime_checkable

import attrs

from ..proto import SAMPLE_WIDTH

__all__ = [
    "AudioSource",
    "PcmSource",
    "Silence",
    "Tone",
    "WhiteNoise",
    "mix",
    "noise",
    "pcm_source",
    "read_wav",
    "resample",
    "silence",
    "tone",
    "wav_source",
    "write_wav",
]

_FULL_SCALE = 32767


@runtime_checkable
class AudioSource(Protocol):
    """Something a simulated caller (or callee) can play."""

    def frames(self, sample_rate: int, frame_bytes: int) -> Iterator[bytes]:
        """A new iterator of ``frame_bytes``-long PCM16LE frames at ``sample_rate``.

        It may end (a file played to its end); the caller is silent afterwards.
        """
        ...


def _to_bytes(samples: array.array[int]) -> bytes:
    if sys.byteorder == "big":  # pragma: no cover - the wire is little-endian
        samples.byteswap()
    return samples.tobytes()


def _from_bytes(pcm: bytes) -> array.array[int]:
    samples = array.array("h")
    samples.frombytes(pcm[: len(pcm) - len(pcm) % SAMPLE_WIDTH])
    if sys.byteorder == "big":  # pragma: no cover
        samples.byteswap()
    return samples


def _loop(buffer: bytes, frame_bytes: int) -> Iterator[bytes]:
    """Endless frames cut from ``buffer``, wrapping around at its end."""
    size = len(buffer)
    position = 0
    while True:
        end = position + frame_bytes
        if end <= size:
            yield buffer[position:end]
            position = end % size
        else:
            end -= size
            yield buffer[position:] + buffer[:end]
            position = end


def _check_frame(frame_bytes: int) -> None:
    if frame_bytes <= 0 or frame_bytes % SAMPLE_WIDTH:
        raise ValueError(f"frame_bytes must be a positive even number, got {frame_bytes}")


def _check_amplitude(_: object, attribute: attrs.Attribute[float], value: float) -> None:
    if not 0.0 <= value <= 1.0:
        raise ValueError(f"{attribute.name} must be between 0 and 1, got {value!r}")


@functools.lru_cache(maxsize=64)
def _tone_second(hz: float, amplitude: float, sample_rate: int) -> bytes:
    step = 2 * math.pi * hz / sample_rate
    peak = amplitude * _FULL_SCALE
    return _to_bytes(
        array.array("h", (round(peak * math.sin(step * n)) for n in range(sample_rate)))
    )


@functools.lru_cache(maxsize=64)
def _noise_second(seed: int, amplitude: float, sample_rate: int) -> bytes:
    rng = random.Random(seed)
    peak = round(amplitude * _FULL_SCALE)
    return _to_bytes(array.array("h", (rng.randint(-peak, peak) for _ in range(sample_rate))))


@functools.lru_cache(maxsize=16)
def _zeros(frame_bytes: int) -> bytes:
    return bytes(frame_bytes)


@attrs.frozen
class Tone:
    """A sine tone; one second is computed once per rate and looped."""

    hz: float = attrs.field(default=440.0)
    amplitude: float = attrs.field(default=0.3, validator=_check_amplitude)

    @hz.validator
    def _check_hz(self, _: attrs.Attribute[float], value: float) -> None:
        if not 0 < value < 12000:
            raise ValueError(f"hz must be between 0 and 12000, got {value!r}")

    def frames(self, sample_rate: int, frame_bytes: int) -> Iterator[bytes]:
        _check_frame(frame_bytes)
        return _loop(_tone_second(self.hz, self.amplitude, sample_rate), frame_bytes)


@attrs.frozen
class Silence:
    """Digital silence: the same zero frame, forever."""

    def frames(self, sample_rate: int, frame_bytes: int) -> Iterator[bytes]:
        _check_frame(frame_bytes)
        zero = _zeros(frame_bytes)
        while True:
            yield zero


@attrs.frozen
class WhiteNoise:
    """Uniform white noise from a seeded generator (reproducible), looped each second."""

    seed: int = 0
    amplitude: float = attrs.field(default=0.1, validator=_check_amplitude)

    def frames(self, sample_rate: int, frame_bytes: int) -> Iterator[bytes]:
        _check_frame(frame_bytes)
        return _loop(_noise_second(self.seed, self.amplitude, sample_rate), frame_bytes)


@attrs.frozen
class PcmSource:
    """Recorded PCM16LE mono audio at ``sample_rate``, resampled to the call's rate.

    Plays once unless ``loop`` is true; the last frame is padded with silence.
    """

    pcm: bytes = attrs.field(repr=lambda pcm: f"<{len(pcm)} bytes>")
    sample_rate: int
    loop: bool = False

    def __attrs_post_init__(self) -> None:
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate must be positive, got {self.sample_rate}")
        if len(self.pcm) < SAMPLE_WIDTH:
            raise ValueError("the audio holds no samples")

    def frames(self, sample_rate: int, frame_bytes: int) -> Iterator[bytes]:
        _check_frame(frame_bytes)
        pcm = resample(self.pcm, self.sample_rate, sample_rate)
        if self.loop:
            return _loop(pcm, frame_bytes)
        return self._once(pcm, frame_bytes)

    @staticmethod
    def _once(pcm: bytes, frame_bytes: int) -> Iterator[bytes]:
        for start in range(0, len(pcm), frame_bytes):
            frame = pcm[start : start + frame_bytes]
            yield frame if len(frame) == frame_bytes else frame + bytes(frame_bytes - len(frame))


def tone(hz: float = 440.0, amplitude: float = 0.3) -> Tone:
    """A sine tone of ``hz`` at ``amplitude`` (0-1 of full scale)."""
    return Tone(hz, amplitude)


def silence() -> Silence:
    """Silence (a caller who says nothing)."""
    return Silence()


def noise(seed: int = 0, amplitude: float = 0.1) -> WhiteNoise:
    """Reproducible white noise."""
    return WhiteNoise(seed, amplitude)


def pcm_source(pcm: bytes, sample_rate: int, *, loop: bool = False) -> PcmSource:
    """Play ``pcm`` (PCM16LE mono at ``sample_rate``)."""
    return PcmSource(bytes(pcm), sample_rate, loop)


def wav_source(path: str | os.PathLike[str], *, loop: bool = False) -> PcmSource:
    """Play a 16-bit PCM WAV file (mono, or stereo mixed down).

    The file is read now, so a bad file fails here and not in the middle of a call.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not 16-bit PCM WAV.
    """
    pcm, rate = read_wav(path)
    return PcmSource(pcm, rate, loop)


def read_wav(path: str | os.PathLike[str]) -> tuple[bytes, int]:
    """``(mono PCM16LE, sample_rate)`` of a 16-bit PCM WAV file.

    Raises:
        OSError: the file cannot be read.
        ValueError: it is not a 16-bit PCM WAV file with one or two channels.
    """
    try:
        with wave.open(os.fspath(path), "rb") as wav:
            width, channels, rate = wav.getsampwidth(), wav.getnchannels(), wav.getframerate()
            data = wav.readframes(wav.getnframes())
    except (wave.Error, EOFError) as exc:
        raise ValueError(f"{os.fspath(path)!r} is not a PCM WAV file: {exc}") from None
    if width != SAMPLE_WIDTH:
        raise ValueError(f"{os.fspath(path)!r} has {8 * width}-bit samples; only 16-bit works")
    if channels == 2:
        stereo = _from_bytes(data)
        mono = array.array(
            "h", ((a + b) // 2 for a, b in zip(stereo[::2], stereo[1::2], strict=True))
        )
        data = _to_bytes(mono)
    elif channels != 1:
        raise ValueError(f"{os.fspath(path)!r} has {channels} channels; use mono or stereo")
    return data, rate


def write_wav(path: str | os.PathLike[str], pcm: bytes, sample_rate: int) -> None:
    """Write PCM16LE mono ``pcm`` as a WAV file (blocking: call it from a thread)."""
    with wave.open(os.fspath(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(SAMPLE_WIDTH)
        wav.setframerate(sample_rate)
        wav.writeframes(pcm)


@functools.lru_cache(maxsize=8)
def _resample_cached(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    source = _from_bytes(pcm)
    count = len(source)
    out_count = count * to_rate // from_rate
    ratio = from_rate / to_rate
    last = count - 1
    out = array.array("h", bytes(out_count * SAMPLE_WIDTH))
    for i in range(out_count):
        position = i * ratio
        j = int(position)
        if j >= last:
            out[i] = source[last]
            continue
        frac = position - j
        a = source[j]
        out[i] = round(a + (source[j + 1] - a) * frac)
    return _to_bytes(out)


def resample(pcm: bytes, from_rate: int, to_rate: int) -> bytes:
    """``pcm`` (PCM16LE mono) converted from ``from_rate`` to ``to_rate``.

    Linear interpolation: good enough for test prompts, not for music.
    """
    if from_rate == to_rate:
        return pcm
    return _resample_cached(pcm, from_rate, to_rate)


def mix(a: bytes, b: bytes) -> bytes:
    """The sample-wise sum of two equally long PCM16LE frames, clipped to full scale."""
    x, y = _from_bytes(a), _from_bytes(b)
    return _to_bytes(
        array.array("h", [min(32767, max(-32768, p + q)) for p, q in zip(x, y, strict=True)])
    )
