"""Helpers of the reliability suite: seeds, task census, a scripted raw server.

Everything here runs under ``MockClock`` over memory streams. The chaos test
is parametrized over :data:`CHAOS_SEEDS`, or over the one seed given with
``--chaos-seed N`` / ``CHAOS_SEED=N`` to replay a failure.
"""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol

import attrs
import pytest
import trio
import trio.testing
import trio_websocket

from telcoflow_trio import TelcoflowClientConfig, proto
from telcoflow_trio.exceptions import WSSConnectionClosed
from telcoflow_trio.simulator import Simulator
from telcoflow_trio.ws._transport import TRANSPORTS, WebSocket, open_websocket

#: The seeds CI runs; a failing run names its seed in the test id and the message.
CHAOS_SEEDS = (20240611, 7)
#: The client's WebSocket implementations: every client-side test runs on each.
CLIENT_TRANSPORTS = TRANSPORTS

#: Where a client reaches a :class:`ScriptedServer` (only its ``open_stream`` knows it).
SCRIPTED_URL = "ws://scripted.invalid"

#: Modules whose tasks belong to the client.
CLIENT_MODULES = frozenset(
    {"telcoflow_trio._client", "telcoflow_trio._control", "telcoflow_trio._media"}
)


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    if "chaos_seed" in metafunc.fixturenames:
        seed = metafunc.config.getoption("--chaos-seed")
        seeds = CHAOS_SEEDS if seed is None else (seed,)
        metafunc.parametrize("chaos_seed", seeds, ids=[f"seed={s}" for s in seeds])


def _walk(task: trio.lowlevel.Task, visit: Callable[[trio.lowlevel.Task], None]) -> None:
    visit(task)
    for nursery in task.child_nurseries:
        for child in nursery.child_tasks:
            _walk(child, visit)


def all_tasks() -> int:
    """How many tasks the run has (the root task's tree)."""
    count = 0

    def visit(_: trio.lowlevel.Task) -> None:
        nonlocal count
        count += 1

    _walk(trio.lowlevel.current_root_task(), visit)
    return count


def client_tasks() -> list[str]:
    """Names of the live tasks running the client's own code."""
    found: list[str] = []

    def visit(task: trio.lowlevel.Task) -> None:
        frame = getattr(task.coro, "cr_frame", None)
        module = frame.f_globals.get("__name__", "") if frame is not None else ""
        if module in CLIENT_MODULES or module.startswith("telcoflow_trio._call"):
            found.append(task.name)

    _walk(trio.lowlevel.current_root_task(), visit)
    return found


def client_config(sim: Simulator | None = None, **options: Any) -> TelcoflowClientConfig:
    """A sandbox configuration for ``sim`` (else a scripted server), 8 kHz, short timeouts."""
    options.setdefault("sample_rate", 8000)
    options.setdefault("close_timeout", 1.0)
    if sim is None:
        return TelcoflowClientConfig.sandbox(
            "reliability-api-key", "reliability-connector", base_url=SCRIPTED_URL, **options
        )
    return TelcoflowClientConfig.sandbox(
        sim.api_key, sim.connector_uuid, base_url=sim.base_url, **options
    )


Script = Callable[[WebSocket], Awaitable[None]]


class Scanner(Protocol):
    """The suite's ``secret_scanner`` fixture (``tests/conftest.py``), as used here."""

    def check(self, text: str, where: str) -> None: ...


@attrs.define(eq=False)
class ScriptedServer:
    """A WebSocket server on memory streams that runs ``script`` for each connection.

    Pass :meth:`open_stream` to the client; the script finds the request path
    in ``ws.path``. Each connection's close code, as the server saw it, lands
    in :attr:`closes` as ``(path, code)``; an exception of the script other
    than the connection closing lands in :attr:`errors`.
    """

    nursery: trio.Nursery
    script: Script
    max_message_size: int = 1 << 20
    closes: list[tuple[str, int]] = attrs.Factory(list)
    errors: list[BaseException] = attrs.Factory(list)

    async def open_stream(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        client, server = trio.testing.memory_stream_pair()
        self.nursery.start_soon(self._serve, server)
        await trio.lowlevel.checkpoint()
        return client

    async def _serve(self, stream: trio.abc.Stream) -> None:
        async with trio.open_nursery() as nursery:
            request = await trio_websocket.wrap_server_stream(
                nursery, stream, max_message_size=self.max_message_size
            )
            ws = WebSocket(await request.accept(), close_timeout=1.0)
            try:
                await self.script(ws)
            except WSSConnectionClosed:
                pass
            except Exception as exc:
                self.errors.append(exc)
            finally:
                await ws.aclose()
                self.closes.append((ws.path, ws.closed[0] if ws.closed else 1006))
                nursery.cancel_scope.cancel()
        await trio.aclose_forcefully(stream)


# -- raw clients of the simulator -----------------------------------------------------------


@asynccontextmanager
async def open_raw_control(sim: Simulator, *, setup: bool = True) -> AsyncIterator[WebSocket]:
    """A control connection to ``sim`` in memory, ``setup`` done unless told otherwise."""
    headers = [("x-api-key", sim.api_key), ("x-connector-uuid", sim.connector_uuid)]
    async with open_websocket(
        sim.control_url, headers=headers, open_stream=sim.open_stream, close_timeout=1.0
    ) as ws:
        if setup:
            await ws.send_message(proto.Setup(8000, "mixed").encode())
            frame = proto.decode_control(await ws.get_message())
            assert isinstance(frame, proto.SetupDone), frame
        yield ws


async def claim_call(ws: WebSocket) -> proto.CallIn:
    """Claim the next notified call on a raw control connection; its ``call.in``."""

    async def next_frame(kind: type[Any]) -> Any:
        while True:
            frame = proto.decode_control(await ws.get_message())
            if isinstance(frame, kind):
                return frame

    notify: proto.SessionNotify = await next_frame(proto.SessionNotify)
    await ws.send_message(proto.SessionOpen(notify.session_id, "claim").encode())
    response: proto.Response = await next_frame(proto.Response)
    assert response.ok, response
    await ws.send_message(proto.SessionReady(notify.session_id).encode())
    call_in: proto.CallIn = await next_frame(proto.CallIn)
    return call_in


@asynccontextmanager
async def open_raw_media(sim: Simulator, call_in: proto.CallIn) -> AsyncIterator[WebSocket]:
    """The media connection of ``call_in``, in memory."""
    headers = [("authorization", f"Bearer {call_in.token}")]
    async with open_websocket(
        call_in.url, headers=headers, open_stream=sim.open_stream, close_timeout=1.0
    ) as ws:
        yield ws
