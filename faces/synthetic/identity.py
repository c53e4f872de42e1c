"""Who a synthetic person is: shape and colour parameters in head units, and the two people A and B.

A later feature of a person (a wider mouth, how often they blink) starts as a field here, with a default that keeps
A and B as they are; `glasses` is one (`dataclasses.replace(IDENTITY_A, glasses=Glasses())`: A wearing glasses).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from faces.errors import FaceError

RGB = tuple[int, int, int]


@dataclass(frozen=True)
class Glasses:
    """Spectacles in front of the eyes (drawn by faces.synthetic.layers.draw_glasses); lengths in head units."""

    frame: RGB = (35, 28, 26)
    rim: float = 0.03
    """Thickness of the rims, bridge and arms."""
    lens_half_width: float = 0.21
    lens_half_height: float = 0.16
    standoff: float = 0.1
    """How far the lenses sit in front of the eyes' surface."""
    tint: RGB = (205, 220, 230)
    tint_alpha: float = 0.12
    """Opacity of the lens tint (0: clear glass)."""

    def __post_init__(self) -> None:
        for name in ("rim", "lens_half_width", "lens_half_height", "standoff"):
            if not getattr(self, name) > 0:
                raise FaceError(f"glasses: {name} must be positive, got {getattr(self, name)}")
        if not 0 <= self.tint_alpha <= 1:
            raise FaceError(f"glasses: tint_alpha must be in [0, 1], got {self.tint_alpha}")


@dataclass(frozen=True)
class Identity:
    """Shape and colour parameters of one synthetic person; lengths are in head units (head half-width = 1)."""

    name: str
    head_height: float = 1.3
    head_depth: float = 0.95
    face_width: float = 0.86
    jaw_width: float = 0.66
    jaw_y: float = 0.62
    chin_y: float = 0.98
    chin_width: float = 0.22
    hairline_y: float = -0.55
    skin: RGB = (224, 178, 150)
    eye_x: float = 0.4
    eye_y: float = -0.06
    eye_width: float = 0.33
    eye_height: float = 0.12
    eye_tilt: float = 0.01
    iris: RGB = (70, 120, 170)
    brow: RGB = (110, 80, 55)
    brow_thickness: float = 0.045
    brow_arch: float = 0.04
    brow_gap: float = 0.13
    nose_y: float = 0.34
    nose_width: float = 0.14
    nose_height: float = 0.28
    mouth_y: float = 0.6
    mouth_width: float = 0.29
    lips: RGB = (190, 100, 100)
    upper_lip: float = 0.035
    lower_lip: float = 0.05
    hair: RGB = (120, 85, 50)
    hair_style: Literal["short", "long"] = "short"
    hair_volume: float = 1.1
    clothes: RGB = (60, 80, 130)
    glasses: Glasses | None = None
    """Spectacles worn in every frame, or None."""

    def __post_init__(self) -> None:
        if not 0.3 <= self.jaw_width <= self.face_width <= 0.95:
            raise FaceError(f"identity {self.name!r}: need 0.3 <= jaw_width <= face_width <= 0.95")
        if self.hair_style not in ("short", "long"):
            raise FaceError(f"identity {self.name!r}: hair_style must be 'short' or 'long'")


IDENTITY_A = Identity(name="a")
"""Oval face, fair skin, blue eyes, thin light-brown brows, narrow nose, thin pink lips, short brown hair."""

IDENTITY_B = Identity(
    name="b",
    head_height=1.22,
    head_depth=1.0,
    face_width=0.93,
    jaw_width=0.84,
    jaw_y=0.66,
    chin_y=0.95,
    chin_width=0.36,
    hairline_y=-0.6,
    skin=(140, 92, 66),
    eye_x=0.42,
    eye_y=-0.04,
    eye_width=0.35,
    eye_height=0.11,
    eye_tilt=-0.005,
    iris=(70, 42, 25),
    brow=(25, 20, 18),
    brow_thickness=0.07,
    brow_arch=0.015,
    brow_gap=0.12,
    nose_y=0.31,
    nose_width=0.21,
    nose_height=0.22,
    mouth_y=0.6,
    mouth_width=0.33,
    lips=(120, 58, 55),
    upper_lip=0.05,
    lower_lip=0.065,
    hair=(22, 18, 16),
    hair_style="long",
    hair_volume=1.2,
    clothes=(180, 60, 40),
)
"""Wide face with a square jaw, brown skin, dark eyes, thick black brows, wide nose, full lips, long black hair."""

IDENTITIES: dict[str, Identity] = {"a": IDENTITY_A, "b": IDENTITY_B}
