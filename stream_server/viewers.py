"""A session's WHEP viewers: at most MAX_VIEWERS_PER_SESSION peer connections, each with a connect deadline.

A viewer that has not connected within the connect timeout (`--connect-timeout`) is closed and its place freed,
so offers that never start ICE cannot keep a session full. A session's viewers end with it (`close_all`), and a
session that has ended takes no new viewer.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Coroutine
from typing import Any

from aiortc import RTCPeerConnection

from stream_server.errors import SessionLimitError, UnknownSessionError

logger = logging.getLogger(__name__)

MAX_VIEWERS_PER_SESSION = 8
Spawn = Callable[[Coroutine[Any, Any, Any], str], "asyncio.Task[Any]"]


class ViewerSet:
    """The WHEP viewers of one session, by viewer id; `spawn` starts a task the session owns."""

    def __init__(self, session_id: str, spawn: Spawn, limit: int = MAX_VIEWERS_PER_SESSION) -> None:
        self._session_id = session_id
        self._spawn = spawn
        self._limit = limit
        self._viewers: dict[str, RTCPeerConnection] = {}
        self._closed = False

    def __len__(self) -> int:
        return len(self._viewers)

    def check_room(self) -> None:
        """UnknownSessionError once the session has ended, SessionLimitError when it has all its viewers."""
        if self._closed:
            raise UnknownSessionError(f"no live session {self._session_id!r} (it has ended)")
        if len(self._viewers) >= self._limit:
            raise SessionLimitError(f"session {self._session_id} already has {self._limit} viewers")

    def add(self, pc: RTCPeerConnection, connect_timeout_s: float) -> str:
        """Count `pc` as one of this session's viewers (closed with it, or if it does not connect in time)."""
        self.check_room()
        viewer_id = uuid.uuid4().hex
        self._viewers[viewer_id] = pc
        connected = asyncio.Event()

        def on_state() -> None:
            if pc.connectionState == "connected":
                connected.set()
            elif pc.connectionState in ("failed", "closed"):
                self._spawn(self.remove(viewer_id), "viewer-close")

        pc.on("connectionstatechange", on_state)
        self._spawn(self._watch_connect(viewer_id, connected, connect_timeout_s), f"viewer-{viewer_id[:8]}-connect")
        return viewer_id

    async def _watch_connect(self, viewer_id: str, connected: asyncio.Event, timeout_s: float) -> None:
        try:
            await asyncio.wait_for(connected.wait(), timeout_s)
        except asyncio.TimeoutError:
            if viewer_id in self._viewers:
                logger.info("session %s: WHEP viewer %s not connected after %.0f s; closing it",
                            self._session_id[:8], viewer_id[:8], timeout_s)
                await self.remove(viewer_id)

    async def remove(self, viewer_id: str) -> bool:
        """End one viewer; False if there is no such viewer."""
        pc = self._viewers.pop(viewer_id, None)
        if pc is None:
            return False
        await close_viewer(pc)
        return True

    async def close_all(self) -> None:
        """End every viewer; the set takes no new one after this."""
        self._closed = True
        viewers = list(self._viewers.values())
        self._viewers.clear()
        await asyncio.gather(*(close_viewer(pc) for pc in viewers), return_exceptions=True)


async def close_viewer(pc: RTCPeerConnection) -> None:
    """Stop a viewer's outgoing tracks (their frames are released at once) and close its peer connection."""
    for sender in pc.getSenders():
        if sender.track is not None:
            sender.track.stop()
    await pc.close()
