"""A minimal hand-written trio-websocket relay (perf-anchors (c)): the plain-trio yardstick.

``serve_websocket`` plus ``open_websocket_url``, one nursery with two relay tasks
per call, cancelled when either side closes.

Usage: ``python trio_relay.py --port P --remote URL``
"""

import trio
from _transform import bridge_args, call_to_remote, remote_to_call
from trio_websocket import ConnectionClosed, open_websocket_url, serve_websocket

args = bridge_args(__doc__.splitlines()[0])
port, remote = args.port, args.remote


async def handler(request) -> None:
    try:
        call = await request.accept()
        async with open_websocket_url(remote) as upstream, trio.open_nursery() as nursery:

            async def pump(src, dst, transform) -> None:
                try:
                    while True:
                        await dst.send_message(transform(await src.get_message()))
                except ConnectionClosed:
                    pass
                nursery.cancel_scope.cancel()

            nursery.start_soon(pump, call, upstream, call_to_remote)
            nursery.start_soon(pump, upstream, call, remote_to_call)
    except Exception:  # note D: one failed call must not end the server
        pass


if __name__ == "__main__":
    trio.run(serve_websocket, handler, "127.0.0.1", port, None)
