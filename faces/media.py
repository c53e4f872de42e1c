"""Media I/O at the project's edges: images and video frames in as RGB uint8, images and videos out (png, mp4, y4m).

Every failure raises `faces.errors.InputError` naming the path. Every file written appears only when complete
(`swapstream.atomic`). The clients read their `--input` videos through `probe_video` too.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import cast

import cv2
import numpy as np
import numpy.typing as npt

from faces.errors import InputError
from faces.types import ImageRGB
from swapstream.atomic import atomic_path, atomic_write_bytes

logger = logging.getLogger(__name__)

IMAGE_SUFFIXES: frozenset[str] = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".webp", ".tif", ".tiff", ".ppm", ".pgm"})
"""File name endings treated as images when listing a folder."""


@dataclass(frozen=True)
class VideoInfo:
    """What opening a video told us: frame count (as the container reports it; may be approximate), fps, size."""

    path: Path
    frame_count: int
    fps: float
    width: int
    height: int

    @property
    def duration_s(self) -> float | None:
        """Length in seconds from the frame count and rate; None when the container reports no rate."""
        return self.frame_count / self.fps if self.fps > 0 else None


def is_image_path(path: str | Path) -> bool:
    """True if *path*'s suffix is one of IMAGE_SUFFIXES."""
    return Path(path).suffix.lower() in IMAGE_SUFFIXES


def _decode(path: Path, flags: int) -> npt.NDArray[np.uint8] | None:
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror or exc}") from exc
    if data.size == 0:
        return None
    # OpenCV's stubs promise a Mat; imdecode gives None for data it cannot decode, else 8-bit for these flags.
    return cast("npt.NDArray[np.uint8] | None", cv2.imdecode(data, flags))


def _check_file(path: str | Path, what: str) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError(f"{what} not found: {path}")
    if path.is_dir():
        raise InputError(f"{what} is a folder, expected a file: {path}")
    return path


def read_image(path: str | Path) -> ImageRGB:
    """The image at *path* as RGB uint8 HxWx3 (grey and alpha images are converted)."""
    path = _check_file(path, "image")
    bgr = _decode(path, cv2.IMREAD_COLOR)
    if bgr is None:
        raise InputError(f"not a readable image: {path}")
    return np.asarray(cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB), dtype=np.uint8)


def check_image(path: str | Path) -> Path:
    """Raise InputError unless *path* decodes as an image (a reduced-size decode, so checking a folder is quick)."""
    path = _check_file(path, "image")
    if _decode(path, cv2.IMREAD_REDUCED_GRAYSCALE_4) is None:
        raise InputError(f"not a readable image: {path}")
    return path


def list_images(folder: str | Path) -> list[Path]:
    """Image files directly inside *folder*, sorted by name; InputError if there are none."""
    folder = Path(folder)
    if not folder.exists():
        raise InputError(f"folder not found: {folder}")
    if not folder.is_dir():
        raise InputError(f"not a folder: {folder}")
    images = sorted(p for p in folder.iterdir() if p.is_file() and is_image_path(p))
    if not images:
        raise InputError(f"no image files ({', '.join(sorted(IMAGE_SUFFIXES))}) in folder {folder}")
    return images


def write_image(path: str | Path, rgb: ImageRGB) -> Path:
    """Write an RGB uint8 image to *path* in the format its suffix names (.png, .jpg, ...), atomically."""
    path = Path(path)
    ok, encoded = cv2.imencode(path.suffix.lower(), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise InputError(f"cannot encode an image as {path.suffix!r} for {path}")
    return atomic_write_bytes(path, encoded.tobytes())


def _open_capture(path: Path) -> cv2.VideoCapture:
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        capture.release()
        raise InputError(f"cannot open video: {path}")
    return capture


def probe_video(path: str | Path) -> VideoInfo:
    """Open *path* and decode its first frame; InputError if it is missing or not a readable video."""
    path = _check_file(path, "video")
    capture = _open_capture(path)
    try:
        ok, frame = capture.read()
        if not ok or frame is None:
            raise InputError(f"cannot read any frame from video: {path}")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        height, width = frame.shape[:2]
    finally:
        capture.release()
    return VideoInfo(path=path, frame_count=max(count, 1), fps=fps, width=width, height=height)


def iter_video_frames(path: str | Path, every: int = 1, start: int = 0) -> Iterator[tuple[int, ImageRGB]]:
    """Yield (frame index, RGB uint8 frame) for frames start, start+every, ... of the video at *path*.

    Frames that are skipped are grabbed, not decoded. Raises InputError if the video cannot be opened.
    """
    if every < 1:
        raise ValueError(f"every must be >= 1, got {every}")
    path = _check_file(path, "video")
    capture = _open_capture(path)
    try:
        index = 0
        while True:
            wanted = index >= start and (index - start) % every == 0
            if wanted:
                ok, frame = capture.read()
                if not ok or frame is None:
                    return
                yield index, np.asarray(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), dtype=np.uint8)
            elif not capture.grab():
                return
            index += 1
    finally:
        capture.release()


def _check_frame(frame: object, index: int, shape: tuple[int, ...], path: Path) -> ImageRGB:
    if not isinstance(frame, np.ndarray) or frame.dtype != np.uint8 or frame.shape != shape:
        got = f"{frame.dtype} {frame.shape}" if isinstance(frame, np.ndarray) else type(frame).__name__
        raise InputError(f"frame {index} for {path} must be RGB uint8 {shape[0]}x{shape[1]}x3, got {got}")
    return frame


def _first_frame(frames: Iterable[ImageRGB], path: Path) -> tuple[ImageRGB, Iterator[ImageRGB]]:
    iterator = iter(frames)
    first = next(iterator, None)
    if first is None:
        raise InputError(f"no frames to write to {path}")
    if not isinstance(first, np.ndarray) or first.ndim != 3 or first.shape[2] != 3 or first.dtype != np.uint8:
        raise InputError(f"frame 0 for {path} must be RGB uint8 HxWx3")
    return first, iterator


def _numbered(first: ImageRGB, rest: Iterator[ImageRGB], path: Path) -> Iterator[ImageRGB]:
    """All frames, each checked to have the first frame's shape."""
    yield first
    for index, frame in enumerate(rest, start=1):
        yield _check_frame(frame, index, first.shape, path)


def write_video(path: str | Path, frames: Iterable[ImageRGB], fps: float = 30.0) -> Path:
    """Write RGB uint8 frames to *path*: .mp4/.mkv/.mov as H.264 (PyAV), .avi as MJPEG (OpenCV), .y4m raw.

    Frames are streamed (any iterable); the file appears only when complete (swapstream.atomic).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix == ".y4m":
        return write_y4m(path, frames, fps)
    if suffix not in {".mp4", ".mkv", ".mov", ".avi"}:
        raise InputError(f"unsupported video file type {suffix!r} for {path} (use .mp4, .mkv, .mov, .avi or .y4m)")
    if fps <= 0:
        raise InputError(f"fps must be > 0 for {path}, got {fps}")
    first, rest = _first_frame(frames, path)
    height, width = first.shape[:2]
    count = 0
    with atomic_path(path) as tmp:
        if suffix == ".avi":
            writer = cv2.VideoWriter(str(tmp), cv2.VideoWriter.fourcc(*"MJPG"), fps, (width, height))
            if not writer.isOpened():
                raise InputError(f"cannot open a video writer for {path}")
            try:
                for frame in _numbered(first, rest, path):
                    writer.write(cv2.cvtColor(frame, cv2.COLOR_RGB2BGR))
                    count += 1
            finally:
                writer.release()
        else:
            count = _write_av(tmp, _numbered(first, rest, path), fps, width, height, path)
    logger.info("wrote %d frames to %s", count, path)
    return path


def _write_av(tmp: Path, frames: Iterator[ImageRGB], fps: float, width: int, height: int, path: Path) -> int:
    import av  # imported here: only the writer needs it

    if width % 2 or height % 2:
        raise InputError(f"H.264 needs even frame sizes; got {width}x{height} for {path}")
    count = 0
    try:
        container_format = {".mp4": "mp4", ".mov": "mov", ".mkv": "matroska"}[path.suffix.lower()]
        with av.open(str(tmp), mode="w", format=container_format) as container:
            stream = container.add_stream("libx264", rate=Fraction(fps).limit_denominator(1001))
            stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
            # Near-lossless: test videos should keep the detail that detectors and sharpness checks look at.
            stream.options = {"crf": "12", "preset": "veryfast"}
            for frame in frames:
                for packet in stream.encode(av.VideoFrame.from_ndarray(frame, format="rgb24")):
                    container.mux(packet)
                count += 1
            for packet in stream.encode():
                container.mux(packet)
    except (av.FFmpegError, ValueError) as exc:
        raise InputError(f"cannot write video {path}: {exc}") from exc
    return count


def write_y4m(path: str | Path, frames: Iterable[ImageRGB], fps: float = 30.0) -> Path:
    """Write RGB uint8 frames as YUV4MPEG2 (4:2:0), the format chromium's --use-file-for-fake-video-capture reads."""
    path = Path(path)
    first, rest = _first_frame(frames, path)
    height, width = first.shape[:2]
    if width % 2 or height % 2:
        raise InputError(f"y4m 4:2:0 needs even frame sizes; got {width}x{height} for {path}")
    rate = _fraction(fps)
    with atomic_path(path) as tmp, open(tmp, "wb") as out:
        out.write(f"YUV4MPEG2 W{width} H{height} F{rate[0]}:{rate[1]} Ip A1:1 C420jpeg\n".encode())
        for frame in _numbered(first, rest, path):
            out.write(b"FRAME\n")
            out.write(cv2.cvtColor(frame, cv2.COLOR_RGB2YUV_I420).tobytes())
    return path


def _fraction(fps: float) -> tuple[int, int]:
    if fps <= 0:
        raise InputError(f"fps must be > 0, got {fps}")
    frac = Fraction(fps).limit_denominator(1001)
    return frac.numerator, frac.denominator
