"""FaceRenderer: one frame of one identity, from the geometry, textures, features, layers and light of this package.

A frame is made in this order: background; body, hair shell and head layers (faces.synthetic.layers) under the
frame's light; the expression's eyes, brows and mouth painted onto the head's texture first
(faces.synthetic.features); glasses, if the identity wears them; then light sensor noise. The ground truth (keypoints, outline) is the geometry's
feature positions projected with the same camera.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from faces.errors import FaceError
from faces.synthetic.background import make_background
from faces.synthetic.controls import Expression, Lighting, Pose, SyntheticFrame
from faces.synthetic.features import FeaturePainter
from faces.synthetic.geometry import HeadGeometry, rotation_matrix
from faces.synthetic.identity import Identity
from faces.synthetic.layers import draw_body, draw_glasses, draw_hair_shell, draw_head
from faces.synthetic.raycast import Camera
from faces.synthetic.shading import Light
from faces.synthetic.texture import TexturePainter, identity_seed, paint_textures
from faces.types import Float32Array


NOISE_SIGMA = 1.6 / 255
"""Standard deviation of the sensor noise added to every frame (RGB in [0, 1])."""
_NOISE_MARGIN = 32


class FaceRenderer:
    """Renders one identity; builds its geometry and static textures once, so sequences render fast.

    `geometry` (faces.synthetic.geometry.HeadGeometry) gives the head's shape and feature positions in head units.
    """

    def __init__(self, identity: Identity) -> None:
        self.identity = identity
        self.geometry = HeadGeometry(identity)
        painter = TexturePainter(identity.head_height)
        self.textures = paint_textures(self.geometry, painter)
        self.features = FeaturePainter(self.geometry, painter)
        self._noise_seed = identity_seed(identity) + 2
        self._noise: Float32Array | None = None

    def render(
        self,
        pose: Pose,
        expression: Expression = Expression(),
        lighting: Lighting = Lighting(),
        background: npt.NDArray[np.uint8] | None = None,
        size: tuple[int, int] = (640, 480),
        noise_seed: int | None = 0,
    ) -> SyntheticFrame:
        """One frame of this identity; *background* (RGB uint8 of *size*) defaults to a plain gradient."""
        width, height = size
        if background is None:
            background = make_background(size, seed=0)
        if background.shape != (height, width, 3):
            raise FaceError(f"background must have shape {(height, width, 3)}, got {background.shape}")
        scale, centre = self.geometry.placement(pose, size)
        camera = Camera(rotation_matrix(pose.yaw, pose.pitch, pose.roll), scale, centre)
        light = Light.of(lighting)
        image = background.astype(np.float32) / 255
        draw_body(image, self.identity, camera, light)
        draw_hair_shell(image, self.identity, self.textures.hair_shell, camera, light)
        albedo = self.features.paint(self.textures.albedo, expression)
        draw_head(image, self.geometry, self.textures, albedo, camera, light)
        if self.identity.glasses is not None:
            draw_glasses(image, self.geometry, self.identity.glasses, camera, light, pose.yaw)
        if noise_seed is not None:
            # Sensor noise (a camera never gives perfectly flat regions): a random window of a fixed noise field,
            # much cheaper than fresh noise per frame.
            field = self._noise_field(height + _NOISE_MARGIN, width + _NOISE_MARGIN)
            dx, dy = np.random.default_rng(noise_seed).integers(0, _NOISE_MARGIN, 2)
            image += field[dy : dy + height, dx : dx + width]
        frame = (np.clip(image, 0, 1) * 255 + 0.5).astype(np.uint8)
        geometry = self.geometry
        keypoints = geometry.project(geometry.surface_points(geometry.keypoints(expression)), pose, size)
        outline = geometry.project(geometry.surface_points(geometry.outline), pose, size)
        return SyntheticFrame(
            frame=frame,
            keypoints=keypoints.astype(np.float32),
            outline=outline.astype(np.float32),
            pose=pose,
            expression=expression,
        )

    def _noise_field(self, height: int, width: int) -> Float32Array:
        """Gaussian noise (sigma NOISE_SIGMA) of at least height x width, made once per size."""
        field = self._noise
        if field is None or field.shape[0] < height or field.shape[1] < width:
            rng = np.random.default_rng(self._noise_seed)
            field = rng.standard_normal((height, width, 3), dtype=np.float32) * np.float32(NOISE_SIGMA)
            self._noise = field
        return field


def render_face(
    identity: Identity,
    pose: Pose = Pose(),
    expression: Expression = Expression(),
    lighting: Lighting = Lighting(),
    size: tuple[int, int] = (640, 480),
    background: npt.NDArray[np.uint8] | None = None,
    seed: int = 0,
) -> SyntheticFrame:
    """One frame of *identity* in *pose* with *expression* and *lighting*; *seed* picks background and noise."""
    if background is None:
        background = make_background(size, seed)
    return FaceRenderer(identity).render(pose, expression, lighting, background, size, noise_seed=seed)
