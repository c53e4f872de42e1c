"""deploy/haproxy/haproxy.cfg in action: a real HAProxy in front of two real media servers (one session each).

The configuration is the deployed file with only what ties it to a cluster replaced: the listening address, and
the DNS-discovered `server-template` by the two servers' loopback addresses (checked faster than every 2 s, so
the test is short). Everything under test is the file's own: new WHIP sessions go to a server whose /healthz
says 200, a full server (503) gets none, Location and Link come back under /node/<server>/, and those URLs reach
the server that owns the session, which builds its further URLs under the X-Forwarded-Prefix HAProxy sends.
"""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp
import pytest

from fleet.process import free_ports
from tests.fixtures.server import Clip, RunningServer, start_server
from tests.stream_server.peer import open_whep_viewer, open_whip_publisher, wait_for

CONFIG = Path(__file__).resolve().parents[2] / "deploy" / "haproxy" / "haproxy.cfg"
TEMPLATE = 'server-template media 8 "${MEDIA_HOST}:${MEDIA_PORT}"'
CHECK_EVERY_MS = 200


def local_config(ports: list[int], listen: int) -> str:
    """The deployed configuration, bound to 127.0.0.1:`listen`, with servers media1.. on loopback `ports`."""
    text = CONFIG.read_text()
    assert text.count(TEMPLATE) == 2 and text.count("bind :8080") == 1
    lines = [f"server media{k} 127.0.0.1:{port}" for k, port in enumerate(ports, 1)]
    # the template's other names exist too (the config's use-server rules name all 8), switched off
    lines += [f"server media{k} 127.0.0.1:9 disabled" for k in range(len(ports) + 1, 9)]
    servers = "\n    ".join(lines)
    text = text.replace(TEMPLATE, servers).replace("bind :8080", f"bind 127.0.0.1:{listen}")
    text = text.replace(" resolvers cluster init-addr none", "").replace("inter 2s", f"inter {CHECK_EVERY_MS}ms")
    return re.sub(r"\nresolvers cluster\n(    .*\n)+", "\n", text)


@pytest.fixture(scope="module")
def fleet(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, list[RunningServer]]]:
    """HAProxy's URL and the two echo media servers behind it."""
    haproxy = shutil.which("haproxy")
    if haproxy is None:
        pytest.skip("haproxy is not installed here (apt-get install haproxy): this test runs the real one")
    servers = [start_server(pipeline="echo", disclosure_mark=False, max_sessions=1) for _ in range(2)]
    listen = free_ports(1)[0]
    folder = tmp_path_factory.mktemp("haproxy")
    config, log = folder / "haproxy.cfg", folder / "haproxy.log"
    config.write_text(local_config([server.port for server in servers], listen))
    with open(log, "wb") as output:
        process = subprocess.Popen([haproxy, "-db", "-f", str(config)], stdout=output,
                                   stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", listen), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, log.read_text(errors="replace")
                time.sleep(0.1)
        yield f"http://127.0.0.1:{listen}/", servers
    finally:
        process.terminate()
        process.wait(timeout=20)
        for server in servers:
            server.stop()


def _node(location: str) -> str:
    match = re.match(r"^/node/(media[12])/", location)
    assert match, f"not a pinned URL: {location}"
    return match.group(1)


async def test_new_sessions_avoid_full_servers_and_urls_stay_pinned(fleet: tuple[str, list[RunningServer]],
                                                                    server_clip: Clip) -> None:
    lb, servers = fleet
    # both servers pass their checks (rise 2) before the first session
    await asyncio.sleep(3 * CHECK_EVERY_MS / 1000)
    first = await open_whip_publisher(lb, server_clip.frames, server_clip.fps)
    second = None
    viewer = None
    try:
        node = _node(first.location)
        session_id = first.location.rsplit("/", 1)[1]
        assert first.location == f"/node/{node}/whip/{session_id}"
        assert first.link == f'</node/{node}/whep/{session_id}>; rel="alternate"'
        # that server is full now: its /healthz says 503 and HAProxy takes it out for new sessions
        await asyncio.sleep(3 * CHECK_EVERY_MS / 1000)
        second = await open_whip_publisher(lb, server_clip.frames, server_clip.fps)
        assert _node(second.location) != node, "a new session went to the full server"
        # both full: HAProxy itself refuses (a media server would answer this bad SDP with 400)
        async with aiohttp.ClientSession() as http:
            await asyncio.sleep(3 * CHECK_EVERY_MS / 1000)
            async with http.post(lb + "whip", data=b"v=0", headers={"Content-Type": "application/sdp"}) as response:
                assert response.status == 503 and "No server is available" in await response.text()
        # the WHEP URL the Link names reaches the full server that owns the session, through HAProxy
        viewer = await open_whep_viewer(lb, first.link.split(">")[0].lstrip("<"))
        assert viewer.location.startswith(f"/node/{node}/whep/{session_id}/"), viewer.location
        assert await wait_for(lambda: viewer.received.count >= 5, 30), "the viewer got no video"
        assert await viewer.close(lb) == 200
        viewer = None
    finally:
        if viewer is not None:
            await viewer.close(lb)
        for publisher in (first, second):
            if publisher is not None:
                assert await publisher.close(lb) == 200
    assert await wait_for(lambda: all(len(server.state.registry) == 0 for server in servers), 10)
