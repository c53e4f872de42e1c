"""Face alignment: the canonical 5-point template, crop/matrix estimation and the inverse paste-back.

The template is the one contract between training and serving: both crop faces with `align_face`.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt

from faces.errors import FaceError
from faces.types import Face, Float32Array, Float64Array, ImageRGB, check_frame, check_matrix, check_points

# Canonical keypoints in [0,1] crop coordinates, order as Face.keypoints. Eye distance is 0.30 of the crop and
# the eye midpoint sits at (0.50, 0.35); nose and mouth are the mean positions measured with the mediapipe
# mesh on 94 LFW faces (nose 0.67, mouth 1.09 eye distances below the eyes, mouth 0.82 eye distances wide).
# The same faces' mesh hull spans -0.83..+1.82 eye distances vertically and +-1.13 horizontally, i.e. crop
# y 0.10..0.90 and x 0.16..0.84: the whole face, forehead to chin, with a ~0.1 margin for pose and mask feather.
TEMPLATE_5: Float64Array = np.array(
    [
        [0.350, 0.350],
        [0.650, 0.350],
        [0.500, 0.550],
        [0.377, 0.677],
        [0.623, 0.677],
    ],
    dtype=np.float64,
)
TEMPLATE_5.flags.writeable = False

# Fit weights: eyes set roll and scale and are the steadiest points; the nose moves with yaw and the mouth with
# expression, so they only steer the fit a little.
KEYPOINT_WEIGHTS: Float64Array = np.array([1.0, 1.0, 0.25, 0.5, 0.5])
KEYPOINT_WEIGHTS.flags.writeable = False

# Bicubic both ways: a bilinear crop + paste round trip blurs the astronaut's face by 3.1/255 mean abs error at
# 128 px, bicubic by 1.7/255 (Lanczos 1.4/255 at twice the cost).
INTERPOLATION = cv2.INTER_CUBIC


@dataclass(frozen=True, eq=False)
class AlignedFace:
    """An aligned face crop (uint8 size x size x 3, RGB) and its 2x3 frame->crop matrix."""

    crop: ImageRGB
    matrix: Float64Array

    @property
    def size(self) -> int:
        """Side length of the square crop in pixels."""
        return int(self.crop.shape[0])


def template_points(size: int) -> Float64Array:
    """The template keypoints in pixel coordinates of a size x size crop."""
    return TEMPLATE_5 * float(_check_size(size))


def estimate_similarity(
    src: npt.ArrayLike,
    dst: npt.ArrayLike,
    weights: npt.ArrayLike | None = None,
    robust_iterations: int = 3,
) -> Float64Array:
    """Weighted least-squares similarity (rotation, uniform scale, translation) src->dst as a 2x3 matrix.

    Closed-form weighted Umeyama, then a few reweighting rounds (Cauchy weights on the residuals) so one bad
    point, e.g. an open mouth, cannot drag the fit. Deterministic, unlike RANSAC/LMEDS sampling, so a still
    face gives a still crop in video.
    """
    src_pts = check_points(src, "src")
    dst_pts = check_points(dst, "dst", count=src_pts.shape[0])
    if src_pts.shape[0] < 2:
        raise FaceError("a similarity transform needs at least 2 points")
    base = np.ones(src_pts.shape[0]) if weights is None else np.asarray(weights, dtype=np.float64)
    if base.shape != (src_pts.shape[0],) or np.any(base < 0) or base.sum() <= 0:
        raise FaceError(f"weights must be {src_pts.shape[0]} non-negative numbers with a positive sum")
    weight = base.copy()
    matrix = _weighted_umeyama(src_pts, dst_pts, weight)
    scale_ref = np.sqrt((base * ((dst_pts - dst_pts.mean(axis=0)) ** 2).sum(axis=1)).sum() / base.sum())
    for _ in range(robust_iterations):
        residual = np.linalg.norm(src_pts @ matrix[:, :2].T + matrix[:, 2] - dst_pts, axis=1)
        # Cauchy weight with a scale of 10% of the point spread: small residuals keep full weight.
        cauchy = 1.0 / (1.0 + (residual / (0.1 * scale_ref + 1e-9)) ** 2)
        weight = base * cauchy
        matrix = _weighted_umeyama(src_pts, dst_pts, weight)
    return matrix


def _weighted_umeyama(src: Float64Array, dst: Float64Array, weight: Float64Array) -> Float64Array:
    w = weight / weight.sum()
    mu_s = w @ src
    mu_d = w @ dst
    s0 = src - mu_s
    d0 = dst - mu_d
    var_s = float(w @ (s0**2).sum(axis=1))
    if var_s < 1e-12:
        raise FaceError("points are degenerate (all at one place); cannot estimate an alignment")
    cov = (d0 * w[:, None]).T @ s0
    u, sv, vt = np.linalg.svd(cov)
    fix = np.eye(2)
    if np.linalg.det(u) * np.linalg.det(vt) < 0:
        fix[1, 1] = -1.0
    rot = u @ fix @ vt
    scale = float((sv * np.diag(fix)).sum() / var_s)
    matrix: Float64Array = np.empty((2, 3))
    matrix[:, :2] = scale * rot
    matrix[:, 2] = mu_d - matrix[:, :2] @ mu_s
    return matrix


def alignment_matrix(keypoints: npt.ArrayLike, size: int) -> Float64Array:
    """The 2x3 frame->crop similarity that maps *keypoints* (5,2 frame px) onto the template at *size*."""
    kp = check_points(keypoints, "keypoints", count=5)
    return estimate_similarity(kp, template_points(size), KEYPOINT_WEIGHTS)


def align_face(frame: ImageRGB, face_or_keypoints: Face | npt.ArrayLike, size: int) -> AlignedFace:
    """Crop *frame* so the face's keypoints land on the template; returns the crop and its frame->crop matrix."""
    frame = check_frame(frame)
    keypoints = face_or_keypoints.keypoints if isinstance(face_or_keypoints, Face) else face_or_keypoints
    matrix = alignment_matrix(keypoints, size)
    crop = cv2.warpAffine(frame, matrix, (size, size), flags=INTERPOLATION, borderMode=cv2.BORDER_REPLICATE)
    return AlignedFace(crop=np.asarray(crop, dtype=np.uint8), matrix=matrix)


def transform_points(points: npt.ArrayLike, matrix: npt.ArrayLike) -> Float64Array:
    """Apply a 2x3 affine *matrix* to (N,2) *points*."""
    pts = check_points(points)
    m = check_matrix(matrix)
    moved: Float64Array = pts @ m[:, :2].T + m[:, 2]
    return moved


def invert_matrix(matrix: npt.ArrayLike) -> Float64Array:
    """The inverse of a 2x3 affine matrix (crop->frame for an alignment matrix)."""
    return np.asarray(cv2.invertAffineTransform(check_matrix(matrix)), dtype=np.float64)


def paste_back(frame: ImageRGB, crop: ImageRGB, matrix: npt.ArrayLike, mask: npt.ArrayLike) -> ImageRGB:
    """Warp *crop* back into a copy of *frame* with its frame->crop *matrix* and alpha-blend it by *mask*.

    Only the frame rectangle where the warped mask can be non-zero is warped and blended, so the cost follows
    the masked face's size, not the frame size.
    """
    frame = check_frame(frame)
    crop = check_frame(crop, "crop")
    m = check_matrix(matrix)
    ch, cw = crop.shape[:2]
    weights = np.asarray(mask)
    if weights.ndim == 3 and weights.shape[2] == 1:
        weights = weights[:, :, 0]
    if weights.shape != (ch, cw):
        raise FaceError(f"mask must have the crop's size {(ch, cw)}, got {weights.shape}")
    alpha: Float32Array = weights.astype(np.float32, copy=False)
    if not np.all(np.isfinite(alpha)) or alpha.min(initial=0.0) < 0.0 or alpha.max(initial=0.0) > 1.0:
        raise FaceError("mask values must lie in [0, 1]")

    out = frame.copy()
    sx, sy, sw, sh = cv2.boundingRect((alpha > 0).view(np.uint8))
    if sw == 0 or sh == 0:
        return out
    # A bicubic sample at crop position p reads crop pixels floor(p)-1 .. floor(p)+2, so the warped mask is zero
    # wherever p lies 2 px or more outside the mask's support: only that rectangle's frame pixels can change.
    # (Never past the crop's own rectangle, where the blend has always stopped.)
    support = (max(sx - _CUBIC_REACH, 0), max(sy - _CUBIC_REACH, 0),
               min(sx + sw - 1 + _CUBIC_REACH, cw), min(sy + sh - 1 + _CUBIC_REACH, ch))
    x0, y0, x1, y1 = _covered_rect(m, support, frame.shape[1], frame.shape[0])
    if x1 <= x0 or y1 <= y0:
        return out
    # Shift the frame->crop matrix so that ROI pixel (0,0) is frame pixel (x0,y0); WARP_INVERSE_MAP then reads
    # the crop at shifted @ (x,y) for every ROI pixel.
    shifted = m.copy()
    shifted[:, 2] += m[:, :2] @ np.array([x0, y0], dtype=np.float64)
    roi_size = (x1 - x0, y1 - y0)
    flags = INTERPOLATION | cv2.WARP_INVERSE_MAP
    warped = cv2.warpAffine(crop, shifted, roi_size, flags=flags, borderMode=cv2.BORDER_REPLICATE)
    warped_alpha = cv2.warpAffine(
        alpha, shifted, roi_size, flags=flags, borderMode=cv2.BORDER_CONSTANT, borderValue=(0.0,)
    )
    # Bicubic can overshoot; keep the blend weight a weight.
    weight = np.asarray(warped_alpha, dtype=np.float32)
    np.clip(weight, 0.0, 1.0, out=weight)
    roi = out[y0:y1, x0:x1]
    # OpenCV's blend (weight * warped + (1 - weight) * roi, rounded) is ~5x faster than the same in numpy floats.
    roi[...] = cv2.blendLinear(warped, roi, weight, 1.0 - weight)
    return out


# How far (crop px) past the mask's non-zero pixels a bicubic sample can still read one of them.
_CUBIC_REACH = 2


def _covered_rect(
    matrix: Float64Array, crop_rect: tuple[float, float, float, float], fw: int, fh: int
) -> tuple[int, int, int, int]:
    """The frame rectangle (x0, y0, x1, y1), clipped to the frame, that the crop rectangle maps onto."""
    cx0, cy0, cx1, cy1 = crop_rect
    corners = np.array([[cx0, cy0], [cx1, cy0], [cx0, cy1], [cx1, cy1]], dtype=np.float64)
    in_frame = transform_points(corners, invert_matrix(matrix))
    x0, y0 = np.floor(in_frame.min(axis=0)).astype(int) - 1
    x1, y1 = np.ceil(in_frame.max(axis=0)).astype(int) + 1
    return max(x0, 0), max(y0, 0), min(x1, fw), min(y1, fh)


def _check_size(size: object) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or int(size) < 8:
        raise FaceError(f"crop size must be an integer >= 8, got {size!r}")
    return int(size)
