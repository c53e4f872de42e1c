"""Training augmentation: random affine / flip / colour jitter on input and target alike, then a random
warp of the input only (on a coarse grid), so the decoder learns to make a clean face from a distorted one; and,
optionally, the input recoloured to the other identity's colours (`colour_swap`, applied by
training.faceset.make_side_batch, which holds both face sets).
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np


@dataclass(frozen=True)
class AugmentConfig:
    """Strengths of each augmentation; zero turns one off."""

    rotation_deg: float = 8.0
    """Largest rotation either way, in degrees."""
    scale: float = 0.05
    """Largest relative zoom in or out."""
    shift: float = 0.05
    """Largest shift as a fraction of the face size."""
    flip: bool = True
    """Mirror half the samples left-right."""
    warp_grid: int = 5
    """Control points per side of the coarse warp grid."""
    warp_strength: float = 0.025
    """Standard deviation of each control point's displacement, as a fraction of the face size."""
    brightness: float = 0.06
    """Largest brightness offset (in [0,1] units)."""
    contrast: float = 0.08
    """Largest relative contrast change."""
    channel_gain: float = 0.04
    """Largest per-channel gain change (a mild colour cast)."""
    colour_swap: float = 0.0
    """Share of inputs recoloured (Reinhard transfer inside the face) to a random face of the other identity,
    the target keeping its own colours: the encoder then describes lids, lips and pose apart from skin colour, in
    terms both decoders read alike. 0 turns it off."""

    def __post_init__(self) -> None:
        if self.warp_grid < 3:
            raise ValueError(f"warp_grid must be at least 3, got {self.warp_grid}")
        for name in ("rotation_deg", "scale", "shift", "warp_strength", "brightness", "contrast", "channel_gain"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must not be negative, got {getattr(self, name)}")
        if not 0 <= self.colour_swap <= 1:
            raise ValueError(f"--colour-swap must be in [0, 1], got {self.colour_swap}")


@dataclass(frozen=True)
class AugmentedSample:
    """One training sample: warped input, unwarped target, mask and keypoints all in the same frame."""

    input: np.ndarray  # (S,S,3) float32 [0,1]
    target: np.ndarray  # (S,S,3) float32 [0,1]
    mask: np.ndarray  # (S,S) float32 [0,1]
    keypoints: np.ndarray  # (5,2) float32 crop px, after the affine/flip


def random_affine(size: int, rng: np.random.Generator, config: AugmentConfig) -> tuple[np.ndarray, bool]:
    """A random rotation/scale/shift about the crop centre as a 2x3 matrix, and whether to flip."""
    angle = rng.uniform(-config.rotation_deg, config.rotation_deg)
    scale = 1.0 + rng.uniform(-config.scale, config.scale)
    matrix = cv2.getRotationMatrix2D((size / 2.0, size / 2.0), angle, scale)
    matrix[:, 2] += rng.uniform(-config.shift, config.shift, size=2) * size
    flip = bool(config.flip and rng.random() < 0.5)
    if flip:
        # mirror after the affine: x -> size - 1 - x
        matrix = np.array([[-1.0, 0.0, size - 1.0], [0.0, 1.0, 0.0]]) @ np.vstack([matrix, [0.0, 0.0, 1.0]])
    return matrix.astype(np.float64), flip


def random_warp(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Displace a coarse grid of control points at random and resample `image` smoothly through it."""
    size = image.shape[0]
    if config.warp_strength == 0:
        return image
    grid = config.warp_grid
    offsets = rng.normal(0.0, config.warp_strength * size, size=(grid, grid, 2)).astype(np.float32)
    # pin the border so the warp moves features inside the face, not the crop's edges
    offsets[0, :] = offsets[-1, :] = offsets[:, 0] = offsets[:, -1] = 0.0
    dense = cv2.resize(offsets, (size, size), interpolation=cv2.INTER_CUBIC)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    return cv2.remap(image, xs + dense[..., 0], ys + dense[..., 1], cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)


def colour_jitter(image: np.ndarray, rng: np.random.Generator, config: AugmentConfig) -> np.ndarray:
    """Random brightness, contrast and per-channel gain on a float image in [0,1]."""
    mean = image.mean()
    contrast = 1.0 + rng.uniform(-config.contrast, config.contrast)
    gains = 1.0 + rng.uniform(-config.channel_gain, config.channel_gain, size=3).astype(np.float32)
    offset = rng.uniform(-config.brightness, config.brightness)
    out = ((image - mean) * contrast + mean) * gains + offset
    return np.clip(out, 0.0, 1.0).astype(np.float32)


def augment_face(
    face: np.ndarray,
    mask: np.ndarray,
    keypoints: np.ndarray,
    rng: np.random.Generator,
    config: AugmentConfig,
) -> AugmentedSample:
    """Augment one aligned face (uint8 RGB) and its mask: the same affine/flip/colour on input and target,
    then the random warp on the input only."""
    size = face.shape[0]
    image = face.astype(np.float32) / 255.0
    image = colour_jitter(image, rng, config)
    matrix, flip = random_affine(size, rng, config)
    target = cv2.warpAffine(image, matrix, (size, size), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    out_mask = cv2.warpAffine(mask.astype(np.float32), matrix, (size, size), flags=cv2.INTER_LINEAR,
                              borderMode=cv2.BORDER_CONSTANT, borderValue=0.0)
    points = keypoints.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]
    if flip:
        # keep the contract's order (image-left first) after mirroring
        points = points[[1, 0, 2, 4, 3]]
    warped = random_warp(target, rng, config)
    return AugmentedSample(
        input=np.ascontiguousarray(warped, dtype=np.float32),
        target=np.ascontiguousarray(target, dtype=np.float32),
        mask=np.clip(out_mask, 0.0, 1.0),
        keypoints=points.astype(np.float32),
    )
