"""Our StreamConnector in the Teler README's FastAPI app on Hypercorn's trio worker.

The shape of ``examples/teler_fastapi_echo.py``: the teler sample with only the
import changed, the connector on its default options, served in-process with
``hypercorn.trio.serve`` (what ``hypercorn --worker-class trio`` runs). Only the
handlers differ: they apply the benchmark's JSON.

Usage: ``python ours_hypercorn.py --port P --remote URL``
"""

import trio
from _transform import bridge_args, call_to_remote, remote_to_call
from fastapi import APIRouter, FastAPI, WebSocket
from hypercorn.config import Config
from hypercorn.trio import serve

from telcoflow_trio.streams import StreamConnector, StreamOp, StreamType

args = bridge_args(__doc__.splitlines()[0])

router = APIRouter()


async def call_stream_handler(message: str):
    return (call_to_remote(message), StreamOp.RELAY)


async def remote_stream_handler(message: str):
    return (remote_to_call(message), StreamOp.RELAY)


connector = StreamConnector(
    stream_type=StreamType.BIDIRECTIONAL,
    remote_url=args.remote,
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
    config = Config()
    config.bind = [f"127.0.0.1:{args.port}"]
    config.loglevel = "WARNING"
    trio.run(serve, app, config)
