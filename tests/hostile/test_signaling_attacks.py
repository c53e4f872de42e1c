"""Hostile signaling: half and slow bodies, races, cross-site posts, oversized offers, deep JSON, floods of offers.

Each test runs its attack against a real in-process server while a probe times /healthz, then asserts the
server's answer and that /healthz kept answering within 100 ms.
"""

from __future__ import annotations

import asyncio
import json
from collections import Counter

import aiohttp
import pytest

from tests.fixtures.server import RunningServer
from tests.hostile.harness import (
    HealthProbe,
    RawHttp,
    RawResponse,
    gradient_frames,
    many_video_sections,
    offer_peer,
    offer_sdp,
    open_peer_connections,
    serving,
)
from tests.stream_server.peer import open_whip_publisher, post_sdp, wait_for

pytestmark = pytest.mark.timeout(120)

FRAMES = gradient_frames(320, 240)


async def _post_json(url: str, body: str | bytes, headers: dict[str, str] | None = None) -> RawResponse:
    """POST with exactly these headers (aiohttp adds none that matter here); the reply, JSON or not."""
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=body, headers=headers or {"Content-Type": "application/json"}) as response:
            return RawResponse(response.status, {k.lower(): v for k, v in response.headers.items()},
                               await response.read())


def _sessions(server: RunningServer) -> int:
    return len(server.state.registry)


async def test_whep_body_finished_after_the_session_ended_gets_404_and_leaks_nothing() -> None:
    with serving(pipeline="echo", disclosure_mark=False) as server:
        publisher = await open_whip_publisher(server.url, FRAMES, 10)
        session_id = publisher.location.rsplit("/", 1)[1]
        sdp = (await offer_sdp()).encode()
        with HealthProbe(server.url) as health:
            raw = await RawHttp.open(server.url)
            try:
                await raw.send_head("POST", f"/whep/{session_id}",
                                    {"Content-Type": "application/sdp", "Content-Length": str(len(sdp))})
                await raw.send(sdp[: len(sdp) // 2])
                await asyncio.sleep(0.3)  # the handler has looked the session up and waits for the rest
                async with aiohttp.ClientSession() as http:
                    async with http.delete(server.url + f"whip/{session_id}") as response:
                        assert response.status == 200
                await raw.send(sdp[len(sdp) // 2:])
                answer = await raw.response()
            finally:
                await raw.close()
            await publisher.pc.close()
        assert answer.status == 404 and answer.is_json_error, answer
        assert await wait_for(lambda: not open_peer_connections(), 10), \
            f"{len(open_peer_connections())} peer connection(s) left open after the session ended"
        health.assert_responsive()


async def test_whep_viewers_that_never_start_ice_give_their_slots_back() -> None:
    with serving(pipeline="echo", disclosure_mark=False, connect_timeout_s=3.0) as server:
        publisher = await open_whip_publisher(server.url, FRAMES, 10)
        sdp = await offer_sdp()
        whep = publisher.location.replace("/whip/", "/whep/")
        with HealthProbe(server.url) as health:
            statuses = [(await post_sdp(server.url.rstrip("/") + whep, sdp))[0] for _ in range(9)]
            assert statuses == [201] * 8 + [503], statuses  # 8 viewers per session
            # None of them starts ICE: after the connect timeout their slots must be free again.
            await asyncio.sleep(server.config.connect_timeout_s + 2.0)
            status, text, _ = await post_sdp(server.url.rstrip("/") + whep, sdp)
        await publisher.close(server.url)
        assert status == 201, f"slot still held after the connect timeout: {status} {text}"
        health.assert_responsive()


async def test_offer_requires_json_and_checks_the_origin() -> None:
    allowed = "https://studio.example"
    with serving(pipeline="echo", connect_timeout_s=3.0, max_sessions=8, allowed_origins=(allowed,)) as server:
        body = json.dumps({"sdp": await offer_sdp(), "type": "offer"})
        url = server.url + "offer"
        own_origin = server.url.rstrip("/")
        with HealthProbe(server.url) as health:
            as_text = await _post_json(url, body, {"Content-Type": "text/plain"})
            as_form = await _post_json(url, body, {"Content-Type": "application/x-www-form-urlencoded"})
            foreign = await _post_json(url, body, {"Content-Type": "application/json", "Origin": "https://evil.example"})
            null_origin = await _post_json(url, body, {"Content-Type": "application/json", "Origin": "null"})
            sessions_after_refusals = _sessions(server)
            own = await _post_json(url, body, {"Content-Type": "application/json", "Origin": own_origin})
            listed = await _post_json(url, body, {"Content-Type": "application/json", "Origin": allowed})
            no_origin = await _post_json(url, body)  # the Python client, OBS, curl: not a browser
        assert as_text.status == 415 and as_text.is_json_error and "application/json" in as_text.json()["error"]
        assert as_form.status == 415 and as_form.is_json_error
        assert foreign.status == 403 and foreign.is_json_error and "Origin" in foreign.json()["error"]
        assert null_origin.status == 403 and null_origin.is_json_error
        assert sessions_after_refusals == 0
        assert (own.status, listed.status, no_origin.status) == (200, 200, 200), (own, listed, no_origin)
        health.assert_responsive()


async def test_offers_with_extra_media_sections_are_refused() -> None:
    with serving(pipeline="echo", connect_timeout_s=3.0, max_sessions=8) as server:
        url = server.url + "offer"
        normal = await offer_sdp(video=1, audio=1, data_channel=True)  # what a browser with a microphone sends
        hundreds = many_video_sections(await offer_sdp(), 300)
        two_audio = await offer_sdp(video=1, audio=2)
        two_video = await offer_sdp(video=2)
        with HealthProbe(server.url) as health:
            replies = {name: await _post_json(url, json.dumps({"sdp": sdp, "type": "offer"}))
                       for name, sdp in (("300 video", hundreds), ("2 audio", two_audio), ("2 video", two_video))}
            refused_sessions = _sessions(server)
            accepted = await _post_json(url, json.dumps({"sdp": normal, "type": "offer"}))
        for name, reply in replies.items():
            assert reply.status == 400 and reply.is_json_error, (name, reply)
            assert "m=" in reply.json()["error"] or "section" in reply.json()["error"], (name, reply.json())
        assert refused_sessions == 0
        assert accepted.status == 200, accepted
        health.assert_responsive()


async def test_deep_json_and_huge_numbers_get_a_json_400(tiny_models_dir: object) -> None:
    with serving(pipeline="echo", models_dir=tiny_models_dir) as server:
        deep = "[" * 100_000
        huge = json.dumps({"image": [10 ** 400] * 256})  # a valid JSON number no float holds
        with HealthProbe(server.url) as health:
            replies = {
                "offer deep": await _post_json(server.url + "offer", deep),
                "offer deep object": await _post_json(server.url + "offer", '{"a":' * 50_000),
                "digits deep": await _post_json(server.url + "api/digits", deep),
                "digits huge": await _post_json(server.url + "api/digits", huge),
            }
        for name, reply in replies.items():
            assert reply.status == 400 and reply.is_json_error, (name, reply.status, reply.body[:200])
            assert "Traceback" not in reply.json()["error"]
        health.assert_responsive()


async def test_delete_whip_does_not_end_an_offer_session() -> None:
    with serving(pipeline="echo", disclosure_mark=False) as server:
        async with offer_peer(server.url, FRAMES, 10) as peer:
            assert await wait_for(lambda: peer.received.count >= 3, 20)
            with HealthProbe(server.url) as health:
                async with aiohttp.ClientSession() as http:
                    async with http.delete(server.url + f"whip/{peer.session_id}") as response:
                        status, content_type = response.status, response.content_type
                        error = (await response.json())["error"] if content_type == "application/json" else ""
                seen = peer.received.count
                flowing = await wait_for(lambda: peer.received.count >= seen + 5, 6)
            assert status == 404 and "whip" in error.lower(), (status, error)
            assert _sessions(server) == 1 and flowing, "the /offer session was ended by DELETE /whip"
        health.assert_responsive()


async def test_a_hundred_concurrent_offers_admit_exactly_max_sessions() -> None:
    """Passes on the old code too: the limit is checked synchronously in the registry before any await."""
    with serving(pipeline="echo", max_sessions=4, connect_timeout_s=3.0) as server:
        body = json.dumps({"sdp": await offer_sdp(), "type": "offer"})
        with HealthProbe(server.url) as health:
            replies = await asyncio.gather(*(_post_json(server.url + "offer", body) for _ in range(100)))
            counts = Counter(reply.status for reply in replies)
            # Nobody starts ICE: the four admitted sessions are freed by the connect timeout.
            freed = await wait_for(lambda: _sessions(server) == 0, server.config.connect_timeout_s + 5)
        assert counts == {200: 4, 503: 96}, counts
        assert all(reply.is_json_error and reply.headers.get("retry-after") for reply in replies
                   if reply.status == 503)
        assert freed and await wait_for(lambda: not open_peer_connections(), 10), "sessions or peers left"
        health.assert_responsive()


async def test_slow_loris_bodies_get_408_and_do_not_hold_the_server() -> None:
    with serving(pipeline="echo", body_timeout_s=2.0) as server:
        connections = [await RawHttp.open(server.url) for _ in range(30)]
        with HealthProbe(server.url) as health:
            try:
                for raw in connections:
                    await raw.send_head("POST", "/offer", {"Content-Type": "application/json",
                                                           "Content-Length": "4000"})
                    await raw.send(b'{"sdp": "v=0')

                async def trickle_then_answer(raw: RawHttp) -> RawResponse | None:
                    for _ in range(5):  # one byte a second, for longer than the body timeout
                        try:
                            await raw.send(b" ")
                        except ConnectionError:
                            break
                        await asyncio.sleep(1.0)
                    try:
                        return await raw.response(timeout_s=5.0)
                    except (asyncio.TimeoutError, asyncio.IncompleteReadError, ConnectionError):
                        return None

                answers = await asyncio.gather(*(trickle_then_answer(raw) for raw in connections))
            finally:
                for raw in connections:
                    await raw.close()
        assert all(a is not None and a.status == 408 and a.is_json_error for a in answers), \
            Counter(None if a is None else a.status for a in answers)
        assert _sessions(server) == 0
        health.assert_responsive()

