"""Expression and pose read off mediapipe's 468-point face mesh, the same way on input and output frames.

Each frame is measured on its own (a still-image detector, no tracking or smoothing between frames), so a
figure of the output follows only what the output shows. Mesh indices are mediapipe face-mesh indices.
"""

from __future__ import annotations

from dataclasses import dataclass
from types import TracebackType

import cv2
import numpy as np

from evaluation.arrays import Floats, Image
from faces.detect import FaceDetector
from faces.expression import CHIN, eye_opening, face_height, mouth_opening

NOSE_TIP = 1
# A generic head for the pose fit (arbitrary units, camera axes: x to the image's right, y down, z away from the
# camera; the nose tip at the origin): nose tip, chin, outer eye corners and mouth corners, image-left first.
POSE_POINTS = (NOSE_TIP, CHIN, 33, 263, 61, 291)
POSE_MODEL = np.array([
    [0.0, 0.0, 0.0],
    [0.0, 330.0, 65.0],
    [-225.0, -170.0, 135.0],
    [225.0, -170.0, 135.0],
    [-150.0, 150.0, 125.0],
    [150.0, 150.0, 125.0],
], dtype=np.float64)
NO_LENS_DISTORTION = np.zeros(4, dtype=np.float64)


@dataclass(frozen=True, eq=False)
class FaceMeasure:
    """What one face's mesh says: mouth and eye opening, head pose (degrees) and where the face is."""

    mouth_opening: float
    """Inner-lip gap / face height (forehead top to chin)."""
    eye_opening: float
    """Lid gap / eye width, mean of three lid pairs and both eyes."""
    rotation: Floats
    """The head's 3x3 rotation in camera axes (see head_rotation); NaN where the fit failed."""
    face_height: float
    """Forehead top to chin, pixels."""
    mesh: Floats
    """(468, 2) pixels."""
    box: Floats
    """The detector's box x0, y0, x1, y1 (pixels)."""


def head_rotation(mesh: Floats, frame_size: tuple[int, int]) -> Floats:
    """The head's 3x3 rotation (camera axes) from a generic head fitted to six mesh points with a pinhole
    camera whose focal length is the frame width; all NaN where the fit fails. The absolute angles are rough
    (a generic head, a guessed camera); what the report uses is the rotation between input and output."""
    width, height = frame_size
    camera = np.array([[width, 0.0, width / 2], [0.0, width, height / 2], [0.0, 0.0, 1.0]], dtype=np.float64)
    image_points = np.ascontiguousarray(mesh[list(POSE_POINTS)], dtype=np.float64)
    ok, rotation_vector, _ = cv2.solvePnP(POSE_MODEL, image_points, camera, NO_LENS_DISTORTION,
                                          flags=cv2.SOLVEPNP_ITERATIVE)
    if not ok:
        return np.full((3, 3), np.nan)
    rotation, _ = cv2.Rodrigues(rotation_vector)
    return np.asarray(rotation, dtype=np.float64)


def euler_angles(rotation: Floats) -> tuple[float, float, float]:
    """(yaw, pitch, roll) in degrees of a rotation, signs as `faces.synthetic.Pose` (NaN for a failed fit)."""
    if not np.all(np.isfinite(rotation)):
        return float("nan"), float("nan"), float("nan")
    pitch, yaw, roll = cv2.RQDecomp3x3(rotation)[0]
    # Camera axes turn the other way from faces.synthetic's yaw and pitch.
    return -float(yaw), -float(pitch), float(roll)


def pose_difference(first: Floats, second: Floats) -> tuple[float, float, float, float]:
    """(yaw, pitch, roll, total) in degrees of the rotation from head pose `first` to `second`.

    Taken from the relative rotation, not by subtracting Euler angles: one pose has several Euler triplets
    (yaw 55, roll -157 and its mirror are the same head), and subtracting two of them can report 180 degrees
    for heads that agree.
    """
    relative = second @ first.T
    if not np.all(np.isfinite(relative)):
        return float("nan"), float("nan"), float("nan"), float("nan")
    total = float(np.degrees(np.arccos(np.clip((np.trace(relative) - 1) / 2, -1.0, 1.0))))
    return (*euler_angles(relative), total)


class FaceMeasurer:
    """Measures the main face of a frame with a still-image mediapipe detector and mesh (refined eyes and lips)."""

    def __init__(self) -> None:
        self._detector = FaceDetector(max_faces=1, static_images=True, refine_landmarks=True)

    def measure(self, frame: Image) -> FaceMeasure | None:
        """The frame's main face, or None where mediapipe finds no face or no mesh."""
        faces = self._detector.detect(frame)
        if not faces or faces[0].mesh is None:
            return None
        mesh = faces[0].mesh.astype(np.float64)
        rotation = head_rotation(mesh, (frame.shape[1], frame.shape[0]))
        return FaceMeasure(mouth_opening(mesh), eye_opening(mesh), rotation, face_height(mesh), mesh,
                           np.asarray(faces[0].box, dtype=np.float64))

    def close(self) -> None:
        """Free the mediapipe graphs."""
        self._detector.close()

    def __enter__(self) -> FaceMeasurer:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()
