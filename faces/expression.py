"""Mouth and eye opening read off mediapipe's 468-point face mesh (pixel or crop coordinates alike).

Shared by the evaluation (input vs output frames) and the trainer (which expressions a face set has few of).
Mesh indices are mediapipe face-mesh indices.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

FOREHEAD_TOP = 10
CHIN = 152
INNER_LIP_UPPER = 13
INNER_LIP_LOWER = 14
# The outer edge of both lips, in order around the mouth (mediapipe's FACEMESH_LIPS, outer ring).
OUTER_LIP = (61, 146, 91, 181, 84, 17, 314, 405, 321, 375, 291, 409, 270, 269, 267, 0, 37, 39, 40, 185)
# Per eye: its two corners and three (upper lid, lower lid) pairs. The first eye is the one on the image's left.
EYES: tuple[tuple[tuple[int, int], tuple[tuple[int, int], ...]], ...] = (
    ((33, 133), ((160, 144), (159, 145), (158, 153))),
    ((263, 362), ((385, 380), (386, 374), (387, 373))),
)

Mesh = npt.NDArray[np.floating[Any]]


def face_height(mesh: Mesh) -> float:
    """Forehead top to chin, in the mesh's units."""
    return float(np.linalg.norm(mesh[FOREHEAD_TOP] - mesh[CHIN]))


def mouth_opening(mesh: Mesh) -> float:
    """The inner-lip gap over the face height: ~0 closed, ~0.1 wide open."""
    return float(np.linalg.norm(mesh[INNER_LIP_UPPER] - mesh[INNER_LIP_LOWER])) / max(face_height(mesh), 1e-6)


def eye_opening(mesh: Mesh) -> float:
    """The lid gap over the eye's width, averaged over both eyes: ~0 closed, ~0.3 open."""
    ratios = []
    for (corner_a, corner_b), lids in EYES:
        width = max(float(np.linalg.norm(mesh[corner_a] - mesh[corner_b])), 1e-6)
        gap = np.mean([np.linalg.norm(mesh[upper] - mesh[lower]) for upper, lower in lids])
        ratios.append(float(gap) / width)
    return float(np.mean(ratios))
