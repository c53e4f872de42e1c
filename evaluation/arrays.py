"""What the package's numpy arrays hold, as type aliases."""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray

Image = NDArray[np.uint8]
"""An RGB uint8 H x W x 3 frame or crop (grey: H x W)."""
Mask = NDArray[np.bool_]
"""A bool H x W region of a frame."""
Floats = NDArray[np.float64]
"""Points, boxes, descriptors, series: float64."""
AnyArray = NDArray[Any]
"""A model's inputs and outputs, whatever their dtype."""
