"""Media tracks: the newest-frame reader on the way in, and the fan-out of processed frames on the way out.

aiortc's incoming track queues every decoded frame without bound, so `LatestFrameReader` drains it
continuously and keeps only the newest frame (older ones are dropped and counted). Processed frames go to a
`FrameBroadcaster`; each outgoing `ProcessedVideoTrack` (the /offer peer's return video and every WHEP viewer)
holds a single slot, so a slow viewer skips frames rather than buffering them.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

logger = logging.getLogger(__name__)


@dataclass
class TimedFrame:
    """A frame and the monotonic time (s) the server first held its decoded input."""

    frame: VideoFrame
    received_at: float


class LatestFrameReader:
    """Drains an incoming track in its own task, keeping only the newest frame and counting the dropped ones."""

    def __init__(self, track: MediaStreamTrack, on_frame: Callable[[], None] | None = None,
                 on_drop: Callable[[], None] | None = None) -> None:
        self._track = track
        self._on_frame = on_frame
        self._on_drop = on_drop
        self._latest: TimedFrame | None = None
        self._ready = asyncio.Event()
        self._ended = False
        self.received = 0
        self.dropped = 0
        self._task = asyncio.get_running_loop().create_task(self._drain(), name="swapstream-latest-frame-reader")

    @property
    def ended(self) -> bool:
        return self._ended

    async def _drain(self) -> None:
        try:
            while True:
                frame = await self._track.recv()
                if not isinstance(frame, VideoFrame):
                    continue
                self.received += 1
                if self._on_frame:
                    self._on_frame()
                if self._latest is not None:
                    self.dropped += 1
                    if self._on_drop:
                        self._on_drop()
                self._latest = TimedFrame(frame, time.monotonic())
                self._ready.set()
        except MediaStreamError:
            logger.debug("incoming track ended")
        finally:
            self._ended = True
            self._ready.set()

    async def next_frame(self) -> TimedFrame | None:
        """The newest frame not yet taken, waiting for one; None once the track has ended."""
        while self._latest is None:
            if self._ended:
                return None
            self._ready.clear()
            await self._ready.wait()
        latest, self._latest = self._latest, None
        return latest

    async def stop(self) -> None:
        """Stop draining (the track itself belongs to its peer connection)."""
        if not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._ended = True
        self._latest = None


def _copy_frame(frame: VideoFrame) -> VideoFrame:
    """A new VideoFrame with the same pixels, format and timestamps."""
    copy = VideoFrame.from_ndarray(frame.to_ndarray(), format=frame.format.name)
    copy.pts = frame.pts
    copy.time_base = frame.time_base
    return copy


class FrameBroadcaster:
    """Hands each processed frame to every subscribed outgoing track, newest-only per subscriber."""

    def __init__(self, on_sent: Callable[[float, float], None] | None = None) -> None:
        # on_sent(encode_ms, added_ms) is called once a subscriber's encoder has taken the previous frame.
        self._on_sent = on_sent
        self._subscribers: set[ProcessedVideoTrack] = set()
        self._closed = False
        self.published = 0

    @property
    def subscriber_count(self) -> int:
        return len(self._subscribers)

    def subscribe(self) -> ProcessedVideoTrack:
        """A new outgoing track fed by this broadcaster."""
        track = ProcessedVideoTrack(self)
        if self._closed:
            track.stop()
        else:
            self._subscribers.add(track)
        return track

    def unsubscribe(self, track: ProcessedVideoTrack) -> None:
        self._subscribers.discard(track)

    def publish(self, frame: TimedFrame) -> None:
        self.published += 1
        for index, track in enumerate(list(self._subscribers)):
            # aiortc encodes each track in its own executor thread, and PyAV frames carry a lazily built
            # reformatter that is not thread-safe: two encoders on one VideoFrame crash libvpx/swscale.
            track._offer(frame if index == 0 else TimedFrame(_copy_frame(frame.frame), frame.received_at))

    def report_sent(self, encode_ms: float, added_ms: float) -> None:
        if self._on_sent:
            self._on_sent(encode_ms, added_ms)

    def close(self) -> None:
        """End every subscribed track (their peers see the stream end)."""
        self._closed = True
        for track in list(self._subscribers):
            track.stop()
        self._subscribers.clear()


class ProcessedVideoTrack(MediaStreamTrack):
    """An outgoing video track returning processed frames with the incoming frame's pts and time_base."""

    kind = "video"

    def __init__(self, source: FrameBroadcaster) -> None:
        super().__init__()
        self._source = source
        self._slot: TimedFrame | None = None
        self._ready = asyncio.Event()
        self._in_encoder: TimedFrame | None = None
        self._handed_at = 0.0
        self.skipped = 0
        self.sent = 0

    def _offer(self, frame: TimedFrame) -> None:
        if self._slot is not None:
            self.skipped += 1
        self._slot = frame
        self._ready.set()

    async def recv(self) -> VideoFrame:
        now = time.monotonic()
        if self._in_encoder is not None:
            # The sender calls recv() again right after it encoded and sent the previous frame.
            self._source.report_sent((now - self._handed_at) * 1000, (now - self._in_encoder.received_at) * 1000)
            self._in_encoder = None
        while self._slot is None:
            if self.readyState != "live":
                raise MediaStreamError
            self._ready.clear()
            await self._ready.wait()
        if self.readyState != "live":
            raise MediaStreamError
        timed, self._slot = self._slot, None
        self._in_encoder, self._handed_at = timed, time.monotonic()
        self.sent += 1
        return timed.frame

    def stop(self) -> None:
        super().stop()
        self._source.unsubscribe(self)
        self._ready.set()
