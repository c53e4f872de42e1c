"""Media edges of the clients: reading a video file, a real-time paced outgoing track, an MP4 recorder."""

from __future__ import annotations

import argparse
import asyncio
import fractions
import logging
import re
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from clients.errors import MediaError
from faces.errors import InputError
from faces.media import VideoInfo, probe_video

logger = logging.getLogger(__name__)

VIDEO_CLOCK_HZ = 90_000
VIDEO_TIME_BASE = fractions.Fraction(1, VIDEO_CLOCK_HZ)
DEFAULT_FPS = 30.0


def probe_input(path: Path) -> VideoInfo:
    """`faces.media.probe_video` for an `--input` flag: MediaError names the flag; an unknown rate reads as 30 fps."""
    try:
        info = probe_video(path)
    except InputError as exc:
        raise MediaError(f"--input {path}: {exc}") from exc
    return info if info.fps > 0 else replace(info, fps=DEFAULT_FPS)


def iter_video_rgb(path: Path) -> Iterator[np.ndarray]:
    """The frames of a video file as RGB uint8 arrays, decoded one at a time."""
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(video=0):
                yield frame.to_ndarray(format="rgb24")
    except av.error.FFmpegError as exc:
        raise MediaError(f"--input {path}: decoding failed: {exc}") from exc


class PacedVideoTrack(MediaStreamTrack):
    """An outgoing video track that sends RGB frames from an iterator at a fixed rate, in real time.

    `prepare(index, frame)` may change a frame just before it leaves (the profiler stamps its number there);
    `sent_at[index]` is the monotonic time at which frame `index` was handed to the encoder. The track ends
    when the iterator does.
    """

    kind = "video"

    def __init__(
        self,
        frames: Iterator[np.ndarray],
        fps: float,
        prepare: Callable[[int, np.ndarray], np.ndarray] | None = None,
    ) -> None:
        super().__init__()
        if fps <= 0:
            raise MediaError(f"frame rate must be > 0, got {fps}")
        self._frames = frames
        self._fps = fps
        self._prepare = prepare
        self._index = 0
        self._start: float | None = None
        self.sent_at: dict[int, float] = {}
        self.finished = asyncio.Event()

    @property
    def frames_sent(self) -> int:
        return self._index

    async def recv(self) -> av.VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        now = time.monotonic()
        if self._start is None:
            self._start = now
        due = self._start + self._index / self._fps
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 1.0:
            # Fell behind by more than a second (a stalled loop): restart the clock rather than burst.
            self._start = now - self._index / self._fps
        try:
            rgb = next(self._frames)
        except StopIteration:
            self.finished.set()
            self.stop()
            raise MediaStreamError from None
        if self._prepare is not None:
            rgb = self._prepare(self._index, rgb)
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24")
        frame.pts = round(self._index * VIDEO_CLOCK_HZ / self._fps)
        frame.time_base = VIDEO_TIME_BASE
        self.sent_at[self._index] = time.monotonic()
        self._index += 1
        return frame


class Mp4Recorder:
    """Writes RGB frames with their presentation times to an H.264 MP4 that ordinary players open."""

    def __init__(self, path: Path, fps: float) -> None:
        self.path = path
        self._fps = fps
        self._container: av.container.OutputContainer | None = None
        self._stream: av.video.stream.VideoStream | None = None
        self._last_pts = -1
        self._first_time: float | None = None
        self.frames_written = 0
        if path.suffix.lower() not in (".mp4", ".m4v", ".mov"):
            raise MediaError(f"--output {path}: use an .mp4 file name")
        if not path.parent.is_dir():
            raise MediaError(f"--output {path}: folder {path.parent} does not exist")

    def _open(self, width: int, height: int) -> None:
        try:
            self._container = av.open(str(self.path), mode="w")
        except (av.error.FFmpegError, OSError) as exc:
            raise MediaError(f"--output {self.path}: cannot write: {exc}") from exc
        stream = self._container.add_stream("libx264", rate=fractions.Fraction(round(self._fps * 1000), 1000))
        stream.width, stream.height = width - width % 2, height - height % 2
        stream.pix_fmt = "yuv420p"
        stream.time_base = VIDEO_TIME_BASE
        stream.codec_context.time_base = VIDEO_TIME_BASE
        stream.options = {"preset": "veryfast", "crf": "20"}
        self._stream = stream

    def write(self, rgb: np.ndarray, time_s: float) -> None:
        """Add a frame shown from `time_s` seconds (relative to any origin: the first frame starts the file)."""
        if self._container is None:
            self._open(rgb.shape[1], rgb.shape[0])
        assert self._stream is not None and self._container is not None
        if self._first_time is None:
            self._first_time = time_s
        pts = round((time_s - self._first_time) * VIDEO_CLOCK_HZ)
        if pts <= self._last_pts:
            pts = self._last_pts + 1
        self._last_pts = pts
        height, width = self._stream.height, self._stream.width
        frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb[:height, :width]), format="rgb24")
        frame.pts, frame.time_base = pts, VIDEO_TIME_BASE
        for packet in self._stream.encode(frame):
            self._container.mux(packet)
        self.frames_written += 1

    def close(self) -> None:
        """Flush the encoder and finish the file."""
        if self._container is None:
            return
        assert self._stream is not None
        try:
            for packet in self._stream.encode(None):
                self._container.mux(packet)
        finally:
            self._container.close()
            self._container = None


def parse_size(text: str) -> tuple[int, int]:
    """argparse type for a WIDTHxHEIGHT flag such as 640x480."""
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}")
    return int(match.group(1)), int(match.group(2))
