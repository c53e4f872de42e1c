"""A lossy network between a WebRTC client and swapstream: an asyncio UDP relay that drops, delays (jitter) and
reorders a given share of packets in both directions, with an HTTP front that puts it in the media path.

How it gets into the path: aiortc peers on one machine reach each other directly over ICE host candidates (one
UDP socket per peer and interface), so nothing sits between them. The HTTP front (`SignalingGateway`) forwards
/offer, /whip and /whep to the real server and rewrites the ICE candidates in both SDPs: every IPv4 UDP host
candidate of one side is replaced by a relay socket (a "face") that stands for it to the other side, and other
candidates (IPv6, TCP, server-reflexive) are dropped. A datagram from endpoint X arriving at the face of Y is sent
on to Y from the face of X, so each side sees the other only through the relay, ICE checks included, and ICE,
DTLS and SRTP work unchanged. This needs no change to the clients or the server (any client pointed at the
gateway's URL goes through it, `swapstream profile` included) and no TURN server: the alternative, a TURN relay
forced with iceTransportPolicy "relay", would need a TURN implementation and credentials on both sides.

Every datagram is counted per direction; RTCP keyframe requests (PLI, FIR) and NACKs are counted from the part
of SRTCP that stays in the clear (the first packet's header).

    python bench/udp_proxy.py --server http://127.0.0.1:8080 --port 8081 --loss 0.02 --jitter-ms 20 --reorder 0.01
    swapstream profile --url http://127.0.0.1:8081 ...

GET /_proxy/stats gives the counters as JSON; POST /_proxy/impairment {"loss": ..} changes the impairment live.
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import ipaddress
import json
import logging
import random
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Literal, cast

import aiohttp
from aiohttp import web

logger = logging.getLogger(__name__)

Side = Literal["client", "server"]
Address = tuple[str, int]
DIRECTIONS = ("client->server", "server->client")
RTCP_PSFB, RTCP_RTPFB = 206, 205
PSFB_PLI, PSFB_FIR, RTPFB_NACK = 1, 4, 1
_CANDIDATE = re.compile(r"^a=candidate:(\S+) (\d+) (\S+) (\d+) (\S+) (\d+) typ (\S+)(.*)$")


@dataclass(frozen=True)
class Impairment:
    """What the relay does to each datagram, per direction."""

    loss: float = 0.0
    """Share of datagrams dropped (0..1)."""
    jitter_ms: float = 0.0
    """Each datagram is held a uniform 0..jitter_ms on top of delay_ms; order is kept unless it is reordered."""
    reorder: float = 0.0
    """Share of datagrams held back behind the ones after them."""
    delay_ms: float = 0.0
    """Fixed one-way delay."""

    def __post_init__(self) -> None:
        for name in ("loss", "reorder"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"--{name} must be a share in 0..1, got {getattr(self, name)}")
        for name in ("jitter_ms", "delay_ms"):
            if not 0.0 <= getattr(self, name) <= 10_000:
                raise ValueError(f"--{name.replace('_', '-')} must be in 0..10000 ms, got {getattr(self, name)}")

    @property
    def hold_back_s(self) -> float:
        """How long a reordered datagram waits beyond its slot: long enough for later ones to pass it."""
        return max(2.0 * self.jitter_ms, 10.0) / 1000.0


@dataclass
class DirectionStats:
    """Counters for one direction."""

    datagrams: int = 0
    bytes: int = 0
    dropped: int = 0
    reordered: int = 0
    delivered: int = 0
    pli: int = 0
    fir: int = 0
    nack: int = 0


def count_rtcp_feedback(data: bytes, stats: DirectionStats) -> None:
    """Count a PLI, FIR or NACK from an (S)RTCP datagram's clear header (RFC 5761 demux: version 2, PT 192-223)."""
    if len(data) < 8 or data[0] >> 6 != 2 or not 192 <= data[1] <= 223:
        return
    fmt = data[0] & 0x1F
    if data[1] == RTCP_PSFB and fmt == PSFB_PLI:
        stats.pli += 1
    elif data[1] == RTCP_PSFB and fmt == PSFB_FIR:
        stats.fir += 1
    elif data[1] == RTCP_RTPFB and fmt == RTPFB_NACK:
        stats.nack += 1


class _Face(asyncio.DatagramProtocol):
    """A relay socket standing for `endpoint` (of `side`) to the other side."""

    def __init__(self, relay: UdpRelay, endpoint: Address, side: Side) -> None:
        self.relay, self.endpoint, self.side = relay, endpoint, side
        self.transport: asyncio.DatagramTransport | None = None
        self.address: Address = ("", 0)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # Python 3.11's selector datagram transport does not subclass asyncio.DatagramTransport: cast, not check.
        self.transport = cast(asyncio.DatagramTransport, transport)
        host, port = transport.get_extra_info("sockname")[:2]
        self.address = (str(host), int(port))

    def datagram_received(self, data: bytes, source: Address) -> None:
        self.relay._relay(self, data, (str(source[0]), int(source[1])))


class UdpRelay:
    """Relays datagrams between client and server endpoints through faces, impairing each direction."""

    def __init__(self, impairment: Impairment | None = None, seed: int | None = None) -> None:
        self.impairment = impairment or Impairment()
        self.stats = {direction: DirectionStats() for direction in DIRECTIONS}
        self._random = random.Random(seed)
        self._faces: dict[tuple[Side, Address], _Face] = {}
        self._opening: dict[tuple[Side, Address], asyncio.Future[_Face]] = {}
        self._last_due = {direction: 0.0 for direction in DIRECTIONS}
        # In-order datagrams wait in one queue per direction behind a single timer (timers due at the same moment
        # may fire in any order); reordered ones get timers of their own.
        self._queues: dict[str, collections.deque[tuple[float, Callable[[], None]]]] = {
            direction: collections.deque() for direction in DIRECTIONS}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._pending: set[asyncio.TimerHandle] = set()

    async def face_for(self, endpoint: Address, side: Side) -> Address:
        """The relay address that stands for `endpoint` (a `side` peer's candidate) to the other side."""
        key = (side, endpoint)
        if key in self._faces:
            return self._faces[key].address
        # One face per endpoint, even when a datagram and an SDP ask for it at the same time: two faces for one
        # endpoint would answer ICE checks from an address the peer did not send to.
        opening = self._opening.get(key)
        if opening is None:
            opening = asyncio.ensure_future(self._open_face(endpoint, side))
            self._opening[key] = opening
        face = await asyncio.shield(opening)
        self._faces[key] = face
        self._opening.pop(key, None)
        return face.address

    async def _open_face(self, endpoint: Address, side: Side) -> _Face:
        loop = asyncio.get_running_loop()
        _, face = await loop.create_datagram_endpoint(lambda: _Face(self, endpoint, side), local_addr=(endpoint[0], 0))
        return face

    def _relay(self, face: _Face, data: bytes, source: Address) -> None:
        direction = "client->server" if face.side == "server" else "server->client"
        stats = self.stats[direction]
        stats.datagrams += 1
        stats.bytes += len(data)
        count_rtcp_feedback(data, stats)
        sender_side: Side = "client" if face.side == "server" else "server"
        sender = self._faces.get((sender_side, source))
        if sender is None:  # a peer-reflexive address: give it a face on the spot (sends start once it is bound)
            asyncio.ensure_future(self.face_for(source, sender_side))
            stats.dropped += 1
            return
        impairment = self.impairment
        if impairment.loss and self._random.random() < impairment.loss:
            stats.dropped += 1
            return
        loop = asyncio.get_running_loop()
        now = loop.time()
        due = now + (impairment.delay_ms + self._random.uniform(0.0, impairment.jitter_ms)) / 1000.0

        def send() -> None:
            self._send(sender, data, face.endpoint, stats)

        if impairment.reorder and self._random.random() < impairment.reorder:
            stats.reordered += 1

            def send_held_back() -> None:
                self._pending.discard(handle)
                send()

            handle = loop.call_at(max(due, self._last_due[direction]) + impairment.hold_back_s, send_held_back)
            self._pending.add(handle)
            return
        # In order: a datagram never leaves before the one ahead of it, however short its own delay.
        due = max(due, self._last_due[direction])
        self._last_due[direction] = due
        queue = self._queues[direction]
        queue.append((due, send))
        if len(queue) == 1:
            self._drain(direction)

    def _drain(self, direction: str) -> None:
        """Send the datagrams at the head of `direction`'s queue that are due, and wait for the next one."""
        queue = self._queues[direction]
        loop = asyncio.get_running_loop()
        now = loop.time()
        while queue and queue[0][0] <= now:
            queue.popleft()[1]()
        timer = self._timers.pop(direction, None)
        if timer is not None:
            self._pending.discard(timer)
        if queue:
            self._timers[direction] = loop.call_at(queue[0][0], self._drain, direction)
            self._pending.add(self._timers[direction])

    @staticmethod
    def _send(sender: _Face, data: bytes, destination: Address, stats: DirectionStats) -> None:
        if sender.transport is not None and not sender.transport.is_closing():
            sender.transport.sendto(data, destination)
            stats.delivered += 1

    def snapshot(self) -> dict[str, dict[str, int]]:
        """The counters so far, per direction."""
        return {direction: asdict(stats) for direction, stats in self.stats.items()}

    async def rewrite_sdp(self, sdp: str, side: Side) -> str:
        """`sdp` (from `side`) with each IPv4 UDP host candidate replaced by its face; other candidates dropped."""
        lines = []
        for line in sdp.splitlines():
            match = _CANDIDATE.match(line)
            if match is None:
                lines.append(line)
                continue
            foundation, component, transport, priority, host, port, kind, rest = match.groups()
            if transport.lower() != "udp" or kind != "host" or not _is_ipv4(host):
                continue
            face_host, face_port = await self.face_for((host, int(port)), side)
            lines.append(f"a=candidate:{foundation} {component} {transport} {priority} {face_host} {face_port} "
                         f"typ host{rest}")
        return "\r\n".join(lines) + "\r\n"

    def close(self) -> None:
        """Close every face and forget datagrams still waiting."""
        for handle in self._pending:
            handle.cancel()
        self._pending.clear()
        self._timers.clear()
        for queue in self._queues.values():
            queue.clear()
        for face in self._faces.values():
            if face.transport is not None:
                face.transport.close()
        self._faces.clear()


def _is_ipv4(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).version == 4
    except ValueError:
        return False


_HOP_BY_HOP = {"connection", "keep-alive", "proxy-authenticate", "proxy-authorization", "te", "trailers",
               "transfer-encoding", "upgrade", "host", "content-length", "content-encoding"}


class SignalingGateway:
    """An HTTP front for a swapstream server: forwards every request, rewriting SDPs so media goes via the relay."""

    def __init__(self, server_url: str, relay: UdpRelay) -> None:
        self.server_url = server_url.rstrip("/")
        self.relay = relay
        self._http: aiohttp.ClientSession | None = None

    def app(self) -> web.Application:
        app = web.Application(client_max_size=4 * 1024 * 1024)
        app.router.add_get("/_proxy/stats", self._stats)
        app.router.add_post("/_proxy/impairment", self._set_impairment)
        app.router.add_route("*", "/{tail:.*}", self._forward)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, app: web.Application) -> None:
        if self._http is not None:
            await self._http.close()
        self.relay.close()

    async def _stats(self, request: web.Request) -> web.Response:
        return web.json_response({"impairment": asdict(self.relay.impairment), "directions": self.relay.snapshot()})

    async def _set_impairment(self, request: web.Request) -> web.Response:
        changes = await request.json()
        known = {item.name for item in fields(Impairment)}
        if not isinstance(changes, dict) or set(changes) - known:
            return web.json_response({"error": f"give a JSON object with keys from {sorted(known)}"}, status=400)
        try:
            self.relay.impairment = replace(self.relay.impairment, **changes)
        except (TypeError, ValueError) as exc:
            return web.json_response({"error": str(exc)}, status=400)
        return web.json_response(asdict(self.relay.impairment))

    async def _rewrite(self, body: bytes, content_type: str, side: Side) -> bytes:
        if content_type.startswith("application/sdp"):
            return (await self.relay.rewrite_sdp(body.decode(), side)).encode()
        if content_type.startswith("application/json"):
            try:
                document = json.loads(body)
            except ValueError:
                return body
            if isinstance(document, dict) and isinstance(document.get("sdp"), str):
                document["sdp"] = await self.relay.rewrite_sdp(document["sdp"], side)
                return json.dumps(document).encode()
        return body

    async def _forward(self, request: web.Request) -> web.StreamResponse:
        if self._http is None:
            self._http = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=60))
        body = await request.read()
        media_path = request.method == "POST" and request.path.startswith(("/offer", "/whip", "/whep"))
        if media_path:
            body = await self._rewrite(body, request.headers.get("Content-Type", ""), "client")
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        async with self._http.request(request.method, self.server_url + request.path_qs, data=body,
                                      headers=headers, allow_redirects=False) as upstream:
            answer = await upstream.read()
            if media_path and upstream.status in (200, 201):
                answer = await self._rewrite(answer, upstream.headers.get("Content-Type", ""), "server")
            reply_headers = {k: v for k, v in upstream.headers.items() if k.lower() not in _HOP_BY_HOP}
            return web.Response(status=upstream.status, body=answer, headers=reply_headers)


async def start_gateway(server_url: str, impairment: Impairment, host: str = "127.0.0.1", port: int = 0,
                        seed: int | None = None) -> tuple[web.AppRunner, UdpRelay, str]:
    """Serve a SignalingGateway for `server_url`; returns its runner (cleanup() stops it), relay and base URL."""
    relay = UdpRelay(impairment, seed=seed)
    runner = web.AppRunner(SignalingGateway(server_url, relay).app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = int(runner.addresses[0][1])
    return runner, relay, f"http://{host}:{bound_port}/"


def impairment_flags(parser: argparse.ArgumentParser) -> None:
    """--loss, --jitter-ms, --reorder, --delay-ms (shared with bench/soak.py)."""
    parser.add_argument("--loss", type=float, default=0.0, help="share of datagrams dropped, each way (0..1)")
    parser.add_argument("--jitter-ms", type=float, default=0.0, help="random extra delay per datagram, 0..N ms")
    parser.add_argument("--reorder", type=float, default=0.0, help="share of datagrams held back behind later ones")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="fixed one-way delay (ms)")


def impairment_from_args(args: argparse.Namespace) -> Impairment:
    try:
        return Impairment(loss=args.loss, jitter_ms=args.jitter_ms, reorder=args.reorder, delay_ms=args.delay_ms)
    except ValueError as exc:
        raise SystemExit(f"udp_proxy: error: {exc}") from exc


async def _serve(args: argparse.Namespace, on_ready: Callable[[str], None]) -> None:
    runner, _, url = await start_gateway(args.server, impairment_from_args(args), args.host, args.port, args.seed)
    on_ready(url)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Put a lossy UDP relay between WebRTC clients and a swapstream "
                                                 "server (clients use this gateway's URL instead of the server's).")
    parser.add_argument("--server", required=True, help="the swapstream server, e.g. http://127.0.0.1:8080")
    parser.add_argument("--host", default="127.0.0.1", help="address of the HTTP front (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=8081, help="port of the HTTP front (default 8081)")
    parser.add_argument("--seed", type=int, default=None, help="random seed for repeatable impairment")
    impairment_flags(parser)
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    try:
        asyncio.run(_serve(args, lambda url: print(f"udp_proxy: clients use {url} (server {args.server})",
                                                   flush=True)))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
