"""Media tracks: the newest-frame reader on the way in, and the fan-out of processed frames on the way out.

aiortc's incoming track queues every decoded frame without bound, so `LatestFrameReader` drains it
continuously and keeps only the newest frame (older ones are dropped and counted). Processed frames go to a
`FrameBroadcaster`; each outgoing `ProcessedVideoTrack` (the /offer peer's return video and every WHEP viewer)
holds a single slot, so a slow viewer skips frames rather than buffering them. Both sides hold frames in a
`newest.NewestSlot`. All subscribers share one frame (`SharedFrame`); only an encoder that asks for it after
another one took it gets a copy, so viewers whose encoder never asks cost nothing.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Iterator
from typing import Generic, TypeVar

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from stream_server.frames import TimedFrame, copy_video_frame
from stream_server.newest import NewestSlot

logger = logging.getLogger(__name__)


async def discard(track: MediaStreamTrack) -> None:
    """Read and drop every frame of a track nobody uses (aiortc would queue them without bound)."""
    try:
        while True:
            await track.recv()
    except MediaStreamError:
        pass


class LatestFrameReader:
    """Drains an incoming track in its own task, keeping only the newest frame and counting the dropped ones."""

    def __init__(self, track: MediaStreamTrack, on_frame: Callable[[], None] | None = None,
                 on_drop: Callable[[], None] | None = None) -> None:
        self._track = track
        self._on_frame = on_frame
        self._slot = NewestSlot[TimedFrame](on_replace=on_drop)
        self.received = 0
        self._task = asyncio.get_running_loop().create_task(self._drain(), name="swapstream-latest-frame-reader")

    @property
    def dropped(self) -> int:
        """Frames replaced by a newer one before they were taken."""
        return self._slot.replaced

    async def _drain(self) -> None:
        try:
            while True:
                frame = await self._track.recv()
                if not isinstance(frame, VideoFrame):
                    continue
                self.received += 1
                if self._on_frame:
                    self._on_frame()
                self._slot.put(TimedFrame(frame, time.monotonic()))
        except MediaStreamError:
            logger.debug("incoming track ended")
        finally:
            self._slot.close()

    async def next_frame(self) -> TimedFrame | None:
        """The newest frame not yet taken, waiting for one; None once the track has ended."""
        return await self._slot.get()

    async def stop(self) -> None:
        """Stop draining and drop the frame not yet taken (the track itself belongs to its peer connection)."""
        if not self._task.done():
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        self._slot.close()
        self._slot.clear()


class SharedFrame:
    """One processed frame offered to every outgoing track: the first encoder to take it gets it, later ones a copy.

    aiortc encodes each track in its own executor thread, and an encoder may change the frame it is given (a
    keyframe request sets its picture type; a format conversion caches a converter on it), so two encoders never
    share one VideoFrame.
    """

    __slots__ = ("timed", "_taken")

    def __init__(self, timed: TimedFrame) -> None:
        self.timed = timed
        self._taken = False

    def take(self) -> TimedFrame:
        """The frame for one encoder: the original the first time, a copy after that (on the event loop)."""
        if not self._taken:
            self._taken = True
            return self.timed
        return TimedFrame(copy_video_frame(self.timed.frame), self.timed.received_at)
T = TypeVar("T", bound=MediaStreamTrack)


class Subscribers(Generic[T]):
    """The outgoing tracks one source feeds (a session's video or its sound); closing the source ends them all."""

    def __init__(self) -> None:
        self._tracks: set[T] = set()
        self._closed = False

    def __len__(self) -> int:
        return len(self._tracks)

    def __iter__(self) -> Iterator[T]:
        return iter(list(self._tracks))

    def add(self, track: T) -> T:
        """Feed `track` from now on (it is ended at once if the source has closed)."""
        if self._closed:
            track.stop()
        else:
            self._tracks.add(track)
        return track

    def remove(self, track: T) -> None:
        """Stop feeding `track`."""
        self._tracks.discard(track)

    def close(self) -> None:
        """End every track (their peers see the stream end); later ones are ended as they come."""
        self._closed = True
        for track in list(self._tracks):
            track.stop()
        self._tracks.clear()


class FrameBroadcaster:
    """Hands each processed frame to every subscribed outgoing track, newest-only per subscriber."""

    def __init__(self, on_sent: Callable[[float, float], None] | None = None) -> None:
        # on_sent(encode_ms, added_ms) is called once a subscriber's encoder has taken the previous frame.
        self._on_sent = on_sent
        self._subscribers = Subscribers[ProcessedVideoTrack]()

    @property
    def subscriber_count(self) -> int:
        """Outgoing tracks fed now."""
        return len(self._subscribers)

    def subscribe(self) -> ProcessedVideoTrack:
        """A new outgoing track fed by this broadcaster."""
        return self._subscribers.add(ProcessedVideoTrack(self))

    def unsubscribe(self, track: ProcessedVideoTrack) -> None:
        """Stop feeding `track`."""
        self._subscribers.remove(track)

    def publish(self, frame: TimedFrame) -> None:
        """Offer a processed frame to every subscriber (each keeps only the newest); nothing is copied here."""
        shared = SharedFrame(frame)
        for track in self._subscribers:
            track.offer(shared)

    def report_sent(self, encode_ms: float, added_ms: float) -> None:
        """A subscriber's encoder took (encoded and sent) a frame."""
        if self._on_sent:
            self._on_sent(encode_ms, added_ms)

    def close(self) -> None:
        """End every subscribed track (their peers see the stream end)."""
        self._subscribers.close()


class ProcessedVideoTrack(MediaStreamTrack):
    """An outgoing video track returning processed frames with the incoming frame's pts and time_base."""

    kind = "video"

    def __init__(self, source: FrameBroadcaster) -> None:
        super().__init__()
        self._source = source
        self._slot = NewestSlot[SharedFrame]()
        self._in_encoder: TimedFrame | None = None
        self._handed_at = 0.0

    @property
    def skipped(self) -> int:
        """Frames replaced by a newer one before the encoder asked for them."""
        return self._slot.replaced

    def offer(self, frame: SharedFrame) -> None:
        """The newest processed frame for this track's encoder."""
        self._slot.put(frame)

    async def recv(self) -> VideoFrame:
        now = time.monotonic()
        if self._in_encoder is not None:
            # The sender calls recv() again right after it encoded and sent the previous frame.
            self._source.report_sent((now - self._handed_at) * 1000, (now - self._in_encoder.received_at) * 1000)
            self._in_encoder = None
        if self.readyState != "live":
            raise MediaStreamError
        shared = await self._slot.get()
        if shared is None or self.readyState != "live":
            raise MediaStreamError
        timed = shared.take()
        self._in_encoder, self._handed_at = timed, time.monotonic()
        return timed.frame

    def stop(self) -> None:
        super().stop()
        self._source.unsubscribe(self)
        self._slot.close()
        self._slot.clear()  # the frames go now, not when the track is collected
        self._in_encoder = None
