"""A machine-readable frame number in the top-left 200x24 px of a frame, built to survive VP8.

The region holds two rows, each 12 px tall, of 20 cells 10 px wide: a "one" and a "zero" reference cell, the
16-bit frame number in Gray code (most significant bit first), an even-parity cell and a "zero" guard. The second
row carries the same cells rotated by half a row, so every bit sits in two different 16x16 macroblocks.

Why this shape: cells are large flat blocks of pure black or white, so a lossy codec keeps their centres on the
right side of the midpoint between the reference cells even at low bitrates. VP8's realtime encoder with its
temporal denoiser (aiortc's settings) now and then leaves a whole macroblock stale, showing the previous frame:
Gray code changes a single bit (and the parity) from one frame to the next, so a stale block usually holds no
changed cell, and when it does, the parity fails in that row while the other row, whose copy of the bit lies in
another macroblock, still reads. A row whose cells sit too close to the midpoint, or whose parity fails, is
rejected; the reader returns None rather than a wrong number. docs/CONTRACTS.md reserves this region for the
profiler.
"""

from __future__ import annotations

import numpy as np

from clients.errors import FrameCodeError
from swapstream.reserved_corner import RESERVED_CORNER_HEIGHT, RESERVED_CORNER_WIDTH

CODE_WIDTH = RESERVED_CORNER_WIDTH
CODE_HEIGHT = RESERVED_CORNER_HEIGHT
CELL_WIDTH = 10
ROW_HEIGHT = CODE_HEIGHT // 2
DATA_BITS = 16
MODULO = 1 << DATA_BITS
_ONE_REF, _ZERO_REF = 0, 1
_FIRST_DATA = 2
_PARITY = _FIRST_DATA + DATA_BITS
_GUARD = _PARITY + 1
_CELLS = _GUARD + 1
_SECOND_ROW_ROTATION = _CELLS // 2
# Fraction of the reference contrast a cell's centre must clear on its side of the midpoint.
_MIN_MARGIN = 0.2
_MIN_CONTRAST = 64.0
# The sampled centre of a cell, away from its edges, where ringing and chroma bleed live.
_SAMPLE_X = (3, CELL_WIDTH - 3)
_SAMPLE_Y = (3, ROW_HEIGHT - 3)

assert _CELLS * CELL_WIDTH <= CODE_WIDTH


def _to_gray(number: int) -> int:
    return number ^ (number >> 1)


def _from_gray(code: int) -> int:
    number = 0
    while code:
        number ^= code
        code >>= 1
    return number


def _cell_values(number: int) -> list[int]:
    code = _to_gray(number)
    bits = [(code >> (DATA_BITS - 1 - i)) & 1 for i in range(DATA_BITS)]
    cells = [0] * _CELLS
    cells[_ONE_REF] = 1
    cells[_FIRST_DATA:_PARITY] = bits
    cells[_PARITY] = sum(bits) % 2
    return cells


def _row_layout(row: int) -> list[int]:
    """Column of each logical cell in the given row."""
    shift = row * _SECOND_ROW_ROTATION
    return [(cell + shift) % _CELLS for cell in range(_CELLS)]


def _check_frame(frame: np.ndarray) -> None:
    if frame.ndim != 3 or frame.dtype != np.uint8:
        raise FrameCodeError(f"frame-number code needs an HxWxC uint8 frame, got shape {frame.shape} {frame.dtype}")
    if frame.shape[0] < CODE_HEIGHT or frame.shape[1] < CODE_WIDTH:
        raise FrameCodeError(
            f"frame {frame.shape[1]}x{frame.shape[0]} is smaller than the {CODE_WIDTH}x{CODE_HEIGHT} px "
            "frame-number region"
        )


def stamp(frame: np.ndarray, number: int) -> np.ndarray:
    """Write `number` modulo 65536 into the top-left code region of an RGB frame, in place; returns the frame."""
    _check_frame(frame)
    frame[:CODE_HEIGHT, :CODE_WIDTH] = 0
    values = _cell_values(number % MODULO)
    for row in range(2):
        top = row * ROW_HEIGHT
        for cell, column in enumerate(_row_layout(row)):
            if values[cell]:
                frame[top : top + ROW_HEIGHT, column * CELL_WIDTH : (column + 1) * CELL_WIDTH] = 255
    return frame


def _read_row(luma: np.ndarray, row: int) -> int | None:
    top = row * ROW_HEIGHT
    ys = slice(top + _SAMPLE_Y[0], top + _SAMPLE_Y[1])
    centres = np.array(
        [
            luma[ys, column * CELL_WIDTH + _SAMPLE_X[0] : column * CELL_WIDTH + _SAMPLE_X[1]].mean()
            for column in _row_layout(row)
        ]
    )
    one, zero = centres[_ONE_REF], centres[_ZERO_REF]
    contrast = one - zero
    if contrast < _MIN_CONTRAST:
        return None
    margins = (centres - (one + zero) / 2.0) / contrast
    if np.any(np.abs(margins) < _MIN_MARGIN):
        return None
    bits = (margins > 0).astype(int)
    data = bits[_FIRST_DATA:_PARITY]
    if bits[_GUARD] != 0 or int(data.sum()) % 2 != int(bits[_PARITY]):
        return None
    return _from_gray(int(sum(int(bit) << (DATA_BITS - 1 - i) for i, bit in enumerate(data))))


def read(frame: np.ndarray) -> int | None:
    """The frame number stamped in the frame's top-left region, or None when it is absent or unreadable."""
    _check_frame(frame)
    luma = frame[:CODE_HEIGHT, :CODE_WIDTH].astype(np.float32).mean(axis=2)
    first, second = _read_row(luma, 0), _read_row(luma, 1)
    if first is None:
        return second
    if second is None or second == first:
        return first
    return None


def unwrap(code: int, reference: int) -> int:
    """The full frame number whose low 16 bits are `code` and which lies nearest to `reference`."""
    base = reference - (reference % MODULO) + code
    candidates = (base - MODULO, base, base + MODULO)
    return min(candidates, key=lambda value: abs(value - reference))
