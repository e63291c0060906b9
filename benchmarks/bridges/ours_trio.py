"""Our StreamConnector on plain trio, served the way a user would: ``telcoflow_trio.ws``.

``telcoflow_trio.ws.serve_websocket`` accepts the calls (with ``ssl_context``
for ``wss://``), and one module-level ``StreamConnector`` with its default
transport opens the remote, verifying a ``wss://`` remote with its public
``ssl_context`` option.

Usage: ``python ours_trio.py --port P --remote URL [--certfile PEM --keyfile PEM] [--cafile PEM]``
"""

import trio
from _transform import bridge_args, call_to_remote, client_context, remote_to_call, server_context

from telcoflow_trio.streams import StreamConnector, StreamOp, StreamType
from telcoflow_trio.ws import WebSocketRequest, serve_websocket

args = bridge_args(__doc__.splitlines()[0])


async def call_stream_handler(message):
    return (call_to_remote(message), StreamOp.RELAY)


async def remote_stream_handler(message):
    return (remote_to_call(message), StreamOp.RELAY)


connector = StreamConnector(
    StreamType.BIDIRECTIONAL,
    args.remote,
    call_stream_handler,
    remote_stream_handler,
    ssl_context=client_context(args),
)


async def on_call(request: WebSocketRequest) -> None:
    # A handler's exception ends only its call (serve_websocket logs it).
    await connector.bridge_stream(await request.accept())


if __name__ == "__main__":
    trio.run(serve_websocket, on_call, "127.0.0.1", args.port, server_context(args))
