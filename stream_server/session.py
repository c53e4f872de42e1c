"""Sessions: one per ingesting peer (/offer or WHIP), owning its peer connection, tasks, viewers and pipeline.

`SessionRegistry` holds every session; a session's end (DELETE, ICE failure, the peer closing, server
shutdown) frees everything it started: its tasks, its WHEP viewers' peer connections, its detector and its
place in the inference batcher.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic, Literal, TypeVar

import numpy as np
from aiohttp import web
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from stream_server.batching import InferenceBatcher
from stream_server.catalog import ModelCatalog
from stream_server.config import ServerConfig, SessionOptions
from stream_server.errors import ConfigError, ServerError
from stream_server.metrics import ServerMetrics
from stream_server.pipeline import FramePipeline, PipelineSettings
from stream_server.tracks import FrameBroadcaster, LatestFrameReader, TimedFrame

logger = logging.getLogger(__name__)

SessionKind = Literal["offer", "whip"]
MAX_VIEWERS_PER_SESSION = 8
STAGE_NAMES = ("detect", "align", "infer", "blend", "encode")


class SessionLimitError(ServerError):
    """No room for another session (HTTP 503)."""


class UnknownSessionError(ServerError):
    """No live session with that id (HTTP 404)."""


@dataclass
class ServerState:
    """Everything the handlers share, reached through app[STATE_KEY]; built once by the app factory."""

    config: ServerConfig
    metrics: ServerMetrics
    executor: ThreadPoolExecutor
    catalog: ModelCatalog
    backends: dict[str, Any]
    manifest_entries: list[Any]
    batcher: InferenceBatcher | None
    web_root: Path | None
    digits_model: str | None = None
    registry: SessionRegistry = field(init=False)
    pipeline_factory: Callable[[str], FramePipeline] = field(init=False)

    @property
    def provider(self) -> str:
        providers = sorted({str(getattr(b, "provider", "unknown")) for b in self.backends.values()})
        return ",".join(providers) if providers else "none"


STATE_KEY = web.AppKey("swapstream_state", ServerState)


class _RollingStats:
    """Per-session figures for the ~1/s "stats" DataChannel message."""

    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.stage_sums: dict[str, float] = {}
        self.stage_counts: dict[str, int] = {}
        self.frames_out = 0
        self.added_sum = 0.0
        self.faces = 0
        self.window_start = time.monotonic()

    def add_stages(self, stage_ms: dict[str, float]) -> None:
        for stage, value in stage_ms.items():
            self.stage_sums[stage] = self.stage_sums.get(stage, 0.0) + value
            self.stage_counts[stage] = self.stage_counts.get(stage, 0) + 1

    def snapshot_and_reset(self) -> dict[str, Any]:
        now = time.monotonic()
        elapsed = max(now - self.window_start, 1e-6)
        stage_ms = {s: round(self.stage_sums[s] / self.stage_counts[s], 2) for s in self.stage_sums}
        result = {
            "stage_ms": stage_ms,
            "fps": round(self.frames_out / elapsed, 2),
            "added_ms": round(self.added_sum / self.frames_out, 2) if self.frames_out else None,
            "faces": self.faces,
        }
        self.reset()
        return result


@dataclass
class _Located:
    """A frame after stage 1: its decoded pixels, its faces, and the options it is processed with."""

    timed: TimedFrame
    rgb: np.ndarray
    faces: list[Any]
    stage_ms: dict[str, float]
    options: SessionOptions


T = TypeVar("T")


class _NewestSlot(Generic[T]):
    """A one-item hand-over between two tasks: a new item replaces one not yet taken (on_replace counts it)."""

    def __init__(self, on_replace: Callable[[], None]) -> None:
        self._item: T | None = None
        self._ready = asyncio.Event()
        self._closed = False
        self._on_replace = on_replace

    def put(self, item: T) -> None:
        if self._item is not None:
            self._on_replace()
        self._item = item
        self._ready.set()

    def close(self) -> None:
        self._closed = True
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


class Session:
    """One ingesting peer and everything it started."""

    def __init__(self, registry: SessionRegistry, kind: SessionKind, options: SessionOptions) -> None:
        self.id = uuid.uuid4().hex
        self.kind = kind
        self.registry = registry
        self.state = registry.state
        self.options = options
        self.pc = RTCPeerConnection()
        self.broadcaster = FrameBroadcaster(on_sent=self._on_sent)
        self.viewers: dict[str, RTCPeerConnection] = {}
        self.reader: LatestFrameReader | None = None
        self.pipeline: FramePipeline | None = None
        self.channel: Any = None
        self.tasks: set[asyncio.Task[Any]] = set()
        self.closed = False
        self.connected = asyncio.Event()
        self.frames_processed = 0
        self._stats = _RollingStats()
        self._errors_logged = 0
        self._closing: asyncio.Task[None] | None = None
        self._inflight_locate: Future[Any] | None = None
        self._inflight_render: Future[Any] | None = None
        self._pipeline_future: Future[FramePipeline] | None = None
        self.pc.on("connectionstatechange", self._on_connection_state)
        self.pc.on("datachannel", self._on_datachannel)
        self.spawn(self._watch_connect(), "connect-watchdog")

    # -- lifecycle -------------------------------------------------------------------------------------------
    def spawn(self, coro: Any, name: str) -> asyncio.Task[Any]:
        """Start a task owned by this session (cancelled when it closes)."""
        task = asyncio.get_running_loop().create_task(coro, name=f"swapstream-{self.id[:8]}-{name}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    def _on_connection_state(self) -> None:
        state = self.pc.connectionState
        logger.info("session %s: connection %s", self.id[:8], state)
        if state == "connected":
            self.connected.set()
        elif state in ("failed", "closed"):
            self.close_soon()

    async def _watch_connect(self) -> None:
        timeout = self.state.config.connect_timeout_s
        try:
            await asyncio.wait_for(self.connected.wait(), timeout)
        except asyncio.TimeoutError:
            logger.warning("session %s: not connected after %.0f s; closing it", self.id[:8], timeout)
            self.close_soon()

    def close_soon(self) -> None:
        """Close from a callback or from one of the session's own tasks without awaiting there."""
        if self._closing is None and not self.closed:
            self._closing = asyncio.get_running_loop().create_task(self.close(), name=f"swapstream-close-{self.id[:8]}")
            self.registry._closing.add(self._closing)
            self._closing.add_done_callback(self.registry._closing.discard)

    async def close(self) -> None:
        """Free everything the session started; safe to call more than once."""
        if self.closed:
            return
        self.closed = True
        self.registry._forget(self)
        current = asyncio.current_task()
        tasks = [t for t in self.tasks if t is not current]
        for task in tasks:
            task.cancel()
        if self.reader is not None:
            await self.reader.stop()
        self.broadcaster.close()
        await asyncio.gather(*tasks, return_exceptions=True)
        viewers = list(self.viewers.values())
        self.viewers.clear()
        await asyncio.gather(*(pc.close() for pc in viewers), return_exceptions=True)
        await self.pc.close()
        if self.state.batcher is not None:
            self.state.batcher.unregister(self.id)
        # A frame may still be in a worker thread; the detector must outlive it.
        for pending in (self._inflight_locate, self._inflight_render, self._pipeline_future):
            while pending is not None and not pending.done():
                await asyncio.sleep(0.005)
        pipeline = self.pipeline
        future = self._pipeline_future
        if pipeline is None and future is not None and not future.cancelled() and future.exception() is None:
            pipeline = future.result()
        self.pipeline = None
        if pipeline is not None:
            await asyncio.get_running_loop().run_in_executor(self.state.executor, pipeline.close)
        logger.info("session %s closed (%d frames processed)", self.id[:8], self.frames_processed)

    # -- media -----------------------------------------------------------------------------------------------
    def attach_input(self, track: MediaStreamTrack) -> None:
        """Start reading and processing the peer's first video track; drain and discard any other track."""
        if self.reader is not None or track.kind != "video":
            # aiortc queues every decoded frame of every track without bound: an ignored track must still be read.
            self.spawn(self._discard(track), f"discard-{track.kind}")
            return
        metrics = self.state.metrics
        self.reader = LatestFrameReader(track, on_frame=metrics.frames_in.inc, on_drop=metrics.frames_dropped.inc)
        self.spawn(self._process_loop(), "process")
        self.spawn(self._stats_loop(), "stats")

    @staticmethod
    async def _discard(track: MediaStreamTrack) -> None:
        try:
            while True:
                await track.recv()
        except MediaStreamError:
            pass

    async def _process_loop(self) -> None:
        assert self.reader is not None
        executor = self.state.executor
        self._pipeline_future = executor.submit(self.state.pipeline_factory, self.id)
        try:
            self.pipeline = await asyncio.wrap_future(self._pipeline_future)
        except Exception as exc:  # noqa: BLE001 - e.g. mediapipe failing to start: end this session, not the server
            logger.error("session %s: cannot start the frame pipeline: %s", self.id[:8], exc, exc_info=True)
            self.send_json({"type": "error", "message": f"cannot start the frame pipeline: {exc}"})
            self.close_soon()
            return
        if self.state.batcher is not None:
            self.state.batcher.register(self.id)
        # Two stages in two worker threads: while frame N is swapped and blended, frame N+1 is already being
        # detected, so a frame rarely waits for the previous one. The hand-over holds only the newest frame.
        located = _NewestSlot[_Located](on_replace=self._count_drop)
        render_task = self.spawn(self._render_loop(located), "render")
        while True:
            timed = await self.reader.next_frame()
            if timed is None:
                break
            options = self.options
            self._inflight_locate = executor.submit(self._locate, timed, options)
            try:
                located.put(await asyncio.wrap_future(self._inflight_locate))
            except Exception as exc:  # noqa: BLE001 - one bad frame must not end the session
                self._report_error(exc)
        located.close()
        await render_task
        logger.info("session %s: incoming video ended", self.id[:8])
        self.close_soon()

    async def _render_loop(self, located: _NewestSlot[_Located]) -> None:
        executor = self.state.executor
        while (item := await located.get()) is not None:
            self._inflight_render = executor.submit(self._render, item)
            try:
                out, stage_ms, faces = await asyncio.wrap_future(self._inflight_render)
            except Exception as exc:  # noqa: BLE001 - one bad frame must not end the session
                self._report_error(exc)
                continue
            self.frames_processed += 1
            self.state.metrics.observe_stages(stage_ms)
            self.state.metrics.faces.inc(faces)
            self._stats.add_stages(stage_ms)
            self._stats.faces = faces
            self.broadcaster.publish(TimedFrame(out, item.timed.received_at))

    def _count_drop(self) -> None:
        self.state.metrics.frames_dropped.inc()

    def _locate(self, timed: TimedFrame, options: SessionOptions) -> _Located:
        """Worker thread, stage 1: decode to RGB and find the faces (the tracking state lives here)."""
        assert self.pipeline is not None
        frame = timed.frame
        rgb = frame.to_ndarray(format="rgb24")
        timestamp = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
        faces, stage_ms = self.pipeline.locate(rgb, options, timestamp)
        return _Located(timed, rgb, faces, stage_ms, options)

    def _render(self, item: _Located) -> tuple[VideoFrame, dict[str, float], int]:
        """Worker thread, stage 2: swap and blend, then wrap the result with the input frame's timing."""
        assert self.pipeline is not None
        processed, stage_ms = self.pipeline.render(item.rgb, item.faces, item.options)
        out = VideoFrame.from_ndarray(np.ascontiguousarray(processed), format="rgb24")
        out.pts, out.time_base = item.timed.frame.pts, item.timed.frame.time_base
        faces = len(item.faces) if self.pipeline.swap_enabled(item.options) else 0
        return out, {**item.stage_ms, **stage_ms}, faces

    def _report_error(self, exc: Exception) -> None:
        self._errors_logged += 1
        if self._errors_logged <= 3:
            logger.error("session %s: frame failed: %s", self.id[:8], exc, exc_info=self._errors_logged == 1)
        self.send_json({"type": "error", "message": f"frame failed: {exc}"})

    def _on_sent(self, encode_ms: float, added_ms: float) -> None:
        metrics = self.state.metrics
        metrics.frames_out.inc()
        metrics.stage_ms.observe(encode_ms, "encode")
        metrics.added_ms.observe(added_ms)
        self._stats.add_stages({"encode": encode_ms})
        self._stats.frames_out += 1
        self._stats.added_sum += added_ms

    # -- control channel -------------------------------------------------------------------------------------
    def _on_datachannel(self, channel: Any) -> None:
        if channel.label != "control":
            return
        self.channel = channel
        channel.on("message", self._on_control_message)

    def _on_control_message(self, message: Any) -> None:
        try:
            data = json.loads(message)
        except (TypeError, ValueError) as exc:
            self.send_json({"type": "error", "message": f"control message is not JSON: {exc}"})
            return
        if not isinstance(data, dict) or data.get("type") != "options":
            self.send_json({"type": "error", "message": 'control messages are {"type": "options", ...}'})
            return
        try:
            self.set_options(data)
        except ConfigError as exc:
            self.send_json({"type": "error", "message": str(exc)})
            return
        self.send_json({"type": "options", "options": self.options_dict()})

    def set_options(self, changes: dict[str, Any]) -> None:
        """Apply option changes from the next frame on; raises ConfigError naming a bad option."""
        options = self.options.updated(changes)
        if self.state.config.pipeline == "swap" and options.swap:
            self.state.catalog.resolve(options.model)
        self.options = options

    def options_dict(self) -> dict[str, Any]:
        o = self.options
        return {"model": o.model, "swap": o.swap, "feather": o.feather, "color": o.color, "boxes": o.boxes}

    def send_json(self, payload: dict[str, Any]) -> None:
        channel = self.channel
        if channel is not None and channel.readyState == "open":
            try:
                channel.send(json.dumps(payload))
            except Exception as exc:  # noqa: BLE001 - a closing channel must not break the frame loop
                logger.debug("control channel send failed: %s", exc)

    async def _stats_loop(self) -> None:
        while True:
            await asyncio.sleep(self.state.config.stats_interval_s)
            stats = self._stats.snapshot_and_reset()
            reader = self.reader
            stats.update({"type": "stats", "session_id": self.id,
                          "frames_in": reader.received if reader else 0,
                          "frames_dropped": reader.dropped if reader else 0,
                          "viewers": len(self.viewers)})
            self.send_json(stats)

    # -- WHEP viewers ----------------------------------------------------------------------------------------
    def add_viewer(self, pc: RTCPeerConnection) -> str:
        if len(self.viewers) >= MAX_VIEWERS_PER_SESSION:
            raise SessionLimitError(f"session {self.id} already has {MAX_VIEWERS_PER_SESSION} viewers")
        viewer_id = uuid.uuid4().hex
        self.viewers[viewer_id] = pc

        def on_state() -> None:
            if pc.connectionState in ("failed", "closed"):
                self.spawn(self.remove_viewer(viewer_id), "viewer-close")

        pc.on("connectionstatechange", on_state)
        return viewer_id

    async def remove_viewer(self, viewer_id: str) -> bool:
        pc = self.viewers.pop(viewer_id, None)
        if pc is None:
            return False
        for sender in pc.getSenders():
            if sender.track is not None:
                sender.track.stop()
        await pc.close()
        return True

    def describe(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "connection": self.pc.connectionState,
                "viewers": len(self.viewers), "frames_processed": self.frames_processed,
                "options": self.options_dict()}


class SessionRegistry:
    """Owns every live session; enforces the session limit; closes them all on shutdown."""

    def __init__(self, state: ServerState) -> None:
        self.state = state
        self._sessions: dict[str, Session] = {}
        self._closing: set[asyncio.Task[None]] = set()

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Any:
        return iter(list(self._sessions.values()))

    def create(self, kind: SessionKind, options: SessionOptions) -> Session:
        """Reserve a place for a new session; SessionLimitError when max_sessions are live."""
        limit = self.state.config.max_sessions
        if len(self._sessions) >= limit:
            raise SessionLimitError(f"server is full: {limit} live sessions (--max-sessions); try again later")
        session = Session(self, kind, options)
        self._sessions[session.id] = session
        self.state.metrics.sessions.set(len(self._sessions))
        return session

    def get(self, session_id: str) -> Session:
        session = self._sessions.get(session_id)
        if session is None:
            raise UnknownSessionError(f"no live session {session_id!r}")
        return session

    def _forget(self, session: Session) -> None:
        self._sessions.pop(session.id, None)
        self.state.metrics.sessions.set(len(self._sessions))

    async def close_all(self) -> None:
        """Close every session and wait for closes already under way."""
        await asyncio.gather(*(s.close() for s in list(self._sessions.values())), return_exceptions=True)
        await asyncio.gather(*list(self._closing), return_exceptions=True)

    async def settle(self) -> None:
        """Wait for closes under way (tests and shutdown)."""
        await asyncio.gather(*list(self._closing), return_exceptions=True)
