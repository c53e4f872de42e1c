"""Reading a face-set folder (PNG crops + faces.jsonl, see docs/CONTRACTS.md) and streaming augmented
batches of both identities from background threads, so the model never waits on disk.
"""

from __future__ import annotations

import json
import logging
import struct
import threading
from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch

from training.errors import DatasetError
from training.losses import feature_weight_map
from training.warp import AugmentConfig, augment_face

log = logging.getLogger(__name__)

METADATA_NAME = "faces.jsonl"
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@dataclass(frozen=True)
class FaceRecord:
    """One aligned face of a face set."""

    path: Path
    keypoints: np.ndarray  # (5,2) float32, crop px
    landmarks: np.ndarray | None  # (468,2) float32 crop px, or None


def png_size(path: Path) -> tuple[int, int]:
    """(width, height) from a PNG's header, without decoding it; DatasetError naming the file if it is not a PNG."""
    try:
        with path.open("rb") as handle:
            head = handle.read(24)
    except OSError as exc:
        raise DatasetError(f"face image {path} cannot be read: {exc}") from exc
    if len(head) < 24 or head[:8] != _PNG_SIGNATURE or head[12:16] != b"IHDR":
        raise DatasetError(f"face image {path} is not a PNG file")
    width, height = struct.unpack(">II", head[16:24])
    return width, height


class FaceSet:
    """The faces of one identity, read from a folder written by `swapstream extract`."""

    def __init__(self, folder: str | Path, size: int, *, cache: bool = True) -> None:
        self.folder = Path(folder)
        self.size = size
        self._cache: dict[int, tuple[np.ndarray, np.ndarray]] | None = {} if cache else None
        self._cache_lock = threading.Lock()
        self.records = self._read_records()

    def _read_records(self) -> list[FaceRecord]:
        if not self.folder.exists():
            raise DatasetError(f"face folder {self.folder} does not exist")
        if not self.folder.is_dir():
            raise DatasetError(f"face folder {self.folder} is not a directory")
        meta_path = self.folder / METADATA_NAME
        if not meta_path.is_file():
            pngs = sorted(self.folder.glob("*.png"))
            if not pngs:
                raise DatasetError(f"face folder {self.folder} is empty: no {METADATA_NAME} and no PNG faces")
            raise DatasetError(f"face folder {self.folder} has no {meta_path.name}; make it with `swapstream extract`")
        records: list[FaceRecord] = []
        try:
            lines = meta_path.read_text().splitlines()
        except (OSError, UnicodeDecodeError) as exc:
            raise DatasetError(f"face metadata {meta_path} cannot be read: {exc}") from exc
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                entry = json.loads(line)
                path = self.folder / entry["file"]
                keypoints = np.asarray(entry["keypoints"], dtype=np.float32).reshape(5, 2)
                landmarks = entry.get("landmarks")
                landmarks_arr = None if landmarks is None else np.asarray(landmarks, np.float32).reshape(-1, 2)
                declared = entry.get("size")
            except (json.JSONDecodeError, KeyError, TypeError, ValueError) as exc:
                raise DatasetError(f"face metadata {meta_path} line {number} is malformed: {exc}") from exc
            if declared is not None and int(declared) != self.size:
                raise DatasetError(
                    f"face {path} is {declared}x{declared} px (per {meta_path.name}) but training uses --size {self.size}"
                )
            if not path.is_file():
                raise DatasetError(f"face image {path} listed in {meta_path} does not exist")
            width, height = png_size(path)
            if (width, height) != (self.size, self.size):
                raise DatasetError(
                    f"face image {path} is {width}x{height} px but training uses --size {self.size}; "
                    f"extract again with --size {self.size}"
                )
            records.append(FaceRecord(path=path, keypoints=keypoints, landmarks=landmarks_arr))
        if not records:
            raise DatasetError(f"face folder {self.folder} is empty: {meta_path} lists no faces")
        return records

    def __len__(self) -> int:
        return len(self.records)

    def load(self, index: int) -> tuple[np.ndarray, np.ndarray]:
        """The face (uint8 RGB S x S x 3) and its hull mask (float32 S x S) at `index`."""
        if self._cache is not None:
            cached = self._cache.get(index)
            if cached is not None:
                return cached
        record = self.records[index]
        bgr = cv2.imread(str(record.path), cv2.IMREAD_COLOR)
        if bgr is None:
            raise DatasetError(f"face image {record.path} cannot be decoded")
        if bgr.shape[:2] != (self.size, self.size):
            raise DatasetError(f"face image {record.path} is {bgr.shape[1]}x{bgr.shape[0]} px, not {self.size}")
        face = cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)
        mask = self.mask_for(record)
        if self._cache is not None:
            with self._cache_lock:
                self._cache[index] = (face, mask)
        return face, mask

    def mask_for(self, record: FaceRecord) -> np.ndarray:
        """The face's mesh-hull mask (from the keypoints when the set has no mesh landmarks)."""
        from faces.mask import hull_mask

        # hull_mask turns 5 keypoints into a face-shaped outline itself
        points = record.landmarks if record.landmarks is not None else record.keypoints
        return np.asarray(hull_mask(points, self.size, feather=max(1, self.size // 32)), dtype=np.float32)


@dataclass(frozen=True)
class SideBatch:
    """A batch of one identity as tensors: (B,3,S,S) inputs/targets, (B,1,S,S) mask, (B,2,S,S) eye and mouth maps."""

    input: torch.Tensor
    target: torch.Tensor
    mask: torch.Tensor
    features: torch.Tensor


@dataclass(frozen=True)
class PairBatch:
    """Batches of both identities for one training step."""

    step: int
    a: SideBatch
    b: SideBatch


def recolour_to(image: np.ndarray, mask: np.ndarray, reference: np.ndarray, reference_mask: np.ndarray) -> np.ndarray:
    """A float [0,1] face recoloured so that inside `mask` its Lab mean and spread are `reference`'s inside
    `reference_mask` (uint8 RGB); float32 out."""
    from faces.color import transfer_color

    as_uint8 = (np.clip(image, 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    recoloured = transfer_color(as_uint8, reference, "rct", mask=(mask, reference_mask))
    return recoloured.astype(np.float32) / 255.0


def make_side_batch(faceset: FaceSet, indices: np.ndarray, rng: np.random.Generator,
                    augment: AugmentConfig | None, *, other: FaceSet | None = None) -> SideBatch:
    """Load and augment the faces at `indices` (augment=None: unwarped, for evaluation); `other` (the other
    identity's set) lends its colours to a share `augment.colour_swap` of the inputs."""
    inputs, targets, masks, features = [], [], [], []
    for index in indices:
        face, mask = faceset.load(int(index))
        keypoints = faceset.records[int(index)].keypoints
        if augment is None:
            target = face.astype(np.float32) / 255.0
            sample_input, sample_mask, points = target, mask, keypoints
        else:
            sample = augment_face(face, mask, keypoints, rng, augment)
            sample_input, target, sample_mask, points = sample.input, sample.target, sample.mask, sample.keypoints
            # drawn only when asked for, so runs without it see exactly the batches they always did
            if other is not None and augment.colour_swap > 0 and rng.random() < augment.colour_swap:
                reference, reference_mask = other.load(int(rng.integers(len(other))))
                if float(sample_mask.sum()) >= 1.0:
                    sample_input = recolour_to(sample_input, sample_mask, reference, reference_mask)
        inputs.append(sample_input)
        targets.append(target)
        masks.append(sample_mask)
        features.append(feature_weight_map(points, faceset.size))

    def stack(images: list[np.ndarray]) -> torch.Tensor:
        array = np.stack(images)
        if array.ndim == 3:
            array = array[:, None]
        else:
            array = array.transpose(0, 3, 1, 2)
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.float32))

    return SideBatch(stack(inputs), stack(targets), stack(masks), stack(features))


def draw_indices(rng: np.random.Generator, count: int, batch: int, probabilities: np.ndarray | None) -> np.ndarray:
    """`batch` face indices out of `count`, uniformly or with the given per-face probabilities."""
    # uniform draws stay rng.integers, so runs without expression balance see the batches they always did
    if probabilities is None:
        return rng.integers(0, count, size=batch)
    return rng.choice(count, size=batch, p=probabilities)


class BatchStream:
    """Yields a PairBatch per step from `start_step` on, prepared ahead by a thread pool.

    Each step's batch depends only on (seed, step), so a resumed run sees the same data it would have seen.
    `probabilities` (per side, or None for uniform) make some faces more likely to be drawn (expression_balance).
    """

    def __init__(self, faces_a: FaceSet, faces_b: FaceSet, batch: int, augment: AugmentConfig, *, seed: int,
                 start_step: int, workers: int = 2, prefetch: int = 4,
                 probabilities: tuple[np.ndarray | None, np.ndarray | None] = (None, None)) -> None:
        self.faces_a, self.faces_b = faces_a, faces_b
        self.probabilities_a, self.probabilities_b = probabilities
        self.batch, self.augment, self.seed = batch, augment, seed
        self.next_step = start_step
        self.prefetch = max(1, prefetch)
        self.pool = ThreadPoolExecutor(max_workers=max(1, workers), thread_name_prefix="faceset")
        self.pending: deque[Future[PairBatch]] = deque()

    def _build(self, step: int) -> PairBatch:
        rng = np.random.default_rng([self.seed, step])
        idx_a = draw_indices(rng, len(self.faces_a), self.batch, self.probabilities_a)
        idx_b = draw_indices(rng, len(self.faces_b), self.batch, self.probabilities_b)
        side_a = make_side_batch(self.faces_a, idx_a, rng, self.augment, other=self.faces_b)
        side_b = make_side_batch(self.faces_b, idx_b, rng, self.augment, other=self.faces_a)
        return PairBatch(step=step, a=side_a, b=side_b)

    def _fill(self) -> None:
        while len(self.pending) < self.prefetch:
            self.pending.append(self.pool.submit(self._build, self.next_step))
            self.next_step += 1

    def __iter__(self) -> Iterator[PairBatch]:
        while True:
            self._fill()
            yield self.pending.popleft().result()

    def close(self) -> None:
        """Stop the workers (pending batches are dropped)."""
        for future in self.pending:
            future.cancel()
        self.pending.clear()
        self.pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self) -> BatchStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
