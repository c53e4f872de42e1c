"""The writing side of `swapstream extract`: aligned crops and their records in a face-set folder.

A crop appears only complete (`faces.media.write_image`, atomic), and its record is appended to faces.jsonl only
after the PNG exists, so a crash at any point loses at most a record whose face is simply done again. What is
already in faces.jsonl is read back on start (`load_written`), repairing a record torn by a crash.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from types import TracebackType
from typing import Any, TextIO

from faces.align import AlignedFace, transform_points
from faces.media import write_image
from faces.types import Face
from training.errors import ExtractError
from training.extract_sources import Source

logger = logging.getLogger(__name__)

METADATA_NAME = "faces.jsonl"

FaceKey = tuple[str, int, int]
"""(source key, frame index, face index): one face of one frame, written at most once."""


def crop_name(source: Source, frame_index: int, face_index: int) -> str:
    """File name of a crop in the face set (docs/CONTRACTS.md)."""
    return f"{source.stem}_f{frame_index:06d}_{face_index}.png"


def load_written(meta_path: Path) -> set[FaceKey]:
    """Keys (source, frame, face_index) already in faces.jsonl; a torn last line (crash mid-write) is cut off."""
    written: set[FaceKey] = set()
    if not meta_path.exists():
        return written
    data = meta_path.read_bytes()
    good_end = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            good_end += len(line) + 1
            continue
        try:
            record = json.loads(line)
            written.add((record["source"], int(record["frame"]), int(record["face_index"])))
        except (ValueError, KeyError, TypeError) as exc:
            if number == len(lines) or (number == len(lines) - 1 and not lines[-1]):
                logger.warning("%s: dropping a torn last line left by an interrupted run", meta_path)
                break
            raise ExtractError(f"{meta_path} line {number} is not a face record; remove the folder or fix it") from exc
        good_end += len(line) + 1
    if good_end < len(data):
        with open(meta_path, "r+b") as handle:
            handle.truncate(good_end)
    elif data and not data.endswith(b"\n"):
        # A whole record whose newline was lost: end the line so the next record starts on its own.
        with open(meta_path, "ab") as handle:
            handle.write(b"\n")
    return written


class FaceSetWriter:
    """Adds aligned crops and their records to a face-set folder; a context manager around faces.jsonl."""

    def __init__(self, out: Path, size: int) -> None:
        self.out = out
        self.size = size
        self.meta_path = out / METADATA_NAME
        self.written = load_written(self.meta_path)
        self._meta: TextIO | None = None

    def __enter__(self) -> FaceSetWriter:
        self._meta = open(self.meta_path, "a", encoding="utf-8")
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        if self._meta is not None:
            self._meta.close()
            self._meta = None

    @property
    def faces_in_set(self) -> int:
        """How many faces the set holds now."""
        return len(self.written)

    def add(self, source: Source, frame_index: int, face_index: int, face: Face, aligned: AlignedFace,
            sharpness: float) -> bool:
        """Write the crop and then its record; False (nothing written) when the set already has this face."""
        if self._meta is None:
            raise RuntimeError("FaceSetWriter.add outside its `with` block")
        key = (source.key, frame_index, face_index)
        if key in self.written:
            return False
        name = crop_name(source, frame_index, face_index)
        write_image(self.out / name, aligned.crop)
        record = _record(name, source, frame_index, face_index, face, aligned, self.size, sharpness)
        self._meta.write(json.dumps(record) + "\n")
        self._meta.flush()
        self.written.add(key)
        return True


def _record(name: str, source: Source, frame_index: int, face_index: int, face: Face, aligned: AlignedFace,
            size: int, sharpness: float) -> dict[str, Any]:
    """One faces.jsonl line (docs/CONTRACTS.md); points are in crop pixels."""
    return {
        "file": name,
        "source": source.key,
        "frame": frame_index,
        "face_index": face_index,
        "score": round(face.score, 4),
        "size": size,
        "matrix": aligned.matrix.tolist(),
        "keypoints": transform_points(face.keypoints, aligned.matrix).round(3).tolist(),
        "landmarks": None if face.mesh is None else transform_points(face.mesh, aligned.matrix).round(3).tolist(),
        "sharpness": round(sharpness, 2),
    }
