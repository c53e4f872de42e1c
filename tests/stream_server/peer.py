"""A real aiortc client for the server tests: sends numbered frames, receives and decodes the returned ones.

Each sent frame carries its index as a 10-bit black/white code in the top-left 200x24 px, the corner the
server never draws on, so returned frames are matched to sent ones by content, whatever the codec did to
timestamps or which frames the server dropped.
"""

from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import aiohttp
import numpy as np
from aiortc import RTCPeerConnection, RTCSessionDescription
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack
from av import VideoFrame

from rtc.audio import EncodedAudioTap, install_audio_buffer
from swapstream.reserved_corner import RESERVED_CORNER_HEIGHT, RESERVED_CORNER_WIDTH

CODE_BITS = 10
CODE_CELL = RESERVED_CORNER_WIDTH // CODE_BITS  # px per bit; the cells fill the reserved corner's width
CODE_HEIGHT = RESERVED_CORNER_HEIGHT
VIDEO_CLOCK = 90_000


def stamp_index(rgb: np.ndarray, index: int) -> np.ndarray:
    """Write `index` (mod 1024) into the frame's top-left 200x24 px."""
    for bit in range(CODE_BITS):
        value = 255 if (index >> bit) & 1 else 0
        rgb[:CODE_HEIGHT, bit * CODE_CELL:(bit + 1) * CODE_CELL] = value
    return rgb


def read_index(rgb: np.ndarray) -> int:
    """Read the code written by stamp_index (cell centres, robust to codec blur)."""
    index = 0
    for bit in range(CODE_BITS):
        cell = rgb[6:CODE_HEIGHT - 6, bit * CODE_CELL + 5:(bit + 1) * CODE_CELL - 5]
        if cell.mean() > 128:
            index |= 1 << bit
    return index


class NumberedVideoTrack(MediaStreamTrack):
    """Sends the given RGB frames in a loop at `fps`, each stamped with its running index."""

    kind = "video"

    def __init__(self, frames: list[np.ndarray], fps: float, start_index: int = 0) -> None:
        super().__init__()
        self._frames = frames
        self._fps = fps
        self._first = start_index
        self._index = start_index
        self._start: float | None = None
        self.sent_at: dict[int, float] = {}

    def frame_for(self, index: int) -> np.ndarray:
        return stamp_index(self._frames[index % len(self._frames)].copy(), index)

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self._start is None:
            self._start = time.monotonic()
        due = self._start + (self._index - self._first) / self._fps
        delay = due - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        index = self._index
        self._index += 1
        frame = VideoFrame.from_ndarray(self.frame_for(index), format="rgb24")
        frame.pts = int(round(index * VIDEO_CLOCK / self._fps))
        frame.time_base = Fraction(1, VIDEO_CLOCK)
        self.sent_at[index] = time.monotonic()
        return frame


@dataclass
class Received:
    """Frames that came back: index -> (rgb, arrival time)."""

    frames: dict[int, np.ndarray] = field(default_factory=dict)
    arrived_at: dict[int, float] = field(default_factory=dict)
    pts: list[int] = field(default_factory=list)
    count: int = 0


async def collect(track: MediaStreamTrack, received: Received, keep: int = 64) -> None:
    """Decode every returned frame until the track ends; keep up to `keep` of them for comparison."""
    try:
        while True:
            frame = await track.recv()
            rgb = frame.to_ndarray(format="rgb24")
            index = read_index(rgb)
            received.count += 1
            received.pts.append(frame.pts)
            received.arrived_at.setdefault(index, time.monotonic())
            if len(received.frames) < keep:
                received.frames.setdefault(index, rgb)
    except MediaStreamError:
        pass


def auth_headers(token: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"} if token else {}


@dataclass
class OfferPeer:
    """A two-way /offer client: sends numbered frames, collects the returned video and control messages."""

    pc: RTCPeerConnection
    source: NumberedVideoTrack
    received: Received
    messages: list[dict[str, Any]]
    session_id: str
    channel: Any
    tasks: list[asyncio.Task[Any]]

    async def close(self) -> None:
        self.source.stop()
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)


def _add_audio(pc: RTCPeerConnection, audio: MediaStreamTrack | None, tap: EncodedAudioTap | None,
               direction: str) -> None:
    """Send `audio` and/or receive audio into `tap` (the returned packets, still encoded) on `pc`."""
    if audio is None and tap is None:
        return
    transceiver = pc.addTransceiver(audio if audio is not None else "audio", direction=direction)
    if tap is not None:
        assert install_audio_buffer(transceiver.receiver, tap)


async def open_offer_peer(base_url: str, frames: list[np.ndarray], fps: float, options: dict[str, Any] | None = None,
                          token: str | None = None, start_index: int = 0,
                          source: NumberedVideoTrack | None = None, audio: MediaStreamTrack | None = None,
                          audio_tap: EncodedAudioTap | None = None) -> OfferPeer:
    """Connect through POST /offer with a "control" DataChannel; raises AssertionError with the server's reply.

    `source` replaces the numbered track made from `frames` and `fps` (the hostile tests send stalling tracks).
    `audio` is sent too; the audio coming back goes, still encoded, to `audio_tap`.
    """
    pc = RTCPeerConnection()
    source = source if source is not None else NumberedVideoTrack(frames, fps, start_index)
    received = Received()
    messages: list[dict[str, Any]] = []
    tasks: list[asyncio.Task[Any]] = []
    channel = pc.createDataChannel("control")
    channel.on("message", lambda m: messages.append(json.loads(m)))
    pc.addTransceiver(source, direction="sendrecv")
    _add_audio(pc, audio, audio_tap, "sendrecv")

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video":
            tasks.append(asyncio.ensure_future(collect(track, received)))

    await pc.setLocalDescription(await pc.createOffer())
    body = {"sdp": pc.localDescription.sdp, "type": "offer", "options": options or {}}
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url + "offer", json=body, headers=auth_headers(token)) as response:
            reply = await response.json()
            if response.status != 200:
                await pc.close()
                raise AssertionError(f"/offer -> {response.status}: {reply}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=reply["sdp"], type=reply["type"]))
    return OfferPeer(pc, source, received, messages, reply["session_id"], channel, tasks)


async def wait_for(predicate: Any, timeout: float, interval: float = 0.05) -> bool:
    """Poll `predicate()` until true or `timeout` seconds pass."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        await asyncio.sleep(interval)
    return bool(predicate())


@dataclass
class WhipPublisher:
    """A WHIP (RFC 9725) ingest client: send-only video."""

    pc: RTCPeerConnection
    source: NumberedVideoTrack
    location: str
    link: str | None = None

    async def close(self, base_url: str, token: str | None = None) -> int:
        """DELETE the resource, then close; returns the DELETE status."""
        async with aiohttp.ClientSession() as http:
            async with http.delete(base_url.rstrip("/") + self.location, headers=auth_headers(token)) as response:
                status = response.status
        self.source.stop()
        await self.pc.close()
        return status


async def post_sdp(url: str, sdp: str, token: str | None = None,
                   headers: dict[str, str] | None = None) -> tuple[int, str, dict[str, str]]:
    headers = {"Content-Type": "application/sdp", **auth_headers(token), **(headers or {})}
    async with aiohttp.ClientSession() as http:
        async with http.post(url, data=sdp.encode(), headers=headers) as response:
            return response.status, await response.text(), dict(response.headers)


async def open_whip_publisher(base_url: str, frames: list[np.ndarray], fps: float,
                              token: str | None = None, headers: dict[str, str] | None = None,
                              audio: MediaStreamTrack | None = None) -> WhipPublisher:
    pc = RTCPeerConnection()
    source = NumberedVideoTrack(frames, fps)
    pc.addTransceiver(source, direction="sendonly")
    _add_audio(pc, audio, None, "sendonly")
    await pc.setLocalDescription(await pc.createOffer())
    status, text, answer_headers = await post_sdp(base_url + "whip", pc.localDescription.sdp, token, headers)
    if status != 201:
        await pc.close()
        raise AssertionError(f"POST /whip -> {status}: {text}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
    return WhipPublisher(pc, source, answer_headers["Location"], answer_headers.get("Link"))


@dataclass
class WhepViewer:
    """A WHEP egress client: receive-only video."""

    pc: RTCPeerConnection
    received: Received
    location: str
    tasks: list[asyncio.Task[Any]]

    async def close(self, base_url: str, token: str | None = None) -> int:
        async with aiohttp.ClientSession() as http:
            async with http.delete(base_url.rstrip("/") + self.location, headers=auth_headers(token)) as response:
                status = response.status
        await self.pc.close()
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        return status


async def open_whep_viewer(base_url: str, session_path: str, token: str | None = None,
                           headers: dict[str, str] | None = None,
                           audio_tap: EncodedAudioTap | None = None) -> WhepViewer:
    """POST /whep/<id> with a receive-only offer; collects the returned frames (the audio, still encoded, into
    `audio_tap`: the offer then has an audio section)."""
    pc = RTCPeerConnection()
    received = Received()
    tasks: list[asyncio.Task[Any]] = []
    pc.addTransceiver("video", direction="recvonly")
    _add_audio(pc, None, audio_tap, "recvonly")

    @pc.on("track")
    def on_track(track: MediaStreamTrack) -> None:
        if track.kind == "video":
            tasks.append(asyncio.ensure_future(collect(track, received)))

    await pc.setLocalDescription(await pc.createOffer())
    status, text, answer_headers = await post_sdp(base_url.rstrip("/") + session_path, pc.localDescription.sdp,
                                                  token, headers)
    if status != 201:
        await pc.close()
        raise AssertionError(f"POST {session_path} -> {status}: {text}")
    await pc.setRemoteDescription(RTCSessionDescription(sdp=text, type="answer"))
    return WhepViewer(pc, received, answer_headers["Location"], tasks)
