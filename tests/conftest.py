"""Suite-wide options and the secrets scan.

* ``--run-interop`` enables the tests marked ``interop``.
* ``--chaos-seed N`` (or ``CHAOS_SEED=N``) replays the reliability chaos run with seed ``N``.
* Every test runs under :class:`SecretScanner` (autouse): all records of the
  ``telcoflow_trio`` loggers, DEBUG included, are captured and the test fails if
  one contains a known secret: the simulator's default API key, any API key a
  client or simulator configuration of the test was built with, every media
  token the simulator issued, a private key or a bearer credential. Tests can
  scan reprs and error messages too (``secret_scanner.check(text, where)``).
"""

from __future__ import annotations

import logging
import os
import re
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from telcoflow_trio.config import TelcoflowClientConfig
from telcoflow_trio.simulator import DEFAULT_API_KEY, SimulatorConfig
from telcoflow_trio.simulator._call import SimulatedCall


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-interop",
        action="store_true",
        default=False,
        help="run the tests against the official telcoflow SDK (nox -s interop)",
    )
    parser.addoption(
        "--chaos-seed",
        type=int,
        default=int(os.environ["CHAOS_SEED"]) if os.environ.get("CHAOS_SEED") else None,
        help="run the reliability chaos test with this seed only (default: $CHAOS_SEED)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-interop"):
        return
    skip = pytest.mark.skip(reason="needs --run-interop (nox -s interop)")
    for item in items:
        if "interop" in item.keywords:
            item.add_marker(skip)


# -- the secrets scan -----------------------------------------------------------------------

#: Shorter strings are not registered: they would match innocent text.
MIN_SECRET_LENGTH = 6
#: Key material and credentials recognisable without knowing them.
_GENERIC = (r"-----BEGIN [A-Z ]*PRIVATE KEY-----", r"[Bb]earer [A-Za-z0-9_\-.=]{8,}")
#: Long hex strings (media tokens) are looked up in a set, not matched one by one.
_HEX = re.compile(r"[0-9a-fA-F]{16,}")
_HEX_SECRET = re.compile(r"[0-9a-fA-F]{16,}")


class SecretScanner(logging.Handler):
    """Scans the library's log lines (and texts given to :meth:`check`) for secrets.

    Each line is scanned when it is logged, against the secrets registered so
    far (a secret is registered where it is made, before it can be logged);
    only offending lines are kept, masked.
    """

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.secrets: set[str] = set()
        self._hex: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.leaks: list[str] = []
        self.register(DEFAULT_API_KEY)

    def register(self, secret: str | None) -> None:
        """Treat ``secret`` as one that must never be logged or shown."""
        if not secret or len(secret) < MIN_SECRET_LENGTH or secret in self.secrets:
            return
        self.secrets.add(secret)
        if _HEX_SECRET.fullmatch(secret):
            self._hex.add(secret)
        else:
            self._pattern = None

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception as exc:  # a broken log call is a bug of its own
            text = f"<unformattable log record {record.msg!r}: {exc!r}>"
        if record.exc_info and record.exc_info[1] is not None:
            text += "\n" + "".join(traceback.format_exception(record.exc_info[1]))
        self.check(text, f"{record.levelname} {record.name}")

    def check(self, text: str, where: str) -> None:
        """Scan ``text`` (a log line, a repr, an error message) now."""
        pattern = self._pattern
        if pattern is None:
            words = sorted(self.secrets - self._hex, key=len, reverse=True)
            pattern = self._pattern = re.compile("|".join([*map(re.escape, words), *_GENERIC]))
        found = pattern.search(text) is not None
        if not found and self._hex:
            found = any(self._holds_hex_secret(m.group()) for m in _HEX.finditer(text))
        if found:
            masked = pattern.sub("<SECRET>", text)
            for secret in self._hex:
                masked = masked.replace(secret, "<SECRET>")
            self.leaks.append(f"{where}: {masked[:300]}")

    def _holds_hex_secret(self, run: str) -> bool:
        if run in self._hex:
            return True
        return any(secret in run for secret in self._hex if len(secret) < len(run))

    def forget(self) -> None:
        """Drop the leaks found so far (for a test that leaks on purpose)."""
        self.leaks.clear()


def _registering(
    original: Callable[..., Any], scanner: SecretScanner, pick: Callable[..., str | None]
) -> Callable[..., Any]:
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        scanner.register(pick(*args, **kwargs))
        return original(*args, **kwargs)

    return wrapper


@pytest.fixture(autouse=True)
def secret_scanner(monkeypatch: pytest.MonkeyPatch) -> Iterator[SecretScanner]:
    """Fail the test if a ``telcoflow_trio`` log line (DEBUG included) holds a secret."""
    scanner = SecretScanner()
    # Secrets register themselves where they are made: configurations and
    # the simulator's media tokens.
    for cls in (TelcoflowClientConfig, SimulatorConfig):
        post_init = cls.__attrs_post_init__
        monkeypatch.setattr(
            cls,
            "__attrs_post_init__",
            _registering(post_init, scanner, lambda self: self.api_key),
        )
    monkeypatch.setattr(
        SimulatedCall,
        "_issue_token",
        _registering(SimulatedCall._issue_token, scanner, lambda self, token, _: token),
    )
    logger = logging.getLogger("telcoflow_trio")
    level = logger.level
    logger.setLevel(logging.DEBUG)
    logger.addHandler(scanner)
    try:
        yield scanner
    finally:
        logger.removeHandler(scanner)
        logger.setLevel(level)
    leaks = scanner.leaks
    if leaks:
        shown = "\n".join(leaks[:10])
        pytest.fail(f"{len(leaks)} log line(s) or message(s) hold a secret:\n{shown}")
