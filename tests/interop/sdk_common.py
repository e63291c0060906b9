"""What the official-SDK scripts of this directory share: the manager, the session
callbacks they all register, and their output (``READY``, then one JSON report line).

Imported by the scripts as a sibling module (they run as ``python sdk_*.py``).
"""

from __future__ import annotations

import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from telcoflow import AudioMode, SessionManager, SessionManagerConfig
from telcoflow.audio_config import CallAudioConfig

#: The scripts' sample rate (the 1.0.0 default).
RATE = 16000


def manager(
    base_url: str, api_key: str, connector_uuid: str, audio_mode: AudioMode = AudioMode.MIXED
) -> SessionManager:
    """A session manager for the simulator at ``base_url``, 16 kHz."""
    audio = CallAudioConfig(sample_rate=RATE, audio_mode=audio_mode)
    return SessionManager(
        SessionManagerConfig.create(
            api_key=api_key, connector_uuid=connector_uuid, base_url=base_url, call_audio=audio
        )
    )


def on_each_session(sm: Any, setup: Callable[[Any, Any], None]) -> None:
    """For every ``session.notify``: open the session, ``setup(session, notification)``
    (register its handlers), then ``ready()`` it."""

    @sm.on_session_notification
    async def on_notification(notification: Any) -> None:
        session = await sm.open_session(notification.session_id)
        setup(session, notification)
        await session.ready()


def watch_closed(
    session: Any,
    report: dict[str, Any],
    key: str = "session_closed",
    closed: asyncio.Event | None = None,
) -> asyncio.Event:
    """Record why ``session`` closes in ``report[key]``; ``closed`` (or a new event,
    returned) is set then."""
    closed = closed if closed is not None else asyncio.Event()

    @session.on_closed
    def on_closed(reason: Any) -> None:
        report[key] = str(reason)
        closed.set()

    return closed


def on_call(
    session: Any,
    report: dict[str, Any],
    work: Callable[[Any], Awaitable[None]],
    done: asyncio.Event,
) -> None:
    """Serve the session's call with ``work(call)``: its id and caller go in ``report``,
    an exception as ``report["error"]``; ``done`` is set when it is over."""

    @session.on_incoming_call
    async def on_incoming_call(call: Any) -> None:
        report["call_id"] = call.id
        report["caller"] = call.caller_number
        try:
            await work(call)
        except Exception as exc:
            report["error"] = repr(exc)
        finally:
            done.set()


def say(line: str) -> None:
    """One line on stdout, at once (the test reads it while the script runs)."""
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def print_report(report: dict[str, Any]) -> None:
    say(json.dumps(report))
