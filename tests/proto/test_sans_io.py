"""The sans-IO parts stay sans-IO: no trio, no sockets, no clock reads.

``proto/`` (the Telcoflow protocol core) also uses no WebSocket library; the
WebSocket framing and upgrade (``ws/_framing.py``, ``ws/_handshake.py``) may use
wsproto's pure helpers.
"""

from __future__ import annotations

import ast
import pathlib

import pytest

import telcoflow_trio.proto
import telcoflow_trio.ws

FORBIDDEN_MODULES = {"trio", "trio_websocket", "anyio", "asyncio", "wsproto", "socket", "time"}
PROTO = pathlib.Path(telcoflow_trio.proto.__file__).parent
WS = pathlib.Path(telcoflow_trio.ws.__file__).parent


@pytest.mark.parametrize(
    ("paths", "forbidden"),
    [
        (sorted(PROTO.glob("*.py")), FORBIDDEN_MODULES),
        ([WS / "_framing.py", WS / "_handshake.py"], FORBIDDEN_MODULES - {"wsproto"} | {"select"}),
    ],
    ids=["proto", "ws"],
)
def test_sans_io_modules_import_no_io_and_read_no_clock(
    paths: list[pathlib.Path], forbidden: set[str]
) -> None:
    for path in paths:
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in forbidden, f"{path.name} imports {name}"
