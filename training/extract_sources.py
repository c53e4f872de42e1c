"""The inputs of `swapstream extract`: every SRC checked before anything is written, and the frames each one yields."""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np

from faces.errors import InputError
from faces.media import check_image, is_image_path, iter_video_frames, list_images, probe_video, read_image

VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".y4m", ".mpg", ".mpeg", ".wmv", ".flv"})

SourceKind = Literal["video", "image"]


@dataclass(frozen=True)
class Source:
    """One checked input: a video, or a single image (folders are expanded into their images)."""

    path: Path
    kind: SourceKind
    stem: str
    """Unique file-name stem of its crops in the face set."""
    frame_count: int

    @property
    def key(self) -> str:
        """The source's identity in faces.jsonl and the state file: its absolute path."""
        return str(self.path)

    def wanted_frames(self, every: int) -> int:
        """How many of its frames `--every N` uses (frames 0, N, 2N, ...); an image is one frame."""
        return -(-self.frame_count // every) if self.kind == "video" else 1

    def frames(self, every: int, start: int) -> Iterator[tuple[int, np.ndarray]]:
        """(frame index, RGB frame) for the wanted frames from `start` on (a multiple of `every`)."""
        if self.kind == "image":
            if start == 0:
                yield 0, read_image(self.path)
            return
        yield from iter_video_frames(self.path, every=every, start=start)


def plan_sources(paths: tuple[Path, ...] | list[Path]) -> list[Source]:
    """Check every path (opening each video, decoding each image) and list the sources; InputError names a bad one."""
    found: list[tuple[Path, SourceKind, int]] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"source not found: {path}")
        if path.is_dir():
            for image in list_images(path):
                found.append((check_image(image), "image", 1))
        elif is_image_path(path):
            found.append((check_image(path), "image", 1))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            found.append((path, "video", probe_video(path).frame_count))
        else:
            found.append(_probe_unknown(path))
    sources: list[Source] = []
    seen: set[Path] = set()
    stems: set[str] = set()
    for path, kind, count in found:
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        stem = free_stem(_safe_stem(path.stem), stems)
        stems.add(stem)
        sources.append(Source(path=resolved, kind=kind, stem=stem, frame_count=count))
    return sources


def free_stem(base: str, taken: set[str]) -> str:
    """`base`, or the first of `base-2`, `base-3`, ... that is not in `taken`."""
    stem, n = base, 2
    while stem in taken:
        stem, n = f"{base}-{n}", n + 1
    return stem


def _safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "source"


def _probe_unknown(path: Path) -> tuple[Path, SourceKind, int]:
    """A file with an unfamiliar suffix: an image if it decodes as one, else a video if it opens as one."""
    try:
        return check_image(path), "image", 1
    except InputError:
        pass
    try:
        return path, "video", probe_video(path).frame_count
    except InputError as exc:
        raise InputError(f"neither a readable image nor a readable video: {path}") from exc
