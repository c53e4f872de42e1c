"""Audio on the receive path: an immediate audio jitter buffer, and a tap that takes the encoded packets instead.

aiortc's audio receiver buffers four 20 ms frames before it decodes the first (`JitterBuffer(prefetch=4)`), 80 ms
that a receiver measuring or recording A/V sync would add to the audio only. An Opus RTP packet is a whole
frame (RFC 7587), so nothing needs reassembly: `ImmediateAudioBuffer` hands each packet to the decoder as it
arrives and drops packets that come after a newer one (late or repeated; a real-time receiver would not play
them anyway).

`EncodedAudioTap` is the same buffer for a receiver whose audio is forwarded, not played: each packet goes, still
Opus-encoded, to a callback as `EncodedAudio` (its RTP timestamp counted from the first packet, and its arrival
time), and the receiver's decoder gets nothing, so the audio is neither decoded nor queued on the receiving side.

Both take the place of aiortc's buffer through `rtc.jitterbuffer.replace_receiver_buffer` (same private attribute,
same verified aiortc range as the marker buffer for video).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterFrame
from aiortc.rtp import RtpPacket

from rtc.jitterbuffer import MAX_MISORDER, SEQUENCE_MODULO, receiver_kind, replace_receiver_buffer

TIMESTAMP_MODULO = 1 << 32


@dataclass(frozen=True)
class EncodedAudio:
    """One received audio packet, still encoded: one Opus frame (usually 20 ms) for Opus."""

    data: bytes
    """The RTP payload (for Opus, one Opus packet)."""
    timestamp: int
    """RTP timestamp counted from the stream's first packet (48 kHz for Opus), never wrapping."""
    arrived_at: float
    """When the packet reached this receiver (time.monotonic seconds)."""


class ImmediateAudioBuffer:
    """An audio jitter buffer that releases every packet as it arrives; packets behind a newer one are dropped.

    Same interface as `aiortc.jitterbuffer.JitterBuffer` (`add(packet) -> (pli_flag, frame or None)`; audio
    never asks for a keyframe). `dropped` counts the late or repeated packets.
    """

    def __init__(self, capacity: int = 16) -> None:
        self._capacity = capacity
        self._last_sequence: int | None = None
        self._origin: int | None = None  # aiortc's "packets already arrived" sign (rtc.jitterbuffer)
        self.dropped = 0

    @property
    def capacity(self) -> int:
        """Kept for aiortc's interface; nothing is held."""
        return self._capacity

    def _in_order(self, packet: RtpPacket) -> bool:
        """Whether `packet` comes after every packet released so far (a sender restart counts as after)."""
        if self._last_sequence is None:
            self._origin = packet.sequence_number
        else:
            ahead = (packet.sequence_number - self._last_sequence) % SEQUENCE_MODULO
            behind = (self._last_sequence - packet.sequence_number) % SEQUENCE_MODULO
            if ahead == 0 or (behind < ahead and behind < MAX_MISORDER):
                self.dropped += 1
                return False
        self._last_sequence = packet.sequence_number
        return True

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """The packet as a frame for the decoder at once, or None when it is late."""
        if not self._in_order(packet):
            return False, None
        return False, JitterFrame(data=packet._data, timestamp=packet.timestamp)  # type: ignore[attr-defined]


class EncodedAudioTap(ImmediateAudioBuffer):
    """Sends each in-order packet, still encoded, to `on_audio`; the receiver's decoder gets nothing."""

    def __init__(self, on_audio: Callable[[EncodedAudio], None], capacity: int = 16) -> None:
        super().__init__(capacity)
        self._on_audio = on_audio
        self._first_timestamp: int | None = None
        self._last_timestamp = 0
        self._unwrapped = 0
        self.packets = 0

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """Forward the packet with its arrival time; never release a frame to aiortc's decoder."""
        arrived_at = time.monotonic()
        if self._in_order(packet):
            self.packets += 1
            self._on_audio(EncodedAudio(packet._data, self._unwrap(packet.timestamp), arrived_at))  # type: ignore[attr-defined]
        return False, None

    def _unwrap(self, timestamp: int) -> int:
        if self._first_timestamp is None:
            self._first_timestamp = self._last_timestamp = timestamp
            return 0
        step = (timestamp - self._last_timestamp) % TIMESTAMP_MODULO
        if step >= TIMESTAMP_MODULO // 2:
            step -= TIMESTAMP_MODULO  # a packet sent earlier than the last one (reordered across a talkspurt)
        self._last_timestamp = timestamp
        self._unwrapped += step
        return self._unwrapped


def install_audio_buffer(receiver: RTCRtpReceiver, buffer: ImmediateAudioBuffer) -> bool:
    """Put `buffer` in place of aiortc's audio jitter buffer on `receiver`, before media flows; True if installed.

    False, with a warning, on a video receiver's or where aiortc keeps its buffer elsewhere (rtc.jitterbuffer).
    """
    if receiver_kind(receiver) != "audio":
        return False
    return replace_receiver_buffer(receiver, ImmediateAudioBuffer, lambda stock: buffer, type(buffer).__name__) is buffer
