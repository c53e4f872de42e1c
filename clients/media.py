"""Media edges of the clients: reading a video file's pictures and sound, real-time paced outgoing tracks.

A file's (or a test clip's) video and audio tracks share one `MediaClock`, so the first picture and the first
sound leave together and stay in step whichever track the peer connection starts first. Recordings are written
by `faces.recording.Mp4Recorder`.
"""

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
AUDIO_RATE = 48_000
AUDIO_TIME_BASE = fractions.Fraction(1, AUDIO_RATE)
AUDIO_FRAME_SAMPLES = 960
"""20 ms at 48 kHz: what aiortc's Opus encoder packs into one RTP packet."""


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


def has_audio(path: Path) -> bool:
    """Whether a media file has an audio stream."""
    try:
        with av.open(str(path)) as container:
            return bool(container.streams.audio)
    except av.error.FFmpegError as exc:
        raise MediaError(f"--input {path}: cannot open: {exc}") from exc


def iter_audio_frames(path: Path) -> Iterator[av.AudioFrame]:
    """A file's first audio stream as 20 ms frames of 48 kHz stereo s16 (what the Opus encoder takes)."""
    resampler = av.AudioResampler(format="s16", layout="stereo", rate=AUDIO_RATE, frame_size=AUDIO_FRAME_SAMPLES)
    try:
        with av.open(str(path)) as container:
            for frame in container.decode(audio=0):
                yield from resampler.resample(frame)
        yield from resampler.resample(None)
    except av.error.FFmpegError as exc:
        raise MediaError(f"--input {path}: decoding the audio failed: {exc}") from exc


class MediaClock:
    """The start time that paced tracks of one source share: set by whichever track sends first."""

    def __init__(self) -> None:
        self._start: float | None = None

    def start(self) -> float:
        """The monotonic time the source's first frame or sound left (now, on the first call)."""
        if self._start is None:
            self._start = time.monotonic()
        return self._start


async def _wait_until(due: float) -> None:
    delay = due - time.monotonic()
    if delay > 0:
        await asyncio.sleep(delay)


class PacedAudioTrack(MediaStreamTrack):
    """An outgoing audio track that sends audio frames (48 kHz s16) from an iterator in real time.

    `sent_at[index]` is the monotonic time frame `index` was handed to the encoder; `finished` is set when the
    iterator ends (the track then ends too).
    """

    kind = "audio"

    def __init__(self, frames: Iterator[av.AudioFrame], clock: MediaClock | None = None) -> None:
        super().__init__()
        self._frames = frames
        self._clock = clock or MediaClock()
        self._samples = 0
        self.sent_at: dict[int, float] = {}
        self.finished = asyncio.Event()

    async def recv(self) -> av.AudioFrame:
        if self.readyState != "live":
            raise MediaStreamError
        await _wait_until(self._clock.start() + self._samples / AUDIO_RATE)
        try:
            frame = next(self._frames)
        except StopIteration:
            self.finished.set()
            self.stop()
            raise MediaStreamError from None
        frame.pts, frame.time_base, frame.sample_rate = self._samples, AUDIO_TIME_BASE, AUDIO_RATE
        self.sent_at[len(self.sent_at)] = time.monotonic()
        self._samples += frame.samples
        return frame


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
        clock: MediaClock | None = None,
    ) -> None:
        super().__init__()
        if fps <= 0:
            raise MediaError(f"frame rate must be > 0, got {fps}")
        self._frames = frames
        self._fps = fps
        self._prepare = prepare
        self._index = 0
        self._clock = clock
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
            self._start = self._clock.start() if self._clock is not None else now
        due = self._start + self._index / self._fps
        if due > now:
            await asyncio.sleep(due - now)
        elif now - due > 1.0 and self._clock is None:
            # Fell behind by more than a second (a stalled loop): restart the clock rather than burst. (A track
            # sharing a clock with audio keeps it: the two must stay in step.)
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


def parse_size(text: str) -> tuple[int, int]:
    """argparse type for a WIDTHxHEIGHT flag such as 640x480."""
    match = re.fullmatch(r"(\d+)x(\d+)", text)
    if not match:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 640x480, got {text!r}")
    return int(match.group(1)), int(match.group(2))
