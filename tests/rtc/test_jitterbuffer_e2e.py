"""End to end over loopback: real aiortc peers echo numbered video; marker vs stock jitter buffer round trip."""

from __future__ import annotations

import asyncio
import fractions
import logging
import statistics
import time
from dataclasses import dataclass, field

import numpy as np
import pytest
from aiortc import MediaStreamTrack, RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamError
from av import VideoFrame

from rtc.jitterbuffer import JitterBufferMode, install_on_receiver

logger = logging.getLogger(__name__)

FPS = 15
WIDTH, HEIGHT = 640, 480
FRAMES_PER_RUN = 70  # ~4.7 s of video per run
WARMUP_FRAMES = 10  # first keyframe and bitrate ramp-up, left out of the latency figures
RUN_PAIRS = 2  # marker, stock, marker, stock: interleaved so machine noise hits both modes alike
CODE_BITS = 16  # 12 bits of frame number + 4 bits of checksum
# 16 cells of 16x32 px, each two whole VP8/H.264 macroblocks, so codec blur at low bitrate never mixes them
CODE_CELL_W, CODE_CELL_H = 16, 32
CLOCK_RATE = 90000


def _checksum(number: int) -> int:
    return (number + (number >> 4) + (number >> 8)) & 0xF


def stamp_number(luma: np.ndarray, number: int) -> None:
    """Write a frame number as black/white cells into the top-left corner of a Y plane."""
    word = (number & 0xFFF) << 4 | _checksum(number & 0xFFF)
    for bit in range(CODE_BITS):
        value = 235 if word >> (CODE_BITS - 1 - bit) & 1 else 16
        luma[:CODE_CELL_H, bit * CODE_CELL_W : (bit + 1) * CODE_CELL_W] = value


def read_number(luma: np.ndarray) -> int | None:
    """Read a stamped frame number back from a decoded Y plane; None if the checksum fails."""
    word = 0
    for bit in range(CODE_BITS):
        cell = luma[8 : CODE_CELL_H - 8, bit * CODE_CELL_W + 4 : (bit + 1) * CODE_CELL_W - 4]
        word = word << 1 | int(cell.mean() > 125)
    number = word >> 4
    return number if word & 0xF == _checksum(number) else None


class NumberedVideoTrack(MediaStreamTrack):
    """15 fps moving texture with the frame number in the corner; records when each frame leaves for the encoder."""

    kind = "video"

    def __init__(self, settings: EchoSettings, sent_at: dict[int, float]) -> None:
        super().__init__()
        rng = np.random.default_rng(1)
        # 4 px noise blocks moving 3 px a frame: detailed enough that each frame spans several RTP packets
        texture = rng.integers(40, 216, (settings.height // 4 + 64, settings.width // 4 + 64), dtype=np.uint8)
        self._texture = np.kron(texture, np.ones((4, 4), dtype=np.uint8))
        self._settings = settings
        self._sent_at = sent_at
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> VideoFrame:
        width, height, fps = self._settings.width, self._settings.height, self._settings.fps
        if self._index >= self._settings.frame_count:
            self.stop()
            raise MediaStreamError
        loop = asyncio.get_running_loop()
        if self._start is None:
            self._start = loop.time()
        delay = self._start + self._index / fps - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        shift = (3 * self._index) % 256
        yuv = np.full((height * 3 // 2, width), 128, dtype=np.uint8)
        yuv[:height] = self._texture[shift : shift + height, shift : shift + width]
        yuv[: CODE_CELL_H + 16, : CODE_BITS * CODE_CELL_W + 16] = 128  # a calm margin around the code
        stamp_number(yuv[:height], self._index)
        frame = VideoFrame.from_ndarray(yuv, format="yuv420p")
        frame.pts = self._index * CLOCK_RATE // fps
        frame.time_base = fractions.Fraction(1, CLOCK_RATE)
        self._sent_at[self._index] = time.perf_counter()
        self._index += 1
        return frame


@dataclass(frozen=True)
class EchoSettings:
    """What one echo run sends."""

    frame_count: int = FRAMES_PER_RUN
    fps: int = FPS
    width: int = WIDTH
    height: int = HEIGHT
    warmup_frames: int = WARMUP_FRAMES

    def __post_init__(self) -> None:
        if self.frame_count <= self.warmup_frames or self.frame_count > 4096:
            raise ValueError(f"frame_count must be in ({self.warmup_frames}, 4096], got {self.frame_count}")
        if self.width < CODE_BITS * CODE_CELL_W or self.height < 2 * CODE_CELL_H or self.width % 4 or self.height % 4:
            raise ValueError(f"frame size {self.width}x{self.height} too small or not a multiple of 4")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"fps must be in [1, 60], got {self.fps}")


@dataclass
class RunResult:
    """One echo run: per-frame round trips and which frame numbers came back."""

    mode: JitterBufferMode
    settings: EchoSettings
    round_trip_ms: dict[int, float] = field(default_factory=dict)
    installed: int = 0
    packets_sent: int = 0

    @property
    def received(self) -> set[int]:
        return set(self.round_trip_ms)

    def measured(self) -> list[float]:
        return [ms for n, ms in sorted(self.round_trip_ms.items()) if n >= self.settings.warmup_frames]


async def echo_run(mode: JitterBufferMode, settings: EchoSettings = EchoSettings()) -> RunResult:
    """Client sends numbered frames to an echo peer that returns them; both video receivers use ``mode``."""
    result = RunResult(mode=mode, settings=settings)
    sent_at: dict[int, float] = {}
    config = RTCConfiguration(iceServers=[])  # loopback only: no STUN lookups
    client, echo = RTCPeerConnection(config), RTCPeerConnection(config)
    last_frame = settings.frame_count - 1
    done = asyncio.Event()

    async def read_returned(track: MediaStreamTrack) -> None:
        try:
            while True:
                frame = await track.recv()
                arrived = time.perf_counter()
                plane = frame.planes[0]
                luma = np.frombuffer(plane, np.uint8).reshape(frame.height, plane.line_size)[:, : frame.width]
                number = read_number(luma)
                if number is not None and number in sent_at and number not in result.round_trip_ms:
                    result.round_trip_ms[number] = (arrived - sent_at[number]) * 1000.0
                if number == last_frame:
                    done.set()
        except MediaStreamError:
            done.set()

    readers: list[asyncio.Task[None]] = []

    @echo.on("track")
    def on_echo_track(track: MediaStreamTrack) -> None:
        echo.addTrack(track)  # send every received frame straight back

    @client.on("track")
    def on_client_track(track: MediaStreamTrack) -> None:
        readers.append(asyncio.ensure_future(read_returned(track)))

    try:
        sender_transceiver = client.addTransceiver(NumberedVideoTrack(settings, sent_at), direction="sendrecv")
        result.installed += install_on_receiver(sender_transceiver.receiver, mode)
        await client.setLocalDescription(await client.createOffer())
        await echo.setRemoteDescription(client.localDescription)
        for transceiver in echo.getTransceivers():
            result.installed += install_on_receiver(transceiver.receiver, mode)
        await echo.setLocalDescription(await echo.createAnswer())
        await client.setRemoteDescription(echo.localDescription)
        deadline = time.perf_counter() + settings.frame_count / settings.fps + 10.0
        while not done.is_set() and time.perf_counter() < deadline:
            # stock never releases the last frames (no later packet completes them): stop 1 s after the last one left
            if last_frame in sent_at and time.perf_counter() - sent_at[last_frame] > 1.0:
                break
            await asyncio.sleep(0.05)
        stats = await client.getStats()
        result.packets_sent = sum(
            getattr(s, "packetsSent", 0) for s in stats.values() if s.type == "outbound-rtp"
        )
    finally:
        await client.close()
        await echo.close()
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)
    return result


@dataclass(frozen=True)
class ModeSummary:
    """Round trips of all runs of one mode, pooled after warm-up."""

    mode: JitterBufferMode
    p50_ms: float
    p95_ms: float
    run_p50_ms: list[float]
    frames_back: list[int]
    frames_sent: int
    packets_per_frame: float
    measured_frames: int

    def line(self) -> str:
        return (
            f"{self.mode}: p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms "
            f"(per-run p50 {self.run_p50_ms}, frames back {self.frames_back} of {self.frames_sent} each, "
            f"{self.packets_per_frame:.1f} RTP packets per frame)"
        )


def summarize(runs: list[RunResult], mode: JitterBufferMode) -> ModeSummary:
    """Pool the post-warm-up round trips of every run of ``mode``."""
    mode_runs = [r for r in runs if r.mode == mode]
    pooled = np.asarray([ms for r in mode_runs for ms in r.measured()])
    if pooled.size == 0:
        raise RuntimeError(f"{mode}: no frame came back")
    frames_sent = mode_runs[0].settings.frame_count
    return ModeSummary(
        mode=mode,
        p50_ms=float(np.percentile(pooled, 50)),
        p95_ms=float(np.percentile(pooled, 95)),
        run_p50_ms=[round(statistics.median(r.measured()), 1) for r in mode_runs],
        frames_back=[len(r.received) for r in mode_runs],
        frames_sent=frames_sent,
        packets_per_frame=sum(r.packets_sent for r in mode_runs) / (frames_sent * len(mode_runs)),
        measured_frames=int(pooled.size),
    )


async def interleaved_runs(pairs: int, settings: EchoSettings = EchoSettings()) -> list[RunResult]:
    """marker, stock, marker, stock...: machine noise hits both modes alike."""
    runs: list[RunResult] = []
    for _ in range(pairs):
        for mode in ("marker", "stock"):
            runs.append(await echo_run(mode, settings))
    return runs


@pytest.mark.slow
async def test_marker_buffer_cuts_echo_round_trip_by_half_a_frame_or_more():
    started = time.perf_counter()
    runs = await interleaved_runs(RUN_PAIRS)
    elapsed = time.perf_counter() - started
    marker, stock = summarize(runs, "marker"), summarize(runs, "stock")
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
    luma = np.full((HEIGHT, WIDTH), 90, dtype=np.uint8)
    for number in (0, 1, 77, 4095):
        stamp_number(luma, number)
        assert read_number(luma) == number
    luma[:CODE_CELL_H, :CODE_CELL_W] = 255 - luma[:CODE_CELL_H, :CODE_CELL_W]  # corrupt one cell
    assert read_number(luma) is None
