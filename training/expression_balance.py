"""Draw a face set's rare expressions more often: blinks and a closed or wide-open mouth.

A webcam clip blinks on about one frame in twenty-five and rests its mouth on a quarter of them, so a trainer that
draws faces uniformly sees an open-eyed, half-open-mouthed face most of the time and learns that as the face's
default: the swap stops blinking and its mouth never quite closes (docs/quality.md). Here each face's eye and
mouth opening (from the mesh `swapstream extract` stored) falls into one of a few equal-width cells per axis, and
faces are drawn with probability proportional to count(eye cell) ** -eyes * count(mouth cell) ** -mouth: 0 leaves
that axis as it is, 1 draws each of its cells equally often. Faces without a mesh keep the mean probability.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from faces.expression import eye_opening, mouth_opening
from faces.types import MESH_POINTS

BINS = 6
"""Cells per axis, equal width between the 2nd and 98th percentile (the tails share the end cells)."""
MAX_RATIO = 20.0
"""No face is drawn more than this many times as often as the least drawn one: one odd mesh cannot dominate."""


@dataclass(frozen=True)
class ExpressionBalance:
    """Sampling probabilities over a face set, and what they do to the share of its rarest expressions."""

    probabilities: npt.NDArray[np.float64]
    closed_eye_share: tuple[float, float]
    """(uniform, balanced) share of draws with the eyes in their lowest cell."""
    closed_mouth_share: tuple[float, float]
    """(uniform, balanced) share of draws with the mouth in its lowest cell."""


def expression_features(meshes: Sequence[npt.NDArray[np.floating] | None]) -> npt.NDArray[np.float64]:
    """(N, 2) eye opening and mouth opening per face; NaN where a face has no mesh."""
    out = np.full((len(meshes), 2), np.nan)
    for row, mesh in enumerate(meshes):
        if mesh is not None and len(mesh) >= MESH_POINTS:
            out[row] = (eye_opening(mesh), mouth_opening(mesh))
    return out


def _cells(values: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    low, high = np.percentile(values, [2.0, 98.0])
    if not high > low:
        return np.zeros(len(values), np.int64)
    scaled = (values - low) / (high - low) * BINS
    return np.clip(np.floor(scaled), 0, BINS - 1).astype(np.int64)


def balance_expressions(meshes: Sequence[npt.NDArray[np.floating] | None], eyes: float,
                       mouth: float) -> ExpressionBalance | None:
    """Probabilities for drawing each face (summing to 1), or None when there is nothing to balance.

    `eyes` and `mouth` (each 0..1) are how strongly each axis is evened out: a face's weight is
    count(its eye cell) ** -eyes * count(its mouth cell) ** -mouth.
    """
    for name, strength in (("eyes", eyes), ("mouth", mouth)):
        if not 0.0 <= strength <= 1.0:
            raise ValueError(f"expression balance for the {name} must be in [0, 1], got {strength}")
    features = expression_features(meshes)
    known = ~np.isnan(features).any(axis=1)
    if (eyes == 0.0 and mouth == 0.0) or known.sum() < BINS * 2:
        return None
    eye_cells = _cells(features[known, 0])
    mouth_cells = _cells(features[known, 1])
    eye_counts = np.bincount(eye_cells, minlength=BINS).astype(np.float64)
    mouth_counts = np.bincount(mouth_cells, minlength=BINS).astype(np.float64)
    weight = eye_counts[eye_cells] ** -eyes * mouth_counts[mouth_cells] ** -mouth
    weight = np.minimum(weight, weight.min() * MAX_RATIO)
    probabilities = np.full(len(meshes), float(weight.mean()))
    probabilities[known] = weight
    probabilities /= probabilities.sum()
    known_p = probabilities[known] / probabilities[known].sum()

    def shares(lowest: npt.NDArray[np.bool_]) -> tuple[float, float]:
        return float(lowest.mean()), float(known_p[lowest].sum())

    return ExpressionBalance(probabilities, shares(eye_cells == 0), shares(mouth_cells == 0))
