"""Studio test fixtures: small synthetic media, a micro base checkpoint, and real servers with the Studio on.

Jobs run the real CLI in child processes (extract, train faces, export) with a micro model and a few steps.
The server is the real application (create_app with a Studio config of the micro recipe), on a loopback port:
finished jobs' models join its live catalog.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import cv2
import numpy as np
import pytest

from stream_server.app import create_app
from stream_server.config import PipelineMode, ServerConfig
from stream_server.studio.api import STUDIO_KEY
from stream_server.studio.config import StudioConfig, StudioRecipe
from stream_server.studio.service import StudioService
from tests.fixtures.server import RunningServer

MICRO_SHAPE = {"encoder_channels": 8, "bottleneck": 32, "code_channels": 16, "decoder_channels": 16,
               "residual_blocks": 0}
# A job that finishes in seconds: 24 steps of batch 2, a checkpoint (and preview) every 8, 30 frames a side.
MICRO_RECIPE = StudioRecipe(steps=24, batch=2, shape=MICRO_SHAPE, checkpoint_every=8, frames_per_side=30,
                            min_faces=8, photo_variants=4)
CONSENT = {"statement": "The people shown agreed to have their faces used for this swap model.",
           "people": ["Synthetic A", "Synthetic B"]}


@dataclass(frozen=True)
class StudioMedia:
    """Files to upload: two face videos, photos of B, a video without a face, a text file."""

    video_a: Path
    video_b: Path
    photos_b: tuple[Path, ...]
    faceless: Path
    text: Path


@pytest.fixture(scope="session")
def studio_media(tmp_path_factory: pytest.TempPathFactory) -> StudioMedia:
    from faces.media import write_video
    from faces.synthetic import IDENTITY_B, Pose, make_background, render_face
    from swapstream.cli import main as swapstream_main

    folder = tmp_path_factory.mktemp("studio_media")
    for identity, seed in (("a", 1), ("b", 2)):
        assert swapstream_main(["synth", "--identity", identity, "--frames", "40", "--size", "320x240",
                                "--fps", "10", "--seed", str(seed), "--out", str(folder / f"{identity}.mp4")]) == 0
    photos = []
    for index, yaw in enumerate((-12.0, 0.0, 14.0)):
        path = folder / f"b photo {index}.jpg"
        cv2.imwrite(str(path), cv2.cvtColor(render_face(IDENTITY_B, Pose(yaw=yaw), seed=index).frame,
                                            cv2.COLOR_RGB2BGR))
        photos.append(path)
    wall = make_background((320, 240), seed=9)
    faceless = write_video(folder / "wall.mp4", [wall] * 20, fps=10.0)
    text = folder / "notes.txt"
    text.write_text("not a video\n" * 100)
    return StudioMedia(folder / "a.mp4", folder / "b.mp4", tuple(photos), faceless, text)


@pytest.fixture(scope="session")
def micro_base(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A base checkpoint of the micro shape (untrained weights: the Studio's plumbing is under test here;
    what a trained base gives is tested in tests/training/test_base.py)."""
    import torch

    from training.checkpoint import save_checkpoint
    from training.swap_model import SwapAutoencoder
    from training.train_faces import ModelShape

    torch.manual_seed(0)
    config = ModelShape(**MICRO_SHAPE).model_config(64)
    path = tmp_path_factory.mktemp("studio_base") / "base.safetensors"
    save_checkpoint(path, kind="swap", model=SwapAutoencoder(**config), model_config=config, step=0)
    return path


class StudioServer(RunningServer):
    """The real server app with the Studio on (`studio`: its config), on a loopback port in its own thread."""

    def __init__(self, studio: StudioConfig, token: str | None = None, models_dir: Path | None = None,
                 pipeline: PipelineMode = "echo") -> None:
        self.studio_config = studio
        super().__init__(ServerConfig(pipeline=pipeline, token=token, models_dir=models_dir),
                         make_app=lambda config: create_app(config, studio=studio))

    @property
    def service(self) -> StudioService:
        assert self.app is not None
        return self.app[STUDIO_KEY]

    def served(self) -> list[str]:
        """The names of the models the server serves now."""
        return list(self.state.catalog.names)


class ServeProcess:
    """`swapstream serve ARGS` in a process of its own (`python -m swapstream.cli serve`), as a user runs it; its
    output goes to `log`."""

    def __init__(self, args: list[str], log: Path, startup_s: float = 120.0) -> None:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            self.port = int(sock.getsockname()[1])
        self.log = log
        root = Path(__file__).resolve().parents[2]
        with log.open("ab") as output:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "swapstream.cli", "serve", "--port", str(self.port), *args], cwd=root,
                env={**os.environ, "PYTHONPATH": str(root)}, stdout=output, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + startup_s
        while True:
            try:
                with urllib.request.urlopen(f"{self.url}healthz", timeout=2):
                    return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    self.kill()
                    raise AssertionError(f"swapstream serve did not start:\n{log.read_text()[-3000:]}") from None
                time.sleep(0.3)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/"

    def stop(self, timeout: float = 120.0) -> int:
        """SIGTERM, as a service manager stops it; the exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait()


@pytest.fixture
def serve_process(tmp_path: Path) -> Iterator[Callable[[list[str]], ServeProcess]]:
    """Start `swapstream serve` processes (stopped, then killed if need be, at the end of the test)."""
    started: list[ServeProcess] = []

    def start(args: list[str]) -> ServeProcess:
        started.append(ServeProcess(args, tmp_path / f"serve-{len(started)}.log"))
        return started[-1]

    yield start
    for server in started:
        if server.process.poll() is None:
            try:
                server.stop(timeout=60)
            except subprocess.TimeoutExpired:
                server.kill()


def studio_config(root: Path, **overrides: Any) -> StudioConfig:
    """The test Studio: micro recipe, quick polling; niced children but not SCHED_IDLE, which on a machine
    shared with other busy jobs would starve them (test_priority.py checks that policy on its own)."""
    return StudioConfig(root=root, **{"recipe": MICRO_RECIPE, "poll_interval_s": 0.2, "idle_scheduling": False,
                                      **overrides})


@pytest.fixture
def start_studio() -> Iterator[Callable[..., StudioServer]]:
    """Start Studio servers (stopped at the end of the test)."""
    servers: list[StudioServer] = []

    def start(studio: StudioConfig, token: str | None = None, **options: Any) -> StudioServer:
        server = StudioServer(studio, token, **options)
        servers.append(server)
        return server

    yield start
    for server in servers:
        if server.loop.is_running():
            server.stop()


# ------------------------------------------------------------------------------------------- a small client


class StudioClient:
    """The Studio API over HTTP, as a script would use it."""

    def __init__(self, session: aiohttp.ClientSession, base_url: str, token: str | None = None) -> None:
        self.session, self.base = session, base_url.rstrip("/")
        self.headers = {"Authorization": f"Bearer {token}"} if token else {}

    async def create(self, options: dict[str, Any], files: list[tuple[str, Path]],
                     options_first: bool = True) -> tuple[int, dict[str, Any], str | None]:
        form = aiohttp.FormData()
        parts: list[tuple[str, Any, str | None]] = [(side, path.read_bytes(), path.name) for side, path in files]
        options_part = ("options", json.dumps(options), None)
        for name, value, filename in ([options_part, *parts] if options_first else [*parts, options_part]):
            if filename is None:
                form.add_field(name, value, content_type="application/json")
            else:
                form.add_field(name, value, filename=filename, content_type="application/octet-stream")
        async with self.session.post(f"{self.base}/api/studio/jobs", data=form, headers=self.headers) as response:
            return response.status, await response.json(), response.headers.get("Location")

    async def get(self, path: str) -> tuple[int, Any]:
        async with self.session.get(f"{self.base}{path}", headers=self.headers) as response:
            if response.content_type == "application/json":
                return response.status, await response.json()
            return response.status, await response.read()

    async def delete(self, job_id: str) -> tuple[int, dict[str, Any]]:
        async with self.session.delete(f"{self.base}/api/studio/jobs/{job_id}", headers=self.headers) as response:
            return response.status, await response.json()

    async def events(self, job_id: str) -> AsyncIterator[dict[str, Any]]:
        """The job's Server-Sent Events, parsed."""
        async with self.session.get(f"{self.base}/api/studio/jobs/{job_id}/events", headers=self.headers,
                                    timeout=aiohttp.ClientTimeout(total=None, sock_read=120)) as response:
            assert response.status == 200 and response.content_type == "text/event-stream"
            async for raw in response.content:
                line = raw.decode().strip()
                if line.startswith("data: "):
                    yield json.loads(line[len("data: "):])

    async def wait_for(self, job_id: str, until: Callable[[dict[str, Any]], bool],
                       timeout: float = 300) -> tuple[dict[str, Any], list[dict[str, Any]]]:
        """Follow the job's events until `until(status)` holds; returns that status and every status seen."""
        seen: list[dict[str, Any]] = []

        async def follow() -> dict[str, Any]:
            async for status in self.events(job_id):
                seen.append(status)
                if until(status):
                    return status
            raise AssertionError(f"the event stream ended before the condition held; last: {seen[-1:]}")

        return await asyncio.wait_for(follow(), timeout), seen


def png_shape(data: bytes) -> tuple[int, ...]:
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    assert image is not None, "not a PNG"
    return tuple(image.shape)
