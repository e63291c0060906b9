"""The one JSON transformation every bridge applies (perf-anchors.md, "Messages").

Call -> remote: parse Teler's ``audio`` message and send
``{"type":"audio","audio_b64":...,"chunk_id":N}``; remote -> call: parse and
rebuild the same shape. Plain ``json`` on every stack, so it costs the same in
each bridge (about 8 us per frame).
"""

from __future__ import annotations

import json


def call_to_remote(message: str | bytes) -> str:
    msg = json.loads(message)
    return json.dumps(
        {"type": "audio", "audio_b64": msg["data"]["audio_b64"], "chunk_id": msg["message_id"]}
    )


def remote_to_call(message: str | bytes) -> str:
    msg = json.loads(message)
    return json.dumps(
        {"type": "audio", "audio_b64": msg["audio_b64"], "chunk_id": msg["chunk_id"]}
    )


def bridge_args(description: str) -> tuple[int, str, list[str]]:
    """``--port``, ``--remote`` and the rest of the command line."""
    import argparse

    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--remote", required=True)
    args, rest = parser.parse_known_args()
    return args.port, args.remote, rest
