"""Bad requests get the right status and a message, and the server keeps serving; the session limit holds."""

from __future__ import annotations

import asyncio
import gc
import os
import threading
from collections.abc import Iterator

import aiohttp
import pytest
from aiortc import RTCPeerConnection

from tests.fixtures.server import Clip, RunningServer, start_server
from tests.stream_server.peer import open_offer_peer, post_sdp, wait_for

pytestmark = pytest.mark.timeout(600)  # the first user of swap_server may train the tiny model

TOKEN = "s3cret-token"
BODY_LIMIT = 16 * 1024


@pytest.fixture(scope="module")
def guarded_server() -> Iterator[RunningServer]:
    """An echo server with a token, one session at most, a 16 KiB body limit and 3 s to connect."""
    server = start_server(pipeline="echo", token=TOKEN, max_sessions=1, max_body_bytes=BODY_LIMIT,
                          connect_timeout_s=3.0)
    yield server
    server.stop()


async def _offer_sdp() -> str:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    sdp = pc.localDescription.sdp
    await pc.close()
    return sdp


async def _post(url: str, *, token: str | None = TOKEN, **kwargs: object) -> tuple[int, dict[str, object] | str]:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    headers.update(kwargs.pop("headers", None) or {})  # type: ignore[arg-type]
    async with aiohttp.ClientSession() as http:
        async with http.post(url, headers=headers, **kwargs) as response:  # type: ignore[arg-type]
            try:
                return response.status, await response.json()
            except aiohttp.ContentTypeError:
                return response.status, await response.text()


async def _healthy(server: RunningServer) -> bool:
    async with aiohttp.ClientSession() as http:
        async with http.get(server.url + "healthz") as response:
            return response.status == 200 and (await response.json())["status"] == "ok"


@pytest.mark.parametrize(
    ("case", "expected_status", "expected_text"),
    [
        ("not json", 400, "not valid JSON"),
        ("json list", 400, "JSON object"),
        ("wrong type", 400, '"type" must be "offer"'),
        ("garbage sdp", 400, "not an SDP offer"),
        ("sdp without video", 400, "no video"),
        ("broken sdp", 400, "ICE username fragment"),
        ("sdp without fingerprint", 400, "fingerprint"),
        ("bad option", 400, "option 'feather'"),
        ("oversized", 413, "limit"),
        ("no token", 401, "bearer token"),
        ("wrong token", 401, "bearer token"),
    ],
)
async def test_bad_offers_are_refused_with_a_message(guarded_server: RunningServer, case: str,
                                                     expected_status: int, expected_text: str) -> None:
    url = guarded_server.url + "offer"
    sdp = await _offer_sdp()
    broken = "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith("a=ice-ufrag"))
    unencrypted = "\r\n".join(line for line in sdp.split("\r\n") if not line.startswith("a=fingerprint"))
    bodies: dict[str, dict[str, object]] = {
        "not json": {"data": b"{sdp: nope", "headers": {"Content-Type": "application/json"}},
        "json list": {"json": [1, 2]},
        "wrong type": {"json": {"sdp": sdp, "type": "answer"}},
        "garbage sdp": {"json": {"sdp": "hello", "type": "offer"}},
        "sdp without video": {"json": {"sdp": "v=0\r\no=- 1 1 IN IP4 0.0.0.0\r\ns=-\r\nt=0 0\r\n", "type": "offer"}},
        "broken sdp": {"json": {"sdp": broken, "type": "offer"}},
        "sdp without fingerprint": {"json": {"sdp": unencrypted, "type": "offer"}},
        "bad option": {"json": {"sdp": sdp, "type": "offer", "options": {"feather": -3}}},
        "oversized": {"json": {"sdp": sdp + "a=x-padding:" + "x" * BODY_LIMIT + "\r\n", "type": "offer"}},
        "no token": {"json": {"sdp": sdp, "type": "offer"}},
        "wrong token": {"json": {"sdp": sdp, "type": "offer"}},
    }
    token = {"no token": None, "wrong token": "guess"}.get(case, TOKEN)
    status, body = await _post(url, token=token, **bodies[case])
    assert status == expected_status, body
    assert isinstance(body, dict) and expected_text in body["error"], body
    assert await _healthy(guarded_server)
    assert len(guarded_server.state.registry) == 0


async def test_whip_and_whep_refuse_bad_requests(guarded_server: RunningServer) -> None:
    base = guarded_server.url
    sdp = await _offer_sdp()
    async with aiohttp.ClientSession() as http:
        auth = {"Authorization": f"Bearer {TOKEN}"}
        async with http.post(base + "whip", data=sdp, headers={**auth, "Content-Type": "text/plain"}) as response:
            assert response.status == 415 and "application/sdp" in (await response.json())["error"]
        async with http.post(base + "whip", data=b"v=0\r\nbad", headers={**auth, "Content-Type": "application/sdp"}) \
                as response:
            assert response.status == 400
        async with http.post(base + "whip", data=sdp, headers={"Content-Type": "application/sdp"}) as response:
            assert response.status == 401 and response.headers.get("WWW-Authenticate") == "Bearer"
        async with http.post(base + "whep/nosuchsession", data=sdp,
                             headers={**auth, "Content-Type": "application/sdp"}) as response:
            assert response.status == 404 and "nosuchsession" in (await response.json())["error"]
        async with http.delete(base + "whip/nosuchsession", headers=auth) as response:
            assert response.status == 404
    assert await _healthy(guarded_server)


async def test_more_than_max_sessions_get_503(guarded_server: RunningServer, server_clip: Clip) -> None:
    first = await open_offer_peer(guarded_server.url, server_clip.frames, server_clip.fps, token=TOKEN)
    try:
        assert await wait_for(lambda: first.received.count >= 1, 20)
        assert len(guarded_server.state.registry) == 1
        status, text, headers = await post_sdp(guarded_server.url + "whip", await _offer_sdp(), TOKEN)
        assert status == 503 and "--max-sessions" in text and headers.get("Retry-After")
        with pytest.raises(AssertionError, match="503"):
            await open_offer_peer(guarded_server.url, server_clip.frames, server_clip.fps, token=TOKEN)
    finally:
        await first.close()
    assert await wait_for(lambda: len(guarded_server.state.registry) == 0, 10)
    second = await open_offer_peer(guarded_server.url, server_clip.frames, server_clip.fps, token=TOKEN)
    assert await wait_for(lambda: second.received.count >= 1, 20), "the freed place was not usable"
    await second.close()
    assert await wait_for(lambda: len(guarded_server.state.registry) == 0, 10)
    assert await _healthy(guarded_server)


async def test_a_peer_that_never_connects_is_freed(guarded_server: RunningServer) -> None:
    pc = RTCPeerConnection()
    pc.addTransceiver("video", direction="sendrecv")
    await pc.setLocalDescription(await pc.createOffer())
    status, body = await _post(guarded_server.url + "offer", json={"sdp": pc.localDescription.sdp, "type": "offer"})
    await pc.close()  # gone before ICE could connect
    assert status == 200, body
    assert len(guarded_server.state.registry) == 1
    assert await wait_for(lambda: len(guarded_server.state.registry) == 0, 10), "unconnected session never freed"
    assert await _healthy(guarded_server)


def _native_threads() -> int:
    # Codec contexts (and their native threads) die with garbage cycles; count what survives a collection.
    gc.collect()
    return len(os.listdir("/proc/self/task"))


POOLED_THREAD_PREFIXES = ("swapstream-frame", "asyncio_")


def _unpooled_threads() -> list[str]:
    return sorted(t.name for t in threading.enumerate() if not t.name.startswith(POOLED_THREAD_PREFIXES))


def _pooled_threads() -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(POOLED_THREAD_PREFIXES))


def _open_peer_connections() -> int:
    # type() rather than isinstance(): isinstance reads __class__, which some lazy modules warn about.
    return sum(1 for o in gc.get_objects() if type(o) is RTCPeerConnection and o.connectionState != "closed")


@pytest.mark.slow
async def test_connect_disconnect_cycles_leave_nothing_behind(swap_server: RunningServer, server_clip: Clip) -> None:
    server = swap_server

    async def cycle() -> None:
        peer = await open_offer_peer(server.url, server_clip.frames, 10.0)
        assert await wait_for(lambda: peer.received.count >= 2, 20), "no frames came back"
        await peer.close()
        assert await wait_for(lambda: len(server.state.registry) == 0, 10), "session not freed after close"

    async def server_tasks() -> int:
        await server.state.registry.settle()
        return len(asyncio.all_tasks()) - 1  # minus this probe

    await cycle()  # warm-up: worker pools reach their steady size
    await asyncio.sleep(1.0)
    tasks_before = await server.acall(server_tasks)
    unpooled_before, pooled_before, native_before = _unpooled_threads(), _pooled_threads(), _native_threads()
    for _ in range(20):
        await cycle()
    await asyncio.sleep(1.0)
    assert await wait_for(lambda: _open_peer_connections() == 0, 10), f"{_open_peer_connections()} peers left"
    assert len(server.state.registry) == 0
    assert await server.acall(server_tasks) <= tasks_before
    # Bounded pools (frame workers, asyncio's default executors) may have grown to their size; nothing else.
    assert await wait_for(lambda: _unpooled_threads() == unpooled_before, 10), (unpooled_before, _unpooled_threads())
    pool_growth = _pooled_threads() - pooled_before
    assert pool_growth <= server.config.workers + 2 * min(32, (os.cpu_count() or 1) + 4)
    # mediapipe's graphs and the codecs run native threads that Python's threading module cannot see.
    assert await wait_for(lambda: _native_threads() <= native_before + pool_growth, 10), \
        (native_before, pool_growth, _native_threads())
    assert server.state.batcher is not None and server.state.batcher.live_sessions == 0
