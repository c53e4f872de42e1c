"""A one-item hand-over that keeps only the newest item: the server's answer to a slow consumer.

Used wherever a faster producer feeds a slower consumer on the event loop: the incoming track's frames
(tracks.LatestFrameReader), the located frames between the two frame stages (frames.FrameScheduler) and every
outgoing track (tracks.ProcessedVideoTrack). Nothing ever queues behind a slow stage; what is replaced is
counted.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class NewestSlot(Generic[T]):
    """Holds at most one item for one consumer task; a new item replaces one not yet taken.

    `replaced` counts the items replaced before they were taken (and `on_replace` is called for each).
    After `close()`, `get()` still hands out the item left in the slot, then returns None; later puts are
    dropped without counting.
    """

    def __init__(self, on_replace: Callable[[], None] | None = None) -> None:
        self._item: T | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self._on_replace = on_replace
        self.replaced = 0

    @property
    def closed(self) -> bool:
        """Whether close() was called."""
        return self._closed

    def put(self, item: T) -> None:
        """Offer `item`, replacing (and counting) an item not yet taken."""
        if self._closed:
            return
        if self._item is not None:
            self.replaced += 1
            if self._on_replace is not None:
                self._on_replace()
        self._item = item
        self._ready.set()

    async def get(self) -> T | None:
        """The newest item, waiting for one; None once closed and empty."""
        while self._item is None:
            if self._closed:
                return None
            self._ready.clear()
            await self._ready.wait()
        item, self._item = self._item, None
        return item

    def close(self) -> None:
        """No more items: a waiting get() takes what is left, then gets None."""
        self._closed = True
        self._ready.set()

    def clear(self) -> None:
        """Drop the item waiting in the slot, if any, without counting it."""
        self._item = None
