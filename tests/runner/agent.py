"""Agents for the ``telcoflow-trio run`` tests (imported by the workers as ``agent``)."""

from __future__ import annotations

from telcoflow_trio import ActiveCall, TelcoflowClient, events


async def on_call(call: ActiveCall) -> None:
    """Answer and echo until the caller hangs up."""
    await call.answer()
    async for chunk in call.audio_stream():
        call.send_audio(chunk)


def setup(client: TelcoflowClient) -> None:
    client.on(events.INCOMING_CALL)(on_call)


def registers_nothing(client: TelcoflowClient) -> None:
    pass


def fails(client: TelcoflowClient) -> None:
    raise RuntimeError("no database")


async def async_setup(client: TelcoflowClient, extra: int) -> None:
    pass


NOT_CALLABLE = 42
