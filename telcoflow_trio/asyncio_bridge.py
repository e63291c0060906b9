"""Use telcoflow_trio from an asyncio application (FastAPI on uvicorn, a bot framework, ...).

trio runs in a thread of its own behind an anyio blocking portal, and asyncio
code awaits it::

    from telcoflow_trio.asyncio_bridge import open_trio_portal

    async def main() -> None:  # asyncio
        async with open_trio_portal() as portal:
            async with portal.open_client(config, handle_call) as agent:
                print(await agent.statistics())
                await agent.wait()  # until the client stops (or fails)

    asyncio.run(main())

``handle_call`` is an ordinary telcoflow_trio handler: it runs on trio, in the
portal's thread. What this module takes care of:

* **One owner task per session.** The client (like the simulator, or anything
  that owns a nursery) must be entered and left by the same trio task.
  :meth:`TrioPortal.open_client` and :meth:`TrioPortal.open_context` start one
  task that enters it, holds it while your ``async with`` block runs, and leaves
  it when the block ends.
* **Cancellation reaches trio.** Cancelling the asyncio task that awaits
  :meth:`TrioPortal.run` (``asyncio.wait_for``, ``task.cancel()``, shutdown)
  cancels the trio task, and the await returns only once the trio task has
  finished.
* **Exceptions cross back** unchanged: what the trio side raises is raised by
  the ``await`` in asyncio.
* **Shutdown does not hang.** Leaving :func:`open_trio_portal` stops the portal
  with ``cancel_remaining=True`` (a still-running task would otherwise keep it
  open forever) and waits for the trio thread at most ``stop_timeout`` seconds.

Every call crosses threads (roughly 0.2 ms each): keep audio processing on the
trio side, in the handler, and hand asyncio only results.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Mapping
from contextlib import AbstractAsyncContextManager, asynccontextmanager
from functools import partial
from typing import Any, TypeVar, TypeVarTuple, final

import trio
from anyio.from_thread import BlockingPortal, start_blocking_portal

from ._call import ActiveCall
from ._client import ClientStatistics, TelcoflowClient
from .config import TelcoflowClientConfig
from .events import INCOMING_CALL
from .streams import AsgiWebSocket, BridgeResult, StreamConnector

__all__ = ["PortalClient", "TrioPortal", "open_trio_portal"]

logger = logging.getLogger(__name__)

T = TypeVar("T")
PosArgsT = TypeVarTuple("PosArgsT")

_THREAD_NAME = "telcoflow-trio"


def _settle(future: asyncio.Future[T], value: T | None, error: BaseException | None) -> None:
    if future.done():
        return
    if error is not None:
        future.set_exception(error)
    else:
        future.set_result(value)  # type: ignore[arg-type]


def _in_thread(fn: Callable[[], T]) -> asyncio.Future[T]:
    """Run blocking ``fn`` in a new daemon thread; its outcome as an asyncio future.

    A daemon thread rather than ``asyncio.to_thread``: a thread stuck here must
    not hold up the loop's own shutdown, which waits for its executor.
    """
    loop = asyncio.get_running_loop()
    future: asyncio.Future[T] = loop.create_future()

    def work() -> None:
        value: T | None = None
        error: BaseException | None = None
        try:
            value = fn()
        except BaseException as exc:
            error = exc
        with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits
            loop.call_soon_threadsafe(_settle, future, value, error)

    threading.Thread(target=work, name=f"{_THREAD_NAME}-control", daemon=True).start()
    return future


def _stop_portal(
    cm: contextlib.AbstractContextManager[BlockingPortal], portal: BlockingPortal
) -> None:
    """Cancel what still runs in the portal, then wait for its thread (blocking)."""
    with contextlib.suppress(RuntimeError):  # already stopped
        portal.call(portal.stop, True)
    cm.__exit__(None, None, None)


@final
class PortalClient:
    """A :class:`~telcoflow_trio.TelcoflowClient` running in the portal's trio thread.

    Get one from :meth:`TrioPortal.open_client`. Its methods are awaited from
    asyncio. :attr:`client` itself belongs to trio: use it only through
    :meth:`TrioPortal.run` / :meth:`TrioPortal.run_sync`, e.g.
    ``await portal.run_sync(agent.client.get_call, call_id)``.
    """

    def __init__(
        self, portal: TrioPortal, client: TelcoflowClient, owner: asyncio.Future[None]
    ) -> None:
        self._portal = portal
        self._owner = owner
        self.client = client

    async def statistics(self) -> ClientStatistics:
        """The client's counters."""
        return await self._portal.run_sync(self.client.statistics)

    async def wait_connected(self) -> None:
        """Wait until the control connection is set up (see ``TelcoflowClient``)."""
        await self._portal.run(self.client.wait_connected)

    async def disconnect(self) -> None:
        """Take no new calls; :meth:`wait` returns once the calls in progress end."""
        await self._portal.run(self.client.disconnect)

    async def wait(self) -> None:
        """Wait until the client stops serving (``run_forever()`` returned).

        Cancelling the wait does not stop the client.

        Raises:
            WSSAuthenticationError, WSSConnectionError: the client failed for good.
        """
        await asyncio.shield(self._owner)


@final
class TrioPortal:
    """A trio event loop in a thread, for asyncio code. Get one from :func:`open_trio_portal`."""

    def __init__(self, portal: BlockingPortal, loop: asyncio.AbstractEventLoop) -> None:
        self._portal = portal
        self._loop = loop

    async def run(self, fn: Callable[[*PosArgsT], Awaitable[T]], *args: *PosArgsT) -> T:
        """Await ``fn(*args)`` in trio, from asyncio.

        Cancelling the awaiting asyncio task cancels the trio task and waits until
        it has finished (an exception from its cleanup is raised instead).

        Raises:
            whatever ``fn`` raises; RuntimeError: the portal has stopped.
        """
        try:
            return await self._portal.call_async(fn, *args)
        except BaseExceptionGroup as group:
            # A trio nursery in ``fn`` hands our cancellation back as a group of
            # trio.Cancelled, which anyio passes on instead of CancelledError.
            task = asyncio.current_task()
            if task is not None and task.cancelling() and group.split(trio.Cancelled)[1] is None:
                raise asyncio.CancelledError from None
            raise

    async def run_sync(self, fn: Callable[[*PosArgsT], T], *args: *PosArgsT) -> T:
        """Call synchronous ``fn(*args)`` in the trio thread, from asyncio.

        Raises:
            whatever ``fn`` raises; RuntimeError: the portal has stopped.
        """
        return await self._portal.call_async(fn, *args)

    async def run_asyncio(
        self,
        fn: Callable[[*PosArgsT], Coroutine[Any, Any, T]],
        *args: *PosArgsT,
    ) -> T:
        """From trio code in the portal's thread (a call handler): await ``fn(*args)``
        on the asyncio loop, for example to hand a result to the application.

        Cancelling the trio side cancels the asyncio task.

        Raises:
            whatever ``fn`` raises; RuntimeError: the asyncio loop is closed.
        """
        future = asyncio.run_coroutine_threadsafe(fn(*args), self._loop)
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()

        def wake(_: object) -> None:
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(done.set)

        future.add_done_callback(wake)
        try:
            await done.wait()
        finally:
            if not future.done():
                future.cancel()
        return future.result()

    async def bridge_stream(self, connector: StreamConnector, websocket: object) -> BridgeResult:
        """``connector.bridge_stream(websocket)`` in trio, for an ASGI WebSocket of asyncio.

        For a FastAPI/Starlette app on uvicorn: the bridge runs in the portal's
        trio thread, and each ``receive()``/``send()`` of ``websocket`` (accepted
        already) runs on the asyncio loop (two thread crossings per message).
        Cancelling the awaiting task ends the bridge as cancelling
        ``bridge_stream`` does: both sides are closed with 1001.

        Raises:
            ~telcoflow_trio.exceptions.StreamBridgeError: as
                ``StreamConnector.bridge_stream`` does.
            TypeError: ``websocket`` has no ASGI ``receive()``/``send()``.
        """
        receive, send = getattr(websocket, "receive", None), getattr(websocket, "send", None)
        if not (callable(receive) and callable(send)):
            raise TypeError(
                "portal.bridge_stream() takes an ASGI WebSocket (Starlette/FastAPI), "
                f"got {type(websocket).__name__}"
            )
        socket = AsgiWebSocket(_AsgiOnAsyncio(self, receive, send), connector.close_timeout)
        return await self.run(connector.bridge_stream, socket)

    def open_context(
        self,
        factory: Callable[[*PosArgsT], AbstractAsyncContextManager[T]],
        *args: *PosArgsT,
    ) -> AbstractAsyncContextManager[T]:
        """``async with portal.open_context(factory, *args) as value:`` from asyncio.

        One trio task calls ``factory(*args)``, enters the context manager, holds
        it while the block runs and leaves it when the block ends, so trio's rule
        that a nursery is entered and left by the same task holds. For example
        ``portal.open_context(open_simulator, SimulatorConfig())``. ``value``
        belongs to trio: use it through :meth:`run` / :meth:`run_sync`.

        If the block raises (or is cancelled), the trio task is cancelled instead,
        so the context manager sees ``trio.Cancelled``; your exception then
        propagates.
        """
        return self._own(partial(factory, *args), _hold)

    @asynccontextmanager
    async def open_client(
        self,
        config: TelcoflowClientConfig,
        handler: Callable[[ActiveCall], object] | None = None,
        **client_options: Any,
    ) -> AsyncIterator[PortalClient]:
        """Run a :class:`~telcoflow_trio.TelcoflowClient` in trio for the block.

        One trio task owns the client: it enters it (connecting), registers
        ``handler`` for ``INCOMING_CALL``, runs ``run_forever()`` and leaves it
        when the block ends, closing the calls in progress (each bounded by the
        config's ``close_timeout``). A failure of ``run_forever()`` during the
        block is raised by :meth:`PortalClient.wait` and on leaving the block.

        Args:
            config: the client's configuration.
            handler: your ``INCOMING_CALL`` handler; it runs on trio.
            client_options: ``open_stream``, ``random_source``, ``on_handler_error``.

        Raises:
            WSSAuthenticationError, WSSConnectionError: the client could not connect.
        """

        def create() -> TelcoflowClient:  # in trio: the client is a trio object
            client = TelcoflowClient(config, **client_options)
            if handler is not None:
                client.on(INCOMING_CALL)(handler)
            return client

        async with self._own(create, TelcoflowClient.run_forever, owner=True) as (client, owner):
            yield PortalClient(self, client, owner)

    @asynccontextmanager
    async def _own(
        self,
        enter: Callable[[], AbstractAsyncContextManager[Any]],
        then: Callable[[Any], Awaitable[object]],
        *,
        owner: bool = False,
    ) -> AsyncIterator[Any]:
        """The owner task: enter, hold (``then(value)`` until released), leave."""
        loop = self._loop
        entered: asyncio.Future[tuple[Any, trio.CancelScope, trio.CancelScope]]
        entered = loop.create_future()

        async def own() -> None:
            # ``abort`` leaves because the asyncio side failed: the context manager
            # sees trio.Cancelled and the scope absorbs it (group-wrapped or not).
            with trio.CancelScope() as abort:
                async with enter() as value:
                    with trio.CancelScope() as release:
                        loop.call_soon_threadsafe(_settle, entered, (value, release, abort), None)
                        await then(value)

        task = asyncio.ensure_future(self.run(own))
        abort: trio.CancelScope | None = None
        try:
            await asyncio.wait((entered, task), return_when=asyncio.FIRST_COMPLETED)
            if not entered.done():
                await task  # it failed (or returned) before entering: raise that
                raise RuntimeError(f"{enter!r} returned without entering")
            value, release, abort = entered.result()
            yield (value, task) if owner else value
            if not task.done():
                await self.run_sync(release.cancel)  # then() ends; the owner leaves normally
            await task
        finally:
            if not task.done():
                # The block raised, or we are being cancelled: make the owner leave
                # and wait for it (bounded by the context manager's own timeouts).
                try:
                    if abort is not None:
                        await self.run_sync(abort.cancel)
                    else:
                        task.cancel()
                    await task
                except asyncio.CancelledError:
                    pass
                except BaseException as exc:
                    logger.warning("leaving %r after an error failed too: %r", enter, exc)


@final
class _AsgiOnAsyncio:
    """An asyncio ASGI WebSocket's ``receive``/``send``, awaited from trio."""

    __slots__ = ("_portal", "_receive", "_send")

    def __init__(
        self,
        portal: TrioPortal,
        receive: Callable[[], Coroutine[Any, Any, Mapping[str, Any]]],
        send: Callable[[Mapping[str, Any]], Coroutine[Any, Any, None]],
    ) -> None:
        self._portal = portal
        self._receive = receive
        self._send = send

    async def receive(self) -> Mapping[str, Any]:
        return await self._portal.run_asyncio(self._receive)

    async def send(self, message: Mapping[str, Any]) -> None:
        await self._portal.run_asyncio(self._send, message)


async def _hold(value: object) -> None:
    await trio.sleep_forever()


@asynccontextmanager
async def open_trio_portal(
    *, stop_timeout: float = 30.0, **trio_run_options: Any
) -> AsyncIterator[TrioPortal]:
    """Start trio in a thread for the duration of the block (call it from asyncio).

    Leaving the block cancels everything still running in trio
    (``portal.stop(cancel_remaining=True)``) and waits for the thread to end.

    Args:
        stop_timeout: how long leaving may wait for the trio thread, in seconds.
        trio_run_options: passed to ``trio.run`` (e.g. ``clock=``, for tests
            that do not wait on the asyncio side: autojump would race it).

    Raises:
        TimeoutError: the trio thread did not stop within ``stop_timeout`` (it is
            a daemon thread and is left behind).
    """
    loop = asyncio.get_running_loop()
    cm = start_blocking_portal("trio", trio_run_options or None, name=_THREAD_NAME)
    starting = _in_thread(cm.__enter__)
    try:
        portal = await asyncio.shield(starting)
    except asyncio.CancelledError:
        # Cancelled while trio was starting: stop it as soon as it is up.
        def stop_when_up(future: asyncio.Future[BlockingPortal]) -> None:
            if not future.cancelled() and future.exception() is None:
                _in_thread(partial(_stop_portal, cm, future.result()))

        starting.add_done_callback(stop_when_up)
        raise
    try:
        yield TrioPortal(portal, loop)
    finally:
        stopping = _in_thread(partial(_stop_portal, cm, portal))
        try:
            await asyncio.wait_for(asyncio.shield(stopping), stop_timeout)
        except TimeoutError:
            raise TimeoutError(f"the trio thread did not stop within {stop_timeout:g} s") from None
