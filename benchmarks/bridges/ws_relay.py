"""(d) The floor: a minimal hand-written relay on the ``websockets`` library.

``websockets.asyncio.server.serve`` for the call, ``websockets.asyncio.client.connect``
for the remote, two tasks per call, ``asyncio.wait(FIRST_COMPLETED)``.

Usage: ``python ws_relay.py --port P --remote URL [--loop asyncio|uvloop]
[--certfile PEM --keyfile PEM] [--cafile PEM]`` (TLS as every bridge takes it:
the runner's yardstick for what the load side's TLS allows).
"""

import asyncio

from _transform import (
    bridge_args,
    call_to_remote,
    client_context,
    remote_to_call,
    server_context,
)
from websockets.asyncio.client import connect
from websockets.asyncio.server import serve

args = bridge_args(
    __doc__.splitlines()[0], ("--loop", {"choices": ("asyncio", "uvloop"), "default": "asyncio"})
)
port, remote, LOOP = args.port, args.remote, args.loop


async def handler(call) -> None:
    async with connect(remote, compression=None, ssl=client_context(args)) as upstream:

        async def up() -> None:
            async for message in call:
                await upstream.send(call_to_remote(message))

        async def down() -> None:
            async for message in upstream:
                await call.send(remote_to_call(message))

        tasks = [asyncio.create_task(up()), asyncio.create_task(down())]
        _, pending = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in pending:
            task.cancel()
        await asyncio.gather(*pending, return_exceptions=True)


async def main() -> None:
    async with serve(handler, "127.0.0.1", port, compression=None, ssl=server_context(args)):
        await asyncio.Future()


if __name__ == "__main__":
    if LOOP == "uvloop":
        import uvloop

        uvloop.run(main())
    else:
        asyncio.run(main())
