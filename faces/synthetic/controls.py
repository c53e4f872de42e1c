"""What changes from frame to frame (pose, expression, light) and what a rendered frame carries (SyntheticFrame)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True)
class Pose:
    """Head pose in degrees (yaw: turn to the image's right is positive) and placement in the frame."""

    yaw: float = 0.0
    pitch: float = 0.0
    roll: float = 0.0
    centre: tuple[float, float] = (0.5, 0.45)
    """Head centre as fractions of frame width and height."""
    head_size: float = 0.55
    """Head height (crown to chin) as a fraction of the frame height."""


MOUTH_OPEN_MAX = 1.5
"""The widest mouth opening (a yawn or a shout); 1 is the widest a talking person opens it."""


@dataclass(frozen=True)
class Expression:
    """Expression controls, each in [0, 1] (smile in [-1, 1], mouth_open up to MOUTH_OPEN_MAX); painted by
    faces.synthetic.features."""

    mouth_open: float = 0.0
    blink: float = 0.0
    smile: float = 0.0
    brow_raise: float = 0.0
    teeth: float = 0.0
    """Lips drawn apart over closed teeth (a grin): 1 shows both rows; adds to the mouth's opening."""


@dataclass(frozen=True)
class Lighting:
    """A directional light: azimuth (+ from the image's right), elevation (+ from above), both in degrees."""

    azimuth: float = 25.0
    elevation: float = 30.0
    intensity: float = 0.85
    ambient: float = 0.35
    warmth: float = 0.0
    """-1 cool (blueish) .. +1 warm (orange) light colour."""


@dataclass(frozen=True, eq=False)
class SyntheticFrame:
    """One rendered frame (RGB uint8) with ground truth: 5 keypoints (contract order) and a face outline."""

    frame: npt.NDArray[np.uint8]
    keypoints: npt.NDArray[np.float32]
    """(5,2) float32 pixels: image-left eye, image-right eye, nose tip, image-left / image-right mouth corner."""
    outline: npt.NDArray[np.float32]
    """(N,2) float32 pixels around the face (forehead, cheeks, jaw, chin): its hull is the face mask."""
    pose: Pose = field(default_factory=Pose)
    expression: Expression = field(default_factory=Expression)
