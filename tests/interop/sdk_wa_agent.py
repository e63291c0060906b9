"""A WhatsApp agent written with the official ``telcoflow`` 1.0.0 SDK (asyncio), as a subprocess.

Usage: ``python sdk_wa_agent.py BASE_URL API_KEY CONNECTOR_UUID``. Creates a WA
session with +15550100, sends one message, prints ``READY``; then expects one
message on that session and a new session (offered by ``session.notify``) from
+15550200, echoes that one, lists the sessions over REST, closes its own session
(REST) and prints one JSON line with what it saw.
"""

from __future__ import annotations

import asyncio
import json
import sys
from typing import Any

from telcoflow import ChannelType, SessionManager, SessionManagerConfig
from telcoflow.messages import SendWAMessage


async def main(base_url: str, api_key: str, connector_uuid: str) -> None:
    config = SessionManagerConfig.create(
        api_key=api_key, connector_uuid=connector_uuid, base_url=base_url
    )
    report: dict[str, Any] = {}
    got_own, got_new, echoed = asyncio.Event(), asyncio.Event(), asyncio.Event()
    async with SessionManager(config) as sm:

        @sm.on_session_notification
        async def on_notification(notification: Any) -> None:
            report["notified"] = [notification.channel, notification.activity]
            session = await sm.open_session(notification.session_id)

            @session.on_incoming_message
            async def on_new(message: Any) -> None:
                report["new_message"] = [message.sender, message.content]
                got_new.set()
                result = await session.send_message(SendWAMessage("v1", {"echo": message.content}))
                report["echo_ok"] = result.success
                echoed.set()

            await session.ready()

        session = await sm.create_session(ChannelType.WA, "+15550100")
        report["session"] = [session.id, str(session.channel), session.remote_address]

        @session.on_incoming_message
        async def on_own(message: Any) -> None:
            report["own_message"] = [message.sender, message.content]
            got_own.set()

        @session.on_closed
        def on_closed(reason: Any) -> None:
            report["closed"] = str(reason)

        await session.ready()
        sent = await session.send_message(
            SendWAMessage("v1", {"type": "text", "text": {"body": "hi"}})
        )
        report["sent"] = [sent.success, sent.response_content]
        sys.stdout.write("READY\n")
        sys.stdout.flush()
        await asyncio.wait_for(asyncio.gather(got_own.wait(), got_new.wait(), echoed.wait()), 10)
        listed = await sm.list_sessions(channel=ChannelType.WA)
        report["listed"] = sorted([s.remote_address, s.initiator, s.state] for s in listed)
        await session.close(confirm_timeout=5)
        report["is_closed"] = session.is_closed
    sys.stdout.write(json.dumps(report) + "\n")


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
