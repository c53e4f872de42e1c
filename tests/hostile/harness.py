"""Attack tools for the hostile tests: a /healthz latency probe, a raw HTTP client, hostile SDP, leak counters.

Every hostile test runs its attack inside `HealthProbe`, which times GET /healthz from its own thread (fresh TCP
connection each time, so a stalled accept or event loop shows) and then asserts the server stayed responsive.
Servers are started by `serving()` with the ServerConfig fields a test needs, including the fields issue 13
proposes (PROPOSED_FIELDS); on code that does not have a proposed field yet it is left out, so the test runs
against the server as it is and fails on its behaviour, not on a TypeError.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import dataclasses
import gc
import http.client
import json
import re
import statistics
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np
from numpy.typing import NDArray
from aiortc import RTCPeerConnection
from aiortc.mediastreams import MediaStreamTrack
from av import VideoFrame

from rtc.jitterbuffer import install_on_receiver
from stream_server.config import ServerConfig
from tests.fixtures.server import RunningServer, start_server
from tests.stream_server.peer import NumberedVideoTrack, OfferPeer, open_offer_peer

# ServerConfig fields (and their `swapstream serve` flags) that issue 13 adds, with the proposed defaults.
PROPOSED_FIELDS: dict[str, tuple[str, object]] = {
    "idle_timeout_s": ("--idle-timeout", 30.0),
    "max_pixels": ("--max-pixels", 3840 * 2160),
    "allow_no_token": ("--allow-no-token", False),
    "allowed_origins": ("--allowed-origin", ()),
    "public_metrics": ("--public-metrics", False),
    "body_timeout_s": ("--body-timeout", 10.0),
}

HEALTHZ_LIMIT_MS = 100.0


def config_fields() -> set[str]:
    """The fields the ServerConfig under test has."""
    return {item.name for item in dataclasses.fields(ServerConfig)}


def missing_proposed_fields() -> list[str]:
    """Proposed fields the ServerConfig under test does not have yet."""
    return sorted(set(PROPOSED_FIELDS) - config_fields())


def open_peer_connections() -> list[RTCPeerConnection]:
    """Every RTCPeerConnection in this process (test peers and in-process servers) that is not closed."""
    # type() rather than isinstance(): isinstance reads __class__, which some lazy modules warn about.
    return [o for o in gc.get_objects() if type(o) is RTCPeerConnection and o.connectionState != "closed"]


@contextlib.contextmanager
def serving(**fields: Any) -> Iterator[RunningServer]:
    """A real in-process server with ServerConfig(**fields) (proposed fields it lacks are left out).

    On exit, peer connections the server left open (a leak under test) are closed on its loop before it stops,
    so one test's leak does not count against the next test's leak checks.
    """
    unknown = set(fields) - config_fields() - set(PROPOSED_FIELDS)
    if unknown:
        raise TypeError(f"not ServerConfig fields and not proposed by issue 13: {sorted(unknown)}")
    before = {id(pc) for pc in open_peer_connections()}
    server = start_server(**{name: value for name, value in fields.items() if name in config_fields()})
    try:
        yield server
    finally:
        leaked = [pc for pc in open_peer_connections() if id(pc) not in before]

        async def close_leaked() -> None:
            await asyncio.gather(*(pc.close() for pc in leaked), return_exceptions=True)

        if leaked:
            # After a failed test a test peer may be among them; its loop is not the server's, so do not wait long.
            with contextlib.suppress(TimeoutError):
                server.call(close_leaked, timeout=5.0)
        server.stop()


@contextlib.asynccontextmanager
async def offer_peer(base_url: str, frames: list[NDArray[np.uint8]], fps: float,
                     **options: Any) -> AsyncIterator[OfferPeer]:
    """`open_offer_peer` for the length of a block: the peer is closed however the block ends.

    The peer receives through the marker jitter buffer, as swapstream's own clients do (clients.webrtc), so a
    returned-video gap measured here is the server's, not aiortc's stock buffer waiting for its overflow.
    """
    peer = await open_offer_peer(base_url, frames, fps, **options)
    for transceiver in peer.pc.getTransceivers():  # before media flows: DTLS is not even up yet
        install_on_receiver(transceiver.receiver, "marker")
    try:
        yield peer
    finally:
        await peer.close()


class HealthProbe:
    """Times GET /healthz from its own thread every `interval_s` while an attack runs.

    Use as a context manager around the attack, then `assert_responsive()`.
    """

    def __init__(self, base_url: str, interval_s: float = 0.05, timeout_s: float = 5.0, min_samples: int = 10) -> None:
        parts = urlsplit(base_url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 80
        self._interval_s = interval_s
        self._timeout_s = timeout_s
        self._min_samples = min_samples
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hostile-healthz-probe", daemon=True)
        self.latencies_ms: list[float] = []
        self.failures: list[str] = []

    def __enter__(self) -> HealthProbe:
        self._thread.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        # A short attack still gets enough samples to judge: keep probing a little past its end.
        deadline = time.monotonic() + self._min_samples * (self._interval_s + self._timeout_s)
        while len(self.latencies_ms) + len(self.failures) < self._min_samples and time.monotonic() < deadline:
            time.sleep(self._interval_s)
        self._stop.set()
        self._thread.join(timeout=self._timeout_s + 1)

    def _probe(self) -> None:
        connection = http.client.HTTPConnection(self._host, self._port, timeout=self._timeout_s)
        start = time.perf_counter()
        try:
            connection.request("GET", "/healthz")
            response = connection.getresponse()
            body = response.read()
            elapsed_ms = (time.perf_counter() - start) * 1000.0
            # A full server answers 503 "full" on purpose (a load balancer then routes elsewhere): still an answer.
            answer = (response.status, json.loads(body).get("status"))
            if answer not in ((200, "ok"), (503, "full")):
                self.failures.append(f"HTTP {response.status}: {body[:200]!r}")
            else:
                self.latencies_ms.append(elapsed_ms)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            self.failures.append(f"{type(exc).__name__}: {exc}")
        finally:
            connection.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            self._probe()
            self._stop.wait(self._interval_s)
        self._probe()  # one more after the attack: the server is still there

    def summary(self) -> str:
        values = sorted(self.latencies_ms)
        if not values:
            return f"no /healthz answer; failures: {self.failures[:3]}"
        p95 = values[min(len(values) - 1, int(0.95 * len(values)))]
        return (f"/healthz {len(values)} answers: median {statistics.median(values):.1f} ms, p95 {p95:.1f} ms, "
                f"max {values[-1]:.1f} ms; {len(self.failures)} failures {self.failures[:3]}")

    def assert_responsive(self, limit_ms: float = HEALTHZ_LIMIT_MS) -> None:
        """Every probe answered 200, 95 % of them within `limit_ms` (one, in a short probe) and none took 10
        times as long.

        The 5 % allowance is for this shared 2-core machine, where any process can lose the CPU for a moment (in
        a probe of a dozen answers, that moment is one slow answer); a server that stalls (a blocking decode or
        parse on its loop, a full accept queue) fails the bound on the slowest probe or most probes.
        """
        assert not self.failures, self.summary()
        assert len(self.latencies_ms) >= 3, self.summary()
        slow = sum(1 for value in self.latencies_ms if value > limit_ms)
        assert slow <= max(1.0, 0.05 * len(self.latencies_ms)), self.summary()
        assert max(self.latencies_ms) <= 10 * limit_ms, self.summary()


@dataclass
class RawResponse:
    """What a raw HTTP exchange got back."""

    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)

    @property
    def is_json_error(self) -> bool:
        """A JSON body {"error": ...} with a JSON content type (the server's error format)."""
        if not self.headers.get("content-type", "").startswith("application/json"):
            return False
        try:
            return isinstance(self.json().get("error"), str)
        except (ValueError, AttributeError):
            return False


@dataclass
class RawHttp:
    """One raw HTTP/1.1 connection on asyncio streams: sends what aiohttp's client will not (half or slow bodies)."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter
    host: str = "127.0.0.1"
    sent: int = field(default=0)

    @classmethod
    async def open(cls, base_url: str) -> RawHttp:
        parts = urlsplit(base_url)
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        return cls(reader, writer, f"{parts.hostname}:{parts.port}")

    async def send_head(self, method: str, path: str, headers: dict[str, str]) -> None:
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await self.writer.drain()

    async def send(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()
        self.sent += len(data)

    async def response(self, timeout_s: float = 10.0) -> RawResponse:
        """Read the status line, headers and body (Content-Length, or up to the server closing)."""
        async def read() -> RawResponse:
            head = await self.reader.readuntil(b"\r\n\r\n")
            status_line, *header_lines = head.decode("latin-1").split("\r\n")
            status = int(status_line.split()[1])
            headers = {}
            for line in header_lines:
                if ":" in line:
                    name, _, value = line.partition(":")
                    headers[name.strip().lower()] = value.strip()
            if "content-length" in headers:
                body = await self.reader.readexactly(int(headers["content-length"]))
            else:
                body = await self.reader.read()
            return RawResponse(status, headers, body)

        return await asyncio.wait_for(read(), timeout_s)

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(OSError, ConnectionError):
            await self.writer.wait_closed()


async def offer_sdp(video: int = 1, audio: int = 0, data_channel: bool = False) -> str:
    """A real aiortc offer with `video` video and `audio` audio sections (the peer is closed again)."""
    pc = RTCPeerConnection()
    try:
        for _ in range(video):
            pc.addTransceiver("video", direction="sendrecv")
        for _ in range(audio):
            pc.addTransceiver("audio", direction="sendrecv")
        if data_channel:
            pc.createDataChannel("control")
        await pc.setLocalDescription(await pc.createOffer())
        return str(pc.localDescription.sdp)
    finally:
        await pc.close()


def _split_sections(sdp: str) -> tuple[list[str], list[list[str]]]:
    lines = [line for line in sdp.replace("\r\n", "\n").split("\n") if line]
    session: list[str] = []
    sections: list[list[str]] = []
    for line in lines:
        if line.startswith("m="):
            sections.append([line])
        elif sections:
            sections[-1].append(line)
        else:
            session.append(line)
    return session, sections


def many_video_sections(sdp: str, count: int) -> str:
    """`sdp` (a one-video offer) with `count` bundled video sections, each as small as aiortc accepts."""
    session, sections = _split_sections(sdp)
    first = sections[0]
    keep = ("a=ice-ufrag", "a=ice-pwd", "a=fingerprint", "a=setup", "a=rtcp-mux", "c=")
    shared = [line for line in first if line.startswith(keep)]
    vp8 = next(line for line in first if re.match(r"a=rtpmap:\d+ VP8/90000", line))
    payload = vp8.split(":")[1].split()[0]
    out = [line for line in session if not line.startswith("a=group:BUNDLE")]
    out.append("a=group:BUNDLE " + " ".join(str(mid) for mid in range(count)))
    for mid in range(count):
        out.append(f"m=video 9 UDP/TLS/RTP/SAVPF {payload}")
        out += shared
        out += [f"a=mid:{mid}", "a=sendrecv", vp8]
        if mid == 0:
            out += [line for line in first if line.startswith("a=candidate")]
    return "\r\n".join(out) + "\r\n"


class StallingTrack(NumberedVideoTrack):
    """A numbered track that sends `stall_after` frames and then never another (the peer stays connected)."""

    def __init__(self, frames: list[NDArray[np.uint8]], fps: float, stall_after: int) -> None:
        super().__init__(frames, fps)
        self._stall_after = stall_after
        self._never = asyncio.Event()

    async def recv(self) -> VideoFrame:
        if self._index >= self._stall_after:
            await self._never.wait()
        return await super().recv()


def gradient_frames(width: int, height: int, count: int = 4) -> list[NDArray[np.uint8]]:
    """Smooth RGB frames (cheap for VP8, unlike noise) that differ from one another."""
    ramp = np.linspace(0, 255, width, dtype=np.float32)[None, :, None]
    column = np.linspace(0, 255, height, dtype=np.float32)[:, None, None]
    return [np.broadcast_to(((ramp + column * (i + 1) / count) % 256).astype(np.uint8), (height, width, 3)).copy()
            for i in range(count)]


def _is_server_object(item: object) -> bool:
    module = getattr(type(item), "__module__", None)
    return isinstance(module, str) and module.startswith("stream_server.")


def frames_held_by_outgoing_tracks(width: int) -> int:
    """Distinct `width`-wide VideoFrames reachable from the server's outgoing tracks (waiting for an encoder).

    Walks only the server's own objects and plain containers (not asyncio or aiortc objects, which lead to
    everything), so what it finds is what the tracks and their fan-out hold.
    """
    roots = [o for o in gc.get_objects() if _is_server_object(o) and MediaStreamTrack in type(o).__mro__]
    seen: set[int] = set()
    frames: set[int] = set()
    todo: list[object] = list(roots)
    while todo:
        item = todo.pop()
        if id(item) in seen:
            continue
        seen.add(id(item))
        if type(item) is VideoFrame:
            if item.width == width:
                frames.add(id(item))
            continue
        if type(item) in (dict, list, tuple, set, frozenset, collections.deque) or _is_server_object(item):
            todo.extend(gc.get_referents(item))
    return len(frames)


def open_face_detectors() -> int:
    """FaceDetector objects in this process that were never closed (each holds native mediapipe graphs)."""
    from faces.detect import FaceDetector

    return sum(1 for o in gc.get_objects() if type(o) is FaceDetector and getattr(o, "_closed", True) is False)
