"""(a) Our StreamConnector in FastAPI on Hypercorn's trio worker (the Teler README app).

The route is teler's README sample with only the import changed; the remote leg
uses ``--transport`` (the library's default, lean, or ``trio-websocket``).

Usage: ``python ours_hypercorn.py --port P --remote URL [--transport trio-websocket|lean]``
"""

import argparse

import trio
from _transform import bridge_args, call_to_remote, remote_to_call
from fastapi import APIRouter, FastAPI, WebSocket
from hypercorn.config import Config
from hypercorn.trio import serve

from telcoflow_trio.streams import StreamConnector, StreamOp, StreamType
from telcoflow_trio.ws._transport import DEFAULT_TRANSPORT, TRANSPORTS

port, remote, rest = bridge_args(__doc__.splitlines()[0])
parser = argparse.ArgumentParser()
parser.add_argument("--transport", choices=TRANSPORTS, default=DEFAULT_TRANSPORT)
TRANSPORT = parser.parse_args(rest).transport

router = APIRouter()


async def call_stream_handler(message: str):
    return (call_to_remote(message), StreamOp.RELAY)


async def remote_stream_handler(message: str):
    return (remote_to_call(message), StreamOp.RELAY)


connector = StreamConnector(
    stream_type=StreamType.BIDIRECTIONAL,
    remote_url=remote,
    call_stream_handler=call_stream_handler,
    remote_stream_handler=remote_stream_handler,
    transport=TRANSPORT,
)


@router.websocket("/media-stream")
async def handle_media_stream(websocket: WebSocket):
    await websocket.accept()
    await connector.bridge_stream(websocket)


app = FastAPI()
app.include_router(router)

if __name__ == "__main__":
    config = Config()
    config.bind = [f"127.0.0.1:{port}"]
    config.loglevel = "WARNING"
    trio.run(serve, app, config)
