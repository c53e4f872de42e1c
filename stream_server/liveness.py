"""A session's two deadlines: connect within --connect-timeout, then deliver a frame at least every --idle-timeout.

A peer that never connects, connects and never sends, or stops sending mid-stream would otherwise hold one of
the server's --max-sessions places for as long as it likes.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable

logger = logging.getLogger(__name__)


class Liveness:
    """Watches one session; `expire(reason)` is called once when a deadline passes (the session closes itself)."""

    def __init__(self, name: str, connect_timeout_s: float, idle_timeout_s: float,
                 expire: Callable[[str], None]) -> None:
        self._name = name
        self._connect_timeout_s = connect_timeout_s
        self._idle_timeout_s = idle_timeout_s
        self._expire = expire
        self.connected = asyncio.Event()
        self._last_frame_at = time.monotonic()

    def frame_arrived(self) -> None:
        """The peer delivered a decoded frame (called for every frame: cheap)."""
        self._last_frame_at = time.monotonic()

    async def run(self) -> None:
        """Wait for the connection, then for frames; return after calling `expire` (or when cancelled)."""
        try:
            await asyncio.wait_for(self.connected.wait(), self._connect_timeout_s)
        except asyncio.TimeoutError:
            logger.warning("session %s: not connected after %.0f s; closing it", self._name, self._connect_timeout_s)
            self._expire("connect timeout")
            return
        self._last_frame_at = time.monotonic()  # the idle clock starts at the connection
        while (idle_for := time.monotonic() - self._last_frame_at) < self._idle_timeout_s:
            await asyncio.sleep(min(self._idle_timeout_s - idle_for + 0.05, 1.0))
        logger.warning("session %s: no frame for %.0f s (--idle-timeout); closing it", self._name, idle_for)
        self._expire("idle timeout")
