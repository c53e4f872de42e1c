"""`swapstream profile --av`: how far the returned sound is from the returned picture (A/V sync), flash by flash.

The profiler sends a clip whose picture flashes once a second (a square near the top-right corner turns from
black to white for one frame: away from the face, the reserved top-left corner and the bottom-right
"AI-generated" mark) and whose sound clicks (a 5 ms 1 kHz burst) at the same instants, both tracks paced by
one clock. In the stream that comes back it finds each flash (the frame's number, read from its code, says
which frame it was and when it left) and each click (its first sample over a quarter of the click's level),
and reports for every pair

    offset = (click back - click sent) - (flash back - flash sent)

the audio's time through the server minus the picture's: how far the sound is from the picture for a viewer of
the returned stream, given that they left in step. Positive: the sound is late. It includes everything on the
way (the client's video encoding, the server, both decoders, Opus's 6.5 ms look-ahead), as a viewer would
have it, and nothing of this machine's playback.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from typing import Any

import av
import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from clients.errors import ConnectionFailed
from clients.media import AUDIO_FRAME_SAMPLES, AUDIO_RATE, MediaClock, PacedAudioTrack
from clients.roundtrip import RunReport, collect_round_trips, percentiles, stamped_track, summarize_run
from clients.webrtc import JitterBufferMode, ServerEndpoint, SwapPeer

logger = logging.getLogger(__name__)

FLASH_PERIOD_S = 1.0
CLICK_S = 0.005
CLICK_HZ = 1000.0
CLICK_LEVEL = 16000
ONSET_LEVEL = CLICK_LEVEL // 4
"""A returned sample this loud starts a click: far over Opus's noise on silence, under the burst's first peak."""
FLASH_LEVEL = 128.0
"""Mean brightness of the square that counts as a flash (black 0, white 255 when sent)."""
CLICK_REFRACTORY_S = 0.5
MAX_PAIR_GAP_S = 0.5
"""A click and a flash further apart than this are not a pair (they are a second apart)."""


@dataclass(frozen=True)
class FlashClip:
    """Where and when the clip flashes and clicks, for frames sent at `fps`."""

    fps: float
    period_s: float = FLASH_PERIOD_S
    lit_frames: int = 1
    """Frames each flash lasts (the profiler times the first; a recording test may want a flash that survives a
    dropped frame)."""

    def flash_index(self, flash: int) -> int:
        """The video frame that shows flash number `flash` first."""
        return round(flash * self.period_s * self.fps)

    def is_flash(self, index: int) -> bool:
        """Whether video frame `index` is the first frame of a flash."""
        return self.flash_index(round(index / (self.period_s * self.fps))) == index

    def is_lit(self, index: int) -> bool:
        """Whether video frame `index` shows a flash (its first frame or one of the `lit_frames` after it)."""
        return any(self.is_flash(index - back) for back in range(self.lit_frames))

    def click_sample(self, index: int) -> int:
        """The audio sample at which the click of flash frame `index` starts (the frame's own instant)."""
        return round(index / self.fps * AUDIO_RATE)

    @staticmethod
    def square(width: int, height: int) -> tuple[slice, slice]:
        """The flashing square's rows and columns: near the top-right corner, an eighth of the short side."""
        side = max(min(width, height) // 8, 8)
        margin = side // 2
        return slice(margin, margin + side), slice(width - margin - side, width - margin)

    def mark(self, index: int, rgb: np.ndarray) -> np.ndarray:
        """Draw the square on frame `index`: white while a flash lasts, black otherwise."""
        rows, cols = self.square(rgb.shape[1], rgb.shape[0])
        rgb[rows, cols] = 255 if self.is_lit(index) else 0
        return rgb

    def shows_flash(self, rgb: np.ndarray) -> bool:
        """Whether a returned frame shows the square lit."""
        rows, cols = self.square(rgb.shape[1], rgb.shape[0])
        return float(rgb[rows, cols].mean()) > FLASH_LEVEL

    def audio_frames(self, frame_count: int) -> Iterator[av.AudioFrame]:
        """20 ms stereo frames of silence with a click at each flash frame's instant, as long as the video."""
        total = self.click_sample(frame_count)
        burst = (CLICK_LEVEL * np.sin(2 * np.pi * CLICK_HZ * np.arange(round(CLICK_S * AUDIO_RATE)) / AUDIO_RATE))
        starts = [self.click_sample(self.flash_index(k)) for k in range(int(frame_count / self.fps / self.period_s) + 2)]
        for first in range(0, total, AUDIO_FRAME_SAMPLES):
            mono = np.zeros(AUDIO_FRAME_SAMPLES, np.float64)
            for start in starts:
                lo, hi = max(start, first), min(start + burst.size, first + AUDIO_FRAME_SAMPLES)
                if lo < hi:
                    mono[lo - first:hi - first] = burst[lo - start:hi - start]
            stereo = np.repeat(mono.astype(np.int16), 2)[None, :]
            frame = av.AudioFrame.from_ndarray(stereo, format="s16", layout="stereo")
            frame.sample_rate = AUDIO_RATE
            yield frame


@dataclass
class AvReport:
    """The A/V offsets of one run, with the round trips of the picture and the sound they come from."""

    url: str
    options: dict[str, Any]
    fps: float
    flashes_sent: int = 0
    flashes_back: int = 0
    clicks_back: int = 0
    offset_ms: dict[str, float] = field(default_factory=dict)
    abs_offset_ms: dict[str, float] = field(default_factory=dict)
    video_round_trip_ms: dict[str, float] = field(default_factory=dict)
    audio_round_trip_ms: dict[str, float] = field(default_factory=dict)
    server_audio_delay_ms: float | None = None
    server_added_ms: float | None = None
    pairs: list[tuple[int, float, float, float]] = field(default_factory=list)
    """(flash frame, sent at s, video round trip ms, audio round trip ms) per pair."""

    def summary(self) -> dict[str, Any]:
        return asdict(self)


async def _collect_clicks(audio: MediaStreamTrack, onsets: list[float]) -> None:
    """Append the arrival time of each click's first loud sample, until the track ends or the task is cancelled."""
    quiet_until = 0.0
    try:
        while True:
            frame = await audio.recv()
            arrived = time.monotonic()
            if not isinstance(frame, av.AudioFrame):
                continue
            samples = np.abs(frame.to_ndarray().reshape(-1, len(frame.layout.channels))[:, 0].astype(np.int32))
            loud = np.flatnonzero(samples > ONSET_LEVEL)
            if loud.size and arrived >= quiet_until:
                onset = arrived + loud[0] / frame.sample_rate
                onsets.append(onset)
                quiet_until = onset + CLICK_REFRACTORY_S
    except MediaStreamError:
        pass


def pair_offsets(clip: FlashClip, flashes: dict[int, float], onsets: list[float], video_sent: dict[int, float],
                 audio_sent: dict[int, float], warmup_s: float) -> list[tuple[int, float, float, float]]:
    """Pair each returned flash (frame -> arrival) with the click that came back nearest to it.

    Returns (flash frame, sent at s from the first frame, video round trip ms, audio round trip ms) for each
    pair after the warm-up; the offset is the difference of the two round trips.
    """
    pairs = []
    origin = video_sent.get(0, 0.0)
    for index, shown in sorted(flashes.items()):
        sample = clip.click_sample(index)
        frame, within = divmod(sample, AUDIO_FRAME_SAMPLES)
        if index not in video_sent or frame not in audio_sent or video_sent[index] - origin < warmup_s:
            continue
        near = [t for t in onsets if abs(t - shown) <= MAX_PAIR_GAP_S]
        if not near:
            continue
        heard = min(near, key=lambda t: abs(t - shown))
        click_sent = audio_sent[frame] + within / AUDIO_RATE
        pairs.append((index, video_sent[index] - origin, (shown - video_sent[index]) * 1000,
                      (heard - click_sent) * 1000))
    return pairs


async def measure_av(endpoint: ServerEndpoint, frames: list[np.ndarray], fps: float, seconds: float,
                     options: dict[str, Any] | None = None, jitter_buffer: JitterBufferMode = "marker",
                     warmup_s: float = 1.0) -> AvReport:
    """Send `frames` (looped, stamped, flashing) with clicks for `seconds` and pair what comes back."""
    clip = FlashClip(fps)
    count = max(1, round(seconds * fps))
    clock = MediaClock()
    video = stamped_track(frames, fps, count, mark=clip.mark, clock=clock)
    sound = PacedAudioTrack(clip.audio_frames(count), clock)
    report = AvReport(url=endpoint.url, options=dict(options or {}), fps=fps)
    run = RunReport(label="av", url=endpoint.url, options=report.options)
    flashes: dict[int, float] = {}
    onsets: list[float] = []

    def look(number: int, rgb: np.ndarray, arrived: float) -> None:
        if clip.is_flash(number) and clip.shows_flash(rgb):
            flashes.setdefault(number, arrived)

    async with SwapPeer(endpoint, send=video, send_audio=sound, options=report.options,
                        jitter_buffer=jitter_buffer) as peer:
        if peer.video is None or peer.audio is None:
            raise ConnectionFailed(f"{endpoint.url}: the server sent no audio back (it forwards Opus audio from "
                                   "the sender; is it an older swapstream?)")
        clicks = asyncio.ensure_future(_collect_clicks(peer.audio, onsets))
        try:
            received_at = await collect_round_trips(peer.video, video, run, endpoint.url, count, seconds, inspect=look)
        finally:
            clicks.cancel()
            await asyncio.gather(clicks, return_exceptions=True)
        audio_stats = peer.server_stats.get("audio") or {}
        report.server_audio_delay_ms = audio_stats.get("delay_ms")
        report.server_added_ms = peer.server_stats.get("added_ms")
    summarize_run(run, video, received_at, warmup_s)
    report.flashes_sent = sum(clip.is_flash(i) for i in range(count))
    report.flashes_back, report.clicks_back = len(flashes), len(onsets)
    report.pairs = pair_offsets(clip, flashes, onsets, video.sent_at, sound.sent_at, warmup_s)
    offsets = [audio - video for _, _, video, audio in report.pairs]
    report.offset_ms = percentiles(offsets)
    report.abs_offset_ms = percentiles([abs(o) for o in offsets])
    report.video_round_trip_ms = percentiles([video for _, _, video, _ in report.pairs])
    report.audio_round_trip_ms = percentiles([audio for _, _, _, audio in report.pairs])
    return report


def format_av_summary(report: dict[str, Any]) -> str:
    """The lines `swapstream profile --av` prints, from `AvReport.summary()`."""
    offset, absolute = report["offset_ms"], report["abs_offset_ms"]
    counts = (f"{report['flashes_back']}/{report['flashes_sent']} flashes and {report['clicks_back']} clicks came "
              "back")
    if not offset:
        return f"A/V: no flash and click came back as a pair ({counts})"
    return "\n".join([
        f"A/V offset (sound minus picture, + = sound late) over {offset['count']} flashes: p50 {offset['p50']:+.1f} "
        f"ms, p95 {offset['p95']:+.1f} ms (min {offset['min']:+.1f}, max {offset['max']:+.1f}); |offset| p50 "
        f"{absolute['p50']:.1f} ms, p95 {absolute['p95']:.1f} ms",
        f"  round trip of the flashes p50 {report['video_round_trip_ms']['p50']:.1f} ms, of the clicks p50 "
        f"{report['audio_round_trip_ms']['p50']:.1f} ms; the server's audio delay {report['server_audio_delay_ms']} "
        f"ms, its video added latency {report['server_added_ms']} ms (mean); {counts}",
    ])
