"""The receive path alone, measured: an in-process echo peer over loopback, timed by the profiler's own pieces.

Two aiortc peers in this process, no server: the client sends frames stamped with their number
(`clients.roundtrip.stamped_track`, `clients.framecode`), an echo peer sends every received frame straight back,
and the client times each frame's round trip from the number it reads back (`clients.roundtrip`).
Both video receivers use the jitter buffer under test (`clients.webrtc.install_jitter_buffer`), so the figures
show what the marker buffer saves at each aiortc receiver. Used by bench/jitter_latency.py and
tests/rtc/test_jitterbuffer_e2e.py; `swapstream profile` measures the same way through a real server.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
from aiortc import RTCConfiguration, RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack

from clients import framecode
from clients.errors import ConnectionFailed
from clients.roundtrip import RunReport, collect_round_trips, stamped_track, summarize_run
from clients.webrtc import JitterBufferMode, install_jitter_buffer

LOOPBACK = "loopback echo peer"
TRACK_TIMEOUT_S = 20.0


@dataclass
class EchoRun:
    """One echo run: the profiler's report plus what only a loopback run can see."""

    report: RunReport
    mode: JitterBufferMode
    installed: int
    """Video receivers (of 2) that got the marker jitter buffer."""
    packets_sent: int
    """RTP packets the client sent, from its own statistics."""

    @property
    def received(self) -> set[int]:
        """Numbers of the frames that came back."""
        return {sample.number for sample in self.report.samples}

    def measured_ms(self, warmup_frames: int) -> list[float]:
        """Round trips of the frames after the warm-up, in frame order."""
        samples = sorted(self.report.samples, key=lambda sample: sample.number)
        return [sample.latency_ms for sample in samples if sample.number >= warmup_frames]


@dataclass(frozen=True)
class ModeSummary:
    """Round trips of all runs of one jitter-buffer mode, pooled after the warm-up."""

    mode: JitterBufferMode
    p50_ms: float
    p95_ms: float
    run_p50_ms: list[float]
    frames_back: list[int]
    frames_sent: int
    packets_per_frame: float
    measured_frames: int

    def line(self) -> str:
        """One line for a log or a test report."""
        return (
            f"{self.mode}: p50 {self.p50_ms:.1f} ms, p95 {self.p95_ms:.1f} ms "
            f"(per-run p50 {self.run_p50_ms}, frames back {self.frames_back} of {self.frames_sent} each, "
            f"{self.packets_per_frame:.1f} RTP packets per frame)"
        )


def moving_texture(size: tuple[int, int], count: int, seed: int = 1) -> list[np.ndarray]:
    """`count` RGB frames of grey 4 px noise blocks moving 3 px a frame, calm around the frame-number corner.

    Detailed enough that every frame spans several RTP packets, so reassembly is exercised.
    """
    width, height = size
    rng = np.random.default_rng(seed)
    texture = rng.integers(40, 216, (height // 4 + 64, width // 4 + 64), dtype=np.uint8)
    texture = np.kron(texture, np.ones((4, 4), dtype=np.uint8))
    frames = []
    for index in range(count):
        shift = (3 * index) % 256
        grey = texture[shift : shift + height, shift : shift + width].copy()
        grey[: framecode.CODE_HEIGHT + 16, : framecode.CODE_WIDTH + 16] = 128  # a calm margin around the code
        frames.append(np.repeat(grey[..., None], 3, axis=2))
    return frames


async def measure_echo(label: str, frames: list[np.ndarray], fps: float, count: int,
                       mode: JitterBufferMode) -> EchoRun:
    """Send `count` stamped frames (looped from `frames`) to an in-process echo peer; time every round trip."""
    config = RTCConfiguration(iceServers=[])  # loopback only: no STUN lookups
    client, echo = RTCPeerConnection(config), RTCPeerConnection(config)
    returned: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()
    track = stamped_track(frames, fps, count)
    report = RunReport(label=label, url=LOOPBACK, options={})

    @echo.on("track")
    def on_echo_track(incoming: MediaStreamTrack) -> None:
        echo.addTrack(incoming)  # send every received frame straight back

    @client.on("track")
    def on_client_track(incoming: MediaStreamTrack) -> None:
        if not returned.done():
            returned.set_result(incoming)

    try:
        client.addTransceiver(track, direction="sendrecv")
        installed = int(install_jitter_buffer(client, mode))
        await client.setLocalDescription(await client.createOffer())
        await echo.setRemoteDescription(client.localDescription)
        installed += int(install_jitter_buffer(echo, mode))
        await echo.setLocalDescription(await echo.createAnswer())
        await client.setRemoteDescription(echo.localDescription)
        try:
            video = await asyncio.wait_for(returned, TRACK_TIMEOUT_S)
        except asyncio.TimeoutError as exc:
            raise ConnectionFailed(f"{LOOPBACK}: no video track within {TRACK_TIMEOUT_S:.0f} s") from exc
        report.jitter_buffer = "marker" if installed else "stock"
        received_at = await collect_round_trips(video, track, report, LOOPBACK, count, count / fps)
        stats = await client.getStats()
        packets_sent = sum(getattr(s, "packetsSent", 0) for s in stats.values() if s.type == "outbound-rtp")
    finally:
        track.stop()
        await client.close()
        await echo.close()
    summarize_run(report, track, received_at, warmup_s=0.0)
    return EchoRun(report=report, mode=mode, installed=installed, packets_sent=packets_sent)


async def interleaved_runs(pairs: int, frames: list[np.ndarray], fps: float, count: int,
                           on_run: Callable[[EchoRun], None] | None = None) -> list[EchoRun]:
    """marker, stock, marker, stock...: machine noise falls on both modes alike; `on_run` sees each finished run."""
    runs: list[EchoRun] = []
    for pair in range(pairs):
        for mode in ("marker", "stock"):
            runs.append(await measure_echo(f"{mode}-{pair}", frames, fps, count, mode))
            if on_run is not None:
                on_run(runs[-1])
    return runs


def summarize_mode(runs: Sequence[EchoRun], mode: JitterBufferMode, warmup_frames: int) -> ModeSummary:
    """Pool the post-warm-up round trips of every run of `mode`."""
    mode_runs = [run for run in runs if run.mode == mode]
    pooled = [ms for run in mode_runs for ms in run.measured_ms(warmup_frames)]
    if not pooled:
        raise ConnectionFailed(f"{LOOPBACK}: no frame came back with the {mode} jitter buffer")
    frames_sent = mode_runs[0].report.frames_sent
    return ModeSummary(
        mode=mode,
        p50_ms=float(np.percentile(pooled, 50)),
        p95_ms=float(np.percentile(pooled, 95)),
        run_p50_ms=[round(statistics.median(run.measured_ms(warmup_frames)), 1) for run in mode_runs],
        frames_back=[len(run.received) for run in mode_runs],
        frames_sent=frames_sent,
        packets_per_frame=sum(run.packets_sent for run in mode_runs) / (frames_sent * len(mode_runs)),
        measured_frames=len(pooled),
    )
