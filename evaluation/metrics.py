"""The report's figures from frames and series of numbers (plain numpy; every function is tested on
constructed cases whose answer is known).

- following: does an output series (mouth opening, eye opening) follow the input's? Pearson correlation and
  the ratio of their robust ranges (5th to 95th percentile).
- sharpness: variance of the Laplacian of Gaussian (sigma 1 px) of the grey image inside the face, output over
  input. The small Gaussian keeps per-pixel sensor noise, which no model can (or should) reproduce, from
  counting as detail: on the synthetic clips, whose renderer adds pixel noise, the plain Laplacian mostly
  measures that noise (demo model: ratio 0.04 plain, 0.19 with the Gaussian).
- what a perfect swap could score on sharpness, as two factors: the model's size (the input's own face taken to
  the model's crop and pasted back by the pipeline's warps: the detail a crop of that size can carry at that face
  size) and B's own detail (B's faces against the input's, both aligned at the model's size: a smooth-skinned B
  cannot be as detailed as a wrinkled A, however good the model).
- frame-to-frame change: mean absolute change of the pixels inside the face between consecutive frames.
- seam: the colour difference (CIE76 delta E) across the blend's edge, between the two thin rings facing each
  other there, per angular sector around the face: how much the output changed that step from the input's.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from evaluation.arrays import Floats, Image, Mask
from evaluation.regions import FaceRegions
from faces.align import align_face, paste_back, transform_points
from faces.detect import keypoints_from_mesh
from faces.mask import hull_mask
from faces.types import Face

RANGE_PERCENTILES = (5.0, 95.0)
MIN_SERIES = 3
NOISE_SIGMA = 1.0  # px, the Gaussian before the Laplacian
SEAM_SECTORS = 16
MIN_SECTOR_PIXELS = 8
MIN_CROP_PIXELS = 64


@dataclass(frozen=True)
class Following:
    """How an output series follows the input series it came from."""

    frames: int
    correlation: float | None
    """Pearson correlation; None with fewer than MIN_SERIES frames or a constant input; 0 for a constant output."""
    range_ratio: float | None
    """Output's robust range over the input's; None where the input does not vary."""
    input_range: tuple[float, float]
    output_range: tuple[float, float]


def robust_range(values: Floats) -> tuple[float, float]:
    """The 5th and 95th percentiles (a range one stray frame cannot stretch)."""
    low, high = np.percentile(values, RANGE_PERCENTILES)
    return float(low), float(high)


def following(inputs: Sequence[float], outputs: Sequence[float]) -> Following:
    """Correlation and range ratio of `outputs` against `inputs` (paired, same length)."""
    x = np.asarray(inputs, dtype=np.float64)
    y = np.asarray(outputs, dtype=np.float64)
    if x.shape != y.shape:
        raise ValueError(f"paired series differ in length: {x.shape} vs {y.shape}")
    if len(x) == 0:
        return Following(0, None, None, (float("nan"),) * 2, (float("nan"),) * 2)
    x_range, y_range = robust_range(x), robust_range(y)
    x_span, y_span = x_range[1] - x_range[0], y_range[1] - y_range[0]
    varies = x.std() > 1e-12
    correlation: float | None = None
    if len(x) >= MIN_SERIES and varies:
        correlation = float(np.corrcoef(x, y)[0, 1]) if y.std() > 1e-12 else 0.0
    range_ratio = y_span / x_span if x_span > 1e-12 else None
    return Following(len(x), correlation, range_ratio, x_range, y_range)


def _grey(frame: Image) -> Image:
    return np.asarray(cv2.cvtColor(frame, cv2.COLOR_RGB2GRAY), dtype=np.uint8) if frame.ndim == 3 else frame


def laplacian_variance(frame: Image, region: Mask) -> float:
    """Variance of the Laplacian of Gaussian (sigma NOISE_SIGMA) of the grey image over `region` (bool mask)."""
    smoothed = cv2.GaussianBlur(_grey(frame).astype(np.float64), (0, 0), NOISE_SIGMA)
    laplacian = cv2.Laplacian(smoothed, cv2.CV_64F)
    return float(laplacian[region].var())


def sharpness_ratio(input_frame: Image, output_frame: Image, region: Mask) -> float | None:
    """Output's Laplacian variance over the input's inside `region`; None where the input has no detail."""
    reference = laplacian_variance(input_frame, region)
    if reference < 1e-9:
        return None
    return laplacian_variance(output_frame, region) / reference


def crop_detail(frame: Image, mesh: Floats, face_size: int) -> float | None:
    """The face's detail at the model's size: Laplacian variance inside the mesh hull of the aligned crop."""
    aligned = align_face(frame, keypoints_from_mesh(mesh), face_size)
    inside = hull_mask(transform_points(mesh, aligned.matrix), face_size) >= 0.99
    if int(inside.sum()) < MIN_CROP_PIXELS:
        return None
    return laplacian_variance(aligned.crop, inside)


def resolution_ceiling(frame: Image, face: Face, face_size: int, region: Mask) -> float | None:
    """The sharpness ratio of the input's own face after the pipeline's round trip through a `face_size` crop:
    the most a model of that size can score at this face's size in the frame."""
    aligned = align_face(frame, face, face_size)
    everywhere = np.ones((face_size, face_size), np.float32)
    return sharpness_ratio(frame, paste_back(frame, aligned.crop, aligned.matrix, everywhere), region)


def mean_change(frames: Sequence[Image], region: Mask) -> float:
    """Mean absolute change (grey levels, all channels) inside `region` between consecutive frames."""
    if len(frames) < 2:
        raise ValueError("frame-to-frame change needs at least two frames")
    changes = [np.abs(b[region].astype(np.float64) - a[region].astype(np.float64)).mean()
               for a, b in zip(frames[:-1], frames[1:])]
    return float(np.mean(changes))


def _sector_colours(frame: Image, regions: FaceRegions) -> dict[int, tuple[Floats, Floats]]:
    """Per angular sector around the face: the mean Lab colour of its inner-ring and outer-ring pixels."""
    both = regions.inner_ring | regions.outer_ring
    ys, xs = np.nonzero(both)
    if len(xs) == 0:
        return {}
    y0, y1, x0, x1 = ys.min(), ys.max() + 1, xs.min(), xs.max() + 1
    patch = frame[y0:y1, x0:x1].astype(np.float32) / 255.0
    lab = cv2.cvtColor(patch, cv2.COLOR_RGB2Lab).reshape(-1, 3).astype(np.float64)
    grid_y, grid_x = np.mgrid[y0:y1, x0:x1]
    angle = np.arctan2(grid_y - regions.centre[1], grid_x - regions.centre[0]).reshape(-1)
    sector = ((angle + np.pi) / (2 * np.pi) * SEAM_SECTORS).astype(np.int64) % SEAM_SECTORS
    inner = regions.inner_ring[y0:y1, x0:x1].reshape(-1)
    outer = regions.outer_ring[y0:y1, x0:x1].reshape(-1)
    colours = {}
    for index in range(SEAM_SECTORS):
        inside, outside = (sector == index) & inner, (sector == index) & outer
        if inside.sum() >= MIN_SECTOR_PIXELS and outside.sum() >= MIN_SECTOR_PIXELS:
            colours[index] = (lab[inside].mean(axis=0), lab[outside].mean(axis=0))
    return colours


def seam_delta_e(input_frame: Image, output_frame: Image, regions: FaceRegions) -> float | None:
    """How much the colour step across the blend's edge changed from input to output (CIE76 delta E).

    Per angular sector, the step is the inner ring's mean Lab colour minus the outer ring's; the figure is the
    length of (output step - input step), averaged over the sectors. The input's own step (skin against hair,
    neck, background) cancels, so the figure is 0 for an output that matches the input at the edge, whatever
    surrounds the face. None where no sector has enough pixels in both rings.
    """
    before, after = _sector_colours(input_frame, regions), _sector_colours(output_frame, regions)
    changes = [float(np.linalg.norm((after[k][0] - after[k][1]) - (before[k][0] - before[k][1]))) for k in before]
    return float(np.mean(changes)) if changes else None
