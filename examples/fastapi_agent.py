"""An agent inside a FastAPI app, served by Hypercorn's trio worker.

The app's lifespan owns the ``TelcoflowClient``: it connects at start-up, serves
calls in the background while the app serves HTTP, and closes every call
cleanly at shutdown. ``GET /status`` shows the client's statistics.

    hypercorn --worker-class trio --bind 127.0.0.1:8000 fastapi_agent:app
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
from _run import config_from_env
from echo_agent import on_call
from fastapi import FastAPI, Request

from telcoflow_trio import TelcoflowClient, TelcoflowClientConfig, events


def create_app(config: TelcoflowClientConfig | None = None, **client_options: object) -> FastAPI:
    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        async with TelcoflowClient(config or config_from_env(), **client_options) as client:
            client.on(events.INCOMING_CALL)(on_call)
            app.state.client = client
            yield

    app = FastAPI(lifespan=lifespan)

    @app.get("/status")
    async def status(request: Request) -> dict[str, object]:
        client: TelcoflowClient = request.app.state.client
        return attrs.asdict(client.statistics())

    return app


app = create_app()

if __name__ == "__main__":
    import hypercorn
    import hypercorn.trio
    import trio

    hypercorn_config = hypercorn.Config()
    hypercorn_config.bind = ["127.0.0.1:8000"]
    trio.run(hypercorn.trio.serve, app, hypercorn_config)
