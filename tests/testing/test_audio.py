"""The audio helpers: making test audio and measuring it, without numpy."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from telcoflow_trio.simulator._audio import mix
from telcoflow_trio.testing import (
    audio_seconds,
    contains_tone,
    correlation,
    is_silent,
    make_silence,
    make_tone,
    noise,
    read_wav,
    rms,
    tone_share,
    write_wav,
)

RATE = 8000


def white_noise(seconds: float, amplitude: float = 0.3) -> bytes:
    return next(noise(seed=7, amplitude=amplitude).frames(RATE, round(seconds * RATE) * 2))


def test_tone_and_silence_sizes_and_levels() -> None:
    beep = make_tone(440, 0.5, RATE, amplitude=0.5)
    assert len(beep) == 0.5 * RATE * 2
    assert audio_seconds(beep, RATE) == 0.5
    assert rms(beep) == pytest.approx(0.5 / math.sqrt(2), rel=1e-3)
    quiet = make_silence(0.25, 16000)
    assert quiet == bytes(8000)
    assert is_silent(quiet)
    assert not is_silent(beep)
    assert rms(b"") == 0.0
    assert make_tone(440, 0, RATE) == b""


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: make_tone(4000, 1, RATE), "hz must be between 0 and 4000"),
        (lambda: make_tone(440, -1, RATE), "seconds must not be negative"),
        (lambda: make_tone(440, 1, 0), "sample_rate must be a positive integer"),
        (lambda: make_tone(440, 1, RATE, amplitude=2), "amplitude must be between 0 and 1"),
        (lambda: rms(b"\x00"), "even number of bytes"),
        (lambda: correlation(b"", b"", max_lag=-1), "max_lag must not be negative"),
        (lambda: tone_share(b"", 0, RATE), "hz must be between"),
    ],
)
def test_bad_arguments_are_named(call: object, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        call()  # type: ignore[operator]


def test_tone_share_tells_tones_apart() -> None:
    a, b = make_tone(440, 1, RATE), make_tone(880, 1, RATE)
    assert tone_share(a, 440, RATE) == pytest.approx(1, abs=1e-6)
    assert tone_share(a, 880, RATE) == pytest.approx(0, abs=1e-6)
    both = mix(a, b)
    assert tone_share(both, 440, RATE) == pytest.approx(0.5, abs=0.01)
    assert contains_tone(both, 880, RATE, min_share=0.4)
    assert not contains_tone(both, 880, RATE, min_share=0.6)
    assert tone_share(white_noise(1), 440, RATE) < 0.02
    assert tone_share(make_silence(1, RATE), 440, RATE) == 0.0
    assert not contains_tone(b"", 440, RATE)


def test_tone_share_ignores_silences_and_level() -> None:
    speech = (
        make_silence(2, RATE) + make_tone(440, 0.5, RATE, amplitude=0.05) + make_silence(1, RATE)
    )
    assert contains_tone(speech, 440, RATE, min_share=0.95)
    assert tone_share(make_tone(445, 1, RATE), 440, RATE) > 0.75  # a few hertz off
    assert tone_share(make_tone(460, 1, RATE), 440, RATE) < 0.01


def test_tone_share_at_other_rates() -> None:
    for rate in (16000, 24000):
        assert contains_tone(make_tone(1000, 0.2, rate), 1000, rate, min_share=0.99)


def test_correlation() -> None:
    voice = white_noise(0.5)
    assert correlation(voice, voice) == pytest.approx(1.0)
    assert correlation(voice, bytes(len(voice))) == 0.0
    louder = bytes(bytearray(voice))  # same samples
    assert correlation(voice, louder) == pytest.approx(1.0)
    inverted = mix(bytes(len(voice)), voice)  # a copy through mix
    assert correlation(voice, inverted) == pytest.approx(1.0)
    delayed = make_silence(0.005, RATE) + voice  # 40 samples late
    assert correlation(voice, delayed) < 0.1
    assert correlation(voice, delayed, max_lag=40) == pytest.approx(1.0)
    assert correlation(voice, white_noise(0.5, amplitude=0.1)[1000:]) < 0.1
    assert correlation(b"", b"") == 0.0


def test_wav_round_trip(tmp_path: Path) -> None:
    beep = make_tone(440, 0.3, 16000)
    write_wav(tmp_path / "beep.wav", beep, 16000)
    assert read_wav(tmp_path / "beep.wav") == (beep, 16000)
    (tmp_path / "bad.wav").write_bytes(b"not a wav")
    with pytest.raises(ValueError, match="is not a PCM WAV file"):
        read_wav(tmp_path / "bad.wav")
