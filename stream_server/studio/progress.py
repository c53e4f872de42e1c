"""A running job's progress, read from the files its child processes write (never from their logs):
`extract_state.json` and `faces.jsonl` of a face set, `losses.csv`, the checkpoint's header and `preview.png` of
the training run. Standard library + OpenCV only: the server does not import torch.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

logger = logging.getLogger(__name__)

LOSSES_CSV = "losses.csv"
CHECKPOINT_NAME = "checkpoint.safetensors"
PREVIEW_NAME = "preview.png"
EXTRACT_STATE = "extract_state.json"
FACES_JSONL = "faces.jsonl"
MAX_LOSS_POINTS = 300
# The trainer's preview rows (training.train_faces.PREVIEW_ROWS); the Studio shows A, A->B, B, B->A.
PREVIEW_ROWS = ("A", "A->A", "A->B", "B", "B->B", "B->A")
STUDIO_PREVIEW_ROWS = ("A", "A->B", "B", "B->A")
_MAX_HEADER = 100 * 1024 * 1024


def safetensors_metadata(path: Path) -> dict[str, Any] | None:
    """The `__metadata__` of a safetensors file, each value JSON-decoded where it is JSON; None if unreadable.

    Reads the header only (8 bytes of little-endian length, then JSON), not the tensors.
    """
    try:
        with path.open("rb") as handle:
            head = handle.read(8)
            if len(head) < 8:
                return None
            (length,) = struct.unpack("<Q", head)
            if not 0 < length <= _MAX_HEADER:
                return None
            header = json.loads(handle.read(length))
    except (OSError, ValueError):
        return None
    raw = header.get("__metadata__") if isinstance(header, dict) else None
    if not isinstance(raw, dict):
        return None
    metadata: dict[str, Any] = {}
    for key, value in raw.items():
        try:
            metadata[key] = json.loads(value)
        except (TypeError, ValueError):
            metadata[key] = value
    return metadata


def checkpoint_step(run_dir: Path) -> int | None:
    """The step of the run's checkpoint (written atomically by the trainer), or None before the first one."""
    metadata = safetensors_metadata(run_dir / CHECKPOINT_NAME)
    step = metadata.get("step") if metadata else None
    return step if isinstance(step, int) else None


def count_faces(faceset: Path) -> dict[str, int]:
    """Faces written per source path, from the face set's faces.jsonl (a torn last line is skipped)."""
    counts: dict[str, int] = {}
    try:
        lines = (faceset / FACES_JSONL).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return counts
    for line in lines:
        try:
            source = str(json.loads(line)["source"])
        except (ValueError, KeyError, TypeError):
            continue
        counts[source] = counts.get(source, 0) + 1
    return counts


def frames_done(faceset: Path) -> int:
    """Frames extraction has looked at so far (extract_state.json, saved about once a second)."""
    try:
        state = json.loads((faceset / EXTRACT_STATE).read_text(encoding="utf-8"))
        return int(state["counts"]["frames"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0


@dataclass
class LossLog:
    """Reads losses.csv as it grows (only the new lines each time); a shorter file (a resume rewrote it) is
    read again from the start."""

    path: Path
    rows: list[dict[str, float]] = field(default_factory=list)
    _offset: int = 0
    _columns: list[str] | None = None

    def refresh(self) -> list[dict[str, float]]:
        """Every complete row so far."""
        try:
            size = self.path.stat().st_size
        except OSError:
            self.rows, self._offset, self._columns = [], 0, None
            return self.rows
        if size < self._offset:
            self.rows, self._offset, self._columns = [], 0, None
        if size == self._offset:
            return self.rows
        with self.path.open("rb") as handle:
            handle.seek(self._offset)
            data = handle.read(size - self._offset)
        complete = data[: data.rfind(b"\n") + 1]  # a line being written is left for the next read
        self._offset += len(complete)
        lines = complete.decode("utf-8", errors="replace").splitlines()
        if self._columns is None and lines:
            self._columns = next(csv.reader(io.StringIO(lines.pop(0))))
        for values in csv.reader(lines):
            if self._columns is None or len(values) != len(self._columns):
                continue
            try:
                self.rows.append({key: float(value) for key, value in zip(self._columns, values, strict=True)})
            except ValueError:
                continue
        return self.rows

    def curve(self, max_points: int = MAX_LOSS_POINTS) -> list[list[float]]:
        """[step, loss_a, loss_b] rows, thinned evenly to at most `max_points` (the last row always kept)."""
        rows = self.rows
        if not rows:
            return []
        stride = max(1, -(-len(rows) // max_points))
        picked = rows[::stride]
        if picked[-1] is not rows[-1]:
            picked.append(rows[-1])
        return [[int(row["step"]), round(row.get("loss_a", 0.0), 5), round(row.get("loss_b", 0.0), 5)]
                for row in picked]


@dataclass
class PreviewCache:
    """The Studio's preview (rows A, A->B, B, B->A) cut from the trainer's preview.png, re-made when it changes."""

    path: Path
    _stamp: tuple[int, int] | None = None
    _png: bytes | None = None

    def png(self) -> bytes | None:
        """PNG bytes of the latest preview, or None before the first one."""
        try:
            stat = self.path.stat()
        except OSError:
            return self._png
        stamp = (stat.st_mtime_ns, stat.st_size)
        if stamp != self._stamp:
            made = studio_preview(self.path)
            if made is not None:  # the trainer replaces the file atomically; keep the last good one regardless
                self._stamp, self._png = stamp, made
        return self._png


def studio_preview(path: Path) -> bytes | None:
    """Rows A, A->B, B, B->A of the trainer's preview grid (rows A, A->A, A->B, B, B->B, B->A) as PNG bytes."""
    image = cv2.imread(os.fspath(path), cv2.IMREAD_COLOR)
    if image is None or image.shape[0] % len(PREVIEW_ROWS):
        return None
    row = image.shape[0] // len(PREVIEW_ROWS)
    rows = [image[PREVIEW_ROWS.index(name) * row:(PREVIEW_ROWS.index(name) + 1) * row]
            for name in STUDIO_PREVIEW_ROWS]
    ok, encoded = cv2.imencode(".png", np.concatenate(rows, axis=0))
    return encoded.tobytes() if ok else None
