"""``MODULE:ATTR``: import the agent and turn it into something that sets a client up.

``ATTR`` (dotted names allowed) is one of:

* an ``async def on_call(call)``: registered as the ``INCOMING_CALL`` handler;
* a plain ``def setup(client) -> None``: called once per worker with the
  :class:`~telcoflow_trio.TelcoflowClient`, before any call is claimed; it
  registers the handler itself (``client.on(events.INCOMING_CALL)(...)``) and
  whatever else the agent needs.

The module is imported with the current directory on ``sys.path``, as
``python -m`` would.
"""

from __future__ import annotations

import importlib
import inspect
import os
import sys
from collections.abc import Callable
from typing import Any

from .._cli_secrets import UsageError
from .._client import TelcoflowClient
from ..events import INCOMING_CALL

__all__ = ["Install", "SetupError", "load_target"]

#: Sets a connected client up: registers the agent's handlers.
Install = Callable[[TelcoflowClient], None]


class SetupError(Exception):
    """The agent's ``setup(client)`` failed, or registered no ``INCOMING_CALL`` handler."""


def _is_async(obj: object) -> bool:
    return inspect.iscoroutinefunction(obj) or inspect.iscoroutinefunction(
        getattr(obj, "__call__", None)  # noqa: B004 (an instance with ``async def __call__``)
    )


def load_target(spec: str) -> Install:
    """Import ``MODULE:ATTR`` and return how to set a client up with it.

    Raises:
        UsageError: ``spec`` is not ``MODULE:ATTR``, the module does not import,
            the attribute is missing, or it is neither a handler nor a setup function.
    """
    module_name, _, attr = spec.partition(":")
    if not module_name or not attr:
        raise UsageError(f"{spec!r} is not MODULE:ATTR (for example my_agent:on_call)")
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        raise UsageError(f"cannot import {module_name!r}: {exc}") from None
    except Exception as exc:
        raise UsageError(
            f"importing {module_name!r} failed: {type(exc).__name__}: {exc}"
        ) from None
    for name in attr.split("."):
        try:
            obj = getattr(obj, name)
        except AttributeError:
            raise UsageError(f"{module_name!r} has no attribute {attr!r}") from None
    what = "an `async def on_call(call)` handler or a `def setup(client)` function"
    if not callable(obj):
        raise UsageError(f"{spec} is a {type(obj).__name__}, not {what}")
    try:
        inspect.signature(obj).bind(None)
    except TypeError:
        raise UsageError(f"{spec} must take one argument: it should be {what}") from None
    except ValueError:
        pass  # no signature to check (a builtin): find out when it is called
    if _is_async(obj):
        handler = obj

        def install(client: TelcoflowClient) -> None:
            client.on(INCOMING_CALL)(handler)

        return install

    def setup(client: TelcoflowClient) -> None:
        try:
            result = obj(client)
        except Exception as exc:
            raise SetupError(f"{spec}(client) raised {type(exc).__name__}: {exc}") from exc
        if inspect.isawaitable(result):
            getattr(result, "close", lambda: None)()
            raise SetupError(
                f"{spec}(client) returned an awaitable: setup must be a plain function "
                "(only the INCOMING_CALL handler is async)"
            )
        if client._incoming is None:  # (the client has no public way to ask)
            raise SetupError(
                f"{spec}(client) registered no INCOMING_CALL handler "
                "(use client.on(events.INCOMING_CALL)(on_call))"
            )

    return setup
