"""Blend masks in crop coordinates: the face hull from landmarks, feathered by a blur."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt

from faces.errors import FaceError
from faces.expression import OUTER_LIP
from faces.types import MESH_POINTS, Float32Array, Float64Array, check_points

# A face outline in "eye frame" units (origin between the eyes, x along the eye line, one unit = eye distance):
# an ellipse matching the mesh hull measured on 94 LFW faces (x +-1.13, y -0.83..+1.82).
_OUTLINE_CENTRE = np.array([0.0, 0.50])
_OUTLINE_RADII = np.array([1.10, 1.32])
_OUTLINE_POINTS = 48
# About the mouth corners of 5 keypoints (no mesh), in units of the corner distance: the lips hang below the
# corners' line (more so when the mouth opens) and rise only a little above it, so the outline is a half ellipse
# below that line, reaching just past the corners, under a flat top.
_MOUTH_HALF_WIDTH = 0.55
_MOUTH_DEPTH = 0.4
_MOUTH_RISE = 0.05


def _mask_shape(size: int | tuple[int, int]) -> tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        shape = (int(size), int(size))
    elif isinstance(size, tuple) and len(size) == 2 and all(isinstance(v, (int, np.integer)) for v in size):
        shape = (int(size[0]), int(size[1]))
    else:
        raise FaceError(f"mask size must be an int or (height, width), got {size!r}")
    if min(shape) < 1:
        raise FaceError(f"mask size must be positive, got {size!r}")
    return shape


def face_outline_from_keypoints(keypoints: npt.ArrayLike) -> Float64Array:
    """A face-shaped polygon (brow to chin) around 5 keypoints, for when no mesh exists."""
    kp = check_points(keypoints, "keypoints", count=5)
    eye_mid = (kp[0] + kp[1]) / 2
    x_axis = kp[1] - kp[0]
    eye_dist = float(np.linalg.norm(x_axis))
    if eye_dist < 1e-6:
        raise FaceError("keypoints are degenerate: both eyes at the same place")
    x_axis = x_axis / eye_dist
    y_axis = np.array([-x_axis[1], x_axis[0]])
    # Mirrored faces or odd point orders would put the mouth above the eyes; follow the mouth's side.
    if float((kp[3] + kp[4] - 2 * eye_mid) @ y_axis) < 0:
        y_axis = -y_axis
    angles = np.linspace(0.0, 2 * np.pi, _OUTLINE_POINTS, endpoint=False)
    local = _OUTLINE_CENTRE + _OUTLINE_RADII * np.stack([np.cos(angles), np.sin(angles)], axis=1)
    outline: Float64Array = eye_mid + eye_dist * (local[:, :1] * x_axis + local[:, 1:] * y_axis)
    return outline


def feather_mask(mask: npt.ArrayLike, amount: float) -> Float32Array:
    """Soften a [0,1] mask's edges with a Gaussian blur whose sigma is amount/2 px (0 leaves it hard)."""
    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise FaceError(f"mask must be 2-D (height, width), got shape {arr.shape}")
    if not np.isfinite(amount) or amount < 0:
        raise FaceError(f"feather amount must be a number >= 0 px, got {amount!r}")
    out = arr.astype(np.float32, copy=True)
    if amount > 0:
        sigma = amount / 2.0
        ksize = 2 * int(np.ceil(3 * sigma)) + 1
        blurred = cv2.GaussianBlur(out, (ksize, ksize), sigmaX=sigma, sigmaY=sigma, borderType=cv2.BORDER_CONSTANT)
        out = np.asarray(blurred, dtype=np.float32)
    return np.clip(out, 0.0, 1.0)


def hull_mask(points_in_crop: npt.ArrayLike, size: int | tuple[int, int], feather: float = 0.0) -> Float32Array:
    """A float32 [0,1] mask of the landmarks' convex hull (a face-shaped region if only 5 keypoints).

    With feather > 0 the hull is first shrunk by *feather* px and then blurred (sigma feather/2), so the mask is
    about 1 well inside the face and falls to ~0 at the hull's edge, never spilling past it.
    """
    shape = _mask_shape(size)
    pts = check_points(points_in_crop, "points_in_crop")
    if pts.shape[0] == 5:
        pts = face_outline_from_keypoints(pts)
    elif pts.shape[0] < 3:
        raise FaceError(f"hull_mask needs 5 keypoints or >= 3 landmarks, got {pts.shape[0]}")
    if not np.isfinite(feather) or feather < 0:
        raise FaceError(f"feather must be a number >= 0 px, got {feather!r}")
    mask = np.zeros(shape, dtype=np.uint8)
    # Fixed-point coordinates (4 fractional bits) keep sub-pixel landmark positions.
    hull = cv2.convexHull(np.round(pts * 16).astype(np.int32))
    cv2.fillConvexPoly(mask, hull, (255,), lineType=cv2.LINE_AA, shift=4)
    if feather <= 0:
        return mask.astype(np.float32) / 255.0
    # Shrink by `feather` px (a distance-transform threshold: constant cost, unlike a large erosion kernel),
    # then blur.
    inside = cv2.distanceTransform((mask >= 128).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return feather_mask((inside > feather).astype(np.float32), feather)


def mouth_outline(points_in_crop: npt.ArrayLike) -> Float64Array:
    """The lips' outer edge: the mesh's outer lip ring, or a half ellipse under the mouth corners of 5 keypoints."""
    pts = check_points(points_in_crop, "points_in_crop")
    if pts.shape[0] == MESH_POINTS:
        ring: Float64Array = pts[list(OUTER_LIP)]
        return ring
    if pts.shape[0] != 5:
        raise FaceError(f"mouth_outline needs 5 keypoints or the {MESH_POINTS}-point mesh, got {pts.shape[0]} points")
    left, right = pts[3], pts[4]
    x_axis = right - left
    width = float(np.linalg.norm(x_axis))
    if width < 1e-6:
        raise FaceError("keypoints are degenerate: both mouth corners at the same place")
    x_axis = x_axis / width
    y_axis = np.array([-x_axis[1], x_axis[0]])
    if float(((left + right) / 2 - (pts[0] + pts[1]) / 2) @ y_axis) < 0:
        y_axis = -y_axis  # "down" is away from the eyes, whatever the image's orientation
    middle = (left + right) / 2
    angles = np.linspace(0.0, np.pi, _OUTLINE_POINTS // 2)
    lower = middle + width * (_MOUTH_HALF_WIDTH * np.cos(angles)[:, None] * x_axis
                              + _MOUTH_DEPTH * np.sin(angles)[:, None] * y_axis)
    top = middle - _MOUTH_RISE * width * y_axis
    outline: Float64Array = np.vstack([lower, top[None, :]])
    return outline


def mouth_mask(points_in_crop: npt.ArrayLike, size: int | tuple[int, int], margin: float, feather: float,
               margin_up: float | None = None) -> Float32Array:
    """A float32 [0,1] mask of the mouth: the lips' hull grown by *margin* px, then blurred (sigma feather/2).

    Towards the eyes it grows only *margin_up* px past the top of the upper lip (default: *margin*), which keeps
    it off the nose. With margins >= feather the lips themselves stay at ~1 (the blur's fall-off lies in them).
    """
    shape = _mask_shape(size)
    pts = check_points(points_in_crop, "points_in_crop")
    outline = mouth_outline(pts)
    up_margin = margin if margin_up is None else margin_up
    for name, value in (("margin", margin), ("feather", feather), ("margin_up", up_margin)):
        if not np.isfinite(value) or value < 0:
            raise FaceError(f"{name} must be a number >= 0 px, got {value!r}")
    lips = hull_mask(outline, shape) >= 0.5
    grown = lips
    if margin > 0:
        outside = cv2.distanceTransform((~lips).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
        grown = outside <= margin
        if up_margin < margin:
            up = _towards_the_eyes(pts, outline)
            heights = outline @ up
            above_lips = (np.arange(shape[1])[None, :] * up[0] + np.arange(shape[0])[:, None] * up[1]
                          - heights.max())
            grown &= (above_lips <= up_margin) | lips
    return feather_mask(grown.astype(np.float32), feather)


def _towards_the_eyes(points: Float64Array, lips: Float64Array) -> Float64Array:
    """The unit vector from the mouth to the point between the eyes (mesh eye corners 33 / 263, or keypoints)."""
    eyes = points[[33, 263]] if points.shape[0] == MESH_POINTS else points[:2]
    direction = eyes.mean(axis=0) - lips.mean(axis=0)
    length = float(np.linalg.norm(direction))
    if length < 1e-6:
        raise FaceError("landmarks are degenerate: the mouth is where the eyes are")
    up: Float64Array = direction / length
    return up
