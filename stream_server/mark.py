"""The visible "AI-generated" disclosure mark, drawn at the bottom-right of every processed frame."""

from __future__ import annotations

import cv2
import numpy as np
from numpy.typing import NDArray

MARK_TEXT = "AI-generated"


def mark_box(width: int, height: int) -> tuple[int, int, int, int]:
    """The mark's rectangle (x0, y0, x1, y1) for a frame of this size; scales with the frame height."""
    scale = max(0.35, height / 960)
    (text_w, text_h), baseline = cv2.getTextSize(MARK_TEXT, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    pad = max(3, int(round(6 * scale)))
    box_w, box_h = text_w + 2 * pad, text_h + baseline + 2 * pad
    x1, y1 = width - pad, height - pad
    return max(0, x1 - box_w), max(0, y1 - box_h), x1, y1


def draw_disclosure_mark(frame_rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """Draw the mark in place on an RGB uint8 frame and return it."""
    height, width = frame_rgb.shape[:2]
    scale = max(0.35, height / 960)
    x0, y0, x1, y1 = mark_box(width, height)
    region = frame_rgb[y0:y1, x0:x1]
    # Darken rather than cover, so the mark reads on any background without hiding the picture entirely.
    region[:] = (region.astype(np.uint16) * 2 // 5).astype(np.uint8)
    (_, text_h), baseline = cv2.getTextSize(MARK_TEXT, cv2.FONT_HERSHEY_SIMPLEX, scale, 1)
    pad = max(3, int(round(6 * scale)))
    cv2.putText(frame_rgb, MARK_TEXT, (x0 + pad, y1 - pad - baseline), cv2.FONT_HERSHEY_SIMPLEX, scale,
                (255, 255, 255), 1, cv2.LINE_AA)
    return frame_rgb
