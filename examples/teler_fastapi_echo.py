"""The Teler README's FastAPI echo sample, running on trio.

Teler streams the caller's audio to ``/media-stream``; a module-level
``StreamConnector`` relays every message to the remote WebSocket and every
message back, so with an echoing remote the caller hears themselves. The only
line changed from the teler sample is the import of ``StreamConnector``,
``StreamOp`` and ``StreamType``. For a self-contained demo this app also serves
the echoing remote itself, at ``/echo``.

Serve it with Hypercorn's trio worker::

    REMOTE_URL=ws://127.0.0.1:8000/echo \\
        hypercorn --worker-class trio --bind 127.0.0.1:8000 teler_fastapi_echo:app

or run this file (``--port``, ``--remote``), which does the same in-process.
"""

import os

from fastapi import APIRouter, FastAPI, WebSocket

from telcoflow_trio.streams import StreamConnector, StreamOp, StreamType  # was: teler.streams

router = APIRouter()

REMOTE_URL = os.environ.get("REMOTE_URL", "ws://127.0.0.1:8000/echo")


async def call_stream_handler(message):
    return (message, StreamOp.RELAY)


async def remote_stream_handler(message):
    return (message, StreamOp.RELAY)


connector = StreamConnector(
    stream_type=StreamType.BIDIRECTIONAL,
    remote_url=REMOTE_URL,
    call_stream_handler=call_stream_handler,
    remote_stream_handler=remote_stream_handler,
)


@router.websocket("/media-stream")
async def handle_media_stream(websocket: WebSocket):
    await websocket.accept()
    await connector.bridge_stream(websocket)


# -- not part of the teler sample: the echoing "voice AI" the connector talks to --


@router.websocket("/echo")
async def echo(websocket: WebSocket):
    await websocket.accept()
    while True:
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        if message.get("text") is not None:
            await websocket.send_text(message["text"])
        else:
            await websocket.send_bytes(message["bytes"])


app = FastAPI()
app.include_router(router)


def main() -> None:
    import argparse

    import hypercorn
    import hypercorn.trio
    import trio

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument("--remote", help="remote WebSocket URL (default: this app's /echo)")
    args = parser.parse_args()
    connector.remote_url = args.remote or f"ws://{args.host}:{args.port}/echo"
    config = hypercorn.Config()
    config.bind = [f"{args.host}:{args.port}"]
    trio.run(hypercorn.trio.serve, app, config)


if __name__ == "__main__":
    main()
