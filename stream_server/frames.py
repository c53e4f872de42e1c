"""The frame scheduler: how one session's frames pass its two stages, off the event loop.

For each frame the session's newest-frame reader hands over, `FrameScheduler` runs, in order:

1. *locate* on a frame worker: `to_rgb` (the av frame's pixels and timestamp), then `FrameStages.locate`
   (the faces; tracking state, so sequential per session);
2. a newest-only hand-over (`NewestSlot`) on the event loop: a located frame that the render stage has not
   taken yet is replaced by a newer one and counted as dropped;
3. *render* on a frame worker: `FrameStages.render` (align, infer, blend, boxes, mark), then `to_video_frame`
   (a new av frame with the input's pts and time_base);
4. `on_processed` on the event loop: the session publishes the frame to its outgoing tracks.

The two stages run at the same time on different frames: while frame N is rendered, frame N+1 is located.
A frame over --max-pixels is not processed at all (refused on the event loop, before its pixels are copied) and
reported to `on_error` as a `FrameTooLargeError`.
This module is the one place where av frames and numpy arrays are converted into each other; every conversion
runs swscale on the calling thread (PyAV's default starts a pool of threads per frame, which the frame keeps),
and outgoing frames are yuv420p, the encoders' own format, so no encoder converts (or keeps a converter) again.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable
from concurrent.futures import Executor, Future
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar, get_args

import numpy as np
from av import VideoFrame
from numpy.typing import NDArray

from faces.types import Face
from stream_server.config import SessionOptions
from stream_server.errors import FrameTooLargeError
from stream_server.newest import NewestSlot

logger = logging.getLogger(__name__)

Stage = Literal["detect", "align", "infer", "blend", "encode"]
"""The timed stages of a frame's path: `detect` is locate (tracking, plus the wait for a first detection);
`align`, `infer` and `blend` are render's parts; `encode` is the outgoing track's sender."""
STAGES: tuple[Stage, ...] = get_args(Stage)
StageTimes = dict[Stage, float]
"""Milliseconds spent in each stage on one frame."""

R = TypeVar("R")
OUTGOING_FORMAT = "yuv420p"
"""The pixel format of processed frames: what aiortc's VP8 and H.264 encoders take without converting."""
SCALER_THREADS = 1
"""swscale threads per conversion: frames here are small, and the frame workers are the parallelism."""


@dataclass(frozen=True)
class TimedFrame:
    """A video frame and the monotonic time (s) the server first held its decoded input."""

    frame: VideoFrame
    received_at: float


def to_rgb(frame: VideoFrame) -> tuple[NDArray[np.uint8], float | None]:
    """A decoded frame's pixels (RGB uint8, a new array) and its timestamp in seconds (None without pts)."""
    rgb = np.asarray(frame.to_ndarray(format="rgb24", threads=SCALER_THREADS), dtype=np.uint8)
    timestamp = float(frame.pts * frame.time_base) if frame.pts is not None and frame.time_base else None
    return rgb, timestamp


def to_video_frame(rgb: NDArray[np.uint8], like: VideoFrame) -> VideoFrame:
    """RGB uint8 pixels as a new yuv420p frame carrying `like`'s pts and time_base."""
    rgb_frame = VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
    frame = rgb_frame.reformat(format=OUTGOING_FORMAT, threads=SCALER_THREADS)
    frame.pts, frame.time_base = like.pts, like.time_base
    return frame


def copy_video_frame(frame: VideoFrame) -> VideoFrame:
    """A new frame with the same pixels, pixel format and timing (plane by plane, no conversion)."""
    copy = VideoFrame(frame.width, frame.height, frame.format.name)
    for source, target in zip(frame.planes, copy.planes):
        rows = min(source.height, target.height)
        source_rows = np.frombuffer(memoryview(source), np.uint8)[: rows * source.line_size].reshape(rows, -1)
        target_rows = np.frombuffer(memoryview(target), np.uint8)[: rows * target.line_size].reshape(rows, -1)
        width = min(source.line_size, target.line_size)
        target_rows[:, :width] = source_rows[:, :width]
    copy.pts, copy.time_base = frame.pts, frame.time_base
    return copy


def check_frame_size(frame: VideoFrame, max_pixels: int | None) -> None:
    """FrameTooLargeError naming --max-pixels when `frame` has more pixels than `max_pixels` (None: no limit)."""
    pixels = frame.width * frame.height
    if max_pixels is not None and pixels > max_pixels:
        raise FrameTooLargeError(f"a {frame.width}x{frame.height} frame ({pixels} pixels) is over the server's "
                                 f"limit of {max_pixels} pixels (--max-pixels); it was not processed: send "
                                 f"smaller frames")


class FrameSource(Protocol):
    """Where a session's frames come from (tracks.LatestFrameReader)."""

    async def next_frame(self) -> TimedFrame | None:
        """The newest frame not yet taken, waiting for one; None once the input has ended."""
        ...


class FrameStages(Protocol):
    """A session's two frame stages (pipeline.FramePipeline); called from worker threads, one frame at a time each."""

    def locate(self, frame_rgb: NDArray[np.uint8], options: SessionOptions,
               timestamp_s: float | None = None) -> tuple[list[Face], StageTimes]:
        """This frame's faces (the tracking state lives here) and the stage times."""
        ...

    def render(self, frame_rgb: NDArray[np.uint8], faces: list[Face],
               options: SessionOptions) -> tuple[NDArray[np.uint8], StageTimes]:
        """The processed frame (may draw on `frame_rgb`) and the stage times."""
        ...

    def swap_enabled(self, options: SessionOptions) -> bool:
        """Whether faces are swapped with these options."""
        ...

    def close(self) -> None:
        """Free what the stages hold (detector thread, batcher place)."""
        ...


@dataclass(frozen=True)
class ProcessedFrame:
    """A frame that passed both stages: the outgoing frame with its input's timing, stage times, faces swapped,
    and the pixels it was made from with the options they were processed with (for a recording: the array is
    not changed after this)."""

    timed: TimedFrame
    stage_ms: StageTimes
    faces: int
    rgb: NDArray[np.uint8]
    options: SessionOptions


@dataclass(frozen=True)
class _Located:
    """A frame after locate: its input, its decoded pixels, its faces, and the options it is processed with."""

    timed: TimedFrame
    rgb: NDArray[np.uint8]
    faces: list[Face]
    stage_ms: StageTimes
    options: SessionOptions


class FrameScheduler:
    """Moves one session's frames from its source through locate and render on the frame workers.

    `run()` processes frames until the source ends; `close()`, once `run()` has ended or was cancelled, waits for
    the frames still in worker threads and then closes the stages. `options()` is read once per frame, so an
    option change applies from the next frame located. A frame that fails, or has more than `max_pixels` pixels,
    is reported to `on_error` and skipped.
    """

    def __init__(self, source: FrameSource, stages: FrameStages, executor: Executor,
                 options: Callable[[], SessionOptions], on_processed: Callable[[ProcessedFrame], None],
                 on_error: Callable[[Exception], None], on_drop: Callable[[], None] | None = None,
                 max_pixels: int | None = None) -> None:
        self._source = source
        self._stages = stages
        self._executor = executor
        self._options = options
        self._on_processed = on_processed
        self._on_error = on_error
        self._on_drop = on_drop
        self._max_pixels = max_pixels
        # At most one frame per stage is in a worker thread; close() waits for them.
        self._in_flight: dict[str, Future[Any]] = {}

    async def run(self) -> None:
        """Process frames until the source ends (the last located frame is still rendered)."""
        located = NewestSlot[_Located](on_replace=self._on_drop)
        async with asyncio.TaskGroup() as group:
            group.create_task(self._render_loop(located), name="swapstream-render")
            try:
                while (timed := await self._source.next_frame()) is not None:
                    try:
                        check_frame_size(timed.frame, self._max_pixels)
                    except FrameTooLargeError as exc:
                        self._on_error(exc)
                        continue
                    item = await self._in_worker("locate", functools.partial(self._locate, timed, self._options()))
                    if item is not None:
                        located.put(item)
            finally:
                located.close()

    async def _render_loop(self, located: NewestSlot[_Located]) -> None:
        while (item := await located.get()) is not None:
            processed = await self._in_worker("render", functools.partial(self._render, item))
            if processed is not None:
                self._on_processed(processed)

    async def _in_worker(self, stage: str, work: Callable[[], R]) -> R | None:
        """One stage of one frame on a frame worker; None (reported) if it failed."""
        future = self._executor.submit(work)
        self._in_flight[stage] = future
        try:
            return await asyncio.wrap_future(future)
        except Exception as exc:  # noqa: BLE001 - one bad frame must not end the session
            self._on_error(exc)
            return None

    def _locate(self, timed: TimedFrame, options: SessionOptions) -> _Located:
        rgb, timestamp = to_rgb(timed.frame)
        faces, stage_ms = self._stages.locate(rgb, options, timestamp)
        return _Located(timed, rgb, faces, stage_ms, options)

    def _render(self, item: _Located) -> ProcessedFrame:
        rgb, stage_ms = self._stages.render(item.rgb, item.faces, item.options)
        out = TimedFrame(to_video_frame(rgb, like=item.timed.frame), item.timed.received_at)
        # faces count as swapped only where the model ran ("infer" timed): not while remote inference is down
        faces = len(item.faces) if self._stages.swap_enabled(item.options) and "infer" in stage_ms else 0
        return ProcessedFrame(out, {**item.stage_ms, **stage_ms}, faces, rgb, item.options)

    async def close(self) -> None:
        """Wait for frames still in worker threads (the stages must outlive them), then close the stages."""
        pending = [asyncio.wrap_future(f) for f in self._in_flight.values() if not f.done()]
        if pending:
            await asyncio.wait(pending)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._stages.close)
