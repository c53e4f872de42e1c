"""Synthetic identities: a parametric 3D face renderer for tests and the demo (no face data set can be downloaded).

A head is an ellipsoid with a height field on its front (nose, brow ridge, eye sockets, cheekbones, lips, chin)
and a painted albedo texture (skin, eyes, brows, lips, hair), both in head units (x right, y down, z towards the
camera; the head is 2 units wide). Each pixel's view ray is intersected with the surface (orthographic camera),
shaded (wrapped Lambert + Blinn specular) and composited over a hair shell, neck, torso and a seeded background.
The renderer knows where every feature is, so each frame comes with ground-truth keypoints and a face outline.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import cv2
import numpy as np

from faces.errors import FaceError
from faces.media import write_video, write_y4m

__all__ = [
    "Expression",
    "FaceRenderer",
    "IDENTITIES",
    "IDENTITY_A",
    "IDENTITY_B",
    "Identity",
    "Lighting",
    "Pose",
    "SyntheticFrame",
    "make_background",
    "render_face",
    "iter_sequence",
    "render_sequence",
    "write_sequence_video",
    "write_video",
    "write_y4m",
]

RGB = tuple[int, int, int]
TEXELS_PER_UNIT = 200
"""Texture resolution: texels per head unit (a 640x480 frame shows about 100 px per unit)."""


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


@dataclass(frozen=True)
class Expression:
    """Expression controls, each in [0, 1] (smile in [-1, 1])."""

    mouth_open: float = 0.0
    blink: float = 0.0
    smile: float = 0.0
    brow_raise: float = 0.0


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

    frame: np.ndarray
    keypoints: np.ndarray
    """(5,2) float32 pixels: image-left eye, image-right eye, nose tip, image-left / image-right mouth corner."""
    outline: np.ndarray
    """(N,2) float32 pixels around the face (forehead, cheeks, jaw, chin): its hull is the face mask."""
    pose: Pose = field(default_factory=Pose)
    expression: Expression = field(default_factory=Expression)


def rotation_matrix(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """Head-to-camera rotation (degrees): yaw about y, pitch about x (+ looks down), roll about z."""
    y, p, r = (math.radians(v) for v in (yaw, pitch, roll))
    ry = np.array([[math.cos(y), 0, math.sin(y)], [0, 1, 0], [-math.sin(y), 0, math.cos(y)]])
    rx = np.array([[1, 0, 0], [0, math.cos(p), -math.sin(p)], [0, math.sin(p), math.cos(p)]])
    rz = np.array([[math.cos(r), -math.sin(r), 0], [math.sin(r), math.cos(r), 0], [0, 0, 1]])
    return rz @ rx @ ry


def _gauss(x: np.ndarray, y: np.ndarray, cx: float, cy: float, sx: float, sy: float) -> np.ndarray:
    return np.exp(-(((x - cx) / sx) ** 2 + ((y - cy) / sy) ** 2) / 2)


def _smooth_closed(points: np.ndarray, iterations: int = 4) -> np.ndarray:
    """Chaikin corner cutting of a closed polygon."""
    pts = np.asarray(points, dtype=np.float64)
    for _ in range(iterations):
        nxt = np.roll(pts, -1, axis=0)
        pts = np.stack([0.75 * pts + 0.25 * nxt, 0.25 * pts + 0.75 * nxt], axis=1).reshape(-1, 2)
    return pts


def _resample_closed(points: np.ndarray, count: int) -> np.ndarray:
    closed = np.vstack([points, points[:1]])
    seg = np.linalg.norm(np.diff(closed, axis=0), axis=1)
    dist = np.concatenate([[0], np.cumsum(seg)])
    targets = np.linspace(0, dist[-1], count, endpoint=False)
    return np.stack([np.interp(targets, dist, closed[:, 0]), np.interp(targets, dist, closed[:, 1])], axis=1)


class FaceRenderer:
    """Renders one identity; builds its height field and static texture once, so sequences render fast."""

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        ident = identity
        self.axes = np.array([1.0, ident.head_height, ident.head_depth])
        self._rng_seed = int.from_bytes(hashlib.sha256(ident.name.encode()).digest()[:4], "little")
        rows = int(round(2 * ident.head_height * TEXELS_PER_UNIT))
        cols = 2 * TEXELS_PER_UNIT
        self._tex_shape = (rows, cols)
        jj, ii = np.meshgrid(np.arange(cols), np.arange(rows))
        self._tex_x = ((jj + 0.5) / TEXELS_PER_UNIT - 1.0).astype(np.float32)
        self._tex_y = ((ii + 0.5) / TEXELS_PER_UNIT - ident.head_height).astype(np.float32)
        height = self.height(self._tex_x, self._tex_y).astype(np.float32)
        gy, gx = np.gradient(height, 1.0 / TEXELS_PER_UNIT)
        self._height_tex = height
        self._bump_tex = np.dstack([height, gx, gy]).astype(np.float32)
        self.outline_head = self._face_contour()
        self._base_albedo, self._base_alpha = self._paint_base()
        self._hair_tex = self._paint_hair_texture()
        self._noise: np.ndarray | None = None

    # --- geometry -------------------------------------------------------------------------------------------
    def height(self, x: np.ndarray, y: np.ndarray) -> np.ndarray:
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
        tip = 0.12 * d.nose_height * _gauss(x, y, 0, d.nose_y, 0.05, 0.04)
        alae = 0.3 * d.nose_height * (
            _gauss(x, y, -0.5 * d.nose_width, d.nose_y + 0.02, 0.035, 0.03)
            + _gauss(x, y, 0.5 * d.nose_width, d.nose_y + 0.02, 0.035, 0.03)
        )
        brow = 0.06 * np.exp(-(((y - (d.eye_y - d.brow_gap)) / 0.06) ** 2)) * np.exp(-((x / 0.6) ** 4))
        sockets = -0.07 * (
            _gauss(x, y, -d.eye_x, d.eye_y, 0.12, 0.075) + _gauss(x, y, d.eye_x, d.eye_y, 0.12, 0.075)
        )
        eyeballs = 0.035 * (
            _gauss(x, y, -d.eye_x, d.eye_y, 0.07, 0.04) + _gauss(x, y, d.eye_x, d.eye_y, 0.07, 0.04)
        )
        cheeks = 0.05 * (_gauss(x, y, -0.45, 0.15, 0.15, 0.12) + _gauss(x, y, 0.45, 0.15, 0.15, 0.12))
        lips = 0.04 * _gauss(x, y, 0, d.mouth_y, d.mouth_width * 0.7, 0.05)
        chin = 0.05 * _gauss(x, y, 0, d.chin_y - 0.13, 0.12, 0.08)
        return ridge + tip + alae + brow + sockets + eyeballs + cheeks + lips + chin

    def surface_points(self, xy: np.ndarray) -> np.ndarray:
        """3D head points (N,3) on the face surface under head-unit (x, y) positions."""
        xy = np.asarray(xy, dtype=np.float64)
        a, b, c = self.axes
        r = np.clip(1 - (xy[:, 0] / a) ** 2 - (xy[:, 1] / b) ** 2, 0.0, None)
        z = c * np.sqrt(r) + self.height(xy[:, 0], xy[:, 1])
        return np.column_stack([xy, z])

    def _face_contour(self) -> np.ndarray:
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

    # --- textures -------------------------------------------------------------------------------------------
    def _to_tex(self, xy: np.ndarray, row0: int = 0) -> np.ndarray:
        """Head units -> texture pixels (of a band starting at *row0*), fixed-point with 4 fractional bits."""
        xy = np.asarray(xy, dtype=np.float64)
        px = (xy[..., 0] + 1.0) * TEXELS_PER_UNIT - 0.5
        py = (xy[..., 1] + self.identity.head_height) * TEXELS_PER_UNIT - 0.5 - row0
        return np.round(np.stack([px, py], axis=-1) * 16).astype(np.int32)

    def _fill(self, img: np.ndarray, xy: np.ndarray, colour: tuple[float, ...], row0: int = 0) -> None:
        colour = tuple(float(v) for v in colour)
        cv2.fillPoly(img, [self._to_tex(xy, row0)], colour, lineType=cv2.LINE_AA, shift=4)

    def _line(
        self, img: np.ndarray, xy: np.ndarray, colour: tuple[float, ...], width: float, row0: int = 0
    ) -> None:
        thickness = max(1, int(round(width * TEXELS_PER_UNIT)))
        colour = tuple(float(v) for v in colour)
        cv2.polylines(img, [self._to_tex(xy, row0)], False, colour, thickness, lineType=cv2.LINE_AA, shift=4)

    def _roi(self, shape: tuple[int, ...], xy: np.ndarray, row0: int, margin: int) -> tuple[slice, slice, int, int]:
        """Rows/cols of an image of *shape* (a texture band from *row0*) covering *xy* plus *margin* texels."""
        px = self._to_tex(xy, row0) / 16
        c0, r0 = np.floor(px.min(axis=0)).astype(int) - margin
        c1, r1 = np.ceil(px.max(axis=0)).astype(int) + margin
        r0, c0 = max(0, int(r0)), max(0, int(c0))
        r1, c1 = min(shape[0], int(r1)), min(shape[1], int(c1))
        return slice(r0, r1), slice(c0, c1), r0, c0

    def _paint_base(self) -> tuple[np.ndarray, np.ndarray]:
        d = self.identity
        rng = np.random.default_rng(self._rng_seed)
        rows, cols = self._tex_shape
        x, y = self._tex_x, self._tex_y
        skin = np.array(d.skin, dtype=np.float32) / 255
        # Low-frequency blotches and fine pores keep the skin from looking like plastic (and give it texture).
        blotch = cv2.GaussianBlur(rng.normal(0, 1, (rows, cols)).astype(np.float32), (0, 0), 12) * 6
        pores = cv2.GaussianBlur(rng.normal(0, 1, (rows, cols)).astype(np.float32), (0, 0), 1.2) * 0.9
        albedo = skin[None, None, :] * (1 + 0.05 * blotch + 0.05 * pores)[..., None]
        blush = 0.5 * (_gauss(x, y, -0.5, 0.28, 0.13, 0.1) + _gauss(x, y, 0.5, 0.28, 0.13, 0.1))
        albedo = albedo * (1 - 0.12 * blush[..., None]) + np.array([0.85, 0.35, 0.35]) * 0.12 * blush[..., None]
        # Darker skin around the eyes and in the nasolabial folds.
        around_eyes = _gauss(x, y, -d.eye_x, d.eye_y - 0.01, 0.13, 0.07) + _gauss(
            x, y, d.eye_x, d.eye_y - 0.01, 0.13, 0.07
        )
        albedo *= (1 - 0.18 * around_eyes)[..., None]
        fold = np.zeros((rows, cols), np.float32)
        for sign in (-1, 1):
            pts = np.array(
                [
                    (sign * d.nose_width * 0.75, d.nose_y),
                    (sign * (d.mouth_width + 0.06), (d.nose_y + d.mouth_y) / 2 + 0.04),
                    (sign * (d.mouth_width + 0.07), d.mouth_y + 0.06),
                ]
            )
            self._line(fold, pts, (1.0,), 0.02)
        albedo *= (1 - 0.12 * cv2.GaussianBlur(fold, (0, 0), 5))[..., None]
        for sign in (-1, 1):
            nostril = np.array(
                [
                    (sign * 0.42 * d.nose_width + 0.028 * math.cos(t), d.nose_y + 0.05 + 0.014 * math.sin(t))
                    for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)
                ]
            )
            self._fill(albedo, nostril, (0.18, 0.09, 0.08))

        alpha = np.zeros((rows, cols), np.float32)
        self._fill(alpha, self.outline_head, (1.0,))
        hair_mask = self._hair_region()
        hair = self._hair_albedo(rng)
        albedo = albedo * (1 - hair_mask[..., None]) + hair * hair_mask[..., None]
        alpha = np.maximum(alpha, hair_mask)
        # Skin texture inside the ellipsoid only; outside it the head has no surface.
        inside = ((x**2) + (y / d.head_height) ** 2) < 0.995
        alpha *= inside
        albedo = cv2.GaussianBlur(albedo.astype(np.float32), (0, 0), 0.8)
        return np.clip(albedo, 0, 1).astype(np.float32), cv2.GaussianBlur(alpha, (0, 0), 1.0)

    def _hair_region(self) -> np.ndarray:
        d = self.identity
        x, y = self._tex_x, self._tex_y
        wobble = 0.015 * np.sin(x * 23 + 1.3) + 0.01 * np.sin(x * 41)
        hairline = d.hairline_y + 0.25 * x**2 + wobble
        mask = (y < hairline).astype(np.float32)
        side_bottom = 0.25 if d.hair_style == "short" else 2.0
        sides = ((np.abs(x) > d.face_width * 0.97) & (y < side_bottom)).astype(np.float32)
        if d.hair_style == "long":
            # Strands falling past the temples and over the cheek edges.
            strand = (np.abs(x) > d.face_width * 0.9 - 0.06 * np.clip(y - d.hairline_y, 0, None)).astype(np.float32)
            sides = np.maximum(sides, strand * (y > d.hairline_y - 0.1))
        region = np.maximum(mask, sides)
        return cv2.GaussianBlur(region, (0, 0), 3)

    def _hair_albedo(self, rng: np.random.Generator) -> np.ndarray:
        rows, cols = self._tex_shape
        noise = rng.normal(0, 1, (rows, cols)).astype(np.float32)
        # Blurred along y much more than x: vertical strands.
        strands = cv2.GaussianBlur(noise, (0, 0), sigmaX=1.2, sigmaY=9) * 4
        base = np.array(self.identity.hair, dtype=np.float32) / 255
        return base[None, None, :] * (1 + 0.25 * np.clip(strands, -2, 2))[..., None] + 0.02

    def _paint_hair_texture(self) -> np.ndarray:
        """Albedo of the hair shell behind the head (indexed like the face texture, larger extent)."""
        rng = np.random.default_rng(self._rng_seed + 1)
        size = 512
        noise = rng.normal(0, 1, (size, size)).astype(np.float32)
        strands = cv2.GaussianBlur(noise, (0, 0), sigmaX=1.5, sigmaY=12) * 4
        base = np.array(self.identity.hair, dtype=np.float32) / 255
        return np.clip(base[None, None, :] * (1 + 0.3 * np.clip(strands, -2, 2))[..., None] + 0.02, 0, 1)

    def _paint_expression(self, expression: Expression) -> tuple[np.ndarray, np.ndarray]:
        """The base texture with eyes, brows and mouth drawn for this expression; returns (albedo, alpha)."""
        d = self.identity
        # Only the band from brows to lips changes with expression: draw and blur within that band only.
        row0 = max(0, int((d.eye_y - d.brow_gap - 0.2 + d.head_height) * TEXELS_PER_UNIT))
        row1 = int((d.mouth_y + 0.2 + d.head_height) * TEXELS_PER_UNIT)
        albedo = self._base_albedo.copy()
        band = albedo[row0:row1]
        blink = float(np.clip(expression.blink, 0, 1))
        for sign in (-1, 1):
            self._paint_eye(band, row0, sign, blink)
            self._paint_brow(band, row0, sign, expression.brow_raise)
        self._paint_mouth(band, row0, expression)
        band[:] = cv2.GaussianBlur(band, (0, 0), 0.7)
        return albedo, self._base_alpha

    def _eye_curves(self, sign: int, blink: float) -> tuple[np.ndarray, np.ndarray]:
        d = self.identity
        t = np.linspace(-1, 1, 25)
        xs = sign * d.eye_x + t * d.eye_width / 2
        tilt = d.eye_tilt * t * sign
        half = d.eye_height / 2
        lower = d.eye_y + 0.75 * half * (1 - t**2) ** 0.9 - tilt
        upper_open = d.eye_y - half * (1 - t**2) ** 0.7 - tilt + 0.08 * half * sign * t
        upper = upper_open + (lower - upper_open) * blink
        return np.stack([xs, upper], 1), np.stack([xs, lower], 1)

    def _paint_eye(self, albedo: np.ndarray, row0: int, sign: int, blink: float) -> None:
        d = self.identity
        upper, lower = self._eye_curves(sign, blink)
        crease_up, _ = self._eye_curves(sign, 0.0)
        crease = crease_up.copy()
        crease[:, 1] -= 0.035
        self._line(albedo, crease[3:-3], tuple(np.array(d.skin) / 255 * 0.7), 0.012, row0=row0)
        if blink < 0.97:
            opening = np.vstack([upper, lower[::-1]])
            rows, cols, r0, c0 = self._roi(albedo.shape, opening, row0, 3)
            roi = albedo[rows, cols]
            # Draw in the region of interest only: shift shapes by its corner (head units) and band row.
            shift = np.array([c0, 0]) / TEXELS_PER_UNIT
            row0 = row0 + r0
            opening = opening - shift
            mask = np.zeros(roi.shape[:2], np.float32)
            self._fill(mask, opening, (1.0,), row0=row0)
            layer = np.zeros_like(roi)
            self._fill(layer, opening, (0.88, 0.86, 0.83), row0=row0)
            centre = (sign * d.eye_x - shift[0], d.eye_y + 0.1 * d.eye_height)
            r = 0.2 * d.eye_width
            ring = np.array(
                [(centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 40)]
            )
            iris = np.array(d.iris) / 255
            self._fill(layer, ring, tuple(iris * 0.55), row0=row0)
            self._fill(layer, (ring - centre) * 0.85 + centre, tuple(iris), row0=row0)
            self._fill(layer, (ring - centre) * 0.45 + centre, (0.04, 0.03, 0.03), row0=row0)
            glint = (ring - centre) * 0.15 + centre + np.array([0.35 * r * sign * -1, -0.35 * r])
            self._fill(layer, glint, (0.98, 0.98, 0.98), row0=row0)
            roi += (layer - roi) * mask[..., None]
            row0 = row0 - r0
        lash = 0.018 if blink < 0.5 else 0.012
        self._line(albedo, upper, (0.08, 0.05, 0.05), lash, row0=row0)
        self._line(albedo, lower[2:-2], tuple(np.array(d.skin) / 255 * 0.6), 0.006, row0=row0)

    def _paint_brow(self, albedo: np.ndarray, row0: int, sign: int, raise_amount: float) -> None:
        d = self.identity
        t = np.linspace(0, 1, 20)
        xs = sign * (d.eye_x - 0.6 * d.eye_width + t * 1.2 * d.eye_width)
        centre_y = d.eye_y - d.brow_gap - 0.04 * raise_amount - d.brow_arch * np.sin(t * math.pi * 0.9 + 0.2)
        half = d.brow_thickness / 2 * (1.1 - 0.6 * t)
        top = np.stack([xs, centre_y - half], 1)
        bottom = np.stack([xs, centre_y + half], 1)
        shape = np.vstack([top, bottom[::-1]])
        rows, cols, r0, c0 = self._roi(albedo.shape, shape, row0, 6)
        roi = albedo[rows, cols]
        layer = np.zeros(roi.shape[:2], np.float32)
        # Drawn in the region of interest only: shift the polygon by the region's corner (in head units).
        self._fill(layer, shape - np.array([c0, 0]) / TEXELS_PER_UNIT, (1.0,), row0=row0 + r0)
        layer = cv2.GaussianBlur(layer, (0, 0), 1.5)
        colour = np.array(d.brow, dtype=np.float32) / 255
        roi += (colour - roi) * (0.9 * layer[..., None])

    def mouth_corners(self, expression: Expression) -> np.ndarray:
        """Head-unit (x, y) of the image-left and image-right mouth corners for this expression."""
        d = self.identity
        lift = 0.03 * expression.smile
        width = d.mouth_width * (1 + 0.08 * expression.smile - 0.12 * expression.mouth_open)
        return np.array([(-width, d.mouth_y - lift), (width, d.mouth_y - lift)])

    def _paint_mouth(self, albedo: np.ndarray, row0: int, expression: Expression) -> None:
        d = self.identity
        corners = self.mouth_corners(expression)
        w = corners[1, 0]
        cy = corners[0, 1]
        gap = 0.13 * float(np.clip(expression.mouth_open, 0, 1))
        t = np.linspace(-1, 1, 31)
        xs = t * w
        bend = (1 - t**2) ** 0.8
        bow = 0.012 * np.exp(-((np.abs(t) - 0.3) ** 2) / 0.02) - 0.008 * np.exp(-(t**2) / 0.01)
        upper_top = cy - d.upper_lip * bend - bow
        upper_bottom = cy - 0.2 * gap * bend + 0.004 * bend
        lower_top = cy + gap * bend**1.2 + 0.002 * bend
        lower_bottom = lower_top + d.lower_lip * bend**0.8 + 0.003
        lips = np.array(d.lips, dtype=np.float32) / 255
        self._fill(albedo, np.vstack([np.stack([xs, upper_top], 1), np.stack([xs, upper_bottom], 1)[::-1]]), tuple(lips * 0.92), row0=row0)
        self._fill(albedo, np.vstack([np.stack([xs, lower_top], 1), np.stack([xs, lower_bottom], 1)[::-1]]), tuple(lips), row0=row0)
        if gap > 0.004:
            inside = np.vstack([np.stack([xs, upper_bottom], 1), np.stack([xs, lower_top], 1)[::-1]])
            mask = np.zeros(albedo.shape[:2], np.float32)
            self._fill(mask, inside, (1.0,), row0=row0)
            layer = np.zeros_like(albedo)
            self._fill(layer, inside, (0.22, 0.07, 0.08), row0=row0)
            teeth = np.vstack(
                [np.stack([xs * 0.8, upper_bottom], 1), np.stack([xs * 0.8, upper_bottom + min(0.3 * gap, 0.025) * bend], 1)[::-1]]
            )
            self._fill(layer, teeth, (0.9, 0.88, 0.82), row0=row0)
            albedo[:] = albedo * (1 - mask[..., None]) + layer * mask[..., None]
        else:
            self._line(albedo, np.stack([xs, cy + 0.002 * bend], 1), tuple(lips * 0.45), 0.008, row0=row0)

    # --- rendering ------------------------------------------------------------------------------------------
    def keypoints_head(self, expression: Expression) -> np.ndarray:
        """Head-unit (x, y) of the 5 keypoints (contract order) for this expression."""
        d = self.identity
        eye_dy = 0.1 * d.eye_height
        corners = self.mouth_corners(expression)
        return np.array(
            [(-d.eye_x, d.eye_y + eye_dy), (d.eye_x, d.eye_y + eye_dy), (0.0, d.nose_y), corners[0], corners[1]]
        )

    def project(self, points3d: np.ndarray, pose: Pose, size: tuple[int, int]) -> np.ndarray:
        """Head points (N,3) -> frame pixels (N,2) for *pose* in a frame of *size* (width, height)."""
        rot = rotation_matrix(pose.yaw, pose.pitch, pose.roll)
        scale, centre = self._placement(pose, size)
        cam = np.asarray(points3d, dtype=np.float64) @ rot.T
        return cam[:, :2] * scale + centre

    def _placement(self, pose: Pose, size: tuple[int, int]) -> tuple[float, np.ndarray]:
        width, height = size
        scale = pose.head_size * height / (2 * self.identity.head_height)
        return scale, np.array([pose.centre[0] * width, pose.centre[1] * height])

    def render(
        self,
        pose: Pose,
        expression: Expression = Expression(),
        lighting: Lighting = Lighting(),
        background: np.ndarray | None = None,
        size: tuple[int, int] = (640, 480),
        noise_seed: int | None = 0,
    ) -> SyntheticFrame:
        """One frame of this identity; *background* (RGB uint8 of *size*) defaults to a plain gradient."""
        width, height = size
        if background is None:
            background = make_background(size, seed=0)
        if background.shape != (height, width, 3):
            raise FaceError(f"background must have shape {(height, width, 3)}, got {background.shape}")
        rot = rotation_matrix(pose.yaw, pose.pitch, pose.roll)
        scale, centre = self._placement(pose, size)
        light = _light_vector(lighting)
        light_colour = np.array([1 + 0.08 * lighting.warmth, 1.0, 1 - 0.1 * lighting.warmth], np.float32)
        image = background.astype(np.float32) / 255
        self._draw_body(image, rot, scale, centre, lighting, light)
        self._draw_hair_shell(image, rot, scale, centre, lighting, light, light_colour)
        albedo, alpha = self._paint_expression(expression)
        self._draw_head(image, rot, scale, centre, albedo, alpha, lighting, light, light_colour)
        if noise_seed is not None:
            # Sensor noise (a camera never gives perfectly flat regions): a random window of a fixed noise field,
            # much cheaper than fresh noise per frame.
            field = self._noise_field(height + 32, width + 32)
            dx, dy = np.random.default_rng(noise_seed).integers(0, 32, 2)
            image += field[dy : dy + height, dx : dx + width]
        frame = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        keypoints = self.project(self.surface_points(self.keypoints_head(expression)), pose, size)
        outline = self.project(self.surface_points(self.outline_head), pose, size)
        return SyntheticFrame(
            frame=frame,
            keypoints=keypoints.astype(np.float32),
            outline=outline.astype(np.float32),
            pose=pose,
            expression=expression,
        )

    def _noise_field(self, height: int, width: int) -> np.ndarray:
        """Gaussian noise (sigma 1.6/255) of at least height x width, made once per size."""
        field = self._noise
        if field is None or field.shape[0] < height or field.shape[1] < width:
            rng = np.random.default_rng(self._rng_seed + 2)
            field = rng.standard_normal((height, width, 3), dtype=np.float32) * np.float32(1.6 / 255)
            self._noise = field
        return field

    @staticmethod
    def _region(
        rot: np.ndarray, axes: np.ndarray, offset: np.ndarray, scale: float, centre: np.ndarray, shape: tuple[int, int]
    ) -> tuple[int, int, int, int] | None:
        """Pixel rectangle (x0, y0, x1, y1) covering the projection of a rotated, offset ellipsoid."""
        height, width = shape
        # Half extent of a rotated ellipsoid along camera axis i: sqrt(sum_j (R_ij * axis_j)^2).
        half = np.sqrt(((rot[:2, :] * axes[None, :]) ** 2).sum(axis=1)) * scale + 2
        mid = (rot @ offset)[:2] * scale + centre
        x0, y0 = max(0, int(mid[0] - half[0])), max(0, int(mid[1] - half[1]))
        x1, y1 = min(width, int(mid[0] + half[0]) + 1), min(height, int(mid[1] + half[1]) + 1)
        return None if x0 >= x1 or y0 >= y1 else (x0, y0, x1, y1)

    @staticmethod
    def _rays(
        region: tuple[int, int, int, int], rot: np.ndarray, scale: float, centre: np.ndarray
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Ray origins per axis (head coordinates, on the camera-space z=0 plane) and the shared direction."""
        x0, y0, x1, y1 = region
        xs = (np.arange(x0, x1, dtype=np.float32) + 0.5 - np.float32(centre[0])) / np.float32(scale)
        ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - np.float32(centre[1])) / np.float32(scale)
        qx, qy = np.meshgrid(xs, ys)
        origins = [np.float32(rot[0, i]) * qx + np.float32(rot[1, i]) * qy for i in range(3)]
        return origins, rot[2, :].astype(np.float32)

    @staticmethod
    def _intersect(
        origins: list[np.ndarray], direction: np.ndarray, axes: np.ndarray, offset: np.ndarray, z_lift: np.ndarray | float
    ) -> tuple[list[np.ndarray], np.ndarray]:
        """Nearest-to-camera hit of each ray with an ellipsoid raised by *z_lift*: (x, y, z), chord length."""
        inv = [np.float32(1.0 / float(a) ** 2) for a in axes]
        m = [origins[0] - np.float32(offset[0]), origins[1] - np.float32(offset[1]), origins[2] - np.float32(offset[2]) - z_lift]
        a = float(sum(float(direction[i]) ** 2 * float(inv[i]) for i in range(3)))
        b = m[0] * (direction[0] * inv[0]) + m[1] * (direction[1] * inv[1]) + m[2] * (direction[2] * inv[2])
        c = m[0] * m[0] * inv[0] + m[1] * m[1] * inv[1] + m[2] * m[2] * inv[2] - 1
        disc = b * b - np.float32(a) * c
        root = np.sqrt(np.maximum(disc, 0))
        t = (root - b) / np.float32(a)
        hits = [origins[i] + t * direction[i] for i in range(3)]
        return hits, 2 * root / np.float32(a)

    def _tex_maps(self, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        mx = (x + np.float32(1.0)) * np.float32(TEXELS_PER_UNIT) - np.float32(0.5)
        my = (y + np.float32(self.identity.head_height)) * np.float32(TEXELS_PER_UNIT) - np.float32(0.5)
        return mx, my

    def _draw_head(
        self,
        image: np.ndarray,
        rot: np.ndarray,
        scale: float,
        centre: np.ndarray,
        albedo: np.ndarray,
        alpha_tex: np.ndarray,
        lighting: Lighting,
        light: np.ndarray,
        light_colour: np.ndarray,
    ) -> None:
        zero = np.zeros(3)
        region = self._region(rot, self.axes + 0.3, zero, scale, centre, image.shape[:2])
        if region is None:
            return
        origins, direction = self._rays(region, rot, scale, centre)
        bump: np.ndarray | float = 0.0
        # Fixed-point iteration: intersect the ellipsoid raised by the current height guess, re-read the height
        # there. Exact for a frontal view; damped, it settles within a few steps for the poses used here.
        for step in range(4):
            hits, chord = self._intersect(origins, direction, self.axes, zero, bump)
            mx, my = self._tex_maps(hits[0], hits[1])
            new_bump = cv2.remap(self._height_tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
            bump = new_bump if step == 0 else 0.5 * bump + 0.5 * new_bump
        hits, chord = self._intersect(origins, direction, self.axes, zero, bump)
        mx, my = self._tex_maps(hits[0], hits[1])
        grads = cv2.remap(self._bump_tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REPLICATE)
        colour = cv2.remap(albedo, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)
        alpha = cv2.remap(alpha_tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT)

        a, b, c = (float(v) for v in self.axes)
        nx = hits[0] / np.float32(a * a)
        ny = hits[1] / np.float32(b * b)
        nz = (hits[2] - bump) / np.float32(c * c)
        inv_len = 1 / (np.sqrt(nx * nx + ny * ny + nz * nz) + 1e-6)
        nx, ny, nz = nx * inv_len, ny * inv_len, nz * inv_len
        # Perturb the ellipsoid normal by the height-field gradient (bump mapping).
        nx = nx - grads[..., 1] * nz
        ny = ny - grads[..., 2] * nz
        normal = np.stack([nx, ny, nz], axis=-1) @ rot.T.astype(np.float32)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-6
        shade, spec = _shade(normal, light, lighting)
        # Eyes and teeth (bright texels) are glossier than skin.
        spec_map = 0.06 + 0.1 * (colour.min(axis=-1) > 0.75)
        rgb = colour * (shade[..., None] * light_colour) + (spec * spec_map)[..., None]
        # Soft silhouette: fade the outermost pixels of the ellipsoid rim, where the chord length goes to 0.
        alpha = alpha * np.clip(chord * np.float32(scale / 3.0), 0, 1) * (normal[..., 2] > -0.2)
        _blend(image, region, rgb, alpha)

    def _draw_hair_shell(
        self,
        image: np.ndarray,
        rot: np.ndarray,
        scale: float,
        centre: np.ndarray,
        lighting: Lighting,
        light: np.ndarray,
        light_colour: np.ndarray,
    ) -> None:
        d = self.identity
        vol = d.hair_volume
        if d.hair_style == "long":
            axes = np.array([vol * 1.02, d.head_height * 1.5, d.head_depth * 1.05])
            offset = np.array([0.0, d.head_height * 0.42, -0.15])
            cut = d.head_height * 1.75
        else:
            axes = np.array([vol, d.head_height * vol * 0.95, d.head_depth * vol])
            offset = np.array([0.0, -0.08, -0.1])
            cut = 0.15
        region = self._region(rot, axes, offset, scale, centre, image.shape[:2])
        if region is None:
            return
        origins, direction = self._rays(region, rot, scale, centre)
        hits, chord = self._intersect(origins, direction, axes, offset, 0.0)
        local = [(hits[i] - np.float32(offset[i])) / np.float32(axes[i]) for i in range(3)]
        normal = np.stack([local[i] / np.float32(axes[i]) for i in range(3)], axis=-1) @ rot.T.astype(np.float32)
        normal /= np.linalg.norm(normal, axis=-1, keepdims=True) + 1e-6
        shade, spec = _shade(normal, light, lighting)
        size = self._hair_tex.shape[0]
        mx = (local[0] + 1) * np.float32(0.5 * (size - 1))
        my = (local[1] + 1) * np.float32(0.5 * (size - 1))
        colour = cv2.remap(self._hair_tex, mx, my, cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
        wavy_cut = cut + 0.06 * np.sin(hits[0] * 17)
        alpha = np.clip((wavy_cut - hits[1]) * np.float32(scale / 4), 0, 1) * np.clip(chord * np.float32(scale / 3), 0, 1)
        if d.hair_style == "long":
            # Below the jaw, hair falls at the sides only, leaving the neck free.
            gap = np.clip((hits[1] - (d.jaw_y - 0.1)) * 3, 0, 1) * 0.5
            alpha *= np.clip((np.abs(hits[0]) - gap) * np.float32(scale / 4), 0, 1)
        rgb = colour * (shade[..., None] * light_colour) + (0.05 * spec)[..., None]
        _blend(image, region, rgb, alpha)

    def _draw_body(
        self,
        image: np.ndarray,
        rot: np.ndarray,
        scale: float,
        centre: np.ndarray,
        lighting: Lighting,
        light: np.ndarray,
    ) -> None:
        d = self.identity
        height, width = image.shape[:2]
        skin = np.array(d.skin, np.float32) / 255
        side = float(np.clip(light[0], -1, 1))
        # The neck stays upright; its top follows the head's chin.
        chin = (rot @ np.array([0.0, 0.3, -0.3]))[:2] * scale + centre
        neck_half = 0.44 * scale
        neck_bottom = centre[1] + (d.head_height + 1.0) * scale
        neck = np.array(
            [
                (chin[0] - neck_half, chin[1]),
                (chin[0] + neck_half, chin[1]),
                (centre[0] + neck_half * 1.1, neck_bottom),
                (centre[0] - neck_half * 1.1, neck_bottom),
            ]
        )
        torso_centre = centre + np.array([0.0, (d.head_height + 1.5) * scale])
        torso_axes = (2.6 * scale, 1.3 * d.head_height * scale)
        for part in ("neck", "torso"):
            if part == "neck":
                box = np.concatenate([neck.min(axis=0) - 2, neck.max(axis=0) + 2])
            else:
                box = np.concatenate([torso_centre - torso_axes - 2, torso_centre + torso_axes + 2])
            x0, y0 = max(0, int(box[0])), max(0, int(box[1]))
            x1, y1 = min(width, int(box[2]) + 1), min(height, int(box[3]) + 1)
            if x0 >= x1 or y0 >= y1:
                continue
            layer = np.zeros((y1 - y0, x1 - x0), np.float32)
            origin = np.array([x0, y0])
            if part == "neck":
                pts = np.round((neck - origin) * 16).astype(np.int32)
                cv2.fillPoly(layer, [pts], (1.0,), cv2.LINE_AA, shift=4)
            else:
                c = np.round((torso_centre - origin) * 16).astype(int)
                axes16 = (int(torso_axes[0] * 16), int(torso_axes[1] * 16))
                cv2.ellipse(layer, (int(c[0]), int(c[1])), axes16, 0.0, 0, 360, (1.0,), -1, cv2.LINE_AA, shift=4)
            ys = ((np.arange(y0, y1, dtype=np.float32) - centre[1]) / scale)[:, None]
            xs = ((np.arange(x0, x1, dtype=np.float32) - centre[0]) / scale)[None, :]
            if part == "neck":
                under_chin = 1 - 0.35 * np.exp(-(((ys - (chin[1] - centre[1]) / scale) / 0.6) ** 2))
                shade = (lighting.ambient + 0.45 * lighting.intensity) * (0.78 + 0.1 * side * xs) * under_chin
                rgb = skin * shade[..., None]
            else:
                cloth = np.array(d.clothes, np.float32) / 255
                shade = (lighting.ambient + 0.5 * lighting.intensity) * (0.85 + 0.06 * side * xs) * (1.1 - 0.06 * ys)
                rgb = cloth * shade[..., None]
            _blend(image, (x0, y0, x1, y1), rgb.astype(np.float32), layer)


def _blend(image: np.ndarray, region: tuple[int, int, int, int], rgb: np.ndarray, alpha: np.ndarray) -> None:
    """Composite *rgb* with coverage *alpha* over *image* inside *region* (in place)."""
    x0, y0, x1, y1 = region
    dst = image[y0:y1, x0:x1]
    alpha = alpha.astype(np.float32)[..., None]
    dst += (rgb - dst) * alpha


def _light_vector(lighting: Lighting) -> np.ndarray:
    az, el = math.radians(lighting.azimuth), math.radians(lighting.elevation)
    return np.array([math.sin(az) * math.cos(el), -math.sin(el), math.cos(az) * math.cos(el)], np.float32)


def _shade(normal: np.ndarray, light: np.ndarray, lighting: Lighting) -> tuple[np.ndarray, np.ndarray]:
    """Wrapped Lambert (soft terminator, like skin) plus a Blinn highlight; camera looks down -z."""
    ndotl = normal @ light
    wrap = 0.35
    diffuse = np.clip((ndotl + wrap) / (1 + wrap), 0, 1)
    # Light from above reaches up-facing surfaces more: a cheap sky term.
    sky = 0.5 + 0.5 * np.clip(-normal[..., 1], -1, 1)
    shade = lighting.ambient * (0.6 + 0.4 * sky) + lighting.intensity * diffuse
    half = light + np.array([0, 0, 1], np.float32)
    half /= np.linalg.norm(half)
    spec = lighting.intensity * np.clip(normal @ half, 0, 1) ** 24
    return shade.astype(np.float32), spec.astype(np.float32)


def make_background(size: tuple[int, int], seed: int) -> np.ndarray:
    """A seeded room-like background (RGB uint8): a soft gradient with blurred furniture-like shapes."""
    width, height = size
    rng = np.random.default_rng(seed)
    top = rng.uniform(0.35, 0.85, 3)
    bottom = top * rng.uniform(0.5, 0.9) + rng.uniform(-0.08, 0.08, 3)
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image = (top * (1 - t) + bottom * t) * np.ones((1, width, 1), np.float32)
    for _ in range(int(rng.integers(4, 9))):
        colour = np.clip(rng.uniform(0.15, 0.9, 3) * 0.6 + top * 0.4, 0, 1)
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        w, h = rng.uniform(0.1, 0.5) * width, rng.uniform(0.1, 0.6) * height
        layer = np.zeros((height, width), np.float32)
        if rng.random() < 0.6:
            cv2.rectangle(layer, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), (1.0,), -1)
        else:
            cv2.ellipse(layer, (int(x0), int(y0)), (int(w / 2), int(h / 2)), 0, 0, 360, (1.0,), -1)
        layer = cv2.GaussianBlur(layer, (0, 0), rng.uniform(2, 10)) * rng.uniform(0.4, 0.9)
        image = image * (1 - layer[..., None]) + colour * layer[..., None]
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def render_face(
    identity: Identity,
    pose: Pose = Pose(),
    expression: Expression = Expression(),
    lighting: Lighting = Lighting(),
    size: tuple[int, int] = (640, 480),
    background: np.ndarray | None = None,
    seed: int = 0,
) -> SyntheticFrame:
    """One frame of *identity* in *pose* with *expression* and *lighting*; *seed* picks background and noise."""
    if background is None:
        background = make_background(size, seed)
    return FaceRenderer(identity).render(pose, expression, lighting, background, size, noise_seed=seed)


@dataclass(frozen=True)
class MotionRanges:
    """How far a synthetic webcam subject moves (degrees / frame fractions) and how often it blinks and talks."""

    yaw: float = 28.0
    pitch: float = 15.0
    roll: float = 12.0
    shift: float = 0.06
    head_size: tuple[float, float] = (0.5, 0.62)
    blink_every_s: tuple[float, float] = (2.0, 5.0)
    talking: float = 0.5
    """Fraction of the time the mouth moves."""


def _smooth_signal(rng: np.random.Generator, times: np.ndarray, low_hz: float, high_hz: float) -> np.ndarray:
    """A smooth random signal in about [-1, 1]: a sum of sinusoids with random frequencies and phases."""
    count = 4
    freqs = rng.uniform(low_hz, high_hz, count)
    phases = rng.uniform(0, 2 * math.pi, count)
    amps = rng.uniform(0.5, 1.0, count)
    signal = sum(a * np.sin(2 * math.pi * f * times + p) for a, f, p in zip(amps, freqs, phases, strict=True))
    return signal / amps.sum() * 1.8


def render_sequence(
    identity: Identity,
    n_frames: int,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    fps: float = 30.0,
    motion: MotionRanges = MotionRanges(),
) -> list[SyntheticFrame]:
    """*n_frames* of *identity* moving like a person on a webcam: pose, expression and light vary smoothly."""
    return list(iter_sequence(identity, n_frames, size, seed, fps, motion))


def iter_sequence(
    identity: Identity,
    n_frames: int,
    size: tuple[int, int] = (640, 480),
    seed: int = 0,
    fps: float = 30.0,
    motion: MotionRanges = MotionRanges(),
) -> Iterator[SyntheticFrame]:
    """Like render_sequence, but yields frames one at a time (long videos need not fit in memory)."""
    if n_frames < 1:
        raise FaceError(f"n_frames must be >= 1, got {n_frames}")
    width, height = size
    if width < 64 or height < 64 or width % 2 or height % 2:
        raise FaceError(f"size must be even and at least 64x64, got {width}x{height}")
    rng = np.random.default_rng(seed)
    renderer = FaceRenderer(identity)
    background = make_background(size, int(rng.integers(1 << 31)))
    times = np.arange(n_frames) / fps

    def clipped(low: float, high: float) -> np.ndarray:
        return np.clip(_smooth_signal(rng, times, low, high), -1, 1)

    yaw = motion.yaw * clipped(0.05, 0.35)
    pitch = motion.pitch * clipped(0.05, 0.3)
    roll = motion.roll * clipped(0.05, 0.3)
    cx = 0.5 + motion.shift * clipped(0.03, 0.2)
    cy = 0.47 + motion.shift * clipped(0.03, 0.2)
    lo, hi = motion.head_size
    head = lo + (hi - lo) * (0.5 + 0.5 * clipped(0.02, 0.15))
    talk = np.clip(clipped(0.1, 0.4) + (motion.talking * 2 - 1), 0, None)
    mouth = np.clip(talk * (0.5 + 0.5 * np.abs(clipped(1.0, 3.0))), 0, 1)
    smile = 0.6 * clipped(0.02, 0.15)
    brow = np.clip(clipped(0.05, 0.3), 0, 1) * 0.6
    azimuth = 35 * clipped(0.01, 0.08)
    elevation = 30 + 15 * clipped(0.01, 0.08)
    intensity = 0.8 + 0.12 * clipped(0.01, 0.1)
    warmth = float(rng.uniform(-0.6, 0.6))
    blink = np.zeros(n_frames)
    next_blink = rng.uniform(0.3, motion.blink_every_s[1]) * fps
    while next_blink < n_frames:
        start = int(next_blink)
        for k, value in enumerate((0.5, 1.0, 1.0, 0.6, 0.2)):
            if start + k < n_frames:
                blink[start + k] = value
        next_blink += rng.uniform(*motion.blink_every_s) * fps

    for i in range(n_frames):
        pose = Pose(
            yaw=float(yaw[i]),
            pitch=float(pitch[i]),
            roll=float(roll[i]),
            centre=(float(cx[i]), float(cy[i])),
            head_size=float(head[i]),
        )
        expression = Expression(
            mouth_open=float(mouth[i]), blink=float(blink[i]), smile=float(smile[i]), brow_raise=float(brow[i])
        )
        lighting = Lighting(
            azimuth=float(azimuth[i]),
            elevation=float(elevation[i]),
            intensity=float(intensity[i]),
            warmth=warmth,
        )
        yield renderer.render(pose, expression, lighting, background, size, noise_seed=seed * 100003 + i)


def write_sequence_video(path: str | Path, frames: Iterable[SyntheticFrame], fps: float = 30.0) -> Path:
    """Write rendered frames as a video (.mp4/.mkv/.avi, or .y4m for chromium's fake camera)."""
    return write_video(path, (f.frame for f in frames), fps)

