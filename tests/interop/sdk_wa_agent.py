"""A WhatsApp agent written with the official ``telcoflow`` 1.0.0 SDK (asyncio), as a subprocess.

Usage: ``python sdk_wa_agent.py BASE_URL API_KEY CONNECTOR_UUID``. Creates a WA
session with +15550100, sends one message, prints ``READY``; then expects one
message on that session and a new session (offered by ``session.notify``) from
+15550200, echoes that one, lists the sessions over REST, closes its own session
(REST) and prints one JSON line with what it saw.

``python sdk_wa_agent.py BASE_URL API_KEY CONNECTOR_UUID reconnect``: see :func:`reconnect`.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from sdk_common import manager, on_each_session, print_report, say, watch_closed
from telcoflow import ChannelType
from telcoflow.messages import SendWAMessage


async def main(base_url: str, api_key: str, connector_uuid: str) -> None:
    report: dict[str, Any] = {}
    got_own, got_new, echoed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    async with manager(base_url, api_key, connector_uuid) as sm:

        def setup(session: Any, notification: Any) -> None:
            report["notified"] = [notification.channel, notification.activity]

            @session.on_incoming_message
            async def on_new(message: Any) -> None:
                report["new_message"] = [message.sender, message.content]
                got_new.set()
                result = await session.send_message(SendWAMessage("v1", {"echo": message.content}))
                report["echo_ok"] = result.success
                echoed.set()

        on_each_session(sm, setup)

        session = await sm.create_session(ChannelType.WA, "+15550100")
        report["session"] = [session.id, str(session.channel), session.remote_address]

        @session.on_incoming_message
        async def on_own(message: Any) -> None:
            report["own_message"] = [message.sender, message.content]
            got_own.set()

        watch_closed(session, report, "closed")
        await session.ready()
        sent = await session.send_message(
            SendWAMessage("v1", {"type": "text", "text": {"body": "hi"}})
        )
        report["sent"] = [sent.success, sent.response_content]
        say("READY")
        await asyncio.wait_for(asyncio.gather(got_own.wait(), got_new.wait(), echoed.wait()), 10)
        listed = await sm.list_sessions(channel=ChannelType.WA)
        report["listed"] = sorted([s.remote_address, s.initiator, s.state] for s in listed)
        await session.close(confirm_timeout=5)
        report["is_closed"] = session.is_closed
    print_report(report)


async def reconnect(base_url: str, api_key: str, connector_uuid: str) -> None:
    """Create a WA session, print READY, wait for one message on it (sent after the
    test dropped the control connection and the SDK re-claimed the session)."""
    report: dict[str, Any] = {}
    got = asyncio.Event()
    async with manager(base_url, api_key, connector_uuid) as sm:
        session = await sm.create_session(ChannelType.WA, "+15550100")

        @session.on_incoming_message
        async def on_message(message: Any) -> None:
            report["message"] = [message.sender, message.content]
            got.set()

        await session.ready()
        say("READY")
        await asyncio.wait_for(got.wait(), 15)
    print_report(report)


if __name__ == "__main__":
    if sys.argv[4:5] == ["reconnect"]:
        asyncio.run(reconnect(*sys.argv[1:4]))
    else:
        asyncio.run(main(*sys.argv[1:4]))
