"""(c) teler 1.0.0's StreamConnector as its README shows it: FastAPI + uvicorn.

APIRouter, ``@router.websocket("/media-stream")``, ``await websocket.accept()``,
``await connector.bridge_stream(websocket)`` on a module-level connector whose
handlers return ``(payload, StreamOp.RELAY)``. Changes from the sample: the remote
URL is the loopback echo, the handlers apply the benchmark's JSON, the
cloud-API routes are left out, uvicorn logs at warning level.

Usage: ``python teler_app.py --port P --remote URL [--loop asyncio|uvloop]``
"""

import argparse
import sys

import uvicorn
from _transform import bridge_args, call_to_remote, remote_to_call
from fastapi import APIRouter, FastAPI, WebSocket
from teler.streams import StreamConnector, StreamOp, StreamType

port, remote, rest = bridge_args(__doc__.splitlines()[0])
parser = argparse.ArgumentParser()
parser.add_argument("--loop", choices=("asyncio", "uvloop"), default="asyncio")
LOOP = parser.parse_args(rest).loop

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
)


@router.websocket("/media-stream")
async def handle_media_stream(websocket: WebSocket):
    await websocket.accept()
    await connector.bridge_stream(websocket)


app = FastAPI()
app.include_router(router)

if __name__ == "__main__":
    sys.exit(
        uvicorn.run(app, host="127.0.0.1", port=port, workers=1, loop=LOOP, log_level="warning")
    )
