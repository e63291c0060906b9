"""(b) Our StreamConnector on plain trio: our own server side, no web framework.

``--transport lean`` (the library's default) accepts calls with
:func:`telcoflow_trio.ws.serve_websocket` and opens the remote with the same lean
connection; ``--transport trio-websocket`` accepts calls with trio-websocket's
``serve_websocket`` and opens the remote with trio-websocket.

Usage: ``python ours_trio.py --port P --remote URL [--transport trio-websocket|lean]``
"""

import argparse
import logging

import trio
import trio_websocket
from _transform import bridge_args, call_to_remote, remote_to_call

from telcoflow_trio.streams import StreamConnector, StreamOp, StreamType
from telcoflow_trio.ws._transport import DEFAULT_TRANSPORT, TRANSPORTS

port, remote, rest = bridge_args(__doc__.splitlines()[0])
parser = argparse.ArgumentParser()
parser.add_argument("--transport", choices=TRANSPORTS, default=DEFAULT_TRANSPORT)
TRANSPORT = parser.parse_args(rest).transport
log = logging.getLogger("bench.ours_trio")


async def call_stream_handler(message):
    return (call_to_remote(message), StreamOp.RELAY)


async def remote_stream_handler(message):
    return (remote_to_call(message), StreamOp.RELAY)


connector = StreamConnector(
    StreamType.BIDIRECTIONAL,
    remote,
    call_stream_handler,
    remote_stream_handler,
    transport=TRANSPORT,
)


async def on_tw_call(request: trio_websocket.WebSocketRequest) -> None:
    try:
        ws = await request.accept()
        await connector.bridge_stream(ws)
    except Exception as exc:  # one failed call must not end the server
        log.warning("call failed: %r", exc)


async def main() -> None:
    if TRANSPORT == "lean":
        from telcoflow_trio import ws

        async def on_lean_call(request: ws.WebSocketRequest) -> None:
            # A handler's exception ends only its call (serve_websocket logs it).
            await connector.bridge_stream(await request.accept())

        await ws.serve_websocket(on_lean_call, "127.0.0.1", port, None)
    else:
        await trio_websocket.serve_websocket(on_tw_call, "127.0.0.1", port, ssl_context=None)


if __name__ == "__main__":
    trio.run(main)
