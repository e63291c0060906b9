"""``run``'s options and the API key options of every command, in process."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import pytest

from telcoflow_trio import cli
from telcoflow_trio._cli_secrets import UsageError, api_key_from
from telcoflow_trio.runner._options import resolve_settings
from telcoflow_trio.simulator._cli import _config, add_call_arguments, add_simulate_arguments

SECRET = "opts-secret-key-51d2e0"


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [n for n in __import__("os").environ if n.startswith("TELCOFLOW_")]:
        monkeypatch.delenv(name)
    monkeypatch.setattr(sys, "path", list(sys.path))  # load_target adds the directory


def run_args(*argv: str) -> dict[str, object]:
    args = cli.build_parser().parse_args(["run", *argv])
    return vars(args)


def test_command_line_beats_environment_beats_default() -> None:
    environ = {
        "TELCOFLOW_API_KEY": SECRET,
        "TELCOFLOW_CONNECTOR_UUID": "from-env",
        "TELCOFLOW_WORKERS": "3",
        "TELCOFLOW_SAMPLE_RATE": "8000",
        "TELCOFLOW_METRICS_PORT": "9100",
        "TELCOFLOW_CLAIM_POLICY": "first-come",
    }
    settings = resolve_settings(run_args("agent:on_call", "--workers", "2"), environ)
    assert (settings.workers, settings.connector_uuid, settings.sample_rate) == (
        2,
        "from-env",
        8000,
    )
    assert settings.drain_timeout == 25.0
    assert settings.server == "wss://wss-prod.agentao.com"
    assert settings.claim_policy == "first_come"
    assert SECRET not in repr(settings)
    config = settings.client_config()
    assert (config.api_key, config.sample_rate) == (SECRET, 8000)
    # Worker 1's environment: every setting, the key included, its own metrics port.
    child = resolve_settings({"target": "agent:on_call"}, settings.worker_environ(1))
    assert child.api_key == SECRET
    assert child.metrics_port == 9101
    assert (child.workers, child.sample_rate, child.claim_policy) == (2, 8000, "first_come")


def test_api_key_file(tmp_path: Path) -> None:
    key = tmp_path / "key"
    key.write_text(f"  {SECRET}\n")
    assert api_key_from({"api_key_file": key}, {}) == SECRET
    assert api_key_from({}, {"TELCOFLOW_API_KEY_FILE": str(key)}) == SECRET
    assert api_key_from({"api_key": "cli"}, {"TELCOFLOW_API_KEY": SECRET}) == "cli"
    assert api_key_from({}, {}) is None
    with pytest.raises(UsageError, match=r"cannot read the API key file .*missing.*No such file"):
        api_key_from({"api_key_file": tmp_path / "missing"}, {})
    key.write_text("\n")
    with pytest.raises(UsageError, match="must hold the key on one line"):
        api_key_from({"api_key_file": key}, {})


@pytest.mark.parametrize(
    ("argv", "environ", "message"),
    [
        (["agent"], {}, "'agent' is not MODULE:ATTR (for example my_agent:on_call)"),
        (["agent:missing"], {}, "'agent' has no attribute 'missing'"),
        (["agent:NOT_CALLABLE"], {}, "agent:NOT_CALLABLE is a int, not an `async def on_call"),
        (["agent:async_setup"], {}, "agent:async_setup must take one argument"),
        (["broken:on_call"], {}, "importing 'broken' failed: ZeroDivisionError"),
        (["agent:on_call"], {"TELCOFLOW_CONNECTOR_UUID": ""}, "no connector UUID"),
        (["agent:on_call"], {"TELCOFLOW_API_KEY": " "}, "$TELCOFLOW_API_KEY is empty"),
        (["agent:on_call"], {"TELCOFLOW_WORKERS": "0"}, "$TELCOFLOW_WORKERS must be at least 1"),
        (["agent:on_call"], {"TELCOFLOW_MAX_CALLS": "x"}, "MAX_CALLS must be a whole number"),
        (["agent:on_call"], {"TELCOFLOW_SERVER": "http://x"}, "$TELCOFLOW_SERVER must be a ws://"),
        (["agent:on_call"], {"TELCOFLOW_DRAIN_TIMEOUT": "soon"}, "TIMEOUT must be a number of"),
    ],
)  # fmt: skip
def test_bad_input_is_one_line_and_exit_2(
    argv: list[str],
    environ: dict[str, str],
    message: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    (tmp_path / "broken.py").write_text("1 / 0\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    for name, value in {
        "TELCOFLOW_API_KEY": SECRET,
        "TELCOFLOW_CONNECTOR_UUID": "c",
        **environ,
    }.items():
        monkeypatch.setenv(name, value)
    assert cli.main(["run", *argv]) == 2
    err = capsys.readouterr().err
    assert err.startswith("telcoflow-trio run: ")
    assert err.count("\n") == 1
    assert message in err
    assert SECRET not in err


def test_bad_option_values_are_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv in (["--workers", "0"], ["--sample-rate", "44100"], ["--claim-policy", "x"]):
        with pytest.raises(SystemExit) as info:
            cli.main(["run", "agent:on_call", *argv])
        assert info.value.code == 2
        assert f"argument {argv[0]}" in capsys.readouterr().err


def test_help_says_where_keys_come_from_and_shows_none(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TELCOFLOW_API_KEY", SECRET)
    for command in ("run", "simulate", "call"):
        with pytest.raises(SystemExit):
            cli.main([command, "--help"])
        text = " ".join(capsys.readouterr().out.split())
        assert "--api-key-file PATH" in text
        assert "$TELCOFLOW_API_KEY" in text
        assert "visible to other users in `ps`" in text
        assert SECRET not in text


def test_simulate_and_call_take_the_key_from_a_file_or_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def parse(add: object, *argv: str) -> argparse.Namespace:
        parser = argparse.ArgumentParser()
        add(parser)  # type: ignore[operator]
        return parser.parse_args(list(argv))

    key = tmp_path / "key"
    key.write_text(SECRET)
    assert _config(parse(add_simulate_arguments, "--api-key-file", str(key))).api_key == SECRET
    assert _config(parse(add_simulate_arguments)).api_key == "sim-api-key"
    monkeypatch.setenv("TELCOFLOW_API_KEY", SECRET)
    assert _config(parse(add_simulate_arguments)).api_key == SECRET
    call = parse(add_call_arguments, "--api-key-file", str(tmp_path / "nope"))
    assert cli.main(["call", "--api-key-file", str(tmp_path / "nope")]) == 2
    with pytest.raises(SystemExit):
        parse(add_call_arguments, "--api-key", "a", "--api-key-file", str(key))
    assert call.api_key is None
