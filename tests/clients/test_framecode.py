"""The frame-number code: exact on clean frames, >= 99% readable and never wrong after real VP8 encode/decode."""

from __future__ import annotations

import fractions

import av
import numpy as np
import pytest
from aiortc.codecs.vpx import Vp8Decoder, Vp8Encoder, vp8_depayload
from aiortc.jitterbuffer import JitterFrame

from clients import framecode
from clients.errors import FrameCodeError


def _busy_frame(rng: np.random.Generator, index: int, size: tuple[int, int] = (640, 480)) -> np.ndarray:
    """A hard frame for the codec: moving gradients plus noise, so bits must compete for the bitrate."""
    width, height = size
    ys, xs = np.mgrid[0:height, 0:width]
    base = (np.sin((xs + 7 * index) / 13.0) + np.cos((ys - 5 * index) / 17.0)) * 60 + 128
    frame = np.repeat(base[..., None], 3, axis=2) + rng.normal(0, 25, (height, width, 3))
    return np.clip(frame, 0, 255).astype(np.uint8)


@pytest.mark.parametrize("number", [0, 1, 2, 255, 256, 4095, 12345, 32768, 65535, 65536 + 42])
def test_stamp_then_read_is_exact_on_clean_frames(number: int) -> None:
    frame = np.full((48, 320, 3), 90, np.uint8)
    assert framecode.read(framecode.stamp(frame, number)) == number % framecode.MODULO


def test_stamp_touches_only_the_reserved_region() -> None:
    frame = np.full((480, 640, 3), 77, np.uint8)
    framecode.stamp(frame, 999)
    outside = frame.copy()
    outside[: framecode.CODE_HEIGHT, : framecode.CODE_WIDTH] = 77
    assert np.all(outside == 77)


def test_unstamped_frames_and_flipped_bits_read_as_none() -> None:
    rng = np.random.default_rng(0)
    assert framecode.read(np.full((480, 640, 3), 128, np.uint8)) is None
    assert framecode.read(_busy_frame(rng, 0)) is None
    frame = framecode.stamp(np.zeros((24, 200, 3), np.uint8), 0b1010_0000_1111_0001)
    frame[:, 50:60] = 255 - frame[:, 50:60]  # one column of cells, a data bit in each row: both parities fail
    assert framecode.read(frame) is None


def test_one_damaged_row_still_reads_from_the_other() -> None:
    """A stale or damaged macroblock in one row is outvoted by the copy of the bits in the other row."""
    number = 40_000
    frame = framecode.stamp(np.zeros((24, 200, 3), np.uint8), number)
    frame[:12, 50:60] = 255 - frame[:12, 50:60]
    assert framecode.read(frame) == number
    frame = framecode.stamp(np.zeros((24, 200, 3), np.uint8), number)
    frame[12:, 0:100] = 128
    assert framecode.read(frame) == number


def test_too_small_frame_is_a_clear_error() -> None:
    with pytest.raises(FrameCodeError, match="smaller than the 200x24"):
        framecode.stamp(np.zeros((20, 160, 3), np.uint8), 1)


def test_unwrap_recovers_full_numbers_across_the_16_bit_boundary() -> None:
    assert framecode.unwrap(65535, 65530) == 65535
    assert framecode.unwrap(3, 65534) == 65539
    assert framecode.unwrap(65533, 65539) == 65533
    assert framecode.unwrap(10, 10) == 10


@pytest.mark.parametrize("bitrate", [250_000, 500_000, 1_500_000])
def test_code_survives_real_vp8_at_webrtc_bitrates(bitrate: int) -> None:
    """aiortc's own VP8 encoder (the one the server sends with), packetized, depayloaded and decoded."""
    rng = np.random.default_rng(bitrate)
    encoder, decoder = Vp8Encoder(), Vp8Decoder()
    encoder.target_bitrate = bitrate
    n_frames, read_ok, wrong = 40, 0, 0
    for index in range(n_frames):
        number = 65500 + index  # crosses the 16-bit wrap
        frame = av.VideoFrame.from_ndarray(framecode.stamp(_busy_frame(rng, index), number), format="rgb24")
        frame.pts, frame.time_base = index * 6000, fractions.Fraction(1, 90000)
        payloads, timestamp = encoder.encode(frame, force_keyframe=index == 0)
        data = b"".join(vp8_depayload(p) for p in payloads)
        for decoded in decoder.decode(JitterFrame(data, timestamp)):
            code = framecode.read(decoded.to_ndarray(format="rgb24"))
            if code == number % framecode.MODULO:
                read_ok += 1
            elif code is not None:
                wrong += 1
    assert wrong == 0
    assert read_ok >= 0.99 * n_frames, f"{read_ok}/{n_frames} frames read at {bitrate} bit/s"
