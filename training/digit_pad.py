"""The drawing pad's geometry and its reduction to the digit model's 16x16 input, as the page does it.

The Digits tab (clients/web/digits.js) draws strokes on a 280x280 canvas, white on black, with round caps at a
line width of 280/11 px, and reduces the canvas with `canvasToDigitInput`. `reduce_pad` here is the same
algorithm step for step, and `render_strokes` draws strokes the way the canvas does (antialiased coverage of a
round-capped line), so the trainer sees pad drawings as the page sends them. tests/clients/test_browser.py
draws strokes in Chromium and checks the page's 16x16 against `reduce_pad(render_strokes(...))`.

numpy and OpenCV only: no torch.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import cv2
import numpy as np

PAD_SIDE = 280
"""The pad canvas's width and height in canvas pixels (index.html's `<canvas id="pad">`)."""
PAD_LINE_WIDTH = PAD_SIDE / 11
"""The pen's line width in canvas pixels (digits.js: `pad.width / 11`)."""
DIGIT_SIDE = 16
"""The model input's side: 16x16 grey values."""
DIGIT_EXTENT = 14
"""The ink's longer side spans this many of the 16 pixels, centred (digits.js DIGIT_EXTENT)."""
INK_THRESHOLD = 0.1
"""Canvas pixels brighter than this count when finding the ink's bounding box."""

_SUBPIXEL_BITS = 4


def render_strokes(strokes: Sequence[np.ndarray], side: int = PAD_SIDE,
                   line_width: float = PAD_LINE_WIDTH) -> np.ndarray:
    """Strokes (each K x 2 canvas-pixel points, x then y; one point is a dot) as a side x side ink image.

    Each pixel's ink is the antialiased coverage of a round-capped line: clip(width/2 + 0.5 - distance from
    the pixel's centre to the stroke's centre line, 0, 1), the way a canvas fills a stroke. The centre line is
    rasterised at 1/16 px precision and measured with an exact Euclidean distance transform.
    """
    centre = np.full((side, side), 255, np.uint8)
    scale = 1 << _SUBPIXEL_BITS
    for stroke in strokes:
        points = np.asarray(stroke, np.float64).reshape(-1, 2)
        if len(points) == 0:
            continue
        # canvas coordinates put pixel centres at +0.5; OpenCV puts them at integers
        fixed = np.round((points - 0.5) * scale).astype(np.int32)
        if len(fixed) == 1:
            fixed = np.concatenate([fixed, fixed])
        cv2.polylines(centre, [fixed.reshape(-1, 1, 2)], False, 0, 1, cv2.LINE_8, _SUBPIXEL_BITS)
    if centre.min() == 255:
        return np.zeros((side, side), np.float32)
    distance = cv2.distanceTransform(centre, cv2.DIST_L2, cv2.DIST_MASK_PRECISE)
    return np.clip(line_width / 2 + 0.5 - distance, 0.0, 1.0).astype(np.float32)


def reduce_pad(canvas: np.ndarray) -> np.ndarray | None:
    """A pad image (H x W ink in [0,1], bright on dark) as the model's 16x16 input, or None when it is blank.

    digits.js `canvasToDigitInput`, step for step: the bounding box of pixels over INK_THRESHOLD; a square
    around the box's centre whose side is the box's longer side x 16/14, cut into 16x16 cells; each cell the mean
    of a grid of point samples (max(2, ceil(cell size)) per axis, sample positions floored to pixels; samples
    off the canvas count as 0).
    """
    ink = np.asarray(canvas, np.float32)
    height, width = ink.shape
    rows = np.flatnonzero((ink > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((ink > INK_THRESHOLD).any(axis=0))
    if len(rows) == 0:
        return None
    y0, y1, x0, x1 = int(rows[0]), int(rows[-1]), int(cols[0]), int(cols[-1])
    box = max(x1 - x0 + 1, y1 - y0 + 1)
    span = box * DIGIT_SIDE / DIGIT_EXTENT
    left = (x0 + x1 + 1) / 2 - span / 2
    top = (y0 + y1 + 1) / 2 - span / 2
    cell = span / DIGIT_SIDE
    steps = max(2, math.ceil(cell))
    offsets = (np.arange(steps) + 0.5) / steps
    # sample positions along each axis, grouped by output cell: (16, steps)
    xs = np.floor(left + (np.arange(DIGIT_SIDE)[:, None] + offsets[None, :]) * cell).astype(np.int64)
    ys = np.floor(top + (np.arange(DIGIT_SIDE)[:, None] + offsets[None, :]) * cell).astype(np.int64)
    x_inside = (xs >= 0) & (xs < width)
    y_inside = (ys >= 0) & (ys < height)
    samples = ink[np.clip(ys, 0, height - 1).reshape(-1)[:, None], np.clip(xs, 0, width - 1).reshape(-1)[None, :]]
    samples = samples * (y_inside.reshape(-1)[:, None] & x_inside.reshape(-1)[None, :])
    cells = samples.reshape(DIGIT_SIDE, steps, DIGIT_SIDE, steps).mean(axis=(1, 3))
    return np.clip(cells, 0.0, 1.0).astype(np.float32)


def strokes_to_digit(strokes: Sequence[np.ndarray], line_width: float = PAD_LINE_WIDTH) -> np.ndarray | None:
    """Strokes in pad pixels -> the 16x16 model input the page would send for them (None when nothing is drawn)."""
    return reduce_pad(render_strokes(strokes, line_width=line_width))
