"""Bad input to the Studio gets a clear message (JSON, 4xx/507), keeps nothing it received, and the server keeps
serving: not a photo or video, no consent, missing files, over the size limit (with and without a declared
length), a full disk, a taken name, a missing token, too few faces; and --studio refuses to start without the
training extra."""

from __future__ import annotations

import asyncio
import io
import json
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from stream_server.app import create_app
from stream_server.config import ServerConfig, config_from_args
from stream_server.errors import ConfigError
from stream_server.studio.config import MIB, StudioConfig
from stream_server.studio.errors import StudioUnavailable
from stream_server.studio.service import StudioService
from tests.studio.conftest import CONSENT, StudioClient, StudioMedia, StudioServer, studio_config

TOKEN = "s3cret"


@pytest.fixture(scope="module")
def strict_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StudioServer]:
    """A Studio with a token and a 2 MB upload limit."""
    server = StudioServer(studio_config(tmp_path_factory.mktemp("strict") / "studio", max_upload_bytes=2 * MIB),
                          token=TOKEN)
    yield server
    server.stop()


def _nothing_kept(server: StudioServer, jobs_before: int = 0) -> None:
    root = server.studio_config.root
    assert not list(root.glob(".incoming-*")), "a refused upload left files behind"
    assert len([p for p in root.iterdir() if not p.name.startswith(".")]) == jobs_before


def _call(server: StudioServer, make: Callable[[StudioClient], Any], token: str | None = TOKEN) -> Any:
    async def run() -> Any:
        async with aiohttp.ClientSession() as session:
            return await make(StudioClient(session, server.url, token))

    return asyncio.run(run())


def _files(media: StudioMedia) -> list[tuple[str, Path]]:
    return [("a", media.video_a), ("b", media.video_b)]


@pytest.mark.parametrize(("options", "message"), [
    ({"name": "x"}, 'consent" is required'),
    ({"name": "x", "consent": {"people": ["Ann"]}}, 'consent "statement" is required'),
    ({"name": "x", "consent": {"statement": "They agreed.", "people": []}}, "name the people shown"),
    ({"name": "!!!", "consent": CONSENT}, '"name" must be a name with letters or digits'),
    ({"name": "x", "consent": CONSENT, "steps": 0}, '"steps" must be a whole number in 1..'),
    ({"name": "x", "consent": CONSENT, "size": 100}, '"size" must be one of 64, 128, 256'),
    ({"name": "x", "consent": CONSENT, "path": "/etc"}, "unknown key(s) path"),
])
def test_bad_options_are_refused_with_what_is_wrong(strict_server: StudioServer, studio_media: StudioMedia,
                                                    options: dict[str, Any], message: str) -> None:
    status, body, _ = _call(strict_server, lambda c: c.create(options, _files(studio_media)))
    assert status == 400 and message in body["error"]
    _nothing_kept(strict_server)


def test_files_that_are_not_media_or_missing_or_before_consent_are_refused(
    strict_server: StudioServer, studio_media: StudioMedia
) -> None:
    options = {"name": "x", "consent": CONSENT}
    status, body, _ = _call(strict_server, lambda c: c.create(options, [("a", studio_media.text),
                                                                         ("b", studio_media.video_b)]))
    assert status == 400 and body["error"].startswith("A: 'notes.txt' is neither a photo nor a video")
    status, body, _ = _call(strict_server, lambda c: c.create(options, [("a", studio_media.video_a)]))
    assert status == 400 and "no files for B" in body["error"]
    status, body, _ = _call(strict_server, lambda c: c.create(options, _files(studio_media), options_first=False))
    assert status == 400 and 'first part must be "options"' in body["error"]
    _nothing_kept(strict_server)


def _multipart(parts: list[tuple[str, str | None, bytes]], boundary: str) -> bytes:
    body = b""
    for name, filename, data in parts:
        disposition = f'form-data; name="{name}"' + (f'; filename="{filename}"' if filename else "")
        body += f"--{boundary}\r\nContent-Disposition: {disposition}\r\n\r\n".encode() + data + b"\r\n"
    return body + f"--{boundary}--\r\n".encode()


def test_uploads_over_the_limit_are_refused_while_streaming(strict_server: StudioServer,
                                                           studio_media: StudioMedia) -> None:
    big = Path(studio_media.video_a).read_bytes() * (2 * MIB // Path(studio_media.video_a).stat().st_size + 1)
    boundary = "studio-test-boundary"
    payload = _multipart([("options", None, json.dumps({"name": "big", "consent": CONSENT}).encode()),
                          ("a", "a.mp4", big), ("b", "b.mp4", big)], boundary)

    async def send(client: StudioClient, chunked: bool) -> tuple[int, dict[str, Any]]:
        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(payload), 64 * 1024):
                yield payload[start:start + 64 * 1024]

        headers = {**client.headers, "Content-Type": f"multipart/form-data; boundary={boundary}"}
        async with client.session.post(f"{client.base}/api/studio/jobs", headers=headers,
                                       data=pieces() if chunked else io.BytesIO(payload)) as response:
            return response.status, await response.json()

    for chunked in (False, True):  # declared length: refused up front; chunked: refused once 2 MB have arrived
        status, body = _call(strict_server, lambda c: send(c, chunked))
        assert status == 413 and "over the limit of 2 MB (--studio-max-mb)" in body["error"], body
        _nothing_kept(strict_server)


def test_a_full_disk_is_reported_and_nothing_is_kept(start_studio: Callable[..., StudioServer],
                                                     studio_media: StudioMedia, tmp_path: Path) -> None:
    free = shutil.disk_usage(tmp_path).free
    server = start_studio(studio_config(tmp_path / "studio", reserve_bytes=free + 1024 * MIB))
    status, body, _ = _call(server, lambda c: c.create({"name": "x", "consent": CONSENT}, _files(studio_media)),
                            token=None)
    assert status == 507 and "the disk holding the studio folder is full" in body["error"]
    _nothing_kept(server)
    _until_requests_end(server)


def _until_requests_end(server: StudioServer, timeout: float = 15) -> None:
    """Wait for aiohttp to finish with refused requests (it reads and drops the unread rest of a body for a
    while) before the test stops the server."""
    async def in_flight() -> int:
        return sum("RequestHandler" in repr(task) for task in asyncio.all_tasks())

    deadline = time.monotonic() + timeout
    while server.call(in_flight) and time.monotonic() < deadline:
        time.sleep(0.1)


def test_a_taken_name_and_a_missing_token_are_refused(strict_server: StudioServer,
                                                      studio_media: StudioMedia) -> None:
    options = {"name": "Same Name", "consent": CONSENT, "steps": 50_000}
    status, first, _ = _call(strict_server, lambda c: c.create(options, _files(studio_media)))
    assert status == 201
    status, body, _ = _call(strict_server, lambda c: c.create({**options, "name": "same-name"}, _files(studio_media)))
    assert status == 409 and "'same-name' exists already" in body["error"]
    status, body = _call(strict_server, lambda c: c.get("/api/studio/jobs"), token=None)
    assert status == 401 and "bearer token" in body["error"]
    status, body = _call(strict_server, lambda c: c.get("/api/studio/jobs/../../etc"))
    assert status == 404
    status, body = _call(strict_server, lambda c: c.get("/api/studio/jobs/0123456789ab"))
    assert status == 404 and "no studio job" in body["error"]
    assert _call(strict_server, lambda c: c.delete(first["id"]))[0] == 200
    _nothing_kept(strict_server)


@pytest.mark.slow
def test_too_few_faces_fails_the_job_saying_how_many_per_side(strict_server: StudioServer,
                                                              studio_media: StudioMedia) -> None:
    async def scenario(client: StudioClient) -> dict[str, Any]:
        status, job, _ = await client.create({"name": "no face", "consent": CONSENT},
                                             [("a", studio_media.faceless), ("b", studio_media.video_b)])
        assert status == 201, job
        failed, _ = await client.wait_for(job["id"], lambda s: s["state"] in ("failed", "done"))
        assert (await client.delete(job["id"]))[0] == 200
        return failed

    failed = _call(strict_server, scenario)
    assert failed["state"] == "failed"
    assert failed["error"].startswith("too few faces to train: found 0 in A (source) and ")
    assert "each side needs at least 8" in failed["error"] and "No face was found in A 'wall.mp4'" in failed["error"]
    assert failed["faces"]["a"] == 0 and failed["faces"]["b"] >= 8
    assert strict_server.served() == []  # nothing of a failed job reaches the catalog


def test_the_studio_refuses_to_start_without_the_training_extra(tmp_path: Path) -> None:
    python = shutil.which("python3", path="/usr/bin")
    if python is None or subprocess.run([python, "-c", "import torch"], capture_output=True).returncode == 0:
        print("SKIP reason: no system python3 without torch to stand for a server-only install")
        pytest.skip("needs a python3 without torch (the system one) to stand for a server-only install")
    service = StudioService(studio_config(tmp_path / "studio", python=python))
    with pytest.raises(StudioUnavailable, match=r"needs the training extra.*pip install -e '\.\[train\]'"):
        service.check()
    # in the server app, the Studio stops the app from starting
    app = create_app(ServerConfig(pipeline="echo"), studio=studio_config(tmp_path / "studio", python=python))

    async def start() -> None:
        runner = web.AppRunner(app)
        try:
            await runner.setup()
        finally:
            await runner.cleanup()

    with pytest.raises(StudioUnavailable, match="torch"):
        asyncio.run(start())


def test_serve_flags_and_variables_for_the_studio(tmp_path: Path) -> None:
    config = config_from_args(["--pipeline", "echo", "--studio", str(tmp_path / "jobs"), "--studio-max-mb", "20"],
                              environ={})
    assert config.studio_dir == tmp_path / "jobs" and config.studio_max_mb == 20
    config = config_from_args(["--pipeline", "echo"], environ={"SWAPSTREAM_STUDIO": str(tmp_path),
                                                               "SWAPSTREAM_STUDIO_MAX_MB": "7"})
    assert config.studio_dir == tmp_path and config.studio_max_mb == 7
    assert config_from_args(["--pipeline", "echo"], environ={}).studio_dir is None
    # the children run in their job's folder, so a relative DIR is made absolute once
    studio = StudioConfig.for_server(Path("relative/studio"), 7, None)
    assert studio.root == Path.cwd() / "relative/studio" and studio.max_upload_bytes == 7 * MIB
    with pytest.raises(ConfigError, match="--studio-max-mb must be in 1..100000"):
        config_from_args(["--pipeline", "echo", "--studio-max-mb", "0"], environ={})
    (tmp_path / "file").write_text("")
    with pytest.raises(ConfigError, match="--studio .* is not a folder"):
        config_from_args(["--pipeline", "echo", "--studio", str(tmp_path / "file")], environ={})
