"""A seeded room-like background behind the synthetic person: a soft gradient with blurred furniture-like shapes."""

from __future__ import annotations

import cv2
import numpy as np
import numpy.typing as npt


def make_background(size: tuple[int, int], seed: int) -> npt.NDArray[np.uint8]:
    """A seeded room-like background (RGB uint8): a soft gradient with blurred furniture-like shapes."""
    width, height = size
    rng = np.random.default_rng(seed)
    top = rng.uniform(0.35, 0.85, 3)
    bottom = top * rng.uniform(0.5, 0.9) + rng.uniform(-0.08, 0.08, 3)
    t = np.linspace(0, 1, height, dtype=np.float32)[:, None, None]
    image = (top * (1 - t) + bottom * t) * np.ones((1, width, 1), np.float32)
    for _ in range(int(rng.integers(4, 9))):
        colour = np.clip(rng.uniform(0.15, 0.9, 3) * 0.6 + top * 0.4, 0, 1)
        x0, y0 = rng.uniform(-0.2, 1.0) * width, rng.uniform(-0.2, 1.0) * height
        w, h = rng.uniform(0.1, 0.5) * width, rng.uniform(0.1, 0.6) * height
        layer = np.zeros((height, width), np.float32)
        if rng.random() < 0.6:
            cv2.rectangle(layer, (int(x0), int(y0)), (int(x0 + w), int(y0 + h)), (1.0,), -1)
        else:
            cv2.ellipse(layer, (int(x0), int(y0)), (int(w / 2), int(h / 2)), 0, 0, 360, (1.0,), -1)
        layer = cv2.GaussianBlur(layer, (0, 0), rng.uniform(2, 10)) * rng.uniform(0.4, 0.9)
        image = image * (1 - layer[..., None]) + colour * layer[..., None]
    background: npt.NDArray[np.uint8] = (np.clip(image, 0, 1) * 255).astype(np.uint8)
    return background
