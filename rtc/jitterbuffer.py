"""A video jitter buffer that hands each frame to the decoder on its RTP marker bit.

aiortc's ``JitterBuffer`` completes a video frame only when a packet of the *next* frame arrives, which
adds one whole frame interval (67 ms at 15 fps) at every aiortc receiver. The sender sets the RTP marker
bit on the last packet of each frame (RFC 7741 for VP8, RFC 6184 for H.264, and aiortc's own
``RTCRtpSender``), so a frame is complete as soon as every packet up to and including the marker packet
has arrived in sequence. ``MarkerJitterBuffer`` releases it then; everything else (reordering, the
next-timestamp rule when a marker bit is missing, capacity and overflow handling, picture-loss signals)
follows aiortc's buffer, so the receiver around it cannot tell the difference except in time.

One difference on purpose: a packet lost for good (its NACK or retransmission lost too; aiortc asks again only
when another loss happens) blocks both buffers until the buffer overflows, several seconds of frozen video at
low packet rates, and then the frames held behind the hole leave one per arriving packet, seconds late. The
marker buffer asks for the missing packets again every ``RENACK_INTERVAL_S`` while a hole blocks (a NACK through
the receiver, when installed on one), and after ``MAX_GAP_WAIT_S`` gives up on the hole: it drops everything
before the newest frame start behind it and asks for a keyframe (the frames it dropped reference the lost one).

aiortc keeps its buffer in a private attribute; ``install_on_receiver`` swaps it on a video receiver and
falls back to the stock buffer, with a log line, if the attribute is not where the verified aiortc
versions keep it. ``replace_receiver_buffer`` is that swap for any buffer (``rtc.audio`` uses it for audio).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from importlib import metadata
from typing import Literal, TypeVar

from aiortc import RTCRtpReceiver
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket

from rtc.errors import JitterBufferModeError

logger = logging.getLogger(__name__)

JitterBufferMode = Literal["marker", "stock"]
JITTER_BUFFER_MODES: tuple[JitterBufferMode, ...] = ("marker", "stock")

# The aiortc releases whose RTCRtpReceiver was read and tested with this module: [low, high).
VERIFIED_AIORTC_RANGE: tuple[tuple[int, int, int], tuple[int, int, int]] = ((1, 16, 0), (1, 17, 0))
VERIFIED_AIORTC_SPECIFIER = ">=1.16.0,<1.17"
# Where RTCRtpReceiver keeps its buffer (the name-mangled ``self.__jitter_buffer``), and its kind.
RECEIVER_JITTER_BUFFER_ATTRIBUTE = "_RTCRtpReceiver__jitter_buffer"
RECEIVER_KIND_ATTRIBUTE = "_RTCRtpReceiver__kind"
RECEIVER_NACK_METHOD = "_send_rtcp_nack"

# Same tolerance as aiortc: a packet this far behind the buffer's start means the sender restarted.
MAX_MISORDER = 100
SEQUENCE_MODULO = 1 << 16
# How long a hole may block later packets before the buffer skips it, and how often it asks for the missing
# packets again meanwhile: a NACK and its retransmission take one round trip (tens of ms on the Internet, more
# on a loaded machine), and the sender keeps its last 128 packets for retransmission.
MAX_GAP_WAIT_S = 0.5
RENACK_INTERVAL_S = 0.1
NackRequest = Callable[[int, list[int]], None]
"""Ask the sender (media SSRC) to retransmit these sequence numbers."""


def _seq_add(a: int, b: int) -> int:
    """Add two RTP sequence numbers modulo 2**16."""
    return (a + b) % SEQUENCE_MODULO


class MarkerJitterBuffer:
    """Reorders RTP packets and releases a video frame as soon as its marker-bit packet completes it.

    Same interface and signals as ``aiortc.jitterbuffer.JitterBuffer``: ``add(packet)`` returns
    ``(pli_flag, frame_or_None)``; ``pli_flag`` is True exactly where aiortc's buffer raises it (a video
    buffer that had to drop packets to make room, or a sender restart). The marker rule applies to video
    only: on audio the marker bit marks the start of a talkspurt, so an audio buffer behaves as stock.
    """

    def __init__(self, capacity: int, prefetch: int = 0, is_video: bool = False,
                 max_gap_wait_s: float | None = MAX_GAP_WAIT_S, clock: Callable[[], float] = time.monotonic,
                 request_retransmission: NackRequest | None = None) -> None:
        if capacity <= 0 or capacity & (capacity - 1) != 0:
            raise ValueError(f"jitter buffer capacity must be a power of 2, got {capacity}")
        self._capacity = capacity
        self._origin: int | None = None
        self._packets: list[RtpPacket | None] = [None] * capacity
        self._prefetch = prefetch
        self._is_video = is_video
        self._max_gap_wait_s = max_gap_wait_s
        self._clock = clock
        self._blocked_since: float | None = None
        self._request_retransmission = request_retransmission
        self._renacks = 0
        self.holes_skipped = 0
        """Holes given up on after max_gap_wait_s (each with a keyframe request)."""

    @property
    def capacity(self) -> int:
        """Number of packet slots (a power of two)."""
        return self._capacity

    def add(self, packet: RtpPacket) -> tuple[bool, JitterFrame | None]:
        """Store a packet; return (request a keyframe, the oldest frame now complete or None)."""
        pli_flag = False
        if self._origin is None:
            self._origin = packet.sequence_number
            ahead = behind = 0
        else:
            ahead = _seq_add(packet.sequence_number, -self._origin)
            behind = _seq_add(self._origin, -packet.sequence_number)

        if behind < ahead:
            if behind < MAX_MISORDER:
                # late duplicate or retransmission of a packet already released: ignore it
                return False, None
            # far behind: the sender restarted its sequence, start over
            self.remove(self._capacity)
            self._origin = packet.sequence_number
            ahead = 0
            pli_flag = self._is_video

        if ahead >= self._capacity:
            # no room: drop whole frames from the front, never half of one
            if self.smart_remove(ahead - self._capacity + 1):
                self._origin = packet.sequence_number
            pli_flag = self._is_video

        self._packets[packet.sequence_number % self._capacity] = packet
        frame = self._pop_complete_frame()
        if frame is not None:
            self._blocked_since, self._renacks = None, 0
        elif self._is_video and self._skip_stale_hole():
            pli_flag = True
            frame = self._pop_complete_frame()
        return pli_flag, frame

    def _skip_stale_hole(self) -> bool:
        """Drop a hole that has blocked later packets for max_gap_wait_s, up to the newest frame start behind it.

        True if something was dropped (the caller asks for a keyframe). A frame starts where the packet before
        it ended a frame (marker bit) or carried another timestamp; a hole with no frame start behind it yet is
        kept (its frame may still complete).
        """
        assert self._origin is not None
        hole = next((offset for offset in range(self._capacity) if self._slot(offset) is None), None)
        behind = hole is not None and any(self._slot(offset) is not None for offset in range(hole + 1, self._capacity))
        if not behind or self._max_gap_wait_s is None:
            self._blocked_since, self._renacks = None, 0
            return False
        now = self._clock()
        if self._blocked_since is None:
            self._blocked_since = now
        blocked_for = now - self._blocked_since
        if blocked_for < self._max_gap_wait_s:
            if blocked_for >= RENACK_INTERVAL_S * (self._renacks + 1):
                self._renacks += 1
                self._ask_again()
            return False
        assert hole is not None
        newest_start = None
        for offset in range(hole + 2, self._capacity):
            before, packet = self._slot(offset - 1), self._slot(offset)
            if before is not None and packet is not None and (before.marker or before.timestamp != packet.timestamp):
                newest_start = offset
        if newest_start is None:
            return False
        self.remove(newest_start)
        self._blocked_since, self._renacks = None, 0
        self.holes_skipped += 1
        return True

    def _ask_again(self) -> None:
        """Request the packets missing before the newest one held (aiortc NACKs each loss only once)."""
        if self._request_retransmission is None:
            return
        assert self._origin is not None
        held = [offset for offset in range(self._capacity) if self._slot(offset) is not None]
        newest = self._slot(held[-1]) if held else None
        if newest is None:
            return
        missing = [_seq_add(self._origin, offset) for offset in range(held[-1]) if self._slot(offset) is None]
        if missing:
            self._request_retransmission(newest.ssrc, missing)

    def _slot(self, offset: int) -> RtpPacket | None:
        assert self._origin is not None
        return self._packets[(self._origin + offset) % self._capacity]

    def _pop_complete_frame(self) -> JitterFrame | None:
        """Release the oldest frame once enough frames are complete, scanning in-sequence packets."""
        assert self._origin is not None
        needed = max(1, self._prefetch)
        completed = 0
        first: JitterFrame | None = None
        first_length = 0
        frame_packets: list[RtpPacket] = []
        timestamp: int | None = None

        for offset in range(self._capacity):
            packet = self._packets[(self._origin + offset) % self._capacity]
            if packet is None:
                break  # a gap: nothing past it is complete in sequence
            if timestamp is not None and packet.timestamp != timestamp:
                # next-timestamp rule (aiortc's only rule): the previous frame ended without a marker bit
                completed += 1
                if first is None:
                    first, first_length = self._join(frame_packets, timestamp), offset
                if completed >= needed:
                    self.remove(first_length)
                    return first
                frame_packets = []
            timestamp = packet.timestamp
            frame_packets.append(packet)
            if self._is_video and packet.marker:
                # marker rule: this packet ends its frame, no need to wait for the next one
                completed += 1
                if first is None:
                    first, first_length = self._join(frame_packets, timestamp), offset + 1
                if completed >= needed:
                    self.remove(first_length)
                    return first
                frame_packets = []
                timestamp = None
        return None

    @staticmethod
    def _join(packets: list[RtpPacket], timestamp: int) -> JitterFrame:
        """Concatenate the depayloaded data the receiver stored on each packet."""
        return JitterFrame(data=b"".join(p._data for p in packets), timestamp=timestamp)  # type: ignore[attr-defined]

    def remove(self, count: int) -> None:
        """Drop the next ``count`` slots from the front of the buffer."""
        if count > self._capacity:
            raise ValueError(f"cannot remove {count} packets from a buffer of {self._capacity}")
        assert self._origin is not None or count == 0
        for _ in range(count):
            assert self._origin is not None
            self._packets[self._origin % self._capacity] = None
            self._origin = _seq_add(self._origin, 1)

    def smart_remove(self, count: int) -> bool:
        """Drop at least ``count`` slots, extended to the end of the frame they cut; True if it emptied the buffer."""
        assert self._origin is not None
        timestamp: int | None = None
        for index in range(self._capacity):
            slot = self._origin % self._capacity
            packet = self._packets[slot]
            if packet is not None:
                if index >= count and packet.timestamp != timestamp:
                    return False
                timestamp = packet.timestamp
            self._packets[slot] = None
            self._origin = _seq_add(self._origin, 1)
        return True


def aiortc_version() -> str:
    """The installed aiortc version string."""
    return metadata.version("aiortc")


def _release_tuple(version: str) -> tuple[int, int, int]:
    parts: list[int] = []
    for piece in version.split(".")[:3]:
        digits = "".join(ch for ch in piece if ch.isdigit()) or "0"
        parts.append(int(digits))
    while len(parts) < 3:
        parts.append(0)
    return parts[0], parts[1], parts[2]


def is_verified_aiortc(version: str | None = None) -> bool:
    """True if ``version`` (default: the installed aiortc) lies in VERIFIED_AIORTC_RANGE."""
    release = _release_tuple(version if version is not None else aiortc_version())
    low, high = VERIFIED_AIORTC_RANGE
    return low <= release < high


def receiver_jitter_buffer_problem(receiver: RTCRtpReceiver, ours: type = MarkerJitterBuffer) -> str | None:
    """Why the buffer on this receiver cannot be swapped (naming the attribute), or None if it can.

    The buffer there must be aiortc's own `JitterBuffer` or an `ours` already installed.
    """
    current = getattr(receiver, RECEIVER_JITTER_BUFFER_ATTRIBUTE, None)
    if current is None:
        return (
            f"RTCRtpReceiver has no attribute {RECEIVER_JITTER_BUFFER_ATTRIBUTE!r} "
            f"(aiortc {aiortc_version()}; verified {VERIFIED_AIORTC_SPECIFIER})"
        )
    if not isinstance(current, (JitterBuffer, ours)):
        return (
            f"RTCRtpReceiver.{RECEIVER_JITTER_BUFFER_ATTRIBUTE} is a {type(current).__qualname__}, "
            f"not aiortc.jitterbuffer.JitterBuffer (aiortc {aiortc_version()}; verified {VERIFIED_AIORTC_SPECIFIER})"
        )
    return None


def receiver_kind(receiver: RTCRtpReceiver) -> str | None:
    """"audio" or "video": what the receiver receives."""
    kind = getattr(receiver, RECEIVER_KIND_ATTRIBUTE, None)
    if kind is None and receiver.track is not None:
        kind = receiver.track.kind
    return kind if isinstance(kind, str) else None


def _nack_sender(receiver: RTCRtpReceiver) -> NackRequest | None:
    """A way to send a NACK through `receiver` (aiortc's ``_send_rtcp_nack``), or None where it has none."""
    send = getattr(receiver, RECEIVER_NACK_METHOD, None)
    if send is None:
        logger.warning("RTCRtpReceiver has no %s (aiortc %s): lost packets are asked for only once",
                       RECEIVER_NACK_METHOD, aiortc_version())
        return None

    in_flight: set[asyncio.Task[None]] = set()  # the loop keeps only weak references to tasks

    def request(media_ssrc: int, lost: list[int]) -> None:
        # add() runs inside the receiver's packet handler, on the event loop: send the NACK in a task of its own.
        task = asyncio.get_running_loop().create_task(send(media_ssrc, lost))
        in_flight.add(task)
        task.add_done_callback(in_flight.discard)

    return request


B = TypeVar("B")


def replace_receiver_buffer(receiver: RTCRtpReceiver, ours: type[B], make: Callable[[JitterBuffer], B],
                            what: str) -> B | None:
    """Swap aiortc's jitter buffer on `receiver` for `make(stock_buffer)`; the buffer in place, or None.

    Call it before media flows. An `ours` already there is kept (installing twice is harmless). None, with a
    warning naming `what` and the reason, when aiortc keeps its buffer elsewhere or packets already arrived.
    """
    problem = receiver_jitter_buffer_problem(receiver, ours)
    if problem is not None:
        logger.warning("keeping aiortc's stock jitter buffer (%s not installed): %s", what, problem)
        return None
    current = getattr(receiver, RECEIVER_JITTER_BUFFER_ATTRIBUTE)
    if isinstance(current, ours):
        return current
    if getattr(current, "_origin", None) is not None:
        logger.warning("keeping aiortc's stock jitter buffer: packets already arrived on this receiver; "
                       "install the %s before media flows", what)
        return None
    if not is_verified_aiortc():
        logger.warning("aiortc %s is outside the verified range %s; installing the %s anyway because %s looks as "
                       "expected", aiortc_version(), VERIFIED_AIORTC_SPECIFIER, what, RECEIVER_JITTER_BUFFER_ATTRIBUTE)
    replacement = make(current)
    setattr(receiver, RECEIVER_JITTER_BUFFER_ATTRIBUTE, replacement)
    logger.debug("%s installed", what)
    return replacement


def install_on_receiver(receiver: RTCRtpReceiver, mode: JitterBufferMode) -> bool:
    """Put a MarkerJitterBuffer on a video receiver (mode "marker"); True if it is installed.

    Call it before media flows (right after the receiver is created, or in the "track" event). Audio
    receivers and mode "stock" keep aiortc's buffer (`rtc.audio` has the audio buffers). If aiortc keeps its
    buffer somewhere else, the stock buffer stays and a warning names the attribute.
    """
    if mode not in JITTER_BUFFER_MODES:
        raise JitterBufferModeError(f"--jitter-buffer must be one of {', '.join(JITTER_BUFFER_MODES)}, got {mode!r}")
    if mode == "stock" or receiver_kind(receiver) != "video":
        return False
    installed = replace_receiver_buffer(
        receiver, MarkerJitterBuffer,
        lambda stock: MarkerJitterBuffer(capacity=stock.capacity, prefetch=int(getattr(stock, "_prefetch", 0)),
                                         is_video=True, request_retransmission=_nack_sender(receiver)),
        "marker jitter buffer")
    return installed is not None
