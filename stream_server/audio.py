"""A session's audio: forwarded as received (Opus, never decoded), delayed to stay in step with the processed video.

The ingest peer's audio receiver carries an `rtc.audio.EncodedAudioTap`, which hands every Opus packet, with its
arrival time, to the session's `AudioRelay`. The relay holds each packet until its arrival time plus the video's
current delay through the server (`VideoDelay`: the median, over the last second of frames, of the time from a
frame's decoded input to its processed frame's packets being sent), then gives it to every `ForwardedAudioTrack`:
the /offer peer's return audio and each WHEP viewer's. aiortc's RTCRtpSender sends an `av.Packet` from a track
as it is (`Encoder.pack`, no encoding), so the Opus bytes leave exactly as they came in, with their own RTP
timestamps' spacing; only the time they leave at changes.

Bounded everywhere: the relay holds at most MAX_AUDIO_DELAY_S of audio (the delay is clamped there) and each
outgoing track at most TRACK_QUEUE_PACKETS; a consumer that falls behind loses its oldest packets (counted),
nothing grows. Audio that arrives before the session's first processed frames have been sent (MIN_DELAY_FRAMES) is
dropped: until then there is no video to keep step with.
"""

from __future__ import annotations

import asyncio
import logging
import statistics
import time
from collections import deque
from collections.abc import Callable
from fractions import Fraction
from typing import Any

from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av.packet import Packet

from rtc.audio import EncodedAudio
from stream_server.tracks import Subscribers

logger = logging.getLogger(__name__)

AUDIO_CLOCK_HZ = 48_000
"""Opus's RTP clock (RFC 7587), whatever the sampling rate inside."""
AUDIO_TIME_BASE = Fraction(1, AUDIO_CLOCK_HZ)
DELAY_WINDOW_FRAMES = 15
"""Frames the video delay is the median of: one second at 15 fps. A median ignores the first frame's wait for
face detection and single slow frames, and follows a lasting change within half a window."""
MIN_DELAY_FRAMES = 3
"""Frames sent before the estimate counts: the first ones wait for the first face detection, so a median of
fewer would be theirs."""
MAX_AUDIO_DELAY_S = 1.0
PACKET_S = 0.02
"""Opus's usual frame length, used only to size the bounds."""
MAX_HELD_PACKETS = int(2 * MAX_AUDIO_DELAY_S / PACKET_S)
TRACK_QUEUE_PACKETS = 10
"""200 ms of audio per outgoing track: an encoder-free sender takes each packet at once, so only a stalled one fills it."""


class VideoDelay:
    """The running estimate of how long this session's video spends in the server, in seconds.

    `observe` takes one frame's delay: from the server holding its decoded input to the processed frame's
    packets having been sent (measured by the outgoing track when the sender asks for the next frame). The
    estimate is the median of the last DELAY_WINDOW_FRAMES observations; None before MIN_DELAY_FRAMES.
    """

    def __init__(self, window: int = DELAY_WINDOW_FRAMES) -> None:
        self._recent: deque[float] = deque(maxlen=window)

    def observe(self, seconds: float) -> None:
        """One processed frame was sent `seconds` after its input was decoded."""
        self._recent.append(min(max(seconds, 0.0), MAX_AUDIO_DELAY_S))

    @property
    def seconds(self) -> float | None:
        """The current estimate, or None until MIN_DELAY_FRAMES frames were sent."""
        return statistics.median(self._recent) if len(self._recent) >= MIN_DELAY_FRAMES else None


class AudioRelay:
    """One session's audio on its way out: held for the video's delay, then handed to every subscribed track.

    `push` (the receiver's tap) runs on the event loop; `run()` is the session's task that releases packets on
    time. `listeners` also get each packet, undelayed, as it arrives (the session's recorder times packets itself).
    """

    def __init__(self, delay: VideoDelay) -> None:
        self._delay = delay
        self._held: deque[tuple[float, EncodedAudio]] = deque()
        self._wake = asyncio.Event()
        self._last_release = 0.0
        self._subscribers = Subscribers[ForwardedAudioTrack]()
        self._closed = False
        self.listeners: list[Callable[[EncodedAudio], None]] = []
        self.received = 0
        self.forwarded = 0
        self.dropped = 0
        """Packets dropped before release: before the first video frame went out, or over the relay's bound."""

    @property
    def delay_s(self) -> float | None:
        """The delay applied to packets arriving now."""
        return self._delay.seconds

    def push(self, audio: EncodedAudio) -> None:
        """A packet from the ingest peer: schedule it for arrival time + the video's delay."""
        self.received += 1
        for listener in self.listeners:
            listener(audio)
        delay = self._delay.seconds
        if delay is None or self._closed:
            self.dropped += 1
            return
        # Never earlier than the packet before: a falling estimate must not reorder or burst the audio.
        release_at = max(audio.arrived_at + delay, self._last_release)
        if len(self._held) >= MAX_HELD_PACKETS:
            self._held.popleft()
            self.dropped += 1
        self._held.append((release_at, audio))
        self._last_release = release_at
        self._wake.set()

    async def run(self) -> None:
        """Release held packets at their time to every subscriber, until cancelled."""
        while True:
            if not self._held:
                self._wake.clear()
                await self._wake.wait()
                continue
            release_at, audio = self._held[0]
            wait = release_at - time.monotonic()
            if wait > 0:
                # Packets pushed meanwhile are released later than this one, so the head stays the head.
                await asyncio.sleep(wait)
                if not self._held:
                    continue  # closed meanwhile
            self._held.popleft()
            self.forwarded += 1
            for track in self._subscribers:
                track.offer(audio)

    def subscribe(self) -> ForwardedAudioTrack:
        """A new outgoing audio track fed by this relay."""
        return self._subscribers.add(ForwardedAudioTrack(self))

    def unsubscribe(self, track: ForwardedAudioTrack) -> None:
        """Stop feeding `track`."""
        self._subscribers.remove(track)

    def close(self) -> None:
        """End every subscribed track and drop what is held."""
        self._closed = True
        self._held.clear()
        self._subscribers.close()


class ForwardedAudioTrack(MediaStreamTrack):
    """An outgoing audio track of encoded Opus packets: aiortc's sender sends them without re-encoding."""

    kind = "audio"

    def __init__(self, relay: AudioRelay) -> None:
        super().__init__()
        self._relay = relay
        self._queue: deque[EncodedAudio] = deque(maxlen=TRACK_QUEUE_PACKETS)
        self._ready = asyncio.Event()
        self.dropped = 0

    def offer(self, audio: EncodedAudio) -> None:
        """The next packet to send; the oldest waiting one is dropped (counted) when the track is full."""
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1
        self._queue.append(audio)
        self._ready.set()

    async def recv(self) -> Packet[Any]:
        """The next packet (aiortc's sender takes an av.Packet as already encoded)."""
        while True:
            if self.readyState != "live":
                raise MediaStreamError
            if self._queue:
                break
            self._ready.clear()
            await self._ready.wait()
        audio = self._queue.popleft()
        packet = Packet(audio.data)
        packet.pts, packet.time_base = audio.timestamp, AUDIO_TIME_BASE
        return packet

    def stop(self) -> None:
        super().stop()
        self._relay.unsubscribe(self)
        self._ready.set()
