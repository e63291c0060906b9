"""proto/ stays sans-IO: no trio, no WebSocket library, no clock reads."""

from __future__ import annotations

import ast
import pathlib

import telcoflow_trio.proto

FORBIDDEN_MODULES = {"trio", "trio_websocket", "anyio", "asyncio", "wsproto", "socket", "time"}


def test_proto_imports_no_io_and_reads_no_clock() -> None:
    root = pathlib.Path(telcoflow_trio.proto.__file__).parent
    for path in root.glob("*.py"):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0:
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in FORBIDDEN_MODULES, f"{path.name} imports {name}"
