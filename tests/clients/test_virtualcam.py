"""`swapstream virtualcam`: the receive paths (own session, WHEP watch) into a frame sink, and the set-up messages.

There is no v4l2loopback device on the test machines, so frames go to a collecting sink that stands where the
pyvirtualcam camera would; what is tested is everything up to that call, plus the messages a user without the
device or the package gets.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import numpy as np
import pytest

from clients import virtualcam
from clients.errors import ClientConfigError, VirtualCameraError
from clients.media import PacedVideoTrack, iter_video_rgb
from clients.webrtc import ServerEndpoint, SwapPeer


class CollectingSink:
    """Keeps the frames a virtual camera would show."""

    def __init__(self) -> None:
        self.frames: list[np.ndarray] = []

    def send(self, frame_rgb: np.ndarray) -> None:
        self.frames.append(frame_rgb)

    def close(self) -> None:
        pass


async def test_sends_a_video_file_and_feeds_the_swapped_frames_to_the_camera(inverting_server, ten_second_video: Path) -> None:
    config = virtualcam.VirtualCamConfig(ServerEndpoint(inverting_server.url), input=str(ten_second_video), seconds=2.5)
    sink = CollectingSink()
    count = await virtualcam.run_virtualcam(config, sink)
    assert count == len(sink.frames) >= 8
    assert sink.frames[-1].shape == (240, 320, 3)


async def test_watches_another_session_through_whep(inverting_server, ten_second_video: Path) -> None:
    endpoint = ServerEndpoint(inverting_server.url)
    sender = PacedVideoTrack(iter_video_rgb(ten_second_video), 15.0)
    async with SwapPeer(endpoint, send=sender) as source:
        await asyncio.wait_for(source.video.recv(), timeout=30)  # the session is producing swapped frames
        # A new WHEP viewer waits for ICE, DTLS and a keyframe before its first frame: give it a few seconds.
        config = virtualcam.VirtualCamConfig(endpoint, session=source.session_id, seconds=4.0)
        sink = CollectingSink()
        count = await virtualcam.run_virtualcam(config, sink)
    assert count >= 3, count
    assert sink.frames[0].shape == (240, 320, 3)


@pytest.mark.skipif(bool(virtualcam.loopback_devices()), reason="this machine has /dev/video devices")
def test_without_a_video_device_it_says_how_to_load_v4l2loopback() -> None:
    with pytest.raises(VirtualCameraError, match="sudo modprobe v4l2loopback devices=1 exclusive_caps=1"):
        virtualcam.main(["--url", "http://127.0.0.1:9", "--input", "/dev/video0", "--seconds", "1"])


def test_with_a_device_but_no_usable_camera_the_message_says_what_to_install(monkeypatch) -> None:
    monkeypatch.setattr(virtualcam, "loopback_devices", lambda: ["/dev/video42"])
    with pytest.raises(VirtualCameraError, match="pip install|cannot open"):
        virtualcam.VirtualCameraSink(640, 480, 30.0, "/dev/video42")


def test_flags_are_checked() -> None:
    endpoint = ServerEndpoint("http://127.0.0.1:8080")
    with pytest.raises(ClientConfigError, match="exactly one of --input"):
        virtualcam.VirtualCamConfig(endpoint)
    with pytest.raises(ClientConfigError, match="--session"):
        virtualcam.VirtualCamConfig(endpoint, session="../etc")
    with pytest.raises(ClientConfigError, match="--input /nope.mp4"):
        virtualcam.open_source(virtualcam.VirtualCamConfig(endpoint, input="/nope.mp4"))
