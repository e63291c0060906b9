"""Make test audio and measure it: pure Python, no numpy, no ``audioop``.

Everything is 16-bit little-endian mono PCM (the format of every call), passed as
``bytes``. The measures answer what a test of a voice agent asks: did the agent
say anything (:func:`rms`, :func:`is_silent`), was it the prompt we expected
(:func:`contains_tone`, :func:`tone_share`), is it our audio coming back
(:func:`correlation`)? They run at C speed where it matters (``array`` and
``sum(map(...))``), so seconds of audio take milliseconds.
"""

from __future__ import annotations

import array
import math
import operator
import sys

from ..proto import SAMPLE_WIDTH
from ..simulator._audio import read_wav, write_wav

__all__ = [
    "audio_seconds",
    "contains_tone",
    "correlation",
    "is_silent",
    "make_silence",
    "make_tone",
    "read_wav",
    "rms",
    "tone_share",
    "write_wav",
]

_FULL_SCALE = 32768.0
#: Block length of :func:`tone_share`: fine enough to ignore silences, long enough
#: (20 Hz resolution) to tell neighbouring tones apart.
_BLOCK_SECONDS = 0.05


def _samples(pcm: bytes) -> array.array[int]:
    if len(pcm) % SAMPLE_WIDTH:
        raise ValueError(f"PCM16 audio has an even number of bytes; got {len(pcm)}")
    samples = array.array("h")
    samples.frombytes(pcm)
    if sys.byteorder == "big":  # pragma: no cover - the wire is little-endian
        samples.byteswap()
    return samples


def _check_rate(sample_rate: int) -> None:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, int) or sample_rate <= 0:
        raise ValueError(f"sample_rate must be a positive integer; got {sample_rate!r}")


def _check_seconds(seconds: float) -> None:
    if not seconds >= 0:
        raise ValueError(f"seconds must not be negative; got {seconds!r}")


def make_tone(hz: float, seconds: float, sample_rate: int, *, amplitude: float = 0.3) -> bytes:
    """``seconds`` of a sine tone of ``hz`` at ``amplitude`` (0-1 of full scale).

    Raises:
        ValueError: a negative duration, a bad rate, ``hz`` at or above half the
            rate, or ``amplitude`` outside 0-1.
    """
    _check_rate(sample_rate)
    _check_seconds(seconds)
    if not 0 < hz < sample_rate / 2:
        raise ValueError(f"hz must be between 0 and {sample_rate / 2:g} (half the rate); got {hz}")
    if not 0 <= amplitude <= 1:
        raise ValueError(f"amplitude must be between 0 and 1; got {amplitude!r}")
    step = 2 * math.pi * hz / sample_rate
    peak = amplitude * 32767
    samples = array.array(
        "h", (round(peak * math.sin(step * n)) for n in range(round(seconds * sample_rate)))
    )
    if sys.byteorder == "big":  # pragma: no cover
        samples.byteswap()
    return samples.tobytes()


def make_silence(seconds: float, sample_rate: int) -> bytes:
    """``seconds`` of digital silence.

    Raises:
        ValueError: a negative duration or a bad rate.
    """
    _check_rate(sample_rate)
    _check_seconds(seconds)
    return bytes(round(seconds * sample_rate) * SAMPLE_WIDTH)


def audio_seconds(pcm: bytes, sample_rate: int) -> float:
    """How long ``pcm`` plays at ``sample_rate``."""
    _check_rate(sample_rate)
    return len(pcm) / (SAMPLE_WIDTH * sample_rate)


def rms(pcm: bytes) -> float:
    """The root-mean-square level, as a fraction of full scale (0 for no audio).

    A full-scale sine is about 0.707; ``make_tone(..., amplitude=0.3)`` about 0.21.

    Raises:
        ValueError: ``pcm`` is not whole 16-bit samples.
    """
    samples = _samples(pcm)
    if not samples:
        return 0.0
    return math.sqrt(sum(map(operator.mul, samples, samples)) / len(samples)) / _FULL_SCALE


def is_silent(pcm: bytes, threshold: float = 0.001) -> bool:
    """Whether the level of ``pcm`` is at most ``threshold`` (default: -60 dBFS)."""
    return rms(pcm) <= threshold


def _goertzel_power(
    block: array.array[int], coefficient: float, cos_w: float, sin_w: float
) -> float:
    """``|X(w)|^2`` of ``block`` at one frequency (the generalised Goertzel algorithm)."""
    s1 = s2 = 0.0
    for x in block:
        s1, s2 = x + coefficient * s1 - s2, s1
    real = s1 * cos_w - s2
    imaginary = s1 * sin_w
    return real * real + imaginary * imaginary


def tone_share(pcm: bytes, hz: float, sample_rate: int) -> float:
    """The share (0-1) of the power of ``pcm`` that is a tone of ``hz``.

    About 1 for a pure tone of ``hz``, 0.5 each for two equally loud tones, near
    0 for silence, other tones and noise. Silent stretches do not dilute it: the
    audio is measured in 50 ms blocks, each weighted by its power. A tone a few
    hertz off still mostly counts (about 0.8 at 5 Hz off, nothing at 20 Hz off).

    Raises:
        ValueError: ``pcm`` is not whole 16-bit samples, or ``hz`` is not between
            0 and half the rate.
    """
    _check_rate(sample_rate)
    if not 0 < hz < sample_rate / 2:
        raise ValueError(f"hz must be between 0 and {sample_rate / 2:g} (half the rate); got {hz}")
    samples = _samples(pcm)
    w = 2 * math.pi * hz / sample_rate
    cos_w, sin_w = math.cos(w), math.sin(w)
    coefficient = 2 * cos_w
    block = max(1, round(_BLOCK_SECONDS * sample_rate))
    tone = total = 0.0
    for start in range(0, len(samples), block):
        chunk = samples[start : start + block]
        energy = float(sum(map(operator.mul, chunk, chunk)))
        if energy:
            total += energy
            # A sine of amplitude A over n samples: |X|^2 = (A n / 2)^2, energy A^2 n / 2.
            tone += min(energy, 2 * _goertzel_power(chunk, coefficient, cos_w, sin_w) / len(chunk))
    return tone / total if total else 0.0


def contains_tone(pcm: bytes, hz: float, sample_rate: int, *, min_share: float = 0.5) -> bool:
    """Whether a tone of ``hz`` carries at least ``min_share`` of the power of ``pcm``.

    See :func:`tone_share`. Silence contains no tone.
    """
    return tone_share(pcm, hz, sample_rate) >= min_share


def correlation(a: bytes, b: bytes, *, max_lag: int = 0) -> float:
    """How alike two recordings are: the normalised cross-correlation, -1 to 1.

    1 means ``b`` is ``a`` scaled (louder or quieter), 0 unrelated, -1 inverted.
    With ``max_lag`` it is the best value over shifting ``b`` up to ``max_lag``
    samples either way (for audio that came back delayed); only the overlapping
    part is compared. Costs ``len * (2 * max_lag + 1)`` multiplications.

    Returns:
        the correlation, or 0.0 when either side is silent over the overlap.

    Raises:
        ValueError: not whole 16-bit samples, or a negative ``max_lag``.
    """
    if max_lag < 0:
        raise ValueError(f"max_lag must not be negative; got {max_lag}")
    x, y = _samples(a), _samples(b)
    best = 0.0
    found = False
    for lag in range(-max_lag, max_lag + 1):
        # lag > 0: b is late, so b[lag + i] lines up with a[i].
        xs = x[max(0, -lag) :]
        ys = y[max(0, lag) :]
        n = min(len(xs), len(ys))
        if n == 0:
            continue
        xs, ys = xs[:n], ys[:n]
        energy = sum(map(operator.mul, xs, xs)) * sum(map(operator.mul, ys, ys))
        if not energy:
            continue
        value = sum(map(operator.mul, xs, ys)) / math.sqrt(energy)
        if not found or value > best:
            best, found = value, True
    return best
