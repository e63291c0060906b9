"""The options of ``telcoflow-trio run``: each from the command line or the environment.

A value on the command line wins over ``$TELCOFLOW_...``, which wins over the
default. Workers get their settings through the environment (the API key
included), never on their command line, which every user of the machine can
read with ``ps``.
"""

from __future__ import annotations

import argparse
import logging
import math
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import urlsplit

import attrs

from .._cli_secrets import (
    API_KEY_ENV,
    API_KEY_FILE_ENV,
    UsageError,
    add_api_key_arguments,
    api_key_from as _api_key_from,
)
from ..config import (
    PRODUCTION_URL,
    SAMPLE_RATES,
    ClaimMode,
    TelcoflowClientConfig,
    _redact,
)

__all__ = ["RunSettings", "add_run_arguments", "resolve_settings"]


def _ws_url(text: str) -> str:
    parts = urlsplit(text)
    if parts.scheme not in ("ws", "wss") or not parts.hostname:
        raise ValueError(f"must be a ws:// or wss:// URL, not {text!r}")
    return text


def _int(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"must be a whole number, not {text!r}") from None


def _sample_rate(text: str) -> int:
    rate = _int(text)
    if rate not in SAMPLE_RATES:
        raise ValueError(f"must be one of {', '.join(map(str, SAMPLE_RATES))}, not {text}")
    return rate


def _at_least_one(text: str) -> int:
    number = _int(text)
    if number < 1:
        raise ValueError(f"must be at least 1, not {text}")
    return number


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not value >= 0:
        raise ValueError(f"must be a number of seconds >= 0, not {text}")
    return value


def _claim_mode(text: str) -> str:
    try:
        return ClaimMode(text.lower().replace("-", "_")).value
    except ValueError:
        raise ValueError(f"must be load_aware or first_come, not {text!r}") from None


def _port(text: str) -> int:
    port = _int(text)
    if not 0 <= port <= 65535:
        raise ValueError(f"must be a port number (0: any free port), not {text}")
    return port


def _log_level(text: str) -> str:
    level = text.upper()
    if level not in logging.getLevelNamesMapping():
        raise ValueError(f"must be DEBUG, INFO, WARNING or ERROR, not {text!r}")
    return level


def _non_empty(text: str) -> str:
    if not text.strip():
        raise ValueError("must not be empty")
    return text


@attrs.frozen
class _Option:
    flag: str
    env: str
    parse: Callable[[str], Any]
    default: Any
    help: str
    metavar: str
    #: Shown in the help instead of the default.
    note: str | None = None

    @property
    def dest(self) -> str:
        return self.flag.removeprefix("--").replace("-", "_")

    def argparse_type(self, text: str) -> Any:
        try:
            return self.parse(text)
        except ValueError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None


#: Every option but the API key, which has its own rules (see ``_cli_secrets``).
OPTIONS: Final = (
    _Option("--server", "TELCOFLOW_SERVER", _ws_url, PRODUCTION_URL,
            "platform base URL (ws:// or wss://)", "URL"),
    _Option("--connector-uuid", "TELCOFLOW_CONNECTOR_UUID", _non_empty, None,
            "connector UUID", "UUID", "required"),
    _Option("--sample-rate", "TELCOFLOW_SAMPLE_RATE", _sample_rate, 24000,
            "call audio sample rate: 8000, 16000 or 24000", "HZ"),
    _Option("--workers", "TELCOFLOW_WORKERS", _at_least_one, 1,
            "worker processes, each with its own control connection", "N"),
    _Option("--max-calls", "TELCOFLOW_MAX_CALLS", _at_least_one, None,
            "live calls per worker at most; it claims no more until one ends", "N",
            "default: no limit"),
    _Option("--claim-policy", "TELCOFLOW_CLAIM_POLICY", _claim_mode, "load_aware",
            "load_aware: a busier worker claims a new call a little later, so idle "
            "workers get it; first_come: claim at once", "POLICY"),
    _Option("--drain-timeout", "TELCOFLOW_DRAIN_TIMEOUT", _seconds, 25.0,
            "on SIGTERM or SIGINT, how long live calls may go on before they are ended",
            "SECONDS"),
    _Option("--metrics-host", "TELCOFLOW_METRICS_HOST", _non_empty, "127.0.0.1",
            "interface of the metrics endpoint", "HOST"),
    _Option("--metrics-port", "TELCOFLOW_METRICS_PORT", _port, None,
            "serve /metrics and /ready here, worker i on PORT+i (0: any free port)",
            "PORT", "default: off"),
    _Option("--log-level", "TELCOFLOW_LOG_LEVEL", _log_level, "INFO",
            "DEBUG, INFO, WARNING or ERROR", "LEVEL"),
)  # fmt: skip


@attrs.frozen(kw_only=True)
class RunSettings:
    """What ``telcoflow-trio run`` was asked to do, resolved and checked."""

    target: str
    server: str
    api_key: str = attrs.field(repr=_redact)
    connector_uuid: str
    sample_rate: int
    workers: int
    max_calls: int | None
    claim_policy: str
    drain_timeout: float
    metrics_host: str
    metrics_port: int | None
    log_level: str

    def client_config(self) -> TelcoflowClientConfig:
        """The configuration of each worker's client.

        Raises:
            ValueError: a value the client does not accept.
        """
        return TelcoflowClientConfig.sandbox(
            self.api_key,
            self.connector_uuid,
            self.sample_rate,
            base_url=self.server,
            max_calls=self.max_calls,
            claim_policy=self.claim_policy,
        )

    def metrics_port_of(self, index: int) -> int | None:
        """Worker ``index``'s metrics port: the base port plus the index (0 stays 0)."""
        if self.metrics_port is None or self.metrics_port == 0:
            return self.metrics_port
        return self.metrics_port + index

    def worker_environ(self, index: int) -> dict[str, str]:
        """The environment that gives worker ``index`` these settings (secrets included)."""
        environ = {API_KEY_ENV: self.api_key}
        for option in OPTIONS:
            value = getattr(self, option.dest)
            if option.dest == "metrics_port":
                value = self.metrics_port_of(index)
            if value is not None:
                environ[option.env] = str(value)
        return environ


def add_run_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``run`` options to ``parser`` (:func:`resolve_settings` applies the defaults)."""
    parser.add_argument(
        "target",
        metavar="MODULE:ATTR",
        help="your agent: an `async def on_call(call)` INCOMING_CALL handler, or a "
        "`def setup(client)` that registers handlers on the TelcoflowClient",
    )
    add_api_key_arguments(
        parser, default_note=f"one of ${API_KEY_ENV}, ${API_KEY_FILE_ENV} or these is required"
    )
    for option in OPTIONS:
        note = option.note or f"default {option.default}"
        parser.add_argument(
            option.flag,
            type=option.argparse_type,
            metavar=option.metavar,
            help=f"{option.help} (${option.env}; {note})",
        )


def resolve_settings(values: Mapping[str, object], environ: Mapping[str, str]) -> RunSettings:
    """Settings from parsed arguments (``vars(args)``), then ``environ``, then the defaults.

    Raises:
        UsageError: a missing credential, or a bad value in the environment.
    """
    resolved: dict[str, Any] = {}
    for option in OPTIONS:
        value = values.get(option.dest)
        if value is None and environ.get(option.env):
            try:
                value = option.parse(environ[option.env])
            except ValueError as exc:
                raise UsageError(f"${option.env} {exc}") from None
        resolved[option.dest] = option.default if value is None else value
    api_key = _api_key_from(values, environ)
    if api_key is None:
        raise UsageError(
            f"no API key: set ${API_KEY_ENV}, or pass --api-key-file PATH (or --api-key)"
        )
    if resolved["connector_uuid"] is None:
        raise UsageError(
            "no connector UUID: pass --connector-uuid or set $TELCOFLOW_CONNECTOR_UUID"
        )
    settings = RunSettings(target=str(values["target"]), api_key=api_key, **resolved)
    try:
        settings.client_config()
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if settings.metrics_port is not None:
        try:
            import prometheus_client  # noqa: F401
        except ImportError:
            raise UsageError(
                "--metrics-port needs the prometheus-client package: "
                "pip install 'telcoflow-trio[metrics]'"
            ) from None
    return settings
