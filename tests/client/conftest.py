"""Helpers for the client tests: a simulator plus a client on its memory transport."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from telcoflow_trio import ActiveCall, TelcoflowClient, TelcoflowClientConfig, events
from telcoflow_trio.exceptions import (
    WSSChannelNotConfigured,
    WSSForbidden,
    WSSInvalidRequest,
    WSSOutboundOverflow,
    WSSQuotaExceeded,
    WSSSessionError,
)
from telcoflow_trio.simulator import SimulatorConfig, open_simulator
from telcoflow_trio.simulator._server import Simulator

CLIENT_MODULES = ("telcoflow_trio._client", "telcoflow_trio._control", "telcoflow_trio._media")

#: ``session.create`` refusals (``sim.faults.refuse_creates``) and the class each code
#: names (spec B.6), for calls and WA sessions alike.
CREATE_REFUSALS: list[tuple[str, type[WSSSessionError]]] = [
    ("QUOTA_EXCEEDED", WSSQuotaExceeded),
    ("CHANNEL_NOT_CONFIGURED", WSSChannelNotConfigured),
    ("FORBIDDEN", WSSForbidden),
    ("INVALID_REQUEST", WSSInvalidRequest),
    ("OUTBOUND_OVERFLOW", WSSOutboundOverflow),
]


@attrs.define
class Opener:
    """A stream opener in front of the simulator that records and can fail attempts."""

    sim: Simulator
    #: When the test started; every time below is relative to it.
    t0: float = attrs.Factory(trio.current_time)
    #: Time of every connection attempt.
    attempts: list[float] = attrs.Factory(list)
    #: Refuse this many attempts (like a server that is down).
    refuse: int = 0
    #: Every attempt is refused while this is set.
    down: bool = False

    async def __call__(
        self, host: str, port: int, ssl_context: ssl.SSLContext | None
    ) -> trio.abc.Stream:
        self.attempts.append(self.now())
        if self.down or self.refuse > 0:
            self.refuse = max(self.refuse - 1, 0)
            await trio.lowlevel.checkpoint()
            raise ConnectionRefusedError("refused by the test")
        return await self.sim.open_stream(host, port, ssl_context)

    def now(self) -> float:
        """Seconds since the test started."""
        return trio.current_time() - self.t0


def client_config(sim: Simulator, **options: Any) -> TelcoflowClientConfig:
    return TelcoflowClientConfig.sandbox(
        sim.api_key, sim.connector_uuid, base_url=sim.base_url, **options
    )


@asynccontextmanager
async def open_pair(
    sim_config: SimulatorConfig | None = None,
    *,
    handler: Callable[[ActiveCall], Any] | None = None,
    on_handler_error: Callable[[ActiveCall, BaseException], object] | None = None,
    random_source: Callable[[], float] = lambda: 0.0,
    **options: Any,
) -> AsyncIterator[tuple[Simulator, TelcoflowClient, Opener]]:
    """A simulator and a connected client (no jitter unless asked)."""
    async with open_simulator(sim_config or SimulatorConfig(), listen=False) as sim:
        opener = Opener(sim)
        client = TelcoflowClient(
            client_config(sim, **options),
            open_stream=opener,
            random_source=random_source,
            on_handler_error=on_handler_error,
        )
        if handler is not None:
            client.on(events.INCOMING_CALL)(handler)
        async with client:
            yield sim, client, opener


def client_tasks() -> list[str]:
    """Names of the live tasks running client code."""
    found: list[str] = []

    def walk(task: trio.lowlevel.Task) -> None:
        module = getattr(task.coro, "cr_frame", None)
        name = module.f_globals.get("__name__", "") if module is not None else ""
        if name in CLIENT_MODULES or name.startswith("telcoflow_trio._call"):
            found.append(task.name)
        for nursery in task.child_nurseries:
            for child in nursery.child_tasks:
                walk(child)

    walk(trio.lowlevel.current_root_task())
    return found


def all_tasks() -> int:
    def walk(task: trio.lowlevel.Task) -> int:
        return 1 + sum(walk(c) for n in task.child_nurseries for c in n.child_tasks)

    return walk(trio.lowlevel.current_root_task())
