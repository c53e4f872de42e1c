"""Evaluation sources: A's held-out media and B's reference media, read as RGB frames.

A source is a video, a photo, or a folder of photos, and is one column of the report. A video goes through
the pipeline as one clip at its own frame rate (the tracker and smoother see it as a live camera would); each
photo is a clip of one frame through a fresh pipeline, so nothing carries over from one photo to the next.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from evaluation.arrays import Image
from evaluation.errors import EvaluationError
from faces.media import is_image_path, iter_video_frames, list_images, probe_video, read_image

DEFAULT_PHOTO_FPS = 15.0  # the rate a still photo is "sent" at: the server's usual webcam rate


@dataclass(frozen=True)
class MediaSource:
    """One source: a video, or photos (a single photo or a folder of them)."""

    path: Path
    kind: Literal["video", "photos"]
    files: tuple[Path, ...]
    fps: float
    frame_count: int
    """Frames in the video (as its container reports) or number of photos."""

    @property
    def name(self) -> str:
        """The label of this source in the report: its file or folder name."""
        return self.path.name


@dataclass(frozen=True)
class SourceFrame:
    """One frame of a source: which clip it belongs to, its index there, and the pixels (RGB uint8)."""

    clip: str
    """The video's name, or the photo's file name: frames of one clip go through one pipeline in order."""
    index: int
    frame: Image


def open_source(path: Path) -> MediaSource:
    """Check `path` (a video, a photo or a folder of photos) and describe it; errors name the path."""
    path = Path(path)
    if not path.exists():
        raise EvaluationError(f"source not found: {path}")
    if path.is_dir():
        photos = tuple(list_images(path))
        return MediaSource(path, "photos", photos, DEFAULT_PHOTO_FPS, len(photos))
    if is_image_path(path):
        return MediaSource(path, "photos", (path,), DEFAULT_PHOTO_FPS, 1)
    info = probe_video(path)
    fps = info.fps if info.fps > 0 else 30.0
    return MediaSource(path, "video", (path,), fps, info.frame_count)


def iter_frames(source: MediaSource, every: int = 1, max_frames: int = 0) -> Iterator[SourceFrame]:
    """The source's frames in order: every `every`-th video frame, at most `max_frames` of a video (0: all)."""
    if source.kind == "photos":
        for photo in source.files:
            yield SourceFrame(photo.name, 0, read_image(photo))
        return
    for count, (index, frame) in enumerate(iter_video_frames(source.path, every=every)):
        if max_frames and count >= max_frames:
            return
        yield SourceFrame(source.name, index, frame)


def spread_frames(sources: list[MediaSource], total: int) -> Iterator[SourceFrame]:
    """About `total` frames spread evenly over all of `sources` (B's reference frames for the judge)."""
    counts = [source.frame_count for source in sources]
    step = max(1, sum(counts) // max(total, 1))
    for source in sources:
        if source.kind == "photos":
            yield from (frame for i, frame in enumerate(iter_frames(source)) if i % step == 0)
        else:
            yield from iter_frames(source, every=step)
