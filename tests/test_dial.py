"""``telcoflow-trio dial``: an outbound call from the command line, as the agent."""

from __future__ import annotations

import argparse
import io
from pathlib import Path

import pytest
import trio
import trio.testing

from telcoflow_trio import TelcoflowClient, TelcoflowClientConfig, cli
from telcoflow_trio._dial import add_dial_arguments, run_dial
from telcoflow_trio.simulator import CallerScript, open_simulator, tone
from telcoflow_trio.simulator._audio import read_wav, write_wav
from telcoflow_trio.simulator._call import SimulatedCall
from telcoflow_trio.testing import contains_tone, make_tone

NUMBER = "+15550100"


def parse(*argv: str) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    add_dial_arguments(parser)
    return parser.parse_args(list(argv))


async def test_dial_says_the_wav_and_records_the_callee(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    hello, reply = tmp_path / "hello.wav", tmp_path / "reply.wav"
    write_wav(hello, make_tone(660, 1.0, 8000), 8000)  # resampled to the call's rate
    args = parse(NUMBER, "--wav", str(hello), "--record", str(reply), "--sample-rate", "16000")
    out = io.StringIO()
    async with open_simulator() as sim:
        sim.expect_callee(NUMBER, CallerScript(audio=tone(440), answers_after=1.0))
        placed: list[SimulatedCall] = []
        sim.add_observer(lambda call, event: placed.append(call) if event == "placed" else None)
        config = TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url, sample_rate=16000
        )
        async with TelcoflowClient(config, open_stream=sim.open_stream) as client:
            summary = await run_dial(args, out=out, client=client)
        result = await placed[0].wait_result()
    assert summary["endedBy"] == "handler_returned"
    assert summary["saidSeconds"] == pytest.approx(1.0)
    assert summary["heardSeconds"] == pytest.approx(3.0, abs=0.1)  # the WAV, then 2 s
    assert "answered" in out.getvalue()
    pcm, rate = read_wav(reply)
    assert rate == 16000
    assert contains_tone(pcm, 440, rate)
    assert result.ended_by == "agent_close"
    assert contains_tone(result.agent_audio[: 2 * rate], 660, rate)


async def test_dial_unanswered_raises(autojump_clock: trio.testing.MockClock) -> None:
    from telcoflow_trio.exceptions import WSSCallNotAnswered

    async with open_simulator() as sim:
        sim.expect_callee(NUMBER, CallerScript(answers_after=None))
        config = TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url
        )
        async with TelcoflowClient(config, open_stream=sim.open_stream) as client:
            with pytest.raises(WSSCallNotAnswered, match="not answered within 5 s"):
                await run_dial(parse(NUMBER, "--ring-timeout", "5"), client=client)


def test_dial_help_and_unreachable_server(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["dial", "--help"])
    assert "example: telcoflow-trio dial" in capsys.readouterr().out
    # Port 9 on loopback (discard) is closed on the machines we run on.
    assert cli.main(["dial", "--server", "ws://127.0.0.1:9", NUMBER]) == 1
    err = capsys.readouterr().err
    assert err.startswith("telcoflow-trio dial: ")
    assert "Traceback" not in err


async def test_dial_callee_hangs_up_mid_message(
    autojump_clock: trio.testing.MockClock, tmp_path: Path
) -> None:
    hello = tmp_path / "hello.wav"
    write_wav(hello, make_tone(660, 30.0, 16000), 16000)
    async with open_simulator() as sim:
        sim.expect_callee(NUMBER, CallerScript(answers_after=1.0, hangup_after=2.0))
        config = TelcoflowClientConfig.sandbox(
            sim.api_key, sim.connector_uuid, base_url=sim.base_url, sample_rate=16000
        )
        async with TelcoflowClient(config, open_stream=sim.open_stream) as client:
            summary = await run_dial(
                parse(NUMBER, "--wav", str(hello), "--sample-rate", "16000"),
                out=io.StringIO(),
                client=client,
            )
    assert summary["endedBy"] == "callee_hangup"
    assert summary["heardSeconds"] == pytest.approx(2.0, abs=0.1)
