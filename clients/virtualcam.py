"""`swapstream virtualcam`: show the swapped stream as a camera that Zoom, Meet, Teams or OBS can pick.

The swapped frames come either from a session this command starts (it sends a local camera or a video file through
POST /offer) or from a session someone else started (e.g. OBS over WHIP), watched through WHEP with --session.
They are written to a v4l2loopback device through pyvirtualcam (the optional `clients` extra).

No sound: a v4l2loopback device is a camera only, and the call app takes the microphone directly, without the
video's delay; docs/audio.md says how to delay the microphone to match the swapped picture when lips must sync.
"""

from __future__ import annotations

import argparse
import asyncio
import glob
import logging
import re
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack

from clients.errors import ClientConfigError, ConnectionFailed, VirtualCameraError
from clients.media import parse_size
from clients.webrtc import JITTER_BUFFER_MODES, JitterBufferMode, ServerEndpoint, SwapPeer, endpoint_from_flags, parse_options

logger = logging.getLogger(__name__)

MODPROBE_HINT = "sudo modprobe v4l2loopback devices=1 exclusive_caps=1 card_label=swapstream"


class FrameSink(Protocol):
    """Where swapped frames go: the virtual camera, or anything else that takes RGB frames."""

    def send(self, frame_rgb: np.ndarray) -> None: ...

    def close(self) -> None: ...


@dataclass(frozen=True)
class VirtualCamConfig:
    """Everything `swapstream virtualcam` needs, built once from its flags."""

    endpoint: ServerEndpoint
    input: str | None = None
    session: str | None = None
    device: str | None = None
    width: int = 640
    height: int = 480
    fps: float = 30.0
    seconds: float | None = None
    options: dict[str, Any] = field(default_factory=dict)
    jitter_buffer: JitterBufferMode = "marker"

    def __post_init__(self) -> None:
        if (self.input is None) == (self.session is None):
            raise ClientConfigError("give exactly one of --input (camera or video to send) and --session (WHEP watch)")
        if self.session is not None and not re.fullmatch(r"[A-Za-z0-9_-]{1,128}", self.session):
            raise ClientConfigError(f"--session must be a session id as the server printed it, got {self.session!r}")
        if self.width < 16 or self.height < 16 or self.width % 2 or self.height % 2:
            raise ClientConfigError(f"--size must be even and at least 16x16, got {self.width}x{self.height}")
        if not (0 < self.fps <= 120):
            raise ClientConfigError(f"--fps must be in (0, 120], got {self.fps}")
        if self.seconds is not None and self.seconds <= 0:
            raise ClientConfigError(f"--seconds must be > 0, got {self.seconds}")
        if self.jitter_buffer not in JITTER_BUFFER_MODES:
            raise ClientConfigError(f"--jitter-buffer must be marker or stock, got {self.jitter_buffer!r}")


def loopback_devices() -> list[str]:
    """The /dev/video* devices present (v4l2loopback ones among them)."""
    return sorted(glob.glob("/dev/video*"))


class VirtualCameraSink:
    """Frames to a v4l2loopback device through pyvirtualcam, resized to the camera's size."""

    def __init__(self, width: int, height: int, fps: float, device: str | None) -> None:
        if sys.platform.startswith("linux") and not loopback_devices():
            raise VirtualCameraError(
                "no /dev/video* device exists, so there is no virtual camera to write to. Load v4l2loopback "
                f"first:\n  sudo apt-get install v4l2loopback-dkms\n  {MODPROBE_HINT}\nthen run this command again "
                "(pick the device with --device if there are several)"
            )
        try:
            import pyvirtualcam
        except ImportError as exc:
            raise VirtualCameraError(
                "the virtual camera needs the pyvirtualcam package: pip install 'swapstream[clients]' "
                "(or pip install pyvirtualcam)"
            ) from exc
        try:
            self._camera = pyvirtualcam.Camera(width=width, height=height, fps=fps, device=device,
                                               fmt=pyvirtualcam.PixelFormat.RGB)
        except (RuntimeError, ValueError) as exc:
            where = f"--device {device}" if device else f"the first v4l2loopback device of {loopback_devices()}"
            raise VirtualCameraError(
                f"cannot open {where} as a virtual camera: {exc}. Is it a v4l2loopback device? ({MODPROBE_HINT})"
            ) from exc
        self.size = (width, height)
        logger.info("virtual camera %s open (%dx%d @ %g fps)", self._camera.device, width, height, fps)

    @property
    def device(self) -> str:
        return str(self._camera.device)

    def send(self, frame_rgb: np.ndarray) -> None:
        width, height = self.size
        if frame_rgb.shape[1] != width or frame_rgb.shape[0] != height:
            import cv2

            frame_rgb = cv2.resize(frame_rgb, (width, height), interpolation=cv2.INTER_AREA)
        self._camera.send(np.ascontiguousarray(frame_rgb))

    def close(self) -> None:
        self._camera.close()


def open_source(config: VirtualCamConfig) -> MediaStreamTrack:
    """The local video to send: a camera device (e.g. /dev/video0) or a video file, through aiortc's MediaPlayer."""
    from aiortc.contrib.media import MediaPlayer

    assert config.input is not None
    is_device = config.input.startswith("/dev/video")
    if not is_device and not Path(config.input).is_file():
        raise ClientConfigError(f"--input {config.input}: no such camera device or video file")
    try:
        if is_device:
            player = MediaPlayer(config.input, format="v4l2",
                                 options={"video_size": f"{config.width}x{config.height}", "framerate": f"{config.fps:g}"})
        else:
            player = MediaPlayer(config.input, loop=True)
    except Exception as exc:  # av raises several error types for unusable inputs
        raise ClientConfigError(f"--input {config.input}: cannot open it: {exc}") from exc
    if player.video is None:
        raise ClientConfigError(f"--input {config.input}: has no video")
    return player.video


async def pump(peer_video: MediaStreamTrack, sink: FrameSink, seconds: float | None,
               on_frame: Callable[[int], None] | None = None) -> int:
    """Move received frames to the sink until the stream ends or `seconds` pass; returns the frame count."""
    count = 0
    deadline = time.monotonic() + seconds if seconds else None
    while deadline is None or time.monotonic() < deadline:
        timeout = 10.0 if deadline is None else max(0.1, min(10.0, deadline - time.monotonic()))
        try:
            frame = await asyncio.wait_for(peer_video.recv(), timeout=timeout)
        except asyncio.TimeoutError:
            if deadline is not None and time.monotonic() >= deadline:
                break
            raise ConnectionFailed("no video from the server for 10 s") from None
        except MediaStreamError:
            break
        sink.send(frame.to_ndarray(format="rgb24"))
        count += 1
        if on_frame is not None:
            on_frame(count)
    return count


async def run_virtualcam(config: VirtualCamConfig, sink: FrameSink) -> int:
    """Connect (send the input, or watch the session) and feed the sink; returns frames written."""
    source = open_source(config) if config.session is None else None
    if source is None:
        peer = SwapPeer(config.endpoint, watch_session=config.session, jitter_buffer=config.jitter_buffer)
    else:
        peer = SwapPeer(config.endpoint, send=source, options=config.options, jitter_buffer=config.jitter_buffer)
    try:
        async with peer:
            assert peer.video is not None
            if source is not None:
                logger.info("session %s: others can watch it at %s", peer.session_id,
                            config.endpoint.resolve(f"/whep/{peer.session_id}"))
            return await pump(peer.video, sink, config.seconds)
    finally:
        if source is not None:
            # Stopping the track ends MediaPlayer's reader thread (it loops the file forever otherwise).
            source.stop()



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swapstream virtualcam",
        description="Write the swapped stream to a v4l2loopback virtual camera for Zoom, Meet, Teams or OBS.",
    )
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    source = parser.add_mutually_exclusive_group()
    source.add_argument("--input", default=None,
                        help="camera device or video file to send through the server (default /dev/video0 "
                             "unless --session is given)")
    source.add_argument("--session", help="watch this existing session through WHEP instead (e.g. OBS sending by WHIP)")
    parser.add_argument("--device", help="v4l2loopback device to write, e.g. /dev/video10 (default: the first one)")
    parser.add_argument("--size", type=parse_size, default=(640, 480), help="virtual camera size WxH (default 640x480)")
    parser.add_argument("--fps", type=float, default=30.0, help="virtual camera frame rate (default 30)")
    parser.add_argument("--seconds", type=float, help="stop after this long (default: run until interrupted)")
    parser.add_argument("--token", help="bearer token if the server runs with --token (default: $SWAPSTREAM_TOKEN)")
    parser.add_argument("--options", help='session options as JSON, e.g. \'{"model": "b2a"}\'')
    parser.add_argument("--jitter-buffer", choices=JITTER_BUFFER_MODES, default="marker",
                        help="receive-side jitter buffer: marker (release on the RTP marker bit) or aiortc's stock")
    return parser


def config_from_args(args: argparse.Namespace) -> VirtualCamConfig:
    width, height = args.size
    return VirtualCamConfig(
        endpoint=endpoint_from_flags(args.url, args.token),
        input=args.input if args.input or args.session else "/dev/video0",
        session=args.session,
        device=args.device,
        width=width,
        height=height,
        fps=args.fps,
        seconds=args.seconds,
        options=parse_options(args.options),
        jitter_buffer=args.jitter_buffer,
    )


def main(argv: list[str]) -> int:
    config = config_from_args(build_parser().parse_args(argv))
    # Open the camera first: a missing device or package is the commonest problem and needs no server.
    sink = VirtualCameraSink(config.width, config.height, config.fps, config.device)
    try:
        print(f"virtual camera {sink.device}: pick it as the camera in your call; Ctrl-C to stop")
        frames = asyncio.run(run_virtualcam(config, sink))
    finally:
        sink.close()
    print(f"wrote {frames} frames to {sink.device}")
    return 0
