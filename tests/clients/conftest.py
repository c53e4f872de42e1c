"""Session fixtures for the client tests: synthetic face media made once, in the formats the clients read."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

CLIP_FPS = 15.0
CLIP_SIZE = (320, 240)


@pytest.fixture(scope="session")
def face_frames() -> list[np.ndarray]:
    """Two seconds of synthetic identity A moving like a webcam user (320x240, 15 fps), RGB."""
    from faces.synthetic import IDENTITY_A, render_sequence

    return [r.frame for r in render_sequence(IDENTITY_A, 30, size=CLIP_SIZE, seed=11, fps=CLIP_FPS)]


def ping_pong(frames: list[np.ndarray], count: int) -> list[np.ndarray]:
    """`count` frames going back and forth through `frames`, so a short clip loops without a jump."""
    cycle = frames + frames[-2:0:-1]
    return [cycle[i % len(cycle)] for i in range(count)]


@pytest.fixture(scope="session")
def ten_second_video(tmp_path_factory: pytest.TempPathFactory, face_frames: list[np.ndarray]) -> Path:
    """A 10 s, 15 fps H.264 MP4 of the synthetic face."""
    from faces.media import write_video

    path = tmp_path_factory.mktemp("client_media") / "face_10s.mp4"
    return write_video(path, ping_pong(face_frames, int(10 * CLIP_FPS)), fps=CLIP_FPS)


@pytest.fixture(scope="session")
def face_y4m(tmp_path_factory: pytest.TempPathFactory, face_frames: list[np.ndarray]) -> Path:
    """The synthetic face as y4m, for chromium's --use-file-for-fake-video-capture (it loops the file)."""
    from faces.media import write_y4m

    path = tmp_path_factory.mktemp("client_media") / "face.y4m"
    return write_y4m(path, ping_pong(face_frames, 58), fps=CLIP_FPS)
