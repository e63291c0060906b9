"""Bridge each call to a voice-AI WebSocket.

The caller's audio goes to ``VOICE_AI_URL`` as binary PCM frames; whatever the
remote sends back (binary PCM) is played to the caller. A text message
``{"type": "interrupt"}`` from the remote drops the agent audio not yet played
(barge-in), and ``{"type": "hangup"}`` ends the call. The bridge ends, and the
call is closed, when either side ends or fails.
"""

import json
import os

from telcoflow_trio import ActiveCall
from telcoflow_trio.streams import BridgeContext, StreamOp, bridge_call

VOICE_AI_URL = os.environ.get("VOICE_AI_URL", "ws://127.0.0.1:9000/agent")


async def from_voice_ai(
    message: str | bytes, bridge: BridgeContext
) -> tuple[str | bytes | None, StreamOp]:
    if isinstance(message, bytes):
        return message, StreamOp.RELAY  # audio for the caller
    event = json.loads(message)
    if event.get("type") == "interrupt":
        await bridge.clear_audio()
        return None, StreamOp.PASS
    if event.get("type") == "hangup":
        return None, StreamOp.STOP
    return None, StreamOp.PASS  # transcripts and the like: not for the caller


async def on_call(call: ActiveCall) -> None:
    token = os.environ.get("VOICE_AI_TOKEN")
    await call.answer()
    await bridge_call(
        call,
        VOICE_AI_URL,
        remote_stream_handler=from_voice_ai,
        headers=[("authorization", f"Bearer {token}")] if token else [],
    )


if __name__ == "__main__":
    from _run import run_agent

    run_agent(on_call)
