"""The drawn test set: digits written by hand as pen paths on the pad (training/data/drawn_digits.json).

Five styles per digit (a 1 with and without serifs, crossed 7s, open and closed 4s, round and angular 2s, ...),
each drawn in every variant of the file (upright, slanted, small and wide). They are not made from the training
data. `drawn_digits()` expands them into pad-pixel polylines, the paths a pointer follows on the page;
`drawn_test_set()` reduces them to 16x16 through the page's reduction (`training.digit_pad`), so the trainer
scores them without a browser, and tests/clients/test_browser.py draws the same paths in Chromium.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np

from training.digit_pad import DIGIT_SIDE, PAD_SIDE, strokes_to_digit
from training.errors import DatasetError

SAMPLE_SPACING = 0.024
"""Largest step between neighbouring points of an expanded path, as a share of the pad (6.7 px): the pointer
positions the browser test sends, and the polyline the trainer renders. A mouse reports about one position per
frame, 8-12 px apart when a digit is drawn in a second."""
_MARGIN = 0.05


@dataclass(frozen=True)
class DrawnDigit:
    """One drawing: its digit, style and variant, and its pen paths in pad pixels (each K x 2, x then y)."""

    label: int
    style: str
    variant: str
    strokes: tuple[np.ndarray, ...]


def _even(polyline: np.ndarray) -> np.ndarray:
    """The polyline resampled at equal steps along its length, no step over SAMPLE_SPACING; ends kept."""
    along = np.concatenate([[0.0], np.cumsum(np.linalg.norm(np.diff(polyline, axis=0), axis=1))])
    count = max(1, math.ceil(along[-1] / SAMPLE_SPACING))
    targets = np.linspace(0.0, along[-1], count + 1)
    return np.stack([np.interp(targets, along, polyline[:, 0]), np.interp(targets, along, polyline[:, 1])], axis=1)


def _catmull_rom(points: np.ndarray) -> np.ndarray:
    """A smooth path through `points` (uniform Catmull-Rom, ends extended by reflection), evenly sampled."""
    if len(points) == 2:
        return _even(points)
    padded = np.concatenate([2 * points[:1] - points[1:2], points, 2 * points[-1:] - points[-2:-1]])
    t = np.linspace(0, 1, 65)[1:, None]
    dense = [points[:1]]
    for i in range(1, len(padded) - 2):
        p0, p1, p2, p3 = padded[i - 1], padded[i], padded[i + 1], padded[i + 2]
        dense.append(0.5 * (2 * p1 + (p2 - p0) * t + (2 * p0 - 5 * p1 + 4 * p2 - p3) * t ** 2
                            + (3 * p1 - p0 - 3 * p2 + p3) * t ** 3))
    return _even(np.concatenate(dense))


def expand_path(points: list[list[float]]) -> np.ndarray:
    """A written path (points [x, y], or [x, y, 1] for a corner) as a dense polyline in pad units."""
    xy = np.asarray([p[:2] for p in points], np.float64)
    corners = [0] + [i for i, p in enumerate(points) if len(p) > 2 and p[2] and 0 < i < len(points) - 1] \
        + [len(points) - 1]
    if len(xy) == 1:
        return xy
    pieces = [_catmull_rom(xy[start : end + 1]) for start, end in zip(corners, corners[1:])]
    return np.concatenate([pieces[0]] + [piece[1:] for piece in pieces[1:]])


def _apply_variant(path: np.ndarray, variant: dict[str, Any]) -> np.ndarray:
    """Slant (x moves by slant x height above the centre), stretch x, scale about the centre, then shift."""
    x, y = path[:, 0] - 0.5, path[:, 1] - 0.5
    x = (x - float(variant["slant"]) * y) * float(variant["stretch"])
    scale = float(variant["scale"])
    return np.stack([0.5 + scale * x + float(variant["dx"]), 0.5 + scale * y + float(variant["dy"])], axis=1)


def _default_file() -> Path:
    return Path(str(resources.files("training") / "data" / "drawn_digits.json"))


def drawn_digits(path: Path | None = None) -> list[DrawnDigit]:
    """Every drawing of the file (default: the package's drawn_digits.json): styles x variants, digit by digit."""
    source = path or _default_file()
    try:
        spec = json.loads(source.read_text())
        variants = spec["variants"]
        drawings = []
        for label_text, styles in sorted(spec["digits"].items()):
            label = int(label_text)
            for style in styles:
                paths = [expand_path(stroke) for stroke in style["strokes"]]
                for variant in variants:
                    strokes = tuple(_apply_variant(p, variant) for p in paths)
                    everything = np.concatenate(strokes)
                    if everything.min() < _MARGIN or everything.max() > 1 - _MARGIN:
                        raise DatasetError(f"{source}: digit {label} style {style['style']!r} in variant "
                                           f"{variant['name']!r} leaves the pad's inner area")
                    drawings.append(DrawnDigit(label, str(style["style"]), str(variant["name"]),
                                               tuple(s * PAD_SIDE for s in strokes)))
    except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
        raise DatasetError(f"{source} is not a drawn-digits file: {exc!r}") from exc
    if not drawings:
        raise DatasetError(f"{source} holds no drawings")
    return drawings


def drawn_test_set(path: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """The drawn test set as the page would send it: x float32 (N, 256), y int64 (N,)."""
    drawings = drawn_digits(path)
    images = []
    for drawing in drawings:
        image = strokes_to_digit(drawing.strokes)
        if image is None:
            raise DatasetError(f"digit {drawing.label} style {drawing.style!r} draws nothing")
        images.append(image.reshape(DIGIT_SIDE * DIGIT_SIDE))
    return np.stack(images).astype(np.float32), np.asarray([d.label for d in drawings], np.int64)
