"""What a load balancer in front of several media servers relies on: /healthz reports the load and answers 503
when the server is full; WHIP/WHEP resource URLs are paths under the proxy's X-Forwarded-Prefix."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import aiohttp
import pytest

from tests.fixtures.server import Clip, RunningServer, start_server
from tests.stream_server.peer import open_whep_viewer, open_whip_publisher, post_sdp, wait_for


@pytest.fixture(scope="module")
def one_seat_server() -> Iterator[RunningServer]:
    """An echo server with room for one session."""
    server = start_server(pipeline="echo", disclosure_mark=False, max_sessions=1)
    yield server
    server.stop()


async def _healthz(server: RunningServer) -> tuple[int, dict[str, Any], str | None]:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "healthz") as response:
            return response.status, await response.json(), response.headers.get("Retry-After")


async def test_healthz_reports_load_and_503_when_full(one_seat_server: RunningServer, server_clip: Clip) -> None:
    status, body, _ = await _healthz(one_seat_server)
    assert status == 200
    assert (body["status"], body["sessions"], body["max_sessions"], body["free"]) == ("ok", 0, 1, 1)
    assert body["inference"] == "local" and "reason" not in body
    publisher = await open_whip_publisher(one_seat_server.url, server_clip.frames, server_clip.fps)
    try:
        # connected before it is ended: an aiortc peer closed while ICE is under way leaves a task behind
        assert await wait_for(lambda: publisher.pc.connectionState == "connected", 20)
        status, full, retry_after = await _healthz(one_seat_server)
        assert status == 503 and retry_after == "5"
        assert (full["status"], full["sessions"], full["free"]) == ("full", 1, 0)
        assert "full: 1 of 1 sessions" in full["reason"]
        assert set(body) <= set(full)  # the same body, plus the reason
    finally:
        assert await publisher.close(one_seat_server.url) == 200
    assert await wait_for(lambda: len(one_seat_server.state.registry) == 0, 10)
    status, body, _ = await _healthz(one_seat_server)
    assert status == 200 and body["free"] == 1


async def test_resource_urls_follow_x_forwarded_prefix(one_seat_server: RunningServer, server_clip: Clip) -> None:
    from aiortc import RTCPeerConnection

    from tests.stream_server.peer import NumberedVideoTrack

    pc = RTCPeerConnection()
    pc.addTransceiver(NumberedVideoTrack(server_clip.frames, server_clip.fps), direction="sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    try:
        for bad in ("node/media1", "/node/../admin", "/node/media1?x=1", "/node media1", "/" + "a" * 300):
            status, text, _ = await post_sdp(one_seat_server.url + "whip", pc.localDescription.sdp,
                                             headers={"X-Forwarded-Prefix": bad})
            assert status == 400 and "X-Forwarded-Prefix" in text, (bad, status, text)
        assert len(one_seat_server.state.registry) == 0, "a refused request left a session behind"
    finally:
        await pc.close()

    publisher = await open_whip_publisher(one_seat_server.url, server_clip.frames, server_clip.fps,
                                          headers={"X-Forwarded-Prefix": "/node/media1/"})
    session_id = publisher.location.rsplit("/", 1)[1]
    try:
        assert await wait_for(lambda: publisher.pc.connectionState == "connected", 20)
        assert publisher.location == f"/node/media1/whip/{session_id}"
        assert publisher.link == f'</node/media1/whep/{session_id}>; rel="alternate"'
        viewer = await open_whep_viewer(one_seat_server.url, f"/whep/{session_id}",
                                        headers={"X-Forwarded-Prefix": "/node/media1"})
        viewer_id = viewer.location.rsplit("/", 1)[1]
        assert viewer.location == f"/node/media1/whep/{session_id}/{viewer_id}"
        assert await wait_for(lambda: viewer.received.count >= 5, 30), "the viewer got no video"
        viewer.location = f"/whep/{session_id}/{viewer_id}"  # the server's own path: no proxy strips the prefix here
        assert await viewer.close(one_seat_server.url) == 200
        # without the header: plain paths, which a client resolves against the URL it used
        viewer = await open_whep_viewer(one_seat_server.url, f"/whep/{session_id}")
        assert viewer.location.startswith(f"/whep/{session_id}/")
        assert await wait_for(lambda: viewer.pc.connectionState == "connected", 20)
        assert await viewer.close(one_seat_server.url) == 200
    finally:
        publisher.location = f"/whip/{session_id}"
        assert await publisher.close(one_seat_server.url) == 200
    assert await wait_for(lambda: len(one_seat_server.state.registry) == 0, 10)
