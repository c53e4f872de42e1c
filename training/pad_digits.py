"""Pad-like training digits: the scans' skeletons redrawn as pen strokes on the pad, then reduced as the page does.

A scikit-learn scan (8x8, thick and blurry) is upsampled to 32x32, thresholded and thinned to a one-pixel
skeleton; the skeleton's pixels become the nodes of a stroke graph (neighbouring pixels joined). Each variant
moves the nodes by a smooth random (elastic) displacement, moves the digit's middle up or down, rotates, slants
and stretches it, puts serifs on some stroke ends, places it at a random size and position on the 280x280 pad,
draws the graph at about the pad's line width, and reduces the pad to 16x16 with
`training.digit_pad.reduce_pad`, the page's own reduction. Everything follows from the seed. The ranges and
how they were chosen are in docs/training.md.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from training.digit_pad import DIGIT_SIDE, PAD_LINE_WIDTH, PAD_SIDE, strokes_to_digit

SKELETON_SIDE = 32
"""The grid the 8x8 scans are upsampled to before thinning."""
_NEIGHBOURS = ((0, 1), (1, 0), (1, 1), (1, -1))


@dataclass(frozen=True)
class PadJitter:
    """How far pad-like variants stray from their scan (uniform ranges, in the units named)."""

    threshold: tuple[float, float] = (0.35, 0.55)
    """Ink threshold before thinning, as a share of the upsampled scan's maximum."""
    elastic: float = 0.035
    """Standard deviation of the smooth random displacement, as a share of the digit's box."""
    rotation_deg: float = 8.0
    """Largest rotation, both ways."""
    balance: float = 0.7
    """Moves the digit's middle up or down by up to balance/4 of its height (a bigger top or bottom half)."""
    slant: float = 0.35
    """Horizontal shear: x moves by slant x (height above the centre), both signs."""
    aspect: tuple[float, float] = (0.75, 1.25)
    """Width multiplier after slanting."""
    height: tuple[float, float] = (0.3, 0.9)
    """The digit's height as a share of the pad's side."""
    line_width: tuple[float, float] = (0.85, 1.15)
    """Multiplier of the pad's line width."""
    serif: float = 0.25
    """Chance that a stroke end gets a serif: a short horizontal bar across it (any digit, any end)."""
    serif_length: tuple[float, float] = (0.2, 0.45)
    """A serif's length as a share of the digit's height."""


def scan_skeleton(scan: np.ndarray, threshold: float) -> tuple[np.ndarray, np.ndarray]:
    """A scan's one-pixel skeleton as a stroke graph: nodes (K x 2 grid cells, row then column) and edges (E x 2).

    `scan` is any small grey image, ink bright; it is upsampled to SKELETON_SIDE, smoothed, thresholded at
    `threshold` x its maximum and thinned. Neighbouring skeleton pixels (8-connected) are joined by an edge.
    """
    from skimage.morphology import skeletonize

    big = cv2.resize(np.asarray(scan, np.float32), (SKELETON_SIDE, SKELETON_SIDE), interpolation=cv2.INTER_CUBIC)
    big = cv2.GaussianBlur(big, (0, 0), 1.0)
    skeleton = skeletonize(big > threshold * float(big.max()))
    nodes = np.argwhere(skeleton)
    index = np.full((SKELETON_SIDE + 2, SKELETON_SIDE + 2), -1, np.int64)  # one cell of padding all round
    index[nodes[:, 0] + 1, nodes[:, 1] + 1] = np.arange(len(nodes))
    edges = []
    for d_row, d_col in _NEIGHBOURS:
        other = index[nodes[:, 0] + 1 + d_row, nodes[:, 1] + 1 + d_col]
        joined = other >= 0
        edges.append(np.stack([np.flatnonzero(joined), other[joined]], axis=1))
    return nodes, np.concatenate(edges)


def _elastic(nodes: np.ndarray, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Node positions (x, y in skeleton cells) moved by a smooth random field: a 4x4 grid of N(0, sigma) shifts
    upsampled bicubically over the skeleton grid."""
    field = rng.normal(0.0, sigma * SKELETON_SIDE, size=(2, 4, 4)).astype(np.float32)
    dx = cv2.resize(field[0], (SKELETON_SIDE, SKELETON_SIDE), interpolation=cv2.INTER_CUBIC)
    dy = cv2.resize(field[1], (SKELETON_SIDE, SKELETON_SIDE), interpolation=cv2.INTER_CUBIC)
    rows, cols = nodes[:, 0], nodes[:, 1]
    return np.stack([cols + 0.5 + dx[rows, cols], rows + 0.5 + dy[rows, cols]], axis=1)


def _serifs(points: np.ndarray, edges: np.ndarray, rng: np.random.Generator, jitter: PadJitter,
            height: float) -> list[np.ndarray]:
    """Short horizontal bars across some stroke ends (skeleton nodes with one neighbour), as in a printed 1 or 7."""
    degree = np.bincount(edges.reshape(-1), minlength=len(points)) if len(edges) else np.zeros(len(points), int)
    bars = []
    for end in np.flatnonzero(degree == 1):
        if rng.random() < jitter.serif:
            half = rng.uniform(*jitter.serif_length) * height / 2
            bars.append(points[end] + np.array([[-half, 0.0], [half, 0.0]]))
    return bars


def render_pad_variant(scan: np.ndarray, rng: np.random.Generator, jitter: PadJitter = PadJitter()) -> np.ndarray | None:
    """One pad-like 16x16 drawing of `scan` (None when its skeleton is empty)."""
    nodes, edges = scan_skeleton(scan, rng.uniform(*jitter.threshold))
    if len(nodes) == 0:
        return None
    points = _elastic(nodes, rng, jitter.elastic)
    points -= (points.min(axis=0) + points.max(axis=0)) / 2
    # y in [-1/2, 1/2] of the height moves by balance x (1/4 - y^2): ends stay, the middle moves most
    tall = max(float(np.ptp(points[:, 1])), 1.0)
    relative = points[:, 1] / tall
    points[:, 1] += rng.uniform(-jitter.balance, jitter.balance) * (0.25 - relative ** 2) * tall
    angle = np.deg2rad(rng.uniform(-jitter.rotation_deg, jitter.rotation_deg))
    cos, sin = np.cos(angle), np.sin(angle)
    points = points @ np.array([[cos, sin], [-sin, cos]])
    points[:, 0] = (points[:, 0] - rng.uniform(-jitter.slant, jitter.slant) * points[:, 1]) * rng.uniform(*jitter.aspect)
    extent = points.max(axis=0) - points.min(axis=0)
    height = rng.uniform(*jitter.height) * PAD_SIDE
    points *= height / max(float(extent[1]), 1.0)
    width = float(points[:, 0].max() - points[:, 0].min())
    if width > 0.9 * PAD_SIDE:  # a wide, slanted digit must still fit on the pad
        points *= 0.9 * PAD_SIDE / width
    segments = [points[edge] for edge in edges] if len(edges) else [points]
    segments += _serifs(points, edges, rng, jitter, height)
    everything = np.concatenate(segments)
    low, high = everything.min(axis=0), everything.max(axis=0)
    margin = PAD_LINE_WIDTH
    centre = np.array([rng.uniform(margin - low[axis], PAD_SIDE - margin - high[axis])
                       if PAD_SIDE - margin - high[axis] > margin - low[axis] else PAD_SIDE / 2
                       for axis in (0, 1)])
    return strokes_to_digit([segment + centre for segment in segments],
                            line_width=PAD_LINE_WIDTH * rng.uniform(*jitter.line_width))


def pad_like_digits(scans: np.ndarray, labels: np.ndarray, variants: int, seed: int,
                    jitter: PadJitter = PadJitter()) -> tuple[np.ndarray, np.ndarray]:
    """`variants` pad-like drawings of every scan: x float32 (N, 256), y int64 (N,); deterministic in `seed`."""
    rng = np.random.default_rng(seed)
    images: list[np.ndarray] = []
    targets: list[int] = []
    for scan, label in zip(scans, labels):
        for _ in range(variants):
            drawn = render_pad_variant(scan, rng, jitter)
            if drawn is not None:
                images.append(drawn.reshape(DIGIT_SIDE * DIGIT_SIDE))
                targets.append(int(label))
    if not images:
        return np.zeros((0, DIGIT_SIDE * DIGIT_SIDE), np.float32), np.zeros(0, np.int64)
    return np.stack(images).astype(np.float32), np.asarray(targets, np.int64)
