"""teler 1.0.0's StreamConnector as its README shows it: FastAPI + uvicorn.

APIRouter, ``@router.websocket("/media-stream")``, ``await websocket.accept()``,
``await connector.bridge_stream(websocket)`` on a module-level connector whose
handlers return ``(payload, StreamOp.RELAY)``. Changes from the sample: the remote
URL is the loopback echo, the handlers apply the benchmark's JSON, the
cloud-API routes are left out, uvicorn logs at warning level.

TLS as a deployment would set it up: the call leg through uvicorn's
``ssl_certfile``/``ssl_keyfile``. teler's connector has no TLS option (1.0.0
calls ``websockets.connect(remote_url)``, which makes
``ssl.create_default_context()`` for ``wss://``), so the test CA is trusted the
way a private CA is for any default context: ``SSL_CERT_FILE``.

Usage: ``python teler_app.py --port P --remote URL [--loop asyncio|uvloop]
[--certfile PEM --keyfile PEM] [--cafile PEM]``
"""

import os
import sys

import uvicorn
from _transform import bridge_args, call_to_remote, remote_to_call
from fastapi import APIRouter, FastAPI, WebSocket
from teler.streams import StreamConnector, StreamOp, StreamType

args = bridge_args(
    __doc__.splitlines()[0], ("--loop", {"choices": ("asyncio", "uvloop"), "default": "asyncio"})
)
if args.cafile:
    os.environ["SSL_CERT_FILE"] = args.cafile

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
    sys.exit(
        uvicorn.run(
            app,
            host="127.0.0.1",
            port=args.port,
            workers=1,
            loop=args.loop,
            log_level="warning",
            ssl_certfile=args.certfile,
            ssl_keyfile=args.keyfile,
        )
    )
