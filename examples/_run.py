"""Shared start-up for the example agents: configuration from the environment.

``TELCOFLOW_URL`` (default ``ws://127.0.0.1:8080``, where ``telcoflow-trio
simulate`` listens), ``TELCOFLOW_API_KEY`` and ``TELCOFLOW_CONNECTOR_UUID``
(defaults: the simulator's credentials).
"""

import contextlib
import os
from collections.abc import Awaitable, Callable

import trio

from telcoflow_trio import ActiveCall, TelcoflowClient, TelcoflowClientConfig, events


def config_from_env() -> TelcoflowClientConfig:
    return TelcoflowClientConfig.sandbox(
        os.environ.get("TELCOFLOW_API_KEY", "sim-api-key"),
        os.environ.get("TELCOFLOW_CONNECTOR_UUID", "sim-connector"),
        base_url=os.environ.get("TELCOFLOW_URL", "ws://127.0.0.1:8080"),
    )


async def serve(handler: Callable[[ActiveCall], Awaitable[None]]) -> None:
    async with TelcoflowClient(config_from_env()) as client:
        client.on(events.INCOMING_CALL)(handler)
        await client.run_forever()


def run_agent(handler: Callable[[ActiveCall], Awaitable[None]]) -> None:
    """Serve calls with ``handler`` until Ctrl+C."""
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(serve, handler)
