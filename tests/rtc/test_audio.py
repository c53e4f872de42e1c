"""The audio receive path: the immediate audio buffer and the encoded-audio tap, on real Opus RTP packets."""

from __future__ import annotations

import fractions

import numpy as np
from aiortc import RTCPeerConnection
from aiortc.codecs import CODECS, depayload, get_encoder
from aiortc.rtp import RtpPacket
from av import AudioFrame

from rtc import jitterbuffer as jb
from rtc.audio import EncodedAudio, EncodedAudioTap, ImmediateAudioBuffer, install_audio_buffer

OPUS = next(c for c in CODECS["audio"] if c.mimeType == "audio/opus")
SAMPLES = 960


def _opus_packets(count: int, first_sequence: int = 100, first_timestamp: int = 5000) -> list[RtpPacket]:
    """`count` 20 ms Opus packets of a tone, as aiortc's encoder and sender make them (payload depayloaded)."""
    encoder = get_encoder(OPUS)
    packets = []
    for index in range(count):
        tone = (8000 * np.sin(2 * np.pi * 440 * (index * SAMPLES + np.arange(SAMPLES)) / 48000)).astype(np.int16)
        frame = AudioFrame.from_ndarray(np.repeat(tone, 2)[None, :], format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, index * SAMPLES, fractions.Fraction(1, 48000)
        payloads, _ = encoder.encode(frame)
        for payload in payloads:
            packet = RtpPacket(payload_type=111, sequence_number=(first_sequence + len(packets)) % 65536,
                               timestamp=(first_timestamp + len(packets) * SAMPLES) % (1 << 32))
            packet.payload = payload
            packet._data = depayload(OPUS, payload)  # type: ignore[attr-defined]
            packets.append(packet)
    return packets


def test_every_in_order_packet_is_released_at_once() -> None:
    buffer = ImmediateAudioBuffer()
    packets = _opus_packets(10)
    released = [buffer.add(packet) for packet in packets]
    assert all(pli is False for pli, _ in released)
    frames = [frame for _, frame in released]
    assert all(frame is not None for frame in frames)
    assert [f.timestamp for f in frames if f] == [p.timestamp for p in packets]
    assert [f.data for f in frames if f] == [p.payload for p in packets]


def test_late_and_repeated_packets_are_dropped_and_counted() -> None:
    buffer = ImmediateAudioBuffer()
    first, second, third, fourth = _opus_packets(4)
    assert buffer.add(first)[1] is not None
    assert buffer.add(third)[1] is not None  # `second` lost (so far): nothing waits for it
    assert buffer.add(second)[1] is None  # late: after a newer one
    assert buffer.add(third)[1] is None  # repeated
    assert buffer.add(fourth)[1] is not None
    assert buffer.dropped == 2


def test_sequence_numbers_wrap_and_a_restarted_sender_is_followed() -> None:
    buffer = ImmediateAudioBuffer()
    across_wrap = _opus_packets(6, first_sequence=65533)
    assert all(buffer.add(packet)[1] is not None for packet in across_wrap)
    restarted = _opus_packets(2, first_sequence=20_000)  # far behind (more than MAX_MISORDER): a new origin
    assert all(buffer.add(packet)[1] is not None for packet in restarted)
    assert buffer.dropped == 0


def test_tap_forwards_packets_with_unwrapped_timestamps_and_releases_nothing() -> None:
    taken: list[EncodedAudio] = []
    tap = EncodedAudioTap(taken.append)
    packets = _opus_packets(5, first_timestamp=(1 << 32) - 2 * SAMPLES)  # the RTP timestamp wraps at the third
    assert all(tap.add(packet) == (False, None) for packet in packets)
    assert [audio.timestamp for audio in taken] == [index * SAMPLES for index in range(5)]
    assert [audio.data for audio in taken] == [packet.payload for packet in packets]
    assert all(b.arrived_at >= a.arrived_at for a, b in zip(taken, taken[1:]))
    assert tap.add(packets[1]) == (False, None) and len(taken) == 5 and tap.dropped == 1


async def test_install_replaces_the_audio_buffer_only_before_media_flows() -> None:
    pc = RTCPeerConnection()
    try:
        video = pc.addTransceiver("video").receiver
        audio = pc.addTransceiver("audio").receiver
        stock = getattr(audio, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE)
        assert stock._prefetch == 4, "aiortc's audio buffer no longer holds 4 frames: re-read rtc/audio.py's docstring"
        assert install_audio_buffer(video, ImmediateAudioBuffer()) is False
        tap = EncodedAudioTap(lambda audio: None)
        assert install_audio_buffer(audio, tap) is True
        assert getattr(audio, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE) is tap
        assert install_audio_buffer(audio, ImmediateAudioBuffer()) is False  # one is in place already
        assert getattr(audio, jb.RECEIVER_JITTER_BUFFER_ATTRIBUTE) is tap
    finally:
        await pc.close()
