"""The one place where clients set up a WebRTC peer with the server: signaling, token, control channel, jitter buffer.

`SwapPeer` is used by `swapstream client`, `swapstream profile` and `swapstream virtualcam`. It either sends a
track through `POST /offer` (two-way video plus the "control" DataChannel) or, given a session id, watches that
session's swapped stream through WHEP (`POST /whep/<id>`).
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamTrack

from clients.errors import ClientConfigError, ConnectionFailed
from rtc.audio import ImmediateAudioBuffer, install_audio_buffer
from rtc.jitterbuffer import JITTER_BUFFER_MODES, JitterBufferMode, install_on_receiver

logger = logging.getLogger(__name__)

TOKEN_ENVIRONMENT_VARIABLE = "SWAPSTREAM_TOKEN"


@dataclass(frozen=True)
class ServerEndpoint:
    """Where the server is and how to authenticate: built once from --url / --token."""

    url: str
    token: str | None = None
    timeout_s: float = 20.0

    def __post_init__(self) -> None:
        parts = urlsplit(self.url)
        if parts.scheme not in ("http", "https") or not parts.netloc:
            raise ClientConfigError(f"--url must be an http(s) URL such as http://127.0.0.1:8080, got {self.url!r}")
        if self.token is not None and not self.token.strip():
            raise ClientConfigError("--token must not be empty")
        if self.timeout_s <= 0:
            raise ClientConfigError(f"--timeout must be > 0 seconds, got {self.timeout_s}")

    def resolve(self, path: str) -> str:
        """The absolute URL of a server path (the base URL may carry a prefix, e.g. behind a proxy)."""
        return self.url.rstrip("/") + "/" + path.lstrip("/")

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"} if self.token else {}


def endpoint_from_flags(url: str, token: str | None, timeout_s: float = 20.0) -> ServerEndpoint:
    """A ServerEndpoint from the --url and --token flags; the token falls back to $SWAPSTREAM_TOKEN."""
    return ServerEndpoint(url=url, token=token or os.environ.get(TOKEN_ENVIRONMENT_VARIABLE) or None, timeout_s=timeout_s)


def parse_options(text: str | None) -> dict[str, Any]:
    """The --options flag: a JSON object of session options (model, swap, feather, color, boxes, keep_mouth)."""
    if not text:
        return {}
    try:
        value = json.loads(text)
    except ValueError as exc:
        raise ClientConfigError(f"--options must be a JSON object, e.g. '{{\"swap\": false}}': {exc}") from exc
    if not isinstance(value, dict):
        raise ClientConfigError(f"--options must be a JSON object, got {type(value).__name__}")
    return value


def install_jitter_buffer(pc: RTCPeerConnection, mode: JitterBufferMode) -> bool:
    """Mode "marker": the marker-bit jitter buffer on the peer's video receivers (issue 7) and the immediate one on
    its audio receivers (aiortc's would hold audio 80 ms longer than the video); True if the video one is in."""
    if mode == "stock":
        return False
    installed = False
    for transceiver in pc.getTransceivers():
        if transceiver.kind == "video":
            installed = install_on_receiver(transceiver.receiver, mode) or installed
        elif transceiver.kind == "audio":
            install_audio_buffer(transceiver.receiver, ImmediateAudioBuffer())
    return installed


async def fetch_json(endpoint: ServerEndpoint, path: str) -> Any:
    """GET a JSON document from the server (e.g. /healthz, /api/models)."""
    text = await fetch_text(endpoint, path)
    try:
        return json.loads(text)
    except ValueError as exc:
        raise ConnectionFailed(f"{endpoint.resolve(path)} did not return JSON: {exc}") from exc


async def fetch_text(endpoint: ServerEndpoint, path: str) -> str:
    """GET a text document from the server (e.g. /metrics)."""
    url = endpoint.resolve(path)
    timeout = aiohttp.ClientTimeout(total=endpoint.timeout_s)
    try:
        async with aiohttp.ClientSession(timeout=timeout) as http:
            async with http.get(url, headers=endpoint.headers) as response:
                text = await response.text()
                if response.status != 200:
                    raise ConnectionFailed(f"GET {url} -> HTTP {response.status}: {_error_text(text)}")
                return text
    except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
        raise ConnectionFailed(f"cannot reach the server at {url}: {exc or type(exc).__name__}") from exc


def _error_text(body: str) -> str:
    try:
        data = json.loads(body)
    except ValueError:
        return body.strip()[:300]
    return str(data.get("error", data)) if isinstance(data, dict) else str(data)


class SwapPeer:
    """A client peer connection to the server, as an async context manager.

    With `send` set, the track goes to the server through POST /offer and `video` is the swapped stream coming
    back; `options` are the session options and `send_options` changes them live over the "control" channel.
    `send_audio` adds an audio track; `audio` is then the audio coming back (in step with `video`). With
    `watch_session` set instead, `video` is that session's swapped stream, received through WHEP, and with
    `watch_audio` also `audio`, its sound (when the session has any). A returned audio track must be read:
    aiortc queues what nobody reads.
    """

    def __init__(
        self,
        endpoint: ServerEndpoint,
        send: MediaStreamTrack | None = None,
        options: dict[str, Any] | None = None,
        watch_session: str | None = None,
        jitter_buffer: JitterBufferMode = "marker",
        on_stats: Callable[[dict[str, Any]], None] | None = None,
        send_audio: MediaStreamTrack | None = None,
        watch_audio: bool = False,
    ) -> None:
        if (send is None) == (watch_session is None):
            raise ClientConfigError("a peer either sends a track (POST /offer) or watches a session (WHEP), not both")
        if jitter_buffer not in JITTER_BUFFER_MODES:
            raise ClientConfigError(f"--jitter-buffer must be marker or stock, got {jitter_buffer!r}")
        self.endpoint = endpoint
        self._send = send
        self._send_audio = send_audio
        self._watch_audio = watch_audio
        self._options = dict(options or {})
        self._watch_session = watch_session
        self._jitter_buffer = jitter_buffer
        self._on_stats = on_stats
        self.pc: RTCPeerConnection | None = None
        self.video: MediaStreamTrack | None = None
        self.audio: MediaStreamTrack | None = None
        self.session_id: str | None = None
        self.jitter_buffer_installed = False
        self.server_stats: dict[str, Any] = {}
        self.server_messages: list[dict[str, Any]] = []
        self._channel: Any = None
        self._channel_open = asyncio.Event()
        self._failed = asyncio.Event()
        self._resource_url: str | None = None

    async def __aenter__(self) -> SwapPeer:
        await self.connect()
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    @property
    def failed(self) -> bool:
        """True once the peer connection has failed or closed from the server's side."""
        return self._failed.is_set()

    async def connect(self) -> None:
        """Negotiate with the server and wait until the returned video track exists."""
        pc = RTCPeerConnection()
        self.pc = pc
        track_ready: asyncio.Future[MediaStreamTrack] = asyncio.get_running_loop().create_future()

        @pc.on("track")
        def on_track(track: MediaStreamTrack) -> None:
            if track.kind == "audio" and self.audio is None:
                self.audio = track
            if track.kind == "video" and not track_ready.done():
                track_ready.set_result(track)

        @pc.on("connectionstatechange")
        async def on_state() -> None:
            logger.debug("peer connection %s", pc.connectionState)
            if pc.connectionState in ("failed", "closed"):
                self._failed.set()

        if self._send is not None:
            pc.addTrack(self._send)
            if self._send_audio is not None:
                pc.addTrack(self._send_audio)
            self._channel = pc.createDataChannel("control")
            self._channel.on("open", self._channel_open.set)
            self._channel.on("message", self._on_message)
        else:
            pc.addTransceiver("video", direction="recvonly")
            if self._watch_audio:
                pc.addTransceiver("audio", direction="recvonly")
        self.jitter_buffer_installed = install_jitter_buffer(pc, self._jitter_buffer)
        try:
            await pc.setLocalDescription(await pc.createOffer())
            if self._send is not None:
                answer = await self._post_offer(pc.localDescription.sdp)
            else:
                answer = await self._post_whep(pc.localDescription.sdp)
            await pc.setRemoteDescription(answer)
            self.video = await asyncio.wait_for(track_ready, timeout=self.endpoint.timeout_s)
        except asyncio.TimeoutError as exc:
            await self.close()
            raise ConnectionFailed(f"{self.endpoint.url}: no video track in the server's answer") from exc
        except BaseException:
            await self.close()
            raise
        logger.info(
            "connected to %s (session %s, %s jitter buffer)",
            self.endpoint.url,
            self.session_id,
            "marker" if self.jitter_buffer_installed else "stock",
        )

    async def _request(self, path: str, body: str, content_type: str) -> tuple[int, str, dict[str, str]]:
        url = self.endpoint.resolve(path)
        headers = {"Content-Type": content_type, **self.endpoint.headers}
        timeout = aiohttp.ClientTimeout(total=self.endpoint.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as http:
                async with http.post(url, data=body, headers=headers) as response:
                    return response.status, await response.text(), dict(response.headers)
        except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
            raise ConnectionFailed(f"cannot reach the server at {url}: {exc or type(exc).__name__}") from exc

    async def _post_offer(self, sdp: str) -> RTCSessionDescription:
        body = json.dumps({"sdp": sdp, "type": "offer", "options": self._options})
        status, text, _ = await self._request("/offer", body, "application/json")
        if status != 200:
            hint = " (pass --token or set $SWAPSTREAM_TOKEN)" if status == 401 else ""
            raise ConnectionFailed(f"POST {self.endpoint.resolve('/offer')} -> HTTP {status}: {_error_text(text)}{hint}")
        try:
            answer = json.loads(text)
            self.session_id = str(answer["session_id"])
            return RTCSessionDescription(sdp=answer["sdp"], type=answer["type"])
        except (ValueError, KeyError, TypeError) as exc:
            raise ConnectionFailed(f"POST /offer: the server's answer is not {{sdp, type, session_id}}: {exc}") from exc

    async def _post_whep(self, sdp: str) -> RTCSessionDescription:
        path = f"/whep/{self._watch_session}"
        status, text, headers = await self._request(path, sdp, "application/sdp")
        if status != 201:
            raise ConnectionFailed(f"POST {self.endpoint.resolve(path)} -> HTTP {status}: {_error_text(text)}")
        self.session_id = self._watch_session
        location = headers.get("Location")
        if location:
            self._resource_url = location if "://" in location else self.endpoint.resolve(location)
        return RTCSessionDescription(sdp=text, type="answer")

    def _on_message(self, message: Any) -> None:
        try:
            data = json.loads(message)
        except (TypeError, ValueError):
            logger.debug("ignoring a non-JSON control message")
            return
        if not isinstance(data, dict):
            return
        if data.get("type") == "stats":
            self.server_stats = data
            if self._on_stats is not None:
                self._on_stats(data)
        else:
            self.server_messages.append(data)
            if data.get("type") == "error":
                logger.warning("server: %s", data.get("message"))

    async def send_options(self, options: dict[str, Any], timeout_s: float = 10.0) -> None:
        """Change the session's options live (applied from the next frame) over the control channel."""
        if self._channel is None:
            raise ClientConfigError("options can only be changed on a peer that sends video (POST /offer)")
        try:
            await asyncio.wait_for(self._channel_open.wait(), timeout_s)
        except asyncio.TimeoutError as exc:
            raise ConnectionFailed("the control DataChannel did not open") from exc
        self._channel.send(json.dumps({"type": "options", **options}))

    async def close(self) -> None:
        """End the session: close the peer connection (the server frees the session) and any WHEP resource."""
        if self._resource_url is not None:
            url, self._resource_url = self._resource_url, None
            try:
                timeout = aiohttp.ClientTimeout(total=5)
                async with aiohttp.ClientSession(timeout=timeout) as http:
                    async with http.delete(url, headers=self.endpoint.headers):
                        pass
            except (aiohttp.ClientError, asyncio.TimeoutError) as exc:
                logger.debug("DELETE %s failed: %s", url, exc)
        if self.pc is not None:
            pc, self.pc = self.pc, None
            await pc.close()
