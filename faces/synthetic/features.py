"""Facial features painted per expression: eyes (open to blinking), brows (raised), mouth (smile, open, teeth).

Each frame copies the identity's static skin texture and paints these into the band from the brows to the lips.
A mouth may open past the talking range (up to MOUTH_OPEN_MAX: a yawn or a shout) and a grin (`teeth`) parts
the lips over both rows of teeth.
This is the home of anything that changes how a feature looks with expression (teeth in a smile, a wider mouth,
blinks); where a feature moves a keypoint, its position comes from faces.synthetic.geometry (`mouth_corners`).
"""

from __future__ import annotations

import math
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from faces.synthetic.controls import MOUTH_OPEN_MAX, Expression
from faces.synthetic.geometry import HeadGeometry
from faces.synthetic.texture import TEXELS_PER_UNIT, TexturePainter
from faces.types import Float32Array, Float64Array

MOUTH_GAP = 0.13
"""Gap between the lips (head units) at mouth_open 1."""
TEETH_GAP = 0.08
"""Gap between the lips (head units) that a full grin (teeth 1) adds, filled by the teeth."""


def lip_gaps(expression: Expression) -> tuple[float, float]:
    """(open mouth, grin) parts of the gap between the lips, in head units."""
    opening = MOUTH_GAP * float(np.clip(expression.mouth_open, 0, MOUTH_OPEN_MAX))
    return opening, TEETH_GAP * float(np.clip(expression.teeth, 0, 1))


class FeaturePainter:
    """Paints one identity's eyes, brows and mouth for an expression onto a copy of its skin texture."""

    def __init__(self, geometry: HeadGeometry, painter: TexturePainter) -> None:
        self.geometry = geometry
        self.identity = geometry.identity
        self.painter = painter

    def paint(self, base_albedo: Float32Array, expression: Expression) -> Float32Array:
        """The base albedo with eyes, brows and mouth drawn for this expression (a new array)."""
        d = self.identity
        # Only the band from brows to lips changes with expression: draw and blur within that band only.
        row0 = max(0, int((d.eye_y - d.brow_gap - 0.2 + d.head_height) * TEXELS_PER_UNIT))
        # A mouth opened past the talking range pushes the lower lip further down: the band grows with it.
        reach = 0.2 + max(0.0, sum(lip_gaps(expression)) - MOUTH_GAP)
        row1 = int((d.mouth_y + reach + d.head_height) * TEXELS_PER_UNIT)
        albedo = base_albedo.copy()
        band = albedo[row0:row1]
        blink = float(np.clip(expression.blink, 0, 1))
        for sign in (-1, 1):
            self._paint_eye(band, row0, sign, blink)
            self._paint_brow(band, row0, sign, expression.brow_raise)
        self._paint_mouth(band, row0, expression)
        band[:] = cv2.GaussianBlur(band, (0, 0), 0.7)
        return albedo

    def _eye_curves(self, sign: int, blink: float) -> tuple[Float64Array, Float64Array]:
        """Upper and lower lid lines of one eye (sign -1: image-left); blink 1 brings the upper onto the lower."""
        d = self.identity
        t = np.linspace(-1, 1, 25)
        xs = sign * d.eye_x + t * d.eye_width / 2
        tilt = d.eye_tilt * t * sign
        half = d.eye_height / 2
        lower = d.eye_y + 0.75 * half * (1 - t**2) ** 0.9 - tilt
        upper_open = d.eye_y - half * (1 - t**2) ** 0.7 - tilt + 0.08 * half * sign * t
        upper = upper_open + (lower - upper_open) * blink
        return np.stack([xs, upper], 1), np.stack([xs, lower], 1)

    def _paint_eye(self, albedo: Float32Array, row0: int, sign: int, blink: float) -> None:
        d = self.identity
        paint = self.painter
        upper, lower = self._eye_curves(sign, blink)
        crease_up, _ = self._eye_curves(sign, 0.0)
        crease = crease_up.copy()
        crease[:, 1] -= 0.035
        paint.line(albedo, crease[3:-3], tuple(np.array(d.skin) / 255 * 0.7), 0.012, row0=row0)
        if blink < 0.97:
            opening = np.vstack([upper, lower[::-1]])
            rows, cols, r0, c0 = paint.roi(albedo.shape, opening, row0, 3)
            roi = albedo[rows, cols]
            # Draw in the region of interest only: shift shapes by its corner (head units) and band row.
            shift = np.array([c0, 0]) / TEXELS_PER_UNIT
            row0 = row0 + r0
            opening = opening - shift
            mask = np.zeros(roi.shape[:2], np.float32)
            paint.fill(mask, opening, (1.0,), row0=row0)
            layer = np.zeros_like(roi)
            paint.fill(layer, opening, (0.88, 0.86, 0.83), row0=row0)
            centre = (sign * d.eye_x - shift[0], d.eye_y + 0.1 * d.eye_height)
            r = 0.2 * d.eye_width
            ring = np.array(
                [(centre[0] + r * math.cos(a), centre[1] + r * math.sin(a)) for a in np.linspace(0, 2 * math.pi, 40)]
            )
            iris = np.array(d.iris) / 255
            paint.fill(layer, ring, tuple(iris * 0.55), row0=row0)
            paint.fill(layer, (ring - centre) * 0.85 + centre, tuple(iris), row0=row0)
            paint.fill(layer, (ring - centre) * 0.45 + centre, (0.04, 0.03, 0.03), row0=row0)
            glint = (ring - centre) * 0.15 + centre + np.array([0.35 * r * sign * -1, -0.35 * r])
            paint.fill(layer, glint, (0.98, 0.98, 0.98), row0=row0)
            roi += (layer - roi) * mask[..., None]
            row0 = row0 - r0
        lash = 0.018 if blink < 0.5 else 0.012
        paint.line(albedo, upper, (0.08, 0.05, 0.05), lash, row0=row0)
        paint.line(albedo, lower[2:-2], tuple(np.array(d.skin) / 255 * 0.6), 0.006, row0=row0)

    def _paint_brow(self, albedo: Float32Array, row0: int, sign: int, raise_amount: float) -> None:
        d = self.identity
        t = np.linspace(0, 1, 20)
        xs = sign * (d.eye_x - 0.6 * d.eye_width + t * 1.2 * d.eye_width)
        centre_y = d.eye_y - d.brow_gap - 0.04 * raise_amount - d.brow_arch * np.sin(t * math.pi * 0.9 + 0.2)
        half = d.brow_thickness / 2 * (1.1 - 0.6 * t)
        top = np.stack([xs, centre_y - half], 1)
        bottom = np.stack([xs, centre_y + half], 1)
        shape = np.vstack([top, bottom[::-1]])
        rows, cols, r0, c0 = self.painter.roi(albedo.shape, shape, row0, 6)
        roi = albedo[rows, cols]
        layer = np.zeros(roi.shape[:2], np.float32)
        # Drawn in the region of interest only: shift the polygon by the region's corner (in head units).
        self.painter.fill(layer, shape - np.array([c0, 0]) / TEXELS_PER_UNIT, (1.0,), row0=row0 + r0)
        layer = np.asarray(cv2.GaussianBlur(layer, (0, 0), 1.5), dtype=np.float32)
        colour = np.array(d.brow, dtype=np.float32) / 255
        roi += (colour - roi) * (0.9 * layer[..., None])

    def _paint_mouth(self, albedo: Float32Array, row0: int, expression: Expression) -> None:
        d = self.identity
        paint = self.painter
        corners = self.geometry.mouth_corners(expression)
        w = corners[1, 0]
        cy = corners[0, 1]
        opening, grin = lip_gaps(expression)
        gap = opening + grin
        t = np.linspace(-1, 1, 31)
        xs = t * w
        bend = (1 - t**2) ** 0.8
        bow = 0.012 * np.exp(-((np.abs(t) - 0.3) ** 2) / 0.02) - 0.008 * np.exp(-(t**2) / 0.01)
        upper_top = cy - d.upper_lip * bend - bow
        upper_bottom = cy - 0.2 * gap * bend + 0.004 * bend
        lower_top = cy + gap * bend**1.2 + 0.002 * bend
        lower_bottom = lower_top + d.lower_lip * bend**0.8 + 0.003
        lips = np.array(d.lips, dtype=np.float32) / 255
        paint.fill(albedo, _band(xs, upper_top, xs, upper_bottom), tuple(lips * 0.92), row0=row0)
        paint.fill(albedo, _band(xs, lower_top, xs, lower_bottom), tuple(lips), row0=row0)
        if gap > 0.004:
            inside = _band(xs, upper_bottom, xs, lower_top)
            mask = np.zeros(albedo.shape[:2], np.float32)
            paint.fill(mask, inside, (1.0,), row0=row0)
            layer = np.zeros_like(albedo)
            paint.fill(layer, inside, (0.22, 0.07, 0.08), row0=row0)
            upper_teeth = min(0.3 * opening, 0.025) + 0.5 * grin
            teeth = _band(xs * 0.8, upper_bottom, xs * 0.8, upper_bottom + upper_teeth * bend)
            paint.fill(layer, teeth, (0.9, 0.88, 0.82), row0=row0)
            if grin > 0:
                # A grin bares the lower row too, a little narrower and in the upper row's shadow.
                lower_teeth = _band(xs * 0.72, lower_top - 0.35 * grin * bend, xs * 0.72, lower_top)
                paint.fill(layer, lower_teeth, (0.8, 0.78, 0.72), row0=row0)
            albedo[:] = albedo * (1 - mask[..., None]) + layer * mask[..., None]
        else:
            paint.line(albedo, np.stack([xs, cy + 0.002 * bend], 1), tuple(lips * 0.45), 0.008, row0=row0)


def _band(
    top_x: npt.NDArray[Any], top_y: npt.NDArray[Any], bottom_x: npt.NDArray[Any], bottom_y: npt.NDArray[Any]
) -> Float64Array:
    """The closed polygon between a top curve (left to right) and a bottom curve (drawn back right to left)."""
    return np.vstack([np.stack([top_x, top_y], 1), np.stack([bottom_x, bottom_y], 1)[::-1]])
