"""The same-stack yardstick for (a): a minimal hand-written trio relay in FastAPI on Hypercorn.

A FastAPI ``@app.websocket`` route (``receive_text``/``send_text``) served by
``hypercorn.trio.serve``; inside it trio-websocket's ``open_websocket_url`` for
the remote and one nursery with two relay tasks, cancelled when either side ends.
No keep-alive, no send watchdog, no close codes, no statistics.

Usage: ``python relay_hypercorn.py --port P --remote URL``
"""

import trio
from _transform import bridge_args, call_to_remote, remote_to_call
from fastapi import FastAPI, WebSocket, WebSocketDisconnect
from hypercorn.config import Config
from hypercorn.trio import serve
from trio_websocket import ConnectionClosed, open_websocket_url

args = bridge_args(__doc__.splitlines()[0])
port, remote = args.port, args.remote
app = FastAPI()


@app.websocket("/media-stream")
async def media_stream(websocket: WebSocket) -> None:
    await websocket.accept()
    async with open_websocket_url(remote) as upstream, trio.open_nursery() as nursery:

        async def up() -> None:
            try:
                while True:
                    await upstream.send_message(call_to_remote(await websocket.receive_text()))
            except (WebSocketDisconnect, ConnectionClosed):
                pass
            nursery.cancel_scope.cancel()

        async def down() -> None:
            try:
                while True:
                    await websocket.send_text(remote_to_call(await upstream.get_message()))
            except (WebSocketDisconnect, ConnectionClosed):
                pass
            nursery.cancel_scope.cancel()

        nursery.start_soon(up)
        nursery.start_soon(down)


if __name__ == "__main__":
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    trio.run(serve, app, config)
