"""Round trips timed frame by frame: each outgoing frame carries its number (clients.framecode), read back on return.

The measuring loop both `swapstream profile` (through a server, clients.profile) and the in-process echo
measurement (clients.loopback) use: a paced track of stamped frames, the returned frames matched to the sent ones by
their number whatever the codec or the far end did to timestamps, and the run's counts, rates and percentiles.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np
from aiortc.mediastreams import MediaStreamError
from tqdm import tqdm

from clients import framecode
from clients.errors import ConnectionFailed
from clients.media import MediaClock, PacedVideoTrack


@dataclass(frozen=True)
class FrameSample:
    """One returned frame: which sent frame it was and how long its round trip took."""

    number: int
    sent_s: float
    latency_ms: float


@dataclass
class RunReport:
    """The figures of one measured run (swap, or the echo baseline)."""

    label: str
    url: str
    options: dict[str, Any]
    frames_sent: int = 0
    frames_received: int = 0
    frames_decoded: int = 0
    frames_unique: int = 0
    frames_dropped: int = 0
    decode_rate: float = 0.0
    fps_in: float = 0.0
    fps_out: float = 0.0
    latency_ms: dict[str, float] = field(default_factory=dict)
    server_stage_ms: dict[str, float] = field(default_factory=dict)
    server_added_ms: float | None = None
    jitter_buffer: str = "stock"
    samples: list[FrameSample] = field(default_factory=list)

    def summary(self) -> dict[str, Any]:
        data = asdict(self)
        data["samples"] = [[s.number, round(s.sent_s, 4), round(s.latency_ms, 2)] for s in self.samples]
        return data


def percentiles(values: list[float]) -> dict[str, float]:
    """p50/p95/p99, mean, min and max of a list of milliseconds (empty dict when there is nothing to summarise)."""
    if not values:
        return {}
    array = np.asarray(values, dtype=np.float64)
    return {
        "p50": round(float(np.percentile(array, 50)), 2),
        "p95": round(float(np.percentile(array, 95)), 2),
        "p99": round(float(np.percentile(array, 99)), 2),
        "mean": round(float(array.mean()), 2),
        "min": round(float(array.min()), 2),
        "max": round(float(array.max()), 2),
        "count": int(array.size),
    }


def _looped(frames: list[np.ndarray], count: int) -> Iterator[np.ndarray]:
    cycle = frames + frames[-2:0:-1] if len(frames) > 2 else frames
    for index in range(count):
        yield cycle[index % len(cycle)].copy()


RETURN_TIMEOUT_S = 10.0  # no frame back for this long while sending: the server is not answering
TAIL_WAIT_S = 1.5  # after the last frame left: how long to wait for frames still on their way


async def _next_returned_frame(video: Any, finished: asyncio.Event, source: str) -> Any | None:
    """The next returned frame; None once the track ended, or TAIL_WAIT_S after the last frame was sent.

    The tail wait counts from the moment sending ends, not from the call: the stock jitter buffer never releases
    the last frame, and a 10 s wait begun just before the end would add that much to every stock run.
    """
    receive = asyncio.ensure_future(video.recv())
    try:
        if not finished.is_set():
            sending_ends = asyncio.ensure_future(finished.wait())
            try:
                await asyncio.wait({receive, sending_ends}, timeout=RETURN_TIMEOUT_S,
                                   return_when=asyncio.FIRST_COMPLETED)
            finally:
                sending_ends.cancel()
            if not receive.done() and not finished.is_set():
                raise ConnectionFailed(f"{source}: no video came back for {RETURN_TIMEOUT_S:.0f} s")
        if not receive.done():
            await asyncio.wait({receive}, timeout=TAIL_WAIT_S)
        if not receive.done():
            return None
        return receive.result()
    except MediaStreamError:
        return None
    finally:
        if not receive.done():
            receive.cancel()
            await asyncio.gather(receive, return_exceptions=True)


def stamped_track(frames: list[np.ndarray], fps: float, count: int,
                  mark: Callable[[int, np.ndarray], np.ndarray] | None = None,
                  clock: MediaClock | None = None) -> PacedVideoTrack:
    """An outgoing track of `count` frames looped from `frames` at `fps`, each stamped with its number.

    `mark(index, rgb)` may draw more on each frame first (the A/V profiler's flashes); `clock` is shared with
    an audio track that must leave in step.
    """

    def prepare(index: int, rgb: np.ndarray) -> np.ndarray:
        return framecode.stamp(mark(index, rgb) if mark is not None else rgb, index)

    return PacedVideoTrack(_looped(frames, count), fps, prepare=prepare, clock=clock)


async def collect_round_trips(video: Any, track: PacedVideoTrack, report: RunReport, source: str,
                              count: int, seconds: float,
                              inspect: Callable[[int, np.ndarray, float], None] | None = None) -> list[float]:
    """Time every frame that comes back on `video` until sending has ended and the tail has arrived.

    Adds a FrameSample per returned frame whose number was read (once per number) to `report`; returns the
    arrival time of every returned frame. `source` names the far end in errors; the track sends `count` frames
    in `seconds`. `inspect(number, rgb, arrived)` sees each of those frames (the A/V profiler looks for flashes).
    """
    received_at: list[float] = []
    seen: set[int] = set()
    progress = tqdm(total=count, unit="frame", desc=f"profile {report.label}", disable=None)
    try:
        deadline = time.monotonic() + seconds + 30.0
        while time.monotonic() < deadline:
            frame = await _next_returned_frame(video, track.finished, source)
            if frame is None:
                break
            arrived = time.monotonic()
            received_at.append(arrived)
            rgb = frame.to_ndarray(format="rgb24")
            code = framecode.read(rgb)
            if code is None:
                continue
            report.frames_decoded += 1
            number = framecode.unwrap(code, max(track.frames_sent - 1, 0))
            sent = track.sent_at.get(number)
            if sent is None or number in seen:
                continue
            seen.add(number)
            progress.update(1)
            if inspect is not None:
                inspect(number, rgb, arrived)
            report.samples.append(FrameSample(number, sent - track.sent_at[0], (arrived - sent) * 1000.0))
    finally:
        progress.close()
    return received_at


def summarize_run(report: RunReport, track: PacedVideoTrack, received_at: list[float], warmup_s: float) -> None:
    """Fill in the run's counts, rates over the steady window and latency percentiles after the warm-up."""
    report.frames_sent = track.frames_sent
    report.frames_received = len(received_at)
    report.frames_unique = len(report.samples)
    report.frames_dropped = report.frames_sent - report.frames_unique
    report.decode_rate = round(report.frames_decoded / report.frames_received, 4) if received_at else 0.0
    # Rates over the steady window: from the end of the warm-up to the last frame sent.
    sent_times = sorted(track.sent_at.values())
    if len(sent_times) > 1:
        start, end = sent_times[0] + warmup_s, sent_times[-1]
        if end > start:
            report.fps_in = round(sum(start <= t <= end for t in sent_times) / (end - start), 2)
            report.fps_out = round(sum(start <= t <= end for t in received_at) / (end - start), 2)
    steady = [s.latency_ms for s in report.samples if s.sent_s >= warmup_s]
    report.latency_ms = percentiles(steady)
