"""The newest-only slot: a consumer gets the newest item, replaced items are counted, close drains then ends."""

from __future__ import annotations

import asyncio

import pytest

from stream_server.newest import NewestSlot

pytestmark = pytest.mark.timeout(10)


async def test_the_consumer_gets_the_newest_item_and_replacements_are_counted() -> None:
    replaced: list[int] = []
    slot = NewestSlot[int](on_replace=lambda: replaced.append(1))
    for item in range(5):
        slot.put(item)
    assert await slot.get() == 4
    assert slot.replaced == len(replaced) == 4
    slot.put(5)
    assert await slot.get() == 5 and slot.replaced == 4  # taken in time: not a replacement


async def test_a_waiting_consumer_wakes_for_the_next_item() -> None:
    slot = NewestSlot[str]()
    waiting = asyncio.ensure_future(slot.get())
    await asyncio.sleep(0.01)
    assert not waiting.done()
    slot.put("frame")
    assert await asyncio.wait_for(waiting, 1) == "frame"


async def test_close_hands_out_what_is_left_then_none_and_drops_later_puts() -> None:
    slot = NewestSlot[int]()
    slot.put(1)
    slot.close()
    slot.put(2)
    assert await slot.get() == 1
    assert await slot.get() is None and slot.closed and slot.replaced == 0
    waiting = NewestSlot[int]()
    consumer = asyncio.ensure_future(waiting.get())
    await asyncio.sleep(0.01)
    waiting.close()
    assert await asyncio.wait_for(consumer, 1) is None


async def test_clear_drops_the_item_without_counting_it() -> None:
    slot = NewestSlot[int]()
    slot.put(1)
    slot.clear()
    slot.close()
    assert await slot.get() is None and slot.replaced == 0
