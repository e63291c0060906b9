"""WhatsApp echo bot: answer every WhatsApp message with what it said.

Every WhatsApp user who writes to the connector gets a session (the client
claims it because an ``INCOMING_MESSAGE`` handler is registered); the bot
replies on that session. A message that is not text gets a polite refusal.
Try it against the simulator::

    telcoflow-trio simulate            # in one terminal
    python examples/wa_echo_bot.py     # in another
    telcoflow-trio wa --from +15550100 "hello bot"
"""

import contextlib

import trio

from telcoflow_trio import IncomingMessage, TelcoflowClient, events
from telcoflow_trio.exceptions import WSSMessageError


def reply_to(content: dict) -> dict:
    """The bot's answer to one message (a WhatsApp text message object)."""
    text = content.get("text", {}).get("body") if content.get("type") == "text" else None
    body = f"You said: {text}" if text else "Sorry, I only read text messages."
    return {"type": "text", "text": {"body": body}}


async def on_message(message: IncomingMessage) -> None:
    try:
        await message.session.send_message(reply_to(message.content))
    except WSSMessageError as exc:  # e.g. SESSION_NOT_OPEN: the user's session closed
        print(f"could not answer {message.sender}: {exc.error_code}")


async def main() -> None:
    from _run import config_from_env

    async with TelcoflowClient(config_from_env()) as client:
        client.on(events.INCOMING_MESSAGE)(on_message)
        await client.run_forever()


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(main)
