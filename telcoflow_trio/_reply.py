"""Where a request's caller waits for its answer, or for the error that ends the wait."""

from __future__ import annotations

from typing import Generic, TypeVar

import trio

__all__ = ["Reply"]

T = TypeVar("T")


class Reply(Generic[T]):
    """Set ``response`` (or ``error``), then ``event``; the waiter reads them after."""

    __slots__ = ("error", "event", "response")

    def __init__(self) -> None:
        self.event = trio.Event()
        self.response: T | None = None
        self.error: BaseException | None = None
