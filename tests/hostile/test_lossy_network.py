"""The soak tools: the lossy UDP relay (bench/udp_proxy.py) and bench/soak.py, each run for real."""

from __future__ import annotations

import asyncio
import csv
import itertools
import json
from pathlib import Path

import pytest
from av import VideoFrame
from aiortc.rtp import RTCP_PSFB_FIR, RTCP_PSFB_PLI, RTCP_RTPFB_NACK, RtcpPsfbPacket, RtcpRtpfbPacket

from bench.udp_proxy import DirectionStats, Impairment, UdpRelay, count_rtcp_feedback, start_gateway
from clients import framecode
from clients.media import PacedVideoTrack
from clients.webrtc import ServerEndpoint, SwapPeer
from tests.hostile.harness import gradient_frames, serving

Address = tuple[str, int]


class _Endpoint(asyncio.DatagramProtocol):
    """A plain UDP socket that keeps what it receives, in order, with the sender's address."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, Address]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, source: Address) -> None:
        self.received.append((data, (source[0], source[1])))


async def _endpoint() -> tuple[_Endpoint, Address]:
    transport, protocol = await asyncio.get_running_loop().create_datagram_endpoint(
        _Endpoint, local_addr=("127.0.0.1", 0))
    return protocol, transport.get_extra_info("sockname")[:2]


async def _exchange(impairment: Impairment, count: int, seed: int = 7) -> tuple[UdpRelay, _Endpoint, _Endpoint,
                                                                               Address, Address]:
    """`count` numbered datagrams each way between a client and a server socket, through the relay."""
    relay = UdpRelay(impairment, seed=seed)
    client, client_address = await _endpoint()
    server, server_address = await _endpoint()
    server_face = await relay.face_for(server_address, "server")  # what the client is told the server is
    client_face = await relay.face_for(client_address, "client")  # what the server is told the client is
    assert client.transport is not None and server.transport is not None
    for number in range(count):
        client.transport.sendto(b"c%06d" % number, server_face)
        server.transport.sendto(b"s%06d" % number, client_face)
        if number % 50 == 49:
            await asyncio.sleep(0.005)
    await asyncio.sleep(0.3 + 2 * impairment.jitter_ms / 1000 + impairment.hold_back_s)
    for endpoint in (client, server):
        assert endpoint.transport is not None
        endpoint.transport.close()
    relay.close()
    return relay, client, server, client_face, server_face


async def test_the_relay_passes_everything_in_order_at_zero_loss() -> None:
    relay, client, server, client_face, server_face = await _exchange(Impairment(jitter_ms=5.0), 500)
    assert [data for data, _ in server.received] == [b"c%06d" % n for n in range(500)]
    assert [data for data, _ in client.received] == [b"s%06d" % n for n in range(500)]
    # Each side sees the other only through the relay.
    assert {source for _, source in server.received} == {client_face}
    assert {source for _, source in client.received} == {server_face}
    assert relay.stats["client->server"].dropped == relay.stats["server->client"].dropped == 0


async def test_the_relay_drops_about_the_share_asked_and_reorders_some() -> None:
    relay, client, server, _, _ = await _exchange(Impairment(loss=0.5, jitter_ms=2.0, reorder=0.1), 1000)
    for endpoint, direction in ((server, "client->server"), (client, "server->client")):
        arrived = [int(data[1:]) for data, _ in endpoint.received]
        assert 420 <= len(arrived) <= 580, (direction, len(arrived))
        assert relay.stats[direction].dropped == 1000 - len(arrived)
        assert arrived != sorted(arrived) and relay.stats[direction].reordered > 0, "nothing was reordered"
        assert len(set(arrived)) == len(arrived), "a datagram was duplicated"


def test_keyframe_requests_and_nacks_are_counted_from_the_rtcp_header() -> None:
    stats = DirectionStats()
    for packet in (RtcpPsfbPacket(fmt=RTCP_PSFB_PLI, ssrc=1, media_ssrc=2),
                   RtcpPsfbPacket(fmt=RTCP_PSFB_FIR, ssrc=1, media_ssrc=2),
                   RtcpRtpfbPacket(fmt=RTCP_RTPFB_NACK, ssrc=1, media_ssrc=2, lost=[5, 6])):
        # SRTCP leaves the first 8 bytes (header and sender SSRC) in the clear; the rest is encrypted.
        count_rtcp_feedback(bytes(packet)[:8] + b"\x00" * 24, stats)
    count_rtcp_feedback(b"\x80\x60" + b"\x00" * 30, stats)  # an RTP packet (payload type 96): not feedback
    count_rtcp_feedback(b"\x00\x01" + b"\x00" * 30, stats)  # a STUN binding request
    assert (stats.pli, stats.fir, stats.nack) == (1, 1, 1)


async def test_a_webrtc_session_streams_through_the_gateway() -> None:
    frames = gradient_frames(320, 240)
    with serving(pipeline="echo", disclosure_mark=False) as server:
        runner, relay, url = await start_gateway(server.url, Impairment(), seed=3)
        try:
            source = (frame.copy() for frame in itertools.cycle(frames))
            track = PacedVideoTrack(source, 15.0, prepare=lambda number, rgb: framecode.stamp(rgb, number))
            numbers = []
            async with SwapPeer(ServerEndpoint(url), send=track) as peer:
                assert peer.video is not None
                for _ in range(15):
                    frame = await asyncio.wait_for(peer.video.recv(), 20)
                    assert isinstance(frame, VideoFrame)
                    numbers.append(framecode.read(frame.to_ndarray(format="rgb24")))
        finally:
            await runner.cleanup()
    assert sum(number is not None for number in numbers) >= 10, numbers
    stats = relay.snapshot()
    # Media went through the relay both ways (ICE, DTLS and SRTP): 15 frames are many more than 15 datagrams.
    assert stats["client->server"]["delivered"] > 30 and stats["server->client"]["delivered"] > 30, stats


@pytest.mark.slow
@pytest.mark.timeout(300)
async def test_a_short_soak_writes_its_csv_png_and_summary(tiny_models_dir: Path, tmp_path: Path) -> None:
    from bench.soak import SoakConfig, run_soak

    config = SoakConfig(out=tmp_path / "soak", sessions=1, minutes=0.25, loss=0.05, jitter_ms=10.0, reorder=0.01,
                        models=tiny_models_dir, size=(320, 240), sample_s=5.0, baseline_s=5.0, warmup_s=3.0)
    summary = await run_soak(config)
    with (config.out / "soak.csv").open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert [row["phase"] for row in rows][:1] == ["baseline"] and rows[-1]["phase"] == "loss"
    assert len(rows) >= 4
    for row in rows:
        assert int(row["threads"]) > 0 and int(row["fds"]) > 0 and float(row["rss_mb"]) > 50
        assert float(row["s0_fps"]) > 5, row  # 15 fps sent; the tiny model keeps up
    lossy = [row for row in rows if row["phase"] == "loss"]
    assert sum(int(row["dropped_from_client"]) + int(row["dropped_from_server"]) for row in lossy) > 0
    assert all(row["s0_rtt_p50_ms"] not in ("", None) for row in rows)
    # a frozen stream would show: the longest gap per window is there, and no gap passed for a freeze here
    assert all(0 < float(row["s0_max_gap_s"]) < 2.0 for row in rows), [row["s0_max_gap_s"] for row in rows]
    assert summary["freezes"] == {"s0": []}
    assert (config.out / "soak.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads((config.out / "summary.json").read_text())["checks"] == summary["checks"]
    assert set(summary["checks"]) == {"fps_at_end_vs_no_loss_>=0.95", "no_thread_or_fd_growth",
                                      "rss_growth_after_first_edge_<50MB", "p95_added_last_vs_first_within_20%"}
    assert summary["fps"]["s0"]["no_loss"] > 5
