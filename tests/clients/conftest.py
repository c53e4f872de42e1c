"""Session fixtures for the client tests: synthetic face media made once, in the formats the clients read."""

from __future__ import annotations

import json

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

CLIP_FPS = 15.0
CLIP_SIZE = (320, 240)


@pytest.fixture(scope="session")
def face_clip() -> list[Any]:
    """Two seconds of synthetic identity A moving like a webcam user (320x240, 15 fps), with face outlines."""
    from faces.synthetic import IDENTITY_A, render_sequence

    return render_sequence(IDENTITY_A, 30, size=CLIP_SIZE, seed=11, fps=CLIP_FPS)


@pytest.fixture(scope="session")
def face_frames(face_clip: list[Any]) -> list[np.ndarray]:
    """The clip's RGB frames."""
    return [rendered.frame for rendered in face_clip]


@pytest.fixture(scope="session")
def face_outlines(face_clip: list[Any]) -> list[np.ndarray]:
    """The clip's ground-truth face outlines (pixels), one per frame."""
    return [rendered.outline for rendered in face_clip]


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


DEMO_MODELS = Path(__file__).resolve().parents[2] / "models" / "demo"


def _has_digits_model(models_dir: Path) -> bool:
    manifest = models_dir / "manifest.json"
    if not manifest.is_file():
        return False
    return any(entry.get("kind") == "digits" for entry in json.loads(manifest.read_text()).get("models", []))


@pytest.fixture(scope="session")
def trained_digits_models(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Path:
    """A models folder with a trained digit model: the bundled demo models if they have one, else the training
    tests' tiny digit run exported on its own (seconds; no face training needed)."""
    if _has_digits_model(DEMO_MODELS):
        return DEMO_MODELS
    from export.cli import main as export_main

    digits_run = request.getfixturevalue("tiny_digits_run")
    out = tmp_path_factory.mktemp("digits_models") / "models"
    assert export_main([str(digits_run), "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="session")
def digits_server(trained_digits_models: Path) -> Iterator[Any]:
    """An echo server that serves a trained digit model for /api/digits."""
    from tests.fixtures.server import start_server

    server = start_server(pipeline="echo", models_dir=trained_digits_models)
    yield server
    server.stop()


@pytest.fixture(scope="session")
def inverting_server(tiny_models_dir: Path) -> Iterator[Any]:
    """A swap server whose hand-built models invert the face's colours: an unmistakable, deterministic swap
    that needs no training run."""
    from tests.fixtures.server import start_server

    server = start_server(pipeline="swap", models_dir=tiny_models_dir, max_sessions=6)
    yield server
    server.stop()
