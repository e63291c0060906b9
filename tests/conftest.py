"""Suite-wide options: ``--run-interop`` enables the tests marked ``interop``."""

from __future__ import annotations

import pytest


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--run-interop",
        action="store_true",
        default=False,
        help="run the tests against the official telcoflow SDK (nox -s interop)",
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-interop"):
        return
    skip = pytest.mark.skip(reason="needs --run-interop (nox -s interop)")
    for item in items:
        if "interop" in item.keywords:
            item.add_marker(skip)
