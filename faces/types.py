"""Typed records shared by every face stage: `Face`, plus the input checks all stages use."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faces.errors import FaceError

KEYPOINT_NAMES: tuple[str, ...] = (
    "eye_image_left",
    "eye_image_right",
    "nose_tip",
    "mouth_image_left",
    "mouth_image_right",
)
"""Order of `Face.keypoints` rows (image-left / image-right as seen in the frame)."""

MESH_POINTS = 468

ImageRGB = npt.NDArray[np.uint8]
"""An RGB uint8 HxWx3 frame or crop (frames are RGB everywhere in the project)."""
Float32Array = npt.NDArray[np.float32]
Float64Array = npt.NDArray[np.float64]


def check_frame(frame: object, name: str = "frame") -> ImageRGB:
    """Return *frame* if it is an RGB uint8 HxWx3 array, else raise FaceError naming what is wrong."""
    if not isinstance(frame, np.ndarray):
        raise FaceError(f"{name} must be a numpy array (RGB uint8 HxWx3), got {type(frame).__name__}")
    if frame.dtype != np.uint8:
        raise FaceError(f"{name} must be uint8 RGB, got dtype {frame.dtype}")
    if frame.ndim != 3 or frame.shape[2] != 3:
        raise FaceError(f"{name} must have shape HxWx3 (RGB), got {frame.shape}")
    if frame.shape[0] < 2 or frame.shape[1] < 2:
        raise FaceError(f"{name} is too small: {frame.shape}")
    rgb: ImageRGB = frame
    return rgb


def check_points(points: object, name: str = "points", count: int | None = None) -> Float64Array:
    """Return *points* as a float64 (N,2) array of finite values, else raise FaceError."""
    try:
        arr = np.asarray(points, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FaceError(f"{name} must be an (N,2) array of numbers") from exc
    if arr.ndim != 2 or arr.shape[1] != 2:
        raise FaceError(f"{name} must have shape (N,2), got {arr.shape}")
    if count is not None and arr.shape[0] != count:
        raise FaceError(f"{name} must have {count} points, got {arr.shape[0]}")
    if not np.all(np.isfinite(arr)):
        raise FaceError(f"{name} contains NaN or infinite values")
    return arr


def check_matrix(matrix: object, name: str = "matrix") -> Float64Array:
    """Return *matrix* as a float64 (2,3) affine matrix, else raise FaceError."""
    try:
        arr = np.asarray(matrix, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise FaceError(f"{name} must be a 2x3 affine matrix") from exc
    if arr.shape != (2, 3) or not np.all(np.isfinite(arr)):
        raise FaceError(f"{name} must be a finite 2x3 affine matrix, got shape {arr.shape}")
    if abs(np.linalg.det(arr[:, :2])) < 1e-12:
        raise FaceError(f"{name} is singular (its 2x2 part has zero determinant)")
    return arr


def _frozen_float32(values: npt.ArrayLike) -> Float32Array:
    arr = np.array(values, dtype=np.float32, copy=True)
    arr.flags.writeable = False
    return arr


@dataclass(frozen=True, eq=False)
class Face:
    """One detected face in frame pixels: box (x0,y0,x1,y1), score, 5 keypoints, optional 468-point mesh."""

    box: Float32Array
    score: float
    keypoints: Float32Array
    mesh: Float32Array | None = None

    def __post_init__(self) -> None:
        box = np.asarray(self.box, dtype=np.float32)
        if box.shape != (4,) or not np.all(np.isfinite(box)) or box[2] < box[0] or box[3] < box[1]:
            raise FaceError(f"Face.box must be finite (4,) x0,y0,x1,y1 with x1>=x0, y1>=y0, got {self.box!r}")
        keypoints = check_points(self.keypoints, "Face.keypoints", count=5)
        object.__setattr__(self, "box", _frozen_float32(box))
        object.__setattr__(self, "keypoints", _frozen_float32(keypoints))
        object.__setattr__(self, "score", float(self.score))
        if self.mesh is not None:
            mesh = check_points(self.mesh, "Face.mesh", count=MESH_POINTS)
            object.__setattr__(self, "mesh", _frozen_float32(mesh))

    @classmethod
    def from_keypoints(
        cls,
        keypoints: npt.ArrayLike,
        *,
        score: float = 1.0,
        mesh: npt.ArrayLike | None = None,
        box: npt.ArrayLike | None = None,
    ) -> Face:
        """Build a Face from known keypoints (e.g. synthetic ground truth); the box is derived if not given."""
        kp = check_points(keypoints, "keypoints", count=5)
        if box is None:
            box = box_around_keypoints(kp) if mesh is None else _bounds(check_points(mesh, "mesh"))
        return cls(box=np.asarray(box, dtype=np.float32), score=score, keypoints=kp.astype(np.float32),
                   mesh=None if mesh is None else check_points(mesh, "Face.mesh").astype(np.float32))

    @property
    def points(self) -> Float32Array:
        """The densest landmarks available: the mesh if present, else the 5 keypoints."""
        return self.mesh if self.mesh is not None else self.keypoints

    def with_points(self, keypoints: npt.ArrayLike, mesh: npt.ArrayLike | None = None) -> Face:
        """A copy with replaced (e.g. smoothed) keypoints and mesh; the box moves with the keypoints."""
        shift = np.asarray(keypoints, np.float64).mean(axis=0) - self.keypoints.astype(np.float64).mean(axis=0)
        box = self.box.astype(np.float64) + np.tile(shift, 2)
        return Face(box=box.astype(np.float32), score=self.score, keypoints=np.asarray(keypoints, dtype=np.float32),
                    mesh=None if mesh is None else np.asarray(mesh, dtype=np.float32))


def _bounds(points: Float64Array) -> Float64Array:
    return np.concatenate([points.min(axis=0), points.max(axis=0)])


def box_around_keypoints(keypoints: npt.ArrayLike) -> Float64Array:
    """A face box (x0,y0,x1,y1) estimated from 5 keypoints: about 2.2 eye distances wide, brow to chin."""
    kp = check_points(keypoints, "keypoints", count=5)
    eye_mid = (kp[0] + kp[1]) / 2
    eye_dist = max(float(np.linalg.norm(kp[1] - kp[0])), 1.0)
    mouth_mid = (kp[3] + kp[4]) / 2
    # Proportions measured on 94 LFW faces with the mediapipe mesh (see docs/faces.md).
    centre = eye_mid + (mouth_mid - eye_mid) * 0.45
    half = 1.1 * eye_dist
    return np.array([centre[0] - half, centre[1] - half, centre[0] + half, centre[1] + half])
