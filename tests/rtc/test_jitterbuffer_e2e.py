"""End to end over loopback: real aiortc peers echo numbered video; marker vs stock jitter buffer round trip.

The measurement is the profiler's own (clients.loopback: frames stamped and read with clients.framecode, timed by
clients.profile.collect_round_trips), with an in-process echo peer instead of a server.
"""

from __future__ import annotations

import logging
import time

import pytest

from clients import framecode
from clients.loopback import interleaved_runs, moving_texture, summarize_mode

logger = logging.getLogger(__name__)

FPS = 15
WIDTH, HEIGHT = 640, 480
FRAMES_PER_RUN = 70  # ~4.7 s of video per run
WARMUP_FRAMES = 10  # first keyframe and bitrate ramp-up, left out of the latency figures
RUN_PAIRS = 2  # marker, stock, marker, stock: interleaved so machine noise hits both modes alike


@pytest.mark.slow
async def test_marker_buffer_cuts_echo_round_trip_by_half_a_frame_or_more():
    frames = moving_texture((WIDTH, HEIGHT), FRAMES_PER_RUN)
    started = time.perf_counter()
    runs = await interleaved_runs(RUN_PAIRS, frames, FPS, FRAMES_PER_RUN)
    elapsed = time.perf_counter() - started
    marker, stock = summarize_mode(runs, "marker", WARMUP_FRAMES), summarize_mode(runs, "stock", WARMUP_FRAMES)
    report = (
        f"echo round trip {WIDTH}x{HEIGHT} @ {FPS} fps over loopback, {RUN_PAIRS} interleaved runs per mode "
        f"in {elapsed:.1f} s; {marker.line()}; {stock.line()}"
    )
    print(report)
    logger.info(report)

    expected_frames = (FRAMES_PER_RUN - WARMUP_FRAMES) * RUN_PAIRS
    assert marker.measured_frames >= 0.9 * expected_frames, f"too few frames came back: {report}"
    assert all(r.installed == 2 for r in runs if r.mode == "marker"), "marker buffer must be on both video receivers"
    assert all(r.installed == 0 for r in runs if r.mode == "stock")
    assert marker.packets_per_frame >= 2.0, "frames should span several packets to exercise reassembly"
    gain = stock.p50_ms - marker.p50_ms
    half_frame_ms = 1000.0 / FPS / 2
    assert gain >= half_frame_ms, f"p50 gain {gain:.1f} ms < half a frame interval ({half_frame_ms:.1f} ms): {report}"
    # every run sends the same frame numbers; marker must bring back every frame its paired stock run did
    pairs = zip([r for r in runs if r.mode == "marker"], [r for r in runs if r.mode == "stock"])
    for marker_run, stock_run in pairs:
        lost = stock_run.received - marker_run.received
        assert not lost, f"frames {sorted(lost)} came back with stock but not with marker: {report}"
    assert elapsed < 60.0, f"end-to-end test took {elapsed:.1f} s"


def test_frame_number_code_round_trips():
    """The code this test reads survives the texture it is stamped on, and a damaged code reads as nothing."""
    frame = moving_texture((WIDTH, HEIGHT), 1)[0]
    for number in (0, 1, 77, 4095):
        framecode.stamp(frame, number)
        assert framecode.read(frame) == number
    # invert one column of cells: a data bit in each row, so both rows' parities fail (one row alone is outvoted)
    cell = slice(5 * framecode.CELL_WIDTH, 6 * framecode.CELL_WIDTH)
    frame[: framecode.CODE_HEIGHT, cell] = 255 - frame[: framecode.CODE_HEIGHT, cell]
    assert framecode.read(frame) is None
