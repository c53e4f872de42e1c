"""Light and shading: a directional light, wrapped Lambert plus a sky term and a Blinn highlight; compositing."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from faces.synthetic.controls import Lighting
from faces.synthetic.raycast import Region
from faces.types import Float32Array


@dataclass(frozen=True, eq=False)
class Light:
    """A frame's light: its settings, the unit vector towards it (camera space) and its RGB colour."""

    lighting: Lighting
    direction: Float32Array
    colour: Float32Array

    @classmethod
    def of(cls, lighting: Lighting) -> Light:
        """The light of *lighting*: direction from azimuth and elevation, colour from warmth."""
        az, el = math.radians(lighting.azimuth), math.radians(lighting.elevation)
        direction = np.array([math.sin(az) * math.cos(el), -math.sin(el), math.cos(az) * math.cos(el)], np.float32)
        colour = np.array([1 + 0.08 * lighting.warmth, 1.0, 1 - 0.1 * lighting.warmth], np.float32)
        return cls(lighting, direction, colour)


def shade(normal: Float32Array, light: Light) -> tuple[Float32Array, Float32Array]:
    """Wrapped Lambert (soft terminator, like skin) plus a Blinn highlight; camera looks down -z."""
    lighting = light.lighting
    ndotl = normal @ light.direction
    wrap = 0.35
    diffuse = np.clip((ndotl + wrap) / (1 + wrap), 0, 1)
    # Light from above reaches up-facing surfaces more: a cheap sky term.
    sky = 0.5 + 0.5 * np.clip(-normal[..., 1], -1, 1)
    shading = lighting.ambient * (0.6 + 0.4 * sky) + lighting.intensity * diffuse
    half = light.direction + np.array([0, 0, 1], np.float32)
    half /= np.linalg.norm(half)
    spec = lighting.intensity * np.clip(normal @ half, 0, 1) ** 24
    return shading.astype(np.float32), spec.astype(np.float32)


def blend(
    image: Float32Array, region: Region, rgb: npt.NDArray[np.floating[Any]], alpha: npt.NDArray[np.floating[Any]]
) -> None:
    """Composite *rgb* with coverage *alpha* over *image* inside *region* (in place)."""
    x0, y0, x1, y1 = region
    dst = image[y0:y1, x0:x1]
    coverage = alpha.astype(np.float32)[..., None]
    dst += (rgb - dst) * coverage
