"""MarkerJitterBuffer on real RTP packets from aiortc's VP8 and H.264 encoders, against aiortc's own buffer."""

from __future__ import annotations

import fractions
import logging
import random
from dataclasses import dataclass

import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.codecs import CODECS, depayload, get_decoder, get_encoder
from aiortc.jitterbuffer import JitterBuffer, JitterFrame
from aiortc.rtp import RtpPacket
from av import VideoFrame

from rtc import jitterbuffer as jb
from rtc.errors import JitterBufferModeError
from rtc.jitterbuffer import MarkerJitterBuffer, install_on_receiver

WIDTH, HEIGHT = 320, 240
VIDEO_CLOCK = 90000
FRAME_TICKS = VIDEO_CLOCK // 15


@dataclass(frozen=True)
class EncodedFrame:
    """One frame as aiortc's encoder produced it: its source picture and RTP payloads."""

    picture: np.ndarray  # RGB uint8
    payloads: list[bytes]


def _codec(mime: str):
    return next(c for c in CODECS["video"] if c.mimeType == mime)


def _encode(mime: str, count: int, seed: int = 0) -> list[EncodedFrame]:
    """Encode a moving textured picture with aiortc's encoder (payloads exactly as RTCRtpSender gets them)."""
    rng = np.random.default_rng(seed)
    texture = rng.integers(0, 256, (HEIGHT // 4 + 16, WIDTH // 4 + 16, 3), dtype=np.uint8)
    # 4 px noise blocks moving 3 px a frame: hard to predict, so every frame spans several packets
    texture = np.kron(texture, np.ones((4, 4, 1), dtype=np.uint8))
    encoder = get_encoder(_codec(mime))
    encoder.target_bitrate = 1_500_000
    frames = []
    for index in range(count):
        shift = 3 * index
        picture = np.ascontiguousarray(texture[shift : shift + HEIGHT, shift : shift + WIDTH])
        video_frame = VideoFrame.from_ndarray(picture, format="rgb24")
        video_frame.pts = index * FRAME_TICKS
        video_frame.time_base = fractions.Fraction(1, VIDEO_CLOCK)
        payloads, _ = encoder.encode(video_frame, False)
        frames.append(EncodedFrame(picture=picture, payloads=payloads))
    return frames


@pytest.fixture(scope="module")
def vp8_frames() -> list[EncodedFrame]:
    return _encode("video/VP8", 10)


@pytest.fixture(scope="module")
def h264_frames() -> list[EncodedFrame]:
    return _encode("video/H264", 10)


@pytest.fixture(params=["video/VP8", "video/H264"])
def stream(request, vp8_frames, h264_frames):
    """(mime, encoded frames) for each codec."""
    return request.param, vp8_frames if request.param == "video/VP8" else h264_frames


@dataclass
class Sent:
    """A packet as the receiver sees it, with the frame it belongs to."""

    frame: int
    packet: RtpPacket


def _packetize(mime: str, frames: list[EncodedFrame], first_seq: int = 1000, first_ts: int = 12345) -> list[Sent]:
    """Wrap payloads in RTP as RTCRtpSender does (marker on each frame's last packet), through the wire format,
    then depayload as RTCRtpReceiver does."""
    codec = _codec(mime)
    sent = []
    seq = first_seq
    for index, frame in enumerate(frames):
        for i, payload in enumerate(frame.payloads):
            packet = RtpPacket(
                payload_type=codec.payloadType,
                sequence_number=seq,
                timestamp=(first_ts + index * FRAME_TICKS) % (1 << 32),
                marker=1 if i == len(frame.payloads) - 1 else 0,
                payload=payload,
            )
            parsed = RtpPacket.parse(packet.serialize())
            parsed._data = depayload(codec, parsed.payload)  # type: ignore[attr-defined]
            sent.append(Sent(frame=index, packet=parsed))
            seq = (seq + 1) % 65536
    return sent


@dataclass(frozen=True)
class Release:
    """What a buffer handed out: after which delivered packet, and whether it asked for a keyframe."""

    step: int
    frame: JitterFrame | None
    pli: bool


def _feed(buffer, packets: list[RtpPacket]) -> list[Release]:
    out = []
    for step, packet in enumerate(packets):
        pli, frame = buffer.add(packet)
        out.append(Release(step=step, frame=frame, pli=pli))
    return out


def _frames(releases: list[Release]) -> list[tuple[int, JitterFrame]]:
    return [(r.step, r.frame) for r in releases if r.frame is not None]


def _frame_bytes(sent: list[Sent], index: int) -> bytes:
    return b"".join(s.packet._data for s in sent if s.frame == index)  # type: ignore[attr-defined]


def _decode_all(mime: str, frames: list[JitterFrame]) -> list[np.ndarray]:
    decoder = get_decoder(_codec(mime))
    pictures = []
    for frame in frames:
        pictures.extend(f.to_ndarray(format="rgb24") for f in decoder.decode(frame))
    return pictures


def _assert_decodes_like_the_sender(mime: str, released: list[JitterFrame], frames: list[EncodedFrame]) -> None:
    """The released frames decode to exactly the pictures the sender's own payloads decode to."""
    codec = _codec(mime)
    reference = _decode_all(
        mime, [JitterFrame(b"".join(depayload(codec, p) for p in f.payloads), 0) for f in frames]
    )
    pictures = _decode_all(mime, released)
    assert len(pictures) == len(reference) == len(frames)
    for picture, expected in zip(pictures, reference):
        np.testing.assert_array_equal(picture, expected)


def test_in_order_releases_each_frame_on_its_marker_packet(stream):
    mime, frames = stream
    sent = _packetize(mime, frames)
    assert all(len(f.payloads) >= 3 for f in frames), "need multi-packet frames to test reassembly"
    marker_steps = [i for i, s in enumerate(sent) if s.packet.marker]

    marker = _frames(_feed(MarkerJitterBuffer(capacity=512, is_video=True), [s.packet for s in sent]))
    stock = _frames(_feed(JitterBuffer(capacity=512, is_video=True), [s.packet for s in sent]))

    assert [step for step, _ in marker] == marker_steps  # every frame, the moment its last packet lands
    for index, (_, frame) in enumerate(marker):
        assert frame.data == _frame_bytes(sent, index)
        assert frame.timestamp == sent[marker_steps[index]].packet.timestamp
    # aiortc needs the next frame's first packet: one frame later, and never the last frame
    assert [step for step, _ in stock] == [s + 1 for s in marker_steps[:-1]]
    assert [f.data for _, f in stock] == [f.data for _, f in marker[:-1]]

    _assert_decodes_like_the_sender(mime, [f for _, f in marker], frames)


def test_shuffled_packets_within_a_frame_are_reassembled(stream):
    mime, frames = stream
    sent = _packetize(mime, frames)
    rng = random.Random(7)
    shuffled: list[Sent] = []
    for index in range(len(frames)):
        group = [s for s in sent if s.frame == index]
        # the first packet ever received sets the buffer's start (as in aiortc), so the first frame is in order
        while index > 0:
            rng.shuffle(group)
            if not group[-1].packet.marker:  # the marker packet must not simply come last
                break
        shuffled.extend(group)

    releases = _feed(MarkerJitterBuffer(capacity=512, is_video=True), [s.packet for s in shuffled])
    got = _frames(releases)
    assert len(got) == len(frames)
    for index, (step, frame) in enumerate(got):
        last_of_frame = max(i for i, s in enumerate(shuffled) if s.frame == index)
        assert step == last_of_frame, "released as soon as the frame's last missing packet arrived"
        assert frame.data == _frame_bytes(sent, index)
    assert not any(r.pli for r in releases)
    _assert_decodes_like_the_sender(mime, [f for _, f in got], frames)


def test_missing_marker_bit_falls_back_to_next_frames_first_packet(stream):
    mime, frames = stream
    sent = _packetize(mime, frames)
    last_of_3 = max(i for i, s in enumerate(sent) if s.frame == 3)
    sent[last_of_3].packet.marker = 0  # the sender's end-of-frame signal is lost

    got = _frames(_feed(MarkerJitterBuffer(capacity=512, is_video=True), [s.packet for s in sent]))
    steps = {index: step for index, (step, _) in enumerate(got)}
    assert len(got) == len(frames)
    assert steps[3] == last_of_3 + 1  # the next frame's first packet completes it, as in aiortc
    assert got[3][1].data == _frame_bytes(sent, 3)
    assert steps[4] == max(i for i, s in enumerate(sent) if s.frame == 4)  # back on the marker rule


def test_lost_marker_packet_is_not_released_until_retransmitted(stream):
    mime, frames = stream
    sent = _packetize(mime, frames)
    lost = max(i for i, s in enumerate(sent) if s.frame == 3)  # frame 3's marker packet
    retransmit_after = max(i for i, s in enumerate(sent) if s.frame == 4)
    order = [s for i, s in enumerate(sent) if i != lost]
    order.insert(retransmit_after, sent[lost])  # NACK repair arrives after all of frame 4

    got = _frames(_feed(MarkerJitterBuffer(capacity=512, is_video=True), [s.packet for s in order]))
    data = [f.data for _, f in got]
    assert data == [_frame_bytes(sent, i) for i in range(len(frames))]  # no truncated frame 3, nothing skipped
    step_of_3 = got[3][0]
    assert order[step_of_3] is sent[lost]
    _assert_decodes_like_the_sender(mime, [f for _, f in got], frames)


def test_lost_middle_packet_blocks_the_frame_and_requests_a_keyframe_like_stock(stream):
    mime, frames = stream
    sent = _packetize(mime, frames)
    frame3 = [i for i, s in enumerate(sent) if s.frame == 3]
    lost = frame3[len(frame3) // 2]
    assert not sent[lost].packet.marker
    # keep sending until the small buffer overflows; frames repeat so it never runs dry
    more = _packetize(mime, frames * 12, first_seq=1000)
    packets = [s.packet for i, s in enumerate(more) if i != lost]

    marker = _feed(MarkerJitterBuffer(capacity=64, is_video=True), packets)
    stock = _feed(JitterBuffer(capacity=64, is_video=True), packets)

    released = _frames(marker)
    hole_timestamp = sent[lost].packet.timestamp
    assert hole_timestamp not in [f.timestamp for _, f in released], "frame 3 with a hole must never reach the decoder"
    by_timestamp = {}
    for s in more:
        by_timestamp.setdefault(s.packet.timestamp, []).append(s.packet._data)  # type: ignore[attr-defined]
    assert all(f.data == b"".join(by_timestamp[f.timestamp]) for _, f in released), "only whole frames"
    # nothing after the hole is released before the overflow: the decoder would see a broken reference
    first_pli = next(r.step for r in marker if r.pli)
    assert [r.step for r in marker if r.frame is not None and r.step < first_pli] == [
        max(i for i, s in enumerate(sent) if s.frame == k) for k in range(3)
    ]
    assert first_pli > lost
    # keyframe requests come at exactly the same packets as with aiortc's buffer
    assert [r.step for r in marker if r.pli] == [r.step for r in stock if r.pli]
    # after the overflow the buffer recovers and releases whole frames again
    assert any(step > first_pli for step, _ in released)


def test_sequence_numbers_wrap_at_65535(stream):
    mime, frames = stream
    before_wrap = len(frames[0].payloads) + len(frames[1].payloads) + 2  # 65535 -> 0 inside frame 2
    sent = _packetize(mime, frames, first_seq=65536 - before_wrap)
    wrap_frame = next(s.frame for s in sent if s.packet.sequence_number == 0)
    group = [s for s in sent if s.frame == wrap_frame]
    assert wrap_frame == 2 and group[0].packet.sequence_number > 60000, "the wrap must fall inside a frame"

    rng = random.Random(3)
    order = [s for s in sent if s.frame != wrap_frame]
    rng.shuffle(group)
    start = next(i for i, s in enumerate(order) if s.frame == wrap_frame + 1)
    order[start:start] = group

    got = _frames(_feed(MarkerJitterBuffer(capacity=512, is_video=True), [s.packet for s in order]))
    assert [f.data for _, f in got] == [_frame_bytes(sent, i) for i in range(len(frames))]
    assert got[wrap_frame][0] == start + len(group) - 1


def _whole_frames_only(sent: list[Sent], released: list[tuple[int, JitterFrame]]) -> None:
    by_timestamp: dict[int, list[bytes]] = {}
    for s in sent:
        by_timestamp.setdefault(s.packet.timestamp, []).append(s.packet._data)  # type: ignore[attr-defined]
    for _, frame in released:
        assert frame.data == b"".join(by_timestamp[frame.timestamp]), "a partial frame left the buffer"


def test_capacity_overflow_drops_whole_frames_and_requests_a_keyframe(stream):
    mime, frames = stream
    sent = _packetize(mime, frames * 3)
    capacity = 32
    assert len(frames[0].payloads) < capacity
    frame1 = [i for i, s in enumerate(sent) if s.frame == 1]
    hole = frame1[1]  # never repaired: frame 1 can never complete
    delivered = [s for i, s in enumerate(sent) if i != hole]
    packets = [s.packet for s in delivered]

    marker = _feed(MarkerJitterBuffer(capacity=capacity, is_video=True), packets)
    stock = _feed(JitterBuffer(capacity=capacity, is_video=True), packets)

    # the first packet that no longer fits (capacity slots past frame 1's start) drops and asks for a keyframe
    overflow_seq = (sent[frame1[0]].packet.sequence_number + capacity) % 65536
    first_pli = next(r.step for r in marker if r.pli)
    assert packets[first_pli].sequence_number == overflow_seq
    assert [r.step for r in marker if r.pli] == [r.step for r in stock if r.pli]
    released = _frames(marker)
    assert released[0][1].timestamp == sent[0].packet.timestamp  # frame 0 left on its marker, before the hole
    assert sent[hole].packet.timestamp not in [f.timestamp for _, f in released]
    assert any(step >= first_pli for step, _ in released), "the buffer recovers after dropping"
    _whole_frames_only(sent, released)


def test_same_frames_as_stock_under_random_reordering(vp8_frames):
    """Differential check: on a reordered stream both buffers release the same frames; marker never later."""
    sent = _packetize("video/VP8", vp8_frames)
    rng = random.Random(11)
    for _ in range(20):
        order = list(sent)
        for i in range(len(order) - 1):  # local swaps keep reordering within the buffer's window
            if rng.random() < 0.3:
                order[i], order[i + 1] = order[i + 1], order[i]
        packets = [s.packet for s in order]
        marker = _frames(_feed(MarkerJitterBuffer(capacity=512, is_video=True), packets))
        stock = _frames(_feed(JitterBuffer(capacity=512, is_video=True), packets))
        assert [f.data for _, f in stock] == [f.data for _, f in marker][: len(stock)]
        assert len(marker) >= len(stock)
        assert all(m_step <= s_step for (m_step, _), (s_step, _) in zip(marker, stock))


def test_audio_buffer_ignores_marker_bit_like_stock():
    """On audio the marker bit starts a talkspurt; the buffer must not use it to end frames."""
    packets = []
    for n in range(12):
        packet = RtpPacket(payload_type=0, sequence_number=n, timestamp=n * 160, marker=1 if n % 5 == 0 else 0)
        packet._data = bytes([n])  # type: ignore[attr-defined]
        packets.append(packet)
    marker = _feed(MarkerJitterBuffer(capacity=16, prefetch=4), packets)
    stock = _feed(JitterBuffer(capacity=16, prefetch=4), packets)
    assert [(r.step, r.frame and r.frame.data, r.pli) for r in marker] == [
        (r.step, r.frame and r.frame.data, r.pli) for r in stock
    ]


def test_capacity_must_be_a_power_of_two():
    with pytest.raises(ValueError, match="power of 2"):
        MarkerJitterBuffer(capacity=100)


# --- installing on aiortc's receiver -------------------------------------------------------------


async def test_aiortc_keeps_its_jitter_buffer_where_this_module_expects():
    """Fails loudly if a future aiortc moves RTCRtpReceiver's private jitter buffer."""
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video").receiver
        attribute = jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE
        assert hasattr(receiver, attribute), (
            f"aiortc {jb.aiortc_version()} no longer has RTCRtpReceiver.{attribute}: "
            "the marker jitter buffer cannot be installed; update rtc/jitterbuffer.py"
        )
        current = getattr(receiver, attribute)
        assert isinstance(current, JitterBuffer), f"RTCRtpReceiver.{attribute} is now {type(current)!r}"
        assert current.capacity == 512 and current._is_video
        assert getattr(receiver, jb.RECEIVER_KIND_ATTRIBUTE) == "video"
        assert jb.receiver_jitter_buffer_problem(receiver) is None
    finally:
        await pc.close()


def test_installed_aiortc_is_in_the_verified_range():
    assert jb.is_verified_aiortc(), (
        f"aiortc {jb.aiortc_version()} is outside {jb.VERIFIED_AIORTC_SPECIFIER}: re-read RTCRtpReceiver "
        f"({jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE}, the add() contract) and widen VERIFIED_AIORTC_RANGE"
    )
    assert jb.is_verified_aiortc("1.16.0") and jb.is_verified_aiortc("1.16.3")
    assert not jb.is_verified_aiortc("1.17.0") and not jb.is_verified_aiortc("1.15.9")


async def test_install_replaces_the_video_buffer_only():
    pc = RTCPeerConnection()
    try:
        video = pc.addTransceiver("video").receiver
        audio = pc.addTransceiver("audio").receiver
        audio_before = getattr(audio, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE)
        video_before = getattr(video, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE)

        assert install_on_receiver(video, "stock") is False
        assert getattr(video, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE) is video_before

        assert install_on_receiver(video, "marker") is True
        installed = getattr(video, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE)
        assert isinstance(installed, MarkerJitterBuffer) and installed.capacity == video_before.capacity
        assert install_on_receiver(video, "marker") is True  # idempotent
        assert getattr(video, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE) is installed

        assert install_on_receiver(audio, "marker") is False
        assert getattr(audio, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE) is audio_before

        with pytest.raises(JitterBufferModeError, match="--jitter-buffer"):
            install_on_receiver(video, "fast")  # type: ignore[arg-type]
    finally:
        await pc.close()


async def test_moved_attribute_keeps_the_stock_buffer_and_logs(caplog):
    pc = RTCPeerConnection()
    try:
        receiver = pc.addTransceiver("video").receiver
        stock = getattr(receiver, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE)
        # simulate a future aiortc that renamed the attribute
        receiver._RTCRtpReceiver__jitter = stock  # type: ignore[attr-defined]
        delattr(receiver, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE)
        with caplog.at_level(logging.WARNING, logger="rtc.jitterbuffer"):
            assert install_on_receiver(receiver, "marker") is False
        assert receiver._RTCRtpReceiver__jitter is stock  # type: ignore[attr-defined]
        assert not hasattr(receiver, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE)
        assert jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE in caplog.text and "stock" in caplog.text

        # an attribute of the right name but an unknown type is not replaced either
        setattr(receiver, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE, object())
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="rtc.jitterbuffer"):
            assert install_on_receiver(receiver, "marker") is False
        assert jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE in caplog.text
    finally:
        await pc.close()


class _Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_hole_that_is_never_repaired_is_skipped_after_the_wait_with_a_keyframe_request(stream):
    """A packet whose NACK repair never comes blocks the frames behind it only for max_gap_wait_s: then the buffer
    drops everything before the newest frame start behind the hole, asks for a keyframe, and the video goes on
    (aiortc's buffer waits for the overflow, then hands out the backlog one frame per packet, seconds late)."""
    mime, frames = stream
    sent = _packetize(mime, frames * 3)
    frame1 = [i for i, s in enumerate(sent) if s.frame == 1]
    hole = frame1[0]
    clock = _Clock()
    buffer = MarkerJitterBuffer(capacity=512, is_video=True, max_gap_wait_s=0.3, clock=clock)
    releases = []
    for step, s in enumerate(sent):
        if step == hole:
            continue
        clock.now += 1 / 15 / max(len(f.payloads) for f in frames)  # packets of a 15 fps stream
        pli, frame = buffer.add(s.packet)
        releases.append((step, clock.now, pli, frame))
    stalled_from = next(now for step, now, _, _ in releases if step > hole)
    skip = next((step, now) for step, now, pli, _ in releases if pli)
    assert 0.3 <= skip[1] - stalled_from < 0.3 + 2 / 15, "the hole is skipped once it is 0.3 s old"
    assert buffer.holes_skipped == 1
    released = [(step, frame) for step, _, _, frame in releases if frame is not None]
    assert sent[hole].packet.timestamp not in [f.timestamp for _, f in released]
    after = [frame.timestamp for step, frame in released if step >= skip[0]]
    first_step = {}
    for step, s in enumerate(sent):
        first_step.setdefault(s.packet.timestamp, step)
    # the video goes on: every frame that starts after the skip is released, in order
    assert {ts for ts, step in first_step.items() if step > skip[0]} <= set(after)
    assert after == sorted(after)
    # the backlog is dropped, not handed out late: at most the frame in flight at the skip precedes the new ones
    assert len([ts for ts in after if first_step[ts] <= skip[0]]) <= 1
    _whole_frames_only(sent, released)


def test_a_hole_repaired_in_time_is_not_skipped(stream):
    mime, frames = stream
    sent = _packetize(mime, frames)
    lost = [i for i, s in enumerate(sent) if s.frame == 2][0]
    order = [s for i, s in enumerate(sent) if i != lost]
    order.insert(lost + 3, sent[lost])  # the retransmission comes 3 packets later
    clock = _Clock()
    buffer = MarkerJitterBuffer(capacity=512, is_video=True, max_gap_wait_s=0.3, clock=clock)
    got = []
    for s in order:
        clock.now += 0.05
        pli, frame = buffer.add(s.packet)
        assert not pli
        if frame is not None:
            got.append(frame)
    assert [f.data for f in got] == [_frame_bytes(sent, i) for i in range(len(frames))]
    assert buffer.holes_skipped == 0


def test_a_blocking_hole_is_asked_for_again_until_it_is_repaired(stream):
    """aiortc NACKs a lost packet once; while the hole blocks, the buffer asks again every RENACK_INTERVAL_S, and a
    retransmission that answers a later request still completes the frame (nothing skipped, no keyframe)."""
    mime, frames = stream
    sent = _packetize(mime, frames)
    lost = [i for i, s in enumerate(sent) if s.frame == 2][0]
    asked: list[tuple[int, list[int]]] = []
    clock = _Clock()
    buffer = MarkerJitterBuffer(capacity=512, is_video=True, max_gap_wait_s=0.5, clock=clock,
                                request_retransmission=lambda ssrc, seqs: asked.append((ssrc, seqs)))
    got = []
    repaired_at = None
    for step, s in enumerate(sent):
        if step == lost:
            continue
        clock.now += 0.05
        pli, frame = buffer.add(s.packet)
        assert not pli
        got += [frame] if frame is not None else []
        if len(asked) == 2 and repaired_at is None:  # the second request is answered
            repaired_at = clock.now
            pli, frame = buffer.add(sent[lost].packet)
            assert not pli
            got += [frame] if frame is not None else []
    assert repaired_at is not None, f"asked {len(asked)} time(s) for the missing packet"
    assert all(seqs == [sent[lost].packet.sequence_number] for _, seqs in asked)
    assert {ssrc for ssrc, _ in asked} == {sent[0].packet.ssrc}
    assert [f.data for f in got] == [_frame_bytes(sent, i) for i in range(len(frames))]
    assert buffer.holes_skipped == 0
