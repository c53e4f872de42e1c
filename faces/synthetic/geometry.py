"""Head geometry: the shape of a synthetic head and where its features are, in head units.

Head units: x right, y down, z towards the camera; the head is an ellipsoid 2 units wide, with a height field on
its front (nose, brow ridge, eye sockets, cheekbones, lips, chin). The feature positions here (eyes, nose tip,
mouth corners, the face outline) are the ground truth every frame carries, so a feature that moves a keypoint (a
wider mouth, a smile) changes `mouth_corners` or `keypoints` here and is painted in faces.synthetic.features.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import numpy.typing as npt

from faces.synthetic.controls import Expression, Pose
from faces.synthetic.identity import Identity
from faces.types import Float64Array


def rotation_matrix(yaw: float, pitch: float, roll: float) -> Float64Array:
    """Head-to-camera rotation (degrees): yaw about y, pitch about x (+ looks down), roll about z."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return np.asarray(rz @ rx @ ry, dtype=np.float64)


def gauss(
    x: npt.NDArray[Any], y: npt.NDArray[Any], cx: float, cy: float, sx: float, sy: float
) -> npt.NDArray[np.floating[Any]]:
    """An unnormalised 2D Gaussian bump centred on (cx, cy) with widths (sx, sy), evaluated at (x, y)."""
    bump: npt.NDArray[np.floating[Any]] = np.exp(-(((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2) / 2)
    return bump


class HeadGeometry:
    """The shape of one identity's head and the positions of its features; all in head units."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.axes: Float64Array = np.array([1.0, identity.head_height, identity.head_depth])
        """Semi-axes of the head ellipsoid (x, y, z)."""
        self.outline: Float64Array = self._face_contour()
        """(64,2) points around the face (forehead above the hairline, temples, cheeks, jaw, chin)."""

    def height(self, x: npt.NDArray[Any], y: npt.NDArray[Any]) -> Float64Array:
        """Height (head units, towards the camera) added to the ellipsoid: nose, brows, sockets, cheeks, lips."""
        d = self.identity
        x = np.asarray(x, dtype=np.float64)
        y = np.asarray(y, dtype=np.float64)
        top = d.eye_y - 0.02
        s = np.clip((y - top) / (d.nose_y - top), 0.0, 1.0)
        below = np.where(y > d.nose_y, np.exp(-(((y - d.nose_y) / 0.045) ** 2)), 1.0)
        above = np.where(y < top, np.exp(-(((y - top) / 0.05) ** 2)), 1.0)
        sigma = d.nose_width * (0.28 + 0.3 * s)
        ridge = d.nose_height * (0.2 + 0.8 * s**1.4) * np.exp(-(x**2) / (2 * sigma**2)) * below * above
        tip = 0.12 * d.nose_height * gauss(x, y, 0, d.nose_y, 0.05, 0.04)
        alae = 0.3 * d.nose_height * (
            gauss(x, y, -0.5 * d.nose_width, d.nose_y + 0.02, 0.035, 0.03)
            + gauss(x, y, 0.5 * d.nose_width, d.nose_y + 0.02, 0.035, 0.03)
        )
        brow = 0.06 * np.exp(-(((y - (d.eye_y - d.brow_gap)) / 0.06) ** 2)) * np.exp(-((x / 0.6) ** 4))
        sockets = -0.07 * (
            gauss(x, y, -d.eye_x, d.eye_y, 0.12, 0.075) + gauss(x, y, d.eye_x, d.eye_y, 0.12, 0.075)
        )
        eyeballs = 0.035 * (
            gauss(x, y, -d.eye_x, d.eye_y, 0.07, 0.04) + gauss(x, y, d.eye_x, d.eye_y, 0.07, 0.04)
        )
        cheeks = 0.05 * (gauss(x, y, -0.45, 0.15, 0.15, 0.12) + gauss(x, y, 0.45, 0.15, 0.15, 0.12))
        lips = 0.04 * gauss(x, y, 0, d.mouth_y, d.mouth_width * 0.7, 0.05)
        chin = 0.05 * gauss(x, y, 0, d.chin_y - 0.13, 0.12, 0.08)
        return np.asarray(ridge + tip + alae + brow + sockets + eyeballs + cheeks + lips + chin, dtype=np.float64)

    def surface_points(self, xy: npt.NDArray[Any]) -> Float64Array:
        """3D head points (N,3) on the face surface under head-unit (x, y) positions."""
        xy = np.asarray(xy, dtype=np.float64)
        a, b, c = self.axes
        r = np.clip(1 - (xy[:, 0] / a) ** 2 - (xy[:, 1] / b) ** 2, 0.0, None)
        z = c * np.sqrt(r) + self.height(xy[:, 0], xy[:, 1])
        return np.column_stack([xy, z])

    def mouth_corners(self, expression: Expression) -> Float64Array:
        """Head-unit (x, y) of the image-left and image-right mouth corners for this expression."""
        d = self.identity
        lift = 0.03 * expression.smile
        width = d.mouth_width * (1 + 0.08 * expression.smile - 0.12 * expression.mouth_open)
        return np.array([(-width, d.mouth_y - lift), (width, d.mouth_y - lift)])

    def keypoints(self, expression: Expression) -> Float64Array:
        """Head-unit (x, y) of the 5 keypoints (contract order) for this expression."""
        d = self.identity
        eye_dy = 0.1 * d.eye_height
        corners = self.mouth_corners(expression)
        return np.array(
            [(-d.eye_x, d.eye_y + eye_dy), (d.eye_x, d.eye_y + eye_dy), (0.0, d.nose_y), corners[0], corners[1]]
        )

    def placement(self, pose: Pose, size: tuple[int, int]) -> tuple[float, Float64Array]:
        """Pixels per head unit and the head centre in pixels, for *pose* in a frame of *size* (width, height)."""
        width, height = size
        scale = pose.head_size * height / (2 * self.identity.head_height)
        return scale, np.array([pose.centre[0] * width, pose.centre[1] * height])

    def project(self, points3d: npt.NDArray[Any], pose: Pose, size: tuple[int, int]) -> Float64Array:
        """Head points (N,3) -> frame pixels (N,2) for *pose* in a frame of *size* (width, height)."""
        rot = rotation_matrix(pose.yaw, pose.pitch, pose.roll)
        scale, centre = self.placement(pose, size)
        cam = np.asarray(points3d, dtype=np.float64) @ rot.T
        return np.asarray(cam[:, :2] * scale + centre, dtype=np.float64)

    def _face_contour(self) -> Float64Array:
        d = self.identity
        fw, jw, cw = d.face_width, d.jaw_width, d.chin_width
        top = d.hairline_y - 0.22
        right = [
            (0.0, top),
            (0.55 * fw, top + 0.05),
            (0.9 * fw, d.hairline_y + 0.08),
            (fw, d.eye_y + 0.15),
            (0.97 * fw, d.nose_y + 0.05),
            (jw, d.jaw_y),
            (cw + 0.08, d.chin_y - 0.06),
            (cw * 0.6, d.chin_y - 0.005),
        ]
        pts = right + [(0.0, d.chin_y)] + [(-x, y) for x, y in reversed(right[1:])]
        return _resample_closed(_smooth_closed(np.array(pts), 4), 64)


def _smooth_closed(points: npt.NDArray[Any], iterations: int = 4) -> Float64Array:
    """Chaikin corner cutting of a closed polygon."""
    pts = np.asarray(points, dtype=np.float64)
    for _ in range(iterations):
        nxt = np.roll(pts, -1, axis=0)
        pts = np.stack([0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], axis=1).reshape(-1, 2)
    return pts


def _resample_closed(points: Float64Array, count: int) -> Float64Array:
    """*count* points evenly spaced along a closed polygon."""
    closed = np.vstack([points, points[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    dist = np.concatenate([[0], np.cumsum(seg)])
    targets = np.linspace(0, dist[-1], count, endpoint=False)
    return np.stack([np.interp(targets, dist, closed[:, 0]), np.interp(targets, dist, closed[:, 1])], axis=1)
