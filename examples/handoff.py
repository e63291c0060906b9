"""Cross-node handoff: a front desk claims calls, a worker process serves them.

The front desk (this process) claims each call and, before its media connection
opens, hands it off: ``offer.to_json()`` goes into a ``multiprocessing`` queue.
The worker process (started here, it could be on another machine) takes each
document out and ``adopt_call()``\\ s it: it opens the media with the call's
token, answers, plays a short tone and hangs up. When the queue is full, the
front desk serves the call itself: a CALL_OFFERED handler that returns without
calling ``to_json()`` keeps the call where it is.

The document holds the call's media token, a secret good for one media
connection: pass it only over a channel you trust, and never log it.

Run ``telcoflow-trio simulate`` in one terminal, this file in another, then
``telcoflow-trio call --server ws://127.0.0.1:8080`` in a third.
"""

import contextlib
import logging
import math
import multiprocessing
import queue
from multiprocessing.queues import Queue

import trio

from telcoflow_trio import ActiveCall, CallOffer, TelcoflowClient, TelcoflowClientConfig, events
from telcoflow_trio.exceptions import WSSCallError

logger = logging.getLogger("handoff")

#: Handoff documents waiting for the worker; beyond this the front desk serves calls itself.
QUEUE_SIZE = 16


def tone(sample_rate: int, seconds: float, hz: float) -> bytes:
    """A sine tone as PCM16LE: the example's stand-in for a recorded greeting."""
    step = 2 * math.pi * hz / sample_rate
    samples = (int(6000 * math.sin(step * i)) for i in range(int(sample_rate * seconds)))
    return b"".join(s.to_bytes(2, "little", signed=True) for s in samples)


async def greet(call: ActiveCall, hz: float) -> None:
    await call.answer()
    await call.write_audio(tone(call.sample_rate, 1.0, hz))
    await call.wait_audio_sent()
    await call.disconnect()


# -- the worker process ------------------------------------------------------------------


async def worker(config: TelcoflowClientConfig, documents: "Queue[str | None]") -> None:
    """Adopt every document from ``documents`` until it yields ``None``."""
    async with TelcoflowClient(config) as client:  # it claims nothing: no INCOMING_CALL
        while True:
            document = await trio.to_thread.run_sync(documents.get, abandon_on_cancel=True)
            if document is None:
                break
            try:
                call = await client.adopt_call(document, handler=lambda c: greet(c, 440))
            except (ValueError, WSSCallError) as exc:  # e.g. the token expired in the queue
                logger.warning("could not adopt a call: %s", exc)
                continue
            logger.info("worker: serving call %s", call.call_id)
        await client.disconnect()
        await client.run_forever()  # until the adopted calls have ended


def run_worker(config: TelcoflowClientConfig, documents: "Queue[str | None]") -> None:
    """The worker process's entry point."""
    logging.basicConfig(level=logging.INFO)
    with contextlib.suppress(KeyboardInterrupt):
        trio.run(worker, config, documents)


# -- the front desk ----------------------------------------------------------------------


async def front_desk(config: TelcoflowClientConfig, documents: "Queue[str | None]") -> None:
    """Claim calls and hand each to the worker; serve them here when it is behind."""
    async with TelcoflowClient(config) as client:

        @client.on(events.CALL_OFFERED)
        def hand_off(offer: CallOffer) -> None:
            if documents.full():
                return  # the worker is behind: without to_json() the call stays here
            # We are the only producer, so this fits; were it to raise, the call
            # would stay here too (and the error be logged as a handler error).
            documents.put_nowait(offer.to_json())
            logger.info("front desk: handed call %s to the worker", offer.call_id)

        @client.on(events.INCOMING_CALL)
        async def serve_here(call: ActiveCall) -> None:
            await greet(call, 330)

        await client.run_forever()


def main() -> None:
    from _run import config_from_env

    logging.basicConfig(level=logging.INFO)
    logging.getLogger("telcoflow_trio").setLevel(logging.WARNING)
    spawn = multiprocessing.get_context("spawn")
    documents: Queue[str | None] = spawn.Queue(QUEUE_SIZE)
    config = config_from_env()
    process = spawn.Process(target=run_worker, args=(config, documents), daemon=True)
    process.start()
    try:
        with contextlib.suppress(KeyboardInterrupt):
            trio.run(front_desk, config, documents)
    finally:
        with contextlib.suppress(queue.Full):
            documents.put(None, timeout=1)
        process.join(timeout=5)


if __name__ == "__main__":
    main()
