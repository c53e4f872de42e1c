"""Ray casting for the orthographic camera: which pixels an ellipsoid covers, their view rays and the hits.

Each pixel's ray starts on the camera-space z=0 plane and runs along the camera's viewing axis; everything is
expressed in head coordinates (the camera is rotated, not the head), in float32 for speed.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from faces.types import Float32Array, Float64Array

Region = tuple[int, int, int, int]
"""A pixel rectangle (x0, y0, x1, y1), x1 and y1 exclusive."""


@dataclass(frozen=True, eq=False)
class Camera:
    """Where the head sits in the frame: its rotation, pixels per head unit and the head centre in pixels."""

    rotation: Float64Array
    scale: float
    centre: Float64Array


def pixel_region(camera: Camera, axes: Float64Array, offset: Float64Array, shape: tuple[int, ...]) -> Region | None:
    """Pixel rectangle covering the projection of a rotated, offset ellipsoid; None when it is off the frame."""
    height, width = shape[:2]
    rot, scale, centre = camera.rotation, camera.scale, camera.centre
    # Half extent of a rotated ellipsoid along camera axis i: sqrt(sum_j (R_ij * axis_j)^2).
    half = np.sqrt(((rot[:2, :] * axes[None, :]) ** 2).sum(axis=1)) * scale + 2
    mid = (rot @ offset)[:2] * scale + centre
    x0, y0 = max(0, int(mid[0] - half[0])), max(0, int(mid[1] - half[1]))
    x1, y1 = min(width, int(mid[0] + half[0]) + 1), min(height, int(mid[1] + half[1]) + 1)
    return None if x0 >= x1 or y0 >= y1 else (x0, y0, x1, y1)


def view_rays(region: Region, camera: Camera) -> tuple[list[Float32Array], Float32Array]:
    """Ray origins per axis (head coordinates, on the camera-space z=0 plane) and the shared direction."""
    x0, y0, x1, y1 = region
    rot, scale, centre = camera.rotation, camera.scale, camera.centre
    xs = (np.arange(x0, x1, dtype=np.float32) + 0.5 - np.float32(centre[0])) / np.float32(scale)
    ys = (np.arange(y0, y1, dtype=np.float32) + 0.5 - np.float32(centre[1])) / np.float32(scale)
    qx, qy = np.meshgrid(xs, ys)
    origins = [np.float32(rot[0, i]) * qx + np.float32(rot[1, i]) * qy for i in range(3)]
    return origins, rot[2, :].astype(np.float32)


def intersect_ellipsoid(
    origins: list[Float32Array],
    direction: Float32Array,
    axes: Float64Array,
    offset: Float64Array,
    z_lift: Float32Array | float,
) -> tuple[list[Float32Array], Float32Array]:
    """Nearest-to-camera hit of each ray with an ellipsoid raised by *z_lift*: (x, y, z), chord length."""
    inv = [np.float32(1.0 / float(a) ** 2) for a in axes]
    m = [
        origins[0] - np.float32(offset[0]),
        origins[1] - np.float32(offset[1]),
        origins[2] - np.float32(offset[2]) - z_lift,
    ]
    a = float(sum(float(direction[i]) ** 2 * float(inv[i]) for i in range(3)))
    b = m[0] * (direction[0] * inv[0]) + m[1] * (direction[1] * inv[1]) + m[2] * (direction[2] * inv[2])
    c = m[0] * m[0] * inv[0] + m[1] * m[1] * inv[1] + m[2] * m[2] * inv[2] - 1
    disc = b * b - np.float32(a) * c
    root = np.sqrt(np.maximum(disc, 0))
    t = (root - b) / np.float32(a)
    hits = [origins[i] + t * direction[i] for i in range(3)]
    return hits, 2 * root / np.float32(a)
