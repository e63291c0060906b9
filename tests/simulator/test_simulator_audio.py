"""Caller audio sources, WAV files, resampling, and the simulator's value classes."""

from __future__ import annotations

import array
import itertools
import wave
from pathlib import Path

import pytest

from telcoflow_trio.simulator import (
    CallerScript,
    SimulatorConfig,
    noise,
    pcm_source,
    silence,
    tone,
    wav_source,
)
from telcoflow_trio.simulator._audio import mix, read_wav, resample, write_wav


def samples(pcm: bytes) -> array.array[int]:
    out = array.array("h")
    out.frombytes(pcm)
    return out


def zero_crossings(pcm: bytes) -> int:
    s = samples(pcm)
    return sum(1 for a, b in itertools.pairwise(s) if (a < 0) != (b < 0))


def test_tone_frames_loop_seamlessly() -> None:
    frames = tone(400, 0.5).frames(8000, 320)
    second = b"".join(itertools.islice(frames, 50))  # exactly one second
    assert len(second) == 16000
    assert next(frames) == second[:320]  # the next second starts over
    peak = max(abs(x) for x in samples(second))
    assert 16000 < peak <= 16384
    assert zero_crossings(second) == pytest.approx(800, abs=2)


def test_frames_wrap_around_an_uneven_buffer() -> None:
    frames = tone(100).frames(8000, 4800)  # 0.3 s frames over a 1 s loop
    chunks = list(itertools.islice(frames, 10))
    assert {len(c) for c in chunks} == {4800}
    assert b"".join(chunks)[16000:20800] == b"".join(chunks)[:4800]


def test_silence_reuses_one_frame() -> None:
    frames = silence().frames(16000, 640)
    first, second = next(frames), next(frames)
    assert first == bytes(640)
    assert first is second


def test_noise_is_reproducible() -> None:
    a = next(noise(1).frames(16000, 640))
    assert a == next(noise(1).frames(16000, 640))
    assert a != next(noise(2).frames(16000, 640))
    assert max(abs(x) for x in samples(a)) <= 3277


def test_pcm_source_plays_once_and_pads() -> None:
    pcm = bytes(range(256)) * 5  # 1280 bytes
    frames = list(pcm_source(pcm, 16000).frames(16000, 1000))
    assert [len(f) for f in frames] == [1000, 1000]
    assert frames[1] == pcm[1000:] + bytes(720)
    looped = pcm_source(pcm, 16000, loop=True).frames(16000, 1000)
    assert len(list(itertools.islice(looped, 5))) == 5


def test_wav_round_trip_and_resampling(tmp_path: Path) -> None:
    prompt = next(tone(300).frames(8000, 16000))  # 1 s at 8 kHz
    write_wav(tmp_path / "p.wav", prompt, 8000)
    assert read_wav(tmp_path / "p.wav") == (prompt, 8000)
    source = wav_source(tmp_path / "p.wav")
    upsampled = b"".join(source.frames(24000, 960))
    assert len(upsampled) == 48000
    assert zero_crossings(upsampled) == pytest.approx(600, abs=4)
    assert resample(prompt, 8000, 8000) is prompt
    assert len(resample(prompt, 8000, 16000)) == 2 * len(prompt)


def test_stereo_is_mixed_down(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(2)
        wav.setframerate(16000)
        wav.writeframes(array.array("h", [100, 300, -50, -150]).tobytes())
    pcm, rate = read_wav(path)
    assert (list(samples(pcm)), rate) == ([200, -100], 16000)


def test_bad_wav_files(tmp_path: Path) -> None:
    with pytest.raises(OSError):
        wav_source(tmp_path / "missing.wav")
    (tmp_path / "text.wav").write_text("hello")
    with pytest.raises(ValueError, match="not a PCM WAV"):
        wav_source(tmp_path / "text.wav")
    with wave.open(str(tmp_path / "8bit.wav"), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(b"\x80" * 100)
    with pytest.raises(ValueError, match="8-bit"):
        wav_source(tmp_path / "8bit.wav")


def test_mix_clips() -> None:
    a = array.array("h", [30000, -30000, 5]).tobytes()
    b = array.array("h", [10000, -10000, 7]).tobytes()
    assert list(samples(mix(a, b))) == [32767, -32768, 12]


def test_source_validation() -> None:
    with pytest.raises(ValueError, match="amplitude"):
        tone(440, 2.0)
    with pytest.raises(ValueError, match="hz"):
        tone(0)
    with pytest.raises(ValueError, match="frame_bytes"):
        next(tone().frames(16000, 3))
    with pytest.raises(ValueError, match="no samples"):
        pcm_source(b"", 16000)


def test_script_and_config_validation() -> None:
    with pytest.raises(TypeError, match="audio source"):
        CallerScript("hello.wav")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="hangup_after"):
        CallerScript(hangup_after=-1)
    assert CallerScript(record_dir="x").record_dir == Path("x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="sample_rate"):
        SimulatorConfig(sample_rate=44100)
    with pytest.raises(ValueError, match="together"):
        SimulatorConfig(tls_key=Path("k"))
    with pytest.raises(ValueError, match="mTLS"):
        SimulatorConfig(tls_client_ca=Path("ca"))
    with pytest.raises(ValueError, match="frame_ms"):
        SimulatorConfig(frame_ms=0)
    config = SimulatorConfig(api_key="secret-value")
    assert "secret-value" not in repr(config)
    assert config.accepted_sample_rates == (8000, 16000, 24000)
    assert config.server_ssl_context() is None
