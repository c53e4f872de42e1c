"""Animation: a synthetic person moving like someone on a webcam, as a sequence of frames (or a video file).

Pose, expression and light follow sums of slow sinusoids with seeded frequencies and phases; blinks come every few
seconds. How often a person blinks, how far they move, how wide they open the mouth, whether a smile shows the teeth
and how much the lids droop between blinks are fields of MotionRanges (the defaults keep the sequences every test
and the demo were made from); what a blink or a smile looks like is painted in faces.synthetic.features.
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
from faces.synthetic.controls import MOUTH_OPEN_MAX, Expression, Lighting, Pose, SyntheticFrame
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
    mouth_max: float = 1.0
    """Widest mouth opening while talking (1: as in speech; up to MOUTH_OPEN_MAX: wide open, a yawn or a shout)."""
    smile: float = 0.6
    """Largest smile (and frown) either way."""
    grin: float = 0.0
    """How much smiling bares the teeth (0: lips stay closed; 1: a full smile shows both rows)."""
    squint: float = 0.0
    """Slow lid lowering between blinks (0: none; 1: the lids come all the way down at times), so the eyes take
    every opening, not only open and shut."""

    def __post_init__(self) -> None:
        low, high = self.blink_every_s
        if not 0 < low <= high:
            raise FaceError(f"blink_every_s must be (min, max) seconds with 0 < min <= max, got {self.blink_every_s}")
        if not 0 < self.mouth_max <= MOUTH_OPEN_MAX:
            raise FaceError(f"mouth_max must be in (0, {MOUTH_OPEN_MAX}], got {self.mouth_max}")
        for name in ("talking", "smile", "grin", "squint"):
            if not 0 <= getattr(self, name) <= 1:
                raise FaceError(f"{name} must be in [0, 1], got {getattr(self, name)}")


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
    mouth = np.clip(talk * (0.5 + 0.5 * np.abs(clipped(1.0, 3.0))), 0, 1) * motion.mouth_max
    smile = motion.smile * clipped(0.02, 0.15)
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
    # The features added later draw from a generator of their own, so the ones above stay as they were.
    extra = np.random.default_rng([seed, 0xFEA7])
    if motion.squint > 0:
        lids = np.clip(_smooth_signal(extra, times, 0.1, 0.5), 0, 1) * motion.squint
        blink = np.maximum(blink, lids)
    # a grin bares the teeth fully from two thirds of the largest smile on
    teeth = motion.grin * np.clip(1.5 * smile / max(motion.smile, 1e-6), 0, 1)

    for i in range(n_frames):
        pose = Pose(
            yaw=float(yaw[i]),
            pitch=float(pitch[i]),
            roll=float(roll[i]),
            centre=(float(cx[i]), float(cy[i])),
            head_size=float(head[i]),
        )
        expression = Expression(
            mouth_open=float(mouth[i]), blink=float(blink[i]), smile=float(smile[i]), brow_raise=float(brow[i]),
            teeth=float(teeth[i]),
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
