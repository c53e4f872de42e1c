"""Sound through the server, with real aiortc peers: /offer returns it, WHEP viewers get a WHIP publisher's, as sent
(the same Opus packets), in step with the processed video; offers with more media sections are refused."""

from __future__ import annotations

import asyncio
import fractions
import time

import numpy as np
import pytest
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import AudioFrame, CodecContext
from av.packet import Packet

from clients.avsync import measure_av
from clients.webrtc import ServerEndpoint
from rtc.audio import EncodedAudio, EncodedAudioTap
from tests.fixtures.server import Clip, RunningServer
from tests.stream_server.peer import open_offer_peer, open_whep_viewer, open_whip_publisher, post_sdp, wait_for

pytestmark = pytest.mark.timeout(600)  # the first user of swap_server may train the tiny model

SAMPLES = 960
AUDIO_TIME_BASE = fractions.Fraction(1, 48000)


def _opus_packets(count: int) -> list[bytes]:
    """`count` 20 ms Opus packets of a tone in noise, encoded by libopus (distinct bytes each)."""
    encoder = CodecContext.create("libopus", "w")
    encoder.sample_rate, encoder.layout, encoder.format = 48000, "stereo", "s16"
    encoder.time_base = AUDIO_TIME_BASE
    packets: list[bytes] = []
    noise = np.random.default_rng(3)
    for index in range(count + 4):
        t = (index * SAMPLES + np.arange(SAMPLES)) / 48000
        tone = (6000 * np.sin(2 * np.pi * 440 * t) + noise.normal(0, 2000, SAMPLES)).astype(np.int16)
        frame = AudioFrame.from_ndarray(np.repeat(tone, 2)[None, :], format="s16", layout="stereo")
        frame.sample_rate, frame.pts, frame.time_base = 48000, index * SAMPLES, AUDIO_TIME_BASE
        packets += [bytes(p) for p in encoder.encode(frame)]
    return packets[:count]


class EncodedOpusTrack(MediaStreamTrack):
    """Sends ready-made Opus packets every 20 ms (aiortc's sender packs them without encoding)."""

    kind = "audio"

    def __init__(self, packets: list[bytes]) -> None:
        super().__init__()
        self._packets = packets
        self._index = 0
        self._start: float | None = None

    async def recv(self) -> Packet:
        if self.readyState != "live" or self._index >= len(self._packets):
            raise MediaStreamError
        self._start = self._start or time.monotonic()
        await asyncio.sleep(max(0.0, self._start + self._index * 0.02 - time.monotonic()))
        packet = Packet(self._packets[self._index])
        packet.pts, packet.time_base = self._index * SAMPLES, AUDIO_TIME_BASE
        self._index += 1
        return packet


def _in_order_subsequence(got: list[bytes], sent: list[bytes]) -> bool:
    positions = {payload: index for index, payload in enumerate(sent)}
    indices = [positions.get(payload, -1) for payload in got]
    return -1 not in indices and indices == sorted(indices)


async def test_offer_audio_comes_back_as_sent(echo_server: RunningServer, server_clip: Clip) -> None:
    """The Opus packets come back byte for byte (forwarded, not re-encoded), in order, after the first frame."""
    sent = _opus_packets(150)
    returned: list[EncodedAudio] = []
    peer = await open_offer_peer(echo_server.url, server_clip.frames, server_clip.fps,
                                 audio=EncodedOpusTrack(sent), audio_tap=EncodedAudioTap(returned.append))
    try:
        assert await wait_for(lambda: len(returned) >= 100, 20), f"{len(returned)} audio packets came back in 20 s"
        assert await wait_for(lambda: any(m.get("type") == "stats" and m.get("audio") for m in peer.messages), 5)
    finally:
        await peer.close()
    payloads = [audio.data for audio in returned]
    assert _in_order_subsequence(payloads, sent), "the returned audio is not the sent packets, in order"
    stats = [m["audio"] for m in peer.messages if m.get("type") == "stats" and m.get("audio")][-1]
    assert stats["packets_in"] >= stats["packets_out"] > 0 and stats["delay_ms"] is not None
    # The RTP timestamps keep the packets' spacing (20 ms each), whenever they were released.
    steps = {b.timestamp - a.timestamp for a, b in zip(returned, returned[1:])}
    assert steps <= {SAMPLES * n for n in range(1, 4)}, steps


async def test_whip_publishers_audio_reaches_every_whep_viewer(echo_server: RunningServer, server_clip: Clip) -> None:
    sent = _opus_packets(200)
    publisher = await open_whip_publisher(echo_server.url, server_clip.frames, server_clip.fps,
                                          audio=EncodedOpusTrack(sent))
    heard: list[list[EncodedAudio]] = [[], []]
    viewers = []
    try:
        session_path = "/whep/" + publisher.location.rsplit("/", 1)[1]
        for packets in heard:
            viewers.append(await open_whep_viewer(echo_server.url, session_path, audio_tap=EncodedAudioTap(packets.append)))
        assert await wait_for(lambda: min(len(p) for p in heard) >= 50, 20), [len(p) for p in heard]
        assert all(v.received.count > 0 for v in viewers)
        silent = await open_whep_viewer(echo_server.url, session_path)  # no audio section: video only
        viewers.append(silent)
        assert await wait_for(lambda: silent.received.count > 0, 10)
        assert not any(t.kind == "audio" for t in silent.pc.getTransceivers())
    finally:
        for viewer in viewers:
            await viewer.close(echo_server.url)
        await publisher.close(echo_server.url)
    for packets in heard:
        assert _in_order_subsequence([audio.data for audio in packets], sent)


async def test_whep_viewer_of_a_silent_session_gets_video_only(echo_server: RunningServer, server_clip: Clip) -> None:
    publisher = await open_whip_publisher(echo_server.url, server_clip.frames, server_clip.fps)
    heard: list[EncodedAudio] = []
    try:
        viewer = await open_whep_viewer(echo_server.url, "/whep/" + publisher.location.rsplit("/", 1)[1],
                                        audio_tap=EncodedAudioTap(heard.append))
        try:
            assert await wait_for(lambda: viewer.received.count >= 5, 15)
        finally:
            await viewer.close(echo_server.url)
    finally:
        await publisher.close(echo_server.url)
    assert heard == []


@pytest.fixture(scope="module")
def vga_clip() -> list[np.ndarray]:
    """Twelve 640x480 frames of synthetic identity A: big enough that the video's time in the server is clear."""
    from faces.synthetic import IDENTITY_A, render_sequence

    return [r.frame for r in render_sequence(IDENTITY_A, 12, size=(640, 480), seed=5, fps=15)]


@pytest.mark.slow
async def test_audio_stays_in_step_with_the_swapped_video(swap_server: RunningServer, vga_clip: list[np.ndarray]) -> None:
    """Flashes and clicks sent together come back together: the audio is held for the video's processing time.

    The strict figure (|offset| <= 20 ms p50 at 640x480) is measured in docs/audio.md; on this shared machine the
    bound is loose. But the audio must be delayed like the video: undelayed, its round trip would be the
    network's (a few ms), not the video's time in the server on top of it.
    """
    report = await measure_av(ServerEndpoint(swap_server.url), vga_clip, 15.0, seconds=12.0)
    assert len(report.pairs) >= 6, f"only {len(report.pairs)} flash/click pairs: {report.summary()}"
    video_delay = report.server_audio_delay_ms  # the server's measured video delay, which the audio follows
    assert video_delay is not None
    if video_delay < 10:
        pytest.skip(f"the video spends only {video_delay} ms in the server: too little to tell held audio from not")
    offset, audio = report.offset_ms, report.audio_round_trip_ms
    assert audio["p50"] >= 0.6 * video_delay, (audio, video_delay, report.video_round_trip_ms)
    assert abs(offset["p50"]) <= 40.0, (offset, report.video_round_trip_ms, audio)


async def _sdp_with(kinds: list[str]) -> str:
    pc = RTCPeerConnection()
    for kind in kinds:
        pc.addTransceiver(kind, direction="sendrecv")
    pc.createDataChannel("control")
    await pc.setLocalDescription(await pc.createOffer())
    sdp: str = pc.localDescription.sdp
    await pc.close()
    return sdp


def _without_opus_first(sdp: str) -> str:
    """The audio section's payload types reordered so that PCMU (0) comes before Opus."""
    lines = sdp.split("\r\n")
    for index, line in enumerate(lines):
        if line.startswith("m=audio"):
            head, formats = line.split()[:3], line.split()[3:]
            lines[index] = " ".join(head + ["0"] + [f for f in formats if f != "0"])
    return "\r\n".join(lines)


@pytest.mark.parametrize(("kinds", "expected"), [
    (["video", "audio", "audio"], "2 m=audio sections"),
    (["video", "video", "audio"], "2 m=video sections"),
])
async def test_offers_with_more_than_one_video_or_audio_section_get_400(echo_server: RunningServer, kinds: list[str],
                                                                        expected: str) -> None:
    import aiohttp

    sdp = await _sdp_with(kinds)
    async with aiohttp.ClientSession() as http:
        async with http.post(echo_server.url + "offer", json={"sdp": sdp, "type": "offer"}) as response:
            assert response.status == 400
            message = (await response.json())["error"]
    assert expected in message and "at most one video, one audio" in message
    status, text, _ = await post_sdp(echo_server.url + "whip", sdp)
    assert status == 400 and expected in text
    assert len(echo_server.state.registry) == 0


async def test_audio_that_does_not_offer_opus_first_gets_400(echo_server: RunningServer) -> None:
    sdp = _without_opus_first(await _sdp_with(["video", "audio"]))
    status, text, _ = await post_sdp(echo_server.url + "whip", sdp)
    assert status == 400 and "Opus" in text

