"""Animation: a synthetic person moving like someone on a webcam, as a sequence of frames (or a video file).

Pose, expression and light follow sums of slow sinusoids with seeded frequencies and phases; blinks come every few
seconds. How often a person blinks or how far they move is a field of MotionRanges; what a blink or a smile looks
like is painted in faces.synthetic.features.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from faces.errors import FaceError
from faces.media import write_video
from faces.synthetic.background import make_background
from faces.synthetic.controls import Expression, Lighting, Pose, SyntheticFrame
from faces.synthetic.identity import Identity
from faces.synthetic.renderer import FaceRenderer
from faces.types import Float64Array


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


def _smooth_signal(rng: np.random.Generator, times: Float64Array, low_hz: float, high_hz: float) -> Float64Array:
    """A smooth random signal in about [-1, 1]: a sum of sinusoids with random frequencies and phases."""
    count = 4
    freqs = rng.uniform(low_hz, high_hz, count)
    phases = rng.uniform(0, 2 * math.pi, count)
    amps = rng.uniform(0.5, 1.0, count)
    signal = sum(a * np.sin(2 * math.pi * f * times + p) for a, f, p in zip(amps, freqs, phases, strict=True))
    smooth: Float64Array = signal / amps.sum() * 1.8
    return smooth


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

    def clipped(low: float, high: float) -> Float64Array:
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
