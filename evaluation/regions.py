"""Where the pipeline pasted a swapped face, in frame pixels: the blend weight, the inner face, and the two
thin rings that face each other across the blend's edge (for the seam figure).

The weight is the face-hull part of the server's blend mask (faces.mask.hull_mask over the located face's
landmarks, shrunk and feathered by the session's 'feather' crop pixels, here converted to frame pixels). The
model's own mask multiplies it in the server and can only make the pasted region smaller, so the "inner face"
here (weight ~1) is where the output is the model's face wherever the model's mask is on.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from numpy.typing import NDArray

from evaluation.arrays import Mask
from faces.align import alignment_matrix
from faces.mask import hull_mask
from faces.types import Face

INNER_WEIGHT = 0.99
"""Blend weight from which a pixel counts as the swapped face's inside."""
OUTER_WEIGHT = 0.01
"""Blend weight below which a pixel outside the hull counts as untouched (the feather's blur has a faint tail)."""
RING_FRACTION = 0.06
"""Width of each seam ring as a fraction of the face's size (square root of the hull's area)."""
MIN_INNER_PIXELS = 64


@dataclass(frozen=True, eq=False)
class FaceRegions:
    """One pasted face's regions, each a bool mask of the frame (weight: float32 in [0, 1])."""

    weight: NDArray[np.float32]
    inner: Mask
    """Fully swapped pixels (weight >= INNER_WEIGHT)."""
    inner_ring: Mask
    """Inner pixels within a ring width of where the blend starts to fall off."""
    outer_ring: Mask
    """Pixels outside the face hull (blend weight below OUTER_WEIGHT) within a ring width of it."""
    centre: tuple[float, float]
    """The inner region's centroid (x, y), the origin of the seam's sectors."""


def crop_scale(face: Face, face_size: int) -> float:
    """Crop pixels per frame pixel of the pipeline's aligned crop of `face`."""
    matrix = alignment_matrix(face.keypoints, face_size)
    return float(np.sqrt(abs(np.linalg.det(matrix[:, :2]))))


def face_regions(face: Face, face_size: int, feather: int, frame_shape: tuple[int, ...]) -> FaceRegions | None:
    """The regions of `face` pasted at `face_size` with `feather`; None when too little of it is in the frame."""
    shape = (int(frame_shape[0]), int(frame_shape[1]))
    weight = hull_mask(face.points, shape, feather / crop_scale(face, face_size))
    hull = hull_mask(face.points, shape, 0.0) >= 0.5
    inner = weight >= INNER_WEIGHT
    if int(inner.sum()) < MIN_INNER_PIXELS:
        return None
    ring = max(2.0, RING_FRACTION * float(np.sqrt(hull.sum())))
    inner_depth = cv2.distanceTransform(inner.astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    outside_depth = cv2.distanceTransform((~hull).astype(np.uint8), cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    ys, xs = np.nonzero(inner)
    return FaceRegions(
        weight=weight,
        inner=inner,
        inner_ring=inner & (inner_depth <= ring),
        outer_ring=~hull & (weight < OUTER_WEIGHT) & (outside_depth <= ring),
        centre=(float(xs.mean()), float(ys.mean())),
    )
