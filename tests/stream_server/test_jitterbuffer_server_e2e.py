"""End to end through the real swapstream server: echo pipeline, marker vs stock jitter buffer on server and client.

Two echo servers (tests/fixtures/server.py), one started with ``jitter_buffer="marker"`` and one with ``"stock"``;
the profiler's own measurement (clients.profile.measure_run: SwapPeer over /offer, frame-number code from
clients.framecode) sends the same synthetic 640x480 face at 15 fps, with the client's buffer in the same mode as
the server's, and times every frame's round trip. Runs alternate marker, stock, marker, stock so machine noise
falls on both modes alike.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from clients import profile
from clients.webrtc import JitterBufferMode, ServerEndpoint
from tests.fixtures.server import RunningServer, start_server

logger = logging.getLogger(__name__)

FPS = 15
SIZE = (640, 480)
SECONDS_PER_RUN = 6.0
WARMUP_S = 1.0  # first keyframe and bitrate ramp-up, left out of the percentiles
RUN_PAIRS = 2
MODES: tuple[JitterBufferMode, ...] = ("marker", "stock")


@pytest.fixture(scope="module")
def echo_servers() -> Iterator[dict[JitterBufferMode, RunningServer]]:
    """One echo-pipeline server per jitter-buffer mode (frames come back unchanged: no disclosure mark)."""
    servers: dict[JitterBufferMode, RunningServer] = {}
    try:
        for mode in MODES:
            servers[mode] = start_server(pipeline="echo", disclosure_mark=False, max_sessions=2, jitter_buffer=mode)
        yield servers
    finally:
        for server in servers.values():
            server.stop()


def _pooled(runs: list[profile.RunReport]) -> np.ndarray:
    return np.asarray([s.latency_ms for run in runs for s in run.samples if s.sent_s >= WARMUP_S])


@pytest.mark.slow
async def test_marker_buffer_on_server_and_client_cuts_echo_round_trip(echo_servers, tmp_path: Path) -> None:
    started = time.perf_counter()
    configs = {
        mode: profile.ProfileConfig(
            endpoint=ServerEndpoint(echo_servers[mode].url.rstrip("/")), out=tmp_path, seconds=SECONDS_PER_RUN,
            fps=FPS, size=SIZE, jitter_buffer=mode, warmup_s=WARMUP_S,
        )
        for mode in MODES
    }
    frames, fps = profile.load_source(configs["marker"])  # the profiler's synthetic face, as `swapstream profile` sends
    runs: dict[JitterBufferMode, list[profile.RunReport]] = {mode: [] for mode in MODES}
    for _ in range(RUN_PAIRS):
        for mode in MODES:
            config = configs[mode]
            runs[mode].append(await profile.measure_run(mode, config.endpoint, frames, fps, config, {}))
    elapsed = time.perf_counter() - started

    pooled = {mode: _pooled(runs[mode]) for mode in MODES}
    assert all(p.size for p in pooled.values()), f"no frame came back: {[len(p) for p in pooled.values()]}"
    p50 = {mode: float(np.percentile(pooled[mode], 50)) for mode in MODES}
    p95 = {mode: float(np.percentile(pooled[mode], 95)) for mode in MODES}
    report = (
        f"server echo round trip {SIZE[0]}x{SIZE[1]} @ {FPS} fps, {RUN_PAIRS} interleaved {SECONDS_PER_RUN:g} s runs "
        f"per mode in {elapsed:.1f} s; "
        + "; ".join(
            f"{mode}: p50 {p50[mode]:.1f} ms, p95 {p95[mode]:.1f} ms, per-run p50 "
            f"{[r.latency_ms.get('p50') for r in runs[mode]]}, frames back "
            f"{[r.frames_unique for r in runs[mode]]} of {[r.frames_sent for r in runs[mode]]}"
            for mode in MODES
        )
    )
    print(report)
    logger.info(report)

    assert all(r.jitter_buffer == "marker" for r in runs["marker"]), "client marker buffer was not installed"
    assert all(r.jitter_buffer == "stock" for r in runs["stock"])
    for run in runs["marker"] + runs["stock"]:
        assert run.frames_sent >= SECONDS_PER_RUN * FPS - 2, (run.label, run.frames_sent)
        assert run.frames_unique >= 0.8 * run.frames_sent, f"too few frames came back: {report}"
    gain = p50["stock"] - p50["marker"]
    half_frame_ms = 1000.0 / FPS / 2
    assert gain >= half_frame_ms, f"p50 gain {gain:.1f} ms < half a frame interval ({half_frame_ms:.1f} ms): {report}"
    # Same frame numbers in every run. Stock never releases the last frame (no later packet completes it).
    for marker_run, stock_run in zip(runs["marker"], runs["stock"]):
        last = stock_run.frames_sent - 1
        stock_numbers = {s.number for s in stock_run.samples if s.number != last}
        marker_numbers = {s.number for s in marker_run.samples}
        lost = stock_numbers - marker_numbers
        assert not lost, f"frames {sorted(lost)} came back with stock but not with marker: {report}"
    assert elapsed < 60.0, f"end-to-end test took {elapsed:.1f} s"
