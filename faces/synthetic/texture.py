"""Textures of a synthetic head, painted once per identity: skin, hair and the height field as maps.

Textures are images indexed by head units (TEXELS_PER_UNIT texels per unit; row 0 at the top of the head).
`TexturePainter` draws anti-aliased shapes given in head units onto them; `paint_textures` makes the parts that
never change with expression (skin with blotches, pores, blush, folds and nostrils, the face and hair alpha, the
hair shell behind the head). Eyes, brows and mouth are painted per expression in faces.synthetic.features.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import numpy.typing as npt

from faces.synthetic.geometry import HeadGeometry, gauss
from faces.synthetic.identity import Identity
from faces.types import Float32Array

TEXELS_PER_UNIT = 200
"""Texture resolution: texels per head unit (a 640x480 frame shows about 100 px per unit)."""
HAIR_SHELL_TEXELS = 512
"""Side of the hair shell's texture (it wraps a larger ellipsoid behind the head)."""

Colour = tuple[float, ...]


def identity_seed(identity: Identity) -> int:
    """The seed of everything random in an identity's textures and noise: stable across runs and machines."""
    return int.from_bytes(hashlib.sha256(identity.name.encode()).digest()[:4], "little")


def texture_coordinates(x: Float32Array, y: Float32Array, head_height: float) -> tuple[Float32Array, Float32Array]:
    """Head-unit (x, y) -> texture (column, row) as float32 maps for cv2.remap."""
    mx = (x + np.float32(1.0)) * np.float32(TEXELS_PER_UNIT) - np.float32(0.5)
    my = (y + np.float32(head_height)) * np.float32(TEXELS_PER_UNIT) - np.float32(0.5)
    return mx, my


class TexturePainter:
    """Anti-aliased drawing of head-unit shapes onto a texture, or onto a band of it starting at row `row0`."""

    def __init__(self, head_height: float) -> None:
        self.head_height = head_height

    def texels(self, xy: npt.NDArray[Any], row0: int = 0) -> npt.NDArray[np.int32]:
        """Head units -> texture pixels (of a band starting at *row0*), fixed-point with 4 fractional bits."""
        xy = np.asarray(xy, dtype=np.float64)
        px = (xy[..., 0] + 1.0) * TEXELS_PER_UNIT - 0.5
        py = (xy[..., 1] + self.head_height) * TEXELS_PER_UNIT - 0.5 - row0
        fixed_point: npt.NDArray[np.int32] = np.round(np.stack([px, py], axis=-1) * 16).astype(np.int32)
        return fixed_point

    def fill(self, img: npt.NDArray[Any], xy: npt.NDArray[Any], colour: Colour, row0: int = 0) -> None:
        """Fill the polygon *xy* with *colour*, in place."""
        colour = tuple(float(v) for v in colour)
        cv2.fillPoly(img, [self.texels(xy, row0)], colour, lineType=cv2.LINE_AA, shift=4)

    def line(self, img: npt.NDArray[Any], xy: npt.NDArray[Any], colour: Colour, width: float, row0: int = 0) -> None:
        """Draw the open polyline *xy*, *width* head units thick, in place."""
        thickness = max(1, int(round(width * TEXELS_PER_UNIT)))
        colour = tuple(float(v) for v in colour)
        cv2.polylines(img, [self.texels(xy, row0)], False, colour, thickness, lineType=cv2.LINE_AA, shift=4)

    def roi(
        self, shape: tuple[int, ...], xy: npt.NDArray[Any], row0: int, margin: int
    ) -> tuple[slice, slice, int, int]:
        """Rows/cols of an image of *shape* (a texture band from *row0*) covering *xy* plus *margin* texels."""
        px = self.texels(xy, row0) / 16
        c0, r0 = np.floor(px.min(axis=0)).astype(int) - margin
        c1, r1 = np.ceil(px.max(axis=0)).astype(int) + margin
        r0, c0 = max(0, int(r0)), max(0, int(c0))
        r1, c1 = min(shape[0], int(r1)), min(shape[1], int(c1))
        return slice(r0, r1), slice(c0, c1), r0, c0


@dataclass(frozen=True, eq=False)
class FaceTextures:
    """The maps of one identity that no expression changes."""

    height: Float32Array
    """(rows, cols) height field sampled on the texture grid."""
    bump: Float32Array
    """(rows, cols, 3): height and its x and y gradients, for bump mapping."""
    albedo: Float32Array
    """(rows, cols, 3) RGB in [0, 1]: skin and hair, without eyes, brows and mouth."""
    alpha: Float32Array
    """(rows, cols) coverage: the face outline and the hair region; 0 outside the ellipsoid."""
    hair_shell: Float32Array
    """(HAIR_SHELL_TEXELS, HAIR_SHELL_TEXELS, 3) RGB albedo of the hair shell behind the head."""


def paint_textures(geometry: HeadGeometry, painter: TexturePainter) -> FaceTextures:
    """Sample the height field and paint skin, hair and the hair shell of *geometry*'s identity."""
    identity = geometry.identity
    seed = identity_seed(identity)
    rows = int(round(2 * identity.head_height * TEXELS_PER_UNIT))
    cols = 2 * TEXELS_PER_UNIT
    jj, ii = np.meshgrid(np.arange(cols), np.arange(rows))
    x = ((jj + 0.5) / TEXELS_PER_UNIT - 1.0).astype(np.float32)
    y = ((ii + 0.5) / TEXELS_PER_UNIT - identity.head_height).astype(np.float32)
    height = geometry.height(x, y).astype(np.float32)
    gy, gx = np.gradient(height, 1.0 / TEXELS_PER_UNIT)
    albedo, alpha = _paint_skin(geometry, painter, x, y, np.random.default_rng(seed))
    return FaceTextures(
        height=height,
        bump=np.dstack([height, gx, gy]).astype(np.float32),
        albedo=albedo,
        alpha=alpha,
        hair_shell=_paint_hair_shell(identity, np.random.default_rng(seed + 1)),
    )


def _paint_skin(
    geometry: HeadGeometry, painter: TexturePainter, x: Float32Array, y: Float32Array, rng: np.random.Generator
) -> tuple[Float32Array, Float32Array]:
    """Albedo and alpha of the face texture: skin and hair; *rng* makes the blotches, pores and hair strands."""
    d = geometry.identity
    rows, cols = x.shape
    skin = np.array(d.skin, dtype=np.float32) / 255
    # Low-frequency blotches and fine pores keep the skin from looking like plastic (and give it texture).
    blotch = _blurred_noise(rng, (rows, cols), 12) * 6
    pores = _blurred_noise(rng, (rows, cols), 1.2) * 0.9
    albedo = skin[None, None, :] * (1 + 0.05 * blotch + 0.05 * pores)[..., None]
    blush = 0.5 * (gauss(x, y, -0.5, 0.28, 0.13, 0.1) + gauss(x, y, 0.5, 0.28, 0.13, 0.1))
    albedo = albedo * (1 - 0.12 * blush[..., None]) + np.array([0.85, 0.35, 0.35]) * 0.12 * blush[..., None]
    # Darker skin around the eyes and in the nasolabial folds.
    around_eyes = gauss(x, y, -d.eye_x, d.eye_y - 0.01, 0.13, 0.07) + gauss(
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
        painter.line(fold, pts, (1.0,), 0.02)
    albedo *= (1 - 0.12 * _blur(fold, 5))[..., None]
    for sign in (-1, 1):
        nostril = np.array(
            [
                (sign * 0.42 * d.nose_width + 0.028 * math.cos(t), d.nose_y + 0.05 + 0.014 * math.sin(t))
                for t in np.linspace(0, 2 * math.pi, 24, endpoint=False)
            ]
        )
        painter.fill(albedo, nostril, (0.18, 0.09, 0.08))

    alpha = np.zeros((rows, cols), np.float32)
    painter.fill(alpha, geometry.outline, (1.0,))
    hair_mask = _hair_region(d, x, y)
    hair = _hair_albedo(d, (rows, cols), rng)
    albedo = albedo * (1 - hair_mask[..., None]) + hair * hair_mask[..., None]
    alpha = np.maximum(alpha, hair_mask)
    # Skin texture inside the ellipsoid only; outside it the head has no surface.
    inside = ((x**2) + (y / d.head_height) ** 2) < 0.995
    alpha *= inside
    albedo = _blur(albedo.astype(np.float32), 0.8)
    return np.clip(albedo, 0, 1).astype(np.float32), _blur(alpha, 1.0)


def _hair_region(d: Identity, x: Float32Array, y: Float32Array) -> Float32Array:
    """Coverage of the hair on the face texture: above the hairline, at the sides, strands for long hair."""
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
    return _blur(region, 3)


def _hair_albedo(d: Identity, shape: tuple[int, int], rng: np.random.Generator) -> Float32Array:
    """Hair colour with vertical strands (noise blurred along y much more than x)."""
    noise = rng.normal(0, 1, shape).astype(np.float32)
    strands = _blur(noise, 1.2, 9) * 4
    base = np.array(d.hair, dtype=np.float32) / 255
    return np.asarray(base[None, None, :] * (1 + 0.25 * np.clip(strands, -2, 2))[..., None] + 0.02, np.float32)


def _paint_hair_shell(d: Identity, rng: np.random.Generator) -> Float32Array:
    """Albedo of the hair shell behind the head (indexed like the face texture, larger extent)."""
    size = HAIR_SHELL_TEXELS
    noise = rng.normal(0, 1, (size, size)).astype(np.float32)
    strands = _blur(noise, 1.5, 12) * 4
    base = np.array(d.hair, dtype=np.float32) / 255
    return np.clip(base[None, None, :] * (1 + 0.3 * np.clip(strands, -2, 2))[..., None] + 0.02, 0, 1)


def _blurred_noise(rng: np.random.Generator, shape: tuple[int, int], sigma: float) -> Float32Array:
    return _blur(rng.normal(0, 1, shape).astype(np.float32), sigma)


def _blur(image: Float32Array, sigma_x: float, sigma_y: float = 0.0) -> Float32Array:
    """cv2.GaussianBlur with the kernel size from sigma (sigma_y 0: the same as sigma_x); float32 in and out."""
    return np.asarray(cv2.GaussianBlur(image, (0, 0), sigmaX=sigma_x, sigmaY=sigma_y), dtype=np.float32)
