"""The one JSON transformation every bridge applies (perf-anchors.md, "Messages").

Call -> remote: parse Teler's ``audio`` message and send
``{"type":"audio","audio_b64":...,"chunk_id":N}``; remote -> call: parse and
rebuild the same shape. Plain ``json`` on every stack, so it costs the same in
each bridge (about 8 us per frame). Also the command line every bridge shares.
"""

from __future__ import annotations

import argparse
import json
import ssl
from typing import Any


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


def bridge_args(description: str, *extra: tuple[str, dict[str, Any]]) -> argparse.Namespace:
    """The command line every bridge takes, plus its own ``extra`` options.

    ``--port`` (serve ``/media-stream`` on 127.0.0.1), ``--remote`` (the echo's
    ``ws://`` or ``wss://`` URL); ``--certfile``/``--keyfile``: serve the call leg
    on TLS (``wss://``) with this chain; ``--cafile``: the CA a ``wss://`` remote
    is verified against (the runner makes both with trustme, loopback only).
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--remote", required=True)
    parser.add_argument("--certfile", help="serve the call leg on wss:// with this chain (PEM)")
    parser.add_argument("--keyfile", help="the private key of --certfile (PEM)")
    parser.add_argument("--cafile", help="CA (PEM) that signed a wss:// remote's certificate")
    for flag, options in extra:
        parser.add_argument(flag, **options)
    args = parser.parse_args()
    if bool(args.certfile) != bool(args.keyfile):
        parser.error("--certfile and --keyfile go together")
    if args.remote.startswith("wss:") and not args.cafile:
        parser.error("a wss:// --remote needs --cafile")
    return args


def server_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """The call leg's TLS context (``None``: plain ``ws://``)."""
    if not args.certfile:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(args.certfile, args.keyfile)
    return context


def client_context(args: argparse.Namespace) -> ssl.SSLContext | None:
    """A context that verifies the remote against ``--cafile`` (``None``: ``ws://``)."""
    return ssl.create_default_context(cafile=args.cafile) if args.cafile else None
