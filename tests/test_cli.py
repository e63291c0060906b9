"""The ``telcoflow-trio`` command line and the demo."""

from __future__ import annotations

import io
import wave
from pathlib import Path

import pytest
import trio

from telcoflow_trio import cli
from telcoflow_trio._demo import FLOWS, run_demo


def test_version_and_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["--version"])
    assert info.value.code == 0
    assert "telcoflow-trio 0." in capsys.readouterr().out
    for command in ("demo", "simulate", "call"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = capsys.readouterr().out
        assert "example: telcoflow-trio " + command in text


def test_bad_arguments_exit_2_without_traceback(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        cli.main(["demo", "--sample-rate", "44100"])
    assert info.value.code == 2
    assert "invalid choice" in capsys.readouterr().err
    assert cli.main(["demo", "--calls", "0"]) == 2
    assert "--calls must be at least 1" in capsys.readouterr().err


def test_ctrl_c_while_the_command_starts_is_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # Ctrl+C while the parser is built (it imports the simulator), before any command runs.
    def interrupted() -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "build_parser", interrupted)
    assert cli.main(["demo"]) == 130
    assert capsys.readouterr().err == "telcoflow-trio: interrupted\n"


def test_call_to_an_unreachable_server_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    # Port 9 on loopback (discard) is closed on the machines we run on.
    status = cli.main(["call", "--server", "ws://127.0.0.1:9", "--hangup-after", "1"])
    assert status == 1
    err = capsys.readouterr().err
    assert err.startswith("telcoflow-trio call: ")
    assert "Traceback" not in err


async def test_demo_runs_every_flow_as_expected(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    out = io.StringIO()
    status = await run_demo(
        calls=len(FLOWS), sample_rate=16000, output=tmp_path, out=out, listen=False
    )
    text = out.getvalue()
    assert status == 0, text
    assert f"{len(FLOWS)}/{len(FLOWS)} calls ended as expected" in text
    for flow in FLOWS:
        assert flow.name in text
        assert flow.expect_ended_by in text
    recordings = sorted(await trio.Path(tmp_path).rglob("*.wav"))
    assert len(recordings) == 2 * len(FLOWS)
    agent_wav = next(p for p in recordings if p.name == "agent.wav")
    header = await agent_wav.read_bytes()
    with wave.open(io.BytesIO(header)) as wav:
        assert wav.getframerate() == 16000
        assert wav.getsampwidth() == 2
