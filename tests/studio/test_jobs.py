"""Studio jobs through the HTTP API on a real server: upload -> extract -> train -> export -> models in the live
catalog; a second job queued behind the first; a name clash refusing a job's models; a `swapstream serve` process
stopped (SIGTERM) mid-training and started again; cancel; a child that dies."""

from __future__ import annotations

import asyncio
import csv
import hashlib
import json
import os
import signal
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import aiohttp
import numpy as np
import pytest

from stream_server.studio.config import StudioConfig
from tests.fixtures.server import write_tiny_models
from tests.studio.conftest import (
    CONSENT,
    ServeProcess,
    StudioClient,
    StudioMedia,
    StudioServer,
    png_shape,
    studio_config,
)

pytestmark = pytest.mark.slow

STATES_IN_ORDER = ["queued", "extracting", "training", "exporting", "done"]


def _options(name: str, **extra: Any) -> dict[str, Any]:
    return {"name": name, "consent": CONSENT, **extra}


def _job_file(root: Path, job_id: str) -> dict[str, Any]:
    return json.loads((root / job_id / "job.json").read_text())


def _alive(pid: int) -> bool:
    try:
        return not Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z")
    except (OSError, IndexError):
        return False


async def _child_when_training(root: Path, job_id: str, timeout: float = 180) -> int:
    """The pid of the job's training child, once it runs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = _job_file(root, job_id)
        if job["state"] == "training" and job["child_pid"] and _alive(job["child_pid"]):
            return int(job["child_pid"])
        assert job["state"] in ("queued", "extracting", "training"), job
        await asyncio.sleep(0.1)
    raise AssertionError(f"job {job_id} did not start training within {timeout} s")


def test_two_jobs_run_one_after_the_other_to_models_with_consent(
    start_studio: Callable[..., StudioServer], studio_media: StudioMedia, micro_base: Path, tmp_path: Path
) -> None:
    root = tmp_path / "studio"
    server = start_studio(studio_config(root, base=micro_base))

    async def scenario() -> str:
        async with aiohttp.ClientSession() as session:
            client = StudioClient(session, server.url)
            status, first, location = await client.create(
                _options("Video Pair"), [("a", studio_media.video_a), ("b", studio_media.video_b)])
            assert status == 201, first
            assert location == f"/api/studio/jobs/{first['id']}"
            # a second job while the first runs is queued, not refused; its B has photos only
            status, second, _ = await client.create(
                _options("photo-b", steps=16), [("a", studio_media.video_a), *(("b", p) for p in studio_media.photos_b)])
            assert status == 201, second
            assert second["state"] == "queued" and second["queue_position"] is not None
            assert second["quality_limited"] is True

            done, seen = await client.wait_for(first["id"], lambda s: s["state"] in ("done", "failed"))
            assert done["state"] == "done", done["error"]
            order = [STATES_IN_ORDER.index(s["state"]) for s in seen]
            assert order == sorted(order)  # never back to an earlier state
            assert {"extracting", "training", "done"} <= {s["state"] for s in seen}
            steps = [s["progress"]["step"] for s in seen if s["state"] == "training" and s["progress"]["step"]]
            assert steps == sorted(steps) and done["progress"]["step"] == 24
            assert done["faces"]["a"] >= 8 and done["faces"]["b"] >= 8
            assert done["base"] is True and done["quality_limited"] is False
            assert done["models"] == ["video-pair.swap_a2b", "video-pair.swap_b2a"]
            assert [row[0] for row in done["losses"]][-1] == 24 and all(np.isfinite(done["losses"]).all(axis=1))

            status, preview = await client.get(done["preview"])
            assert status == 200 and png_shape(preview) == (4 * 64, 4 * 64, 3)  # rows A, A->B, B, B->A

            photo_job, _ = await client.wait_for(second["id"], lambda s: s["state"] in ("done", "failed"))
            assert photo_job["state"] == "done", photo_job["error"]
            assert any("photos only" in note for note in photo_job["notes"])
            assert photo_job["faces"]["b"] >= 8  # 3 photos alone are too few: the pose variants make the set

            status, listing = await client.get("/api/studio/jobs")
            assert [job["id"] for job in listing["jobs"]] == [first["id"], second["id"]]

            # both joined the live catalog as they finished, with their consent records; B of photos is marked
            status, served = await client.get("/api/models")
            assert [m["name"] for m in served["models"]] == [*done["models"], *photo_job["models"]]
            assert all(m["consent"] == done["consent"] for m in served["models"][:2])
            assert [m["quality_limited"] for m in served["models"]] == [False, False, True, True]
            return str(first["id"])

    first_id = asyncio.run(scenario())

    # the models are complete, with the consent record
    first_models = root / first_id / "models"
    from stream_server.backends import load_backend, load_manifest

    manifest = load_manifest(first_models)
    assert manifest.names == ["video-pair.swap_a2b", "video-pair.swap_b2a"]
    backend = load_backend(manifest.models[0], first_models)
    rgb, mask = backend.run(np.random.default_rng(0).random((2, 3, 64, 64), dtype=np.float32))
    assert rgb.shape == (2, 3, 64, 64) and mask.shape == (2, 1, 64, 64)
    raw = json.loads((first_models / "manifest.json").read_text())
    consent = raw["models"][0]["consent"]
    assert consent["people"] == CONSENT["people"] and consent["statement"] == CONSENT["statement"]
    assert consent["files"] == [{"name": "a.mp4", "sha256": hashlib.sha256(studio_media.video_a.read_bytes()).hexdigest()},
                                {"name": "b.mp4", "sha256": hashlib.sha256(studio_media.video_b.read_bytes()).hexdigest()}]
    assert not list(root.glob("*/work/export-in-progress"))

    # restarted with --models serving a model of the first job's names: that job's models are refused (the job
    # fails saying why), the other job's join the catalog
    server.stop()
    clash = write_tiny_models(tmp_path / "clash", prefix="video-pair.", digits=False)
    restarted = start_studio(studio_config(root, base=micro_base), models_dir=clash)
    assert restarted.served() == ["video-pair.swap_a2b", "video-pair.swap_b2a", "photo-b.swap_a2b", "photo-b.swap_b2a"]
    refused = restarted.service.status(first_id)
    assert refused["state"] == "failed"
    assert "could not join the live catalog" in refused["error"] and "already served" in refused["error"]
    # deleting a finished job takes its models out of the catalog; --models stays
    photo_id = next(job["id"] for job in restarted.service.jobs() if job["name"] == "photo-b")
    assert restarted.call(lambda: restarted.service.delete(photo_id))["removed"] is True
    assert restarted.served() == ["video-pair.swap_a2b", "video-pair.swap_b2a"]


def test_a_real_server_restarted_mid_training_resumes_the_job_and_serves_its_models(
    serve_process: Callable[[list[str]], ServeProcess], studio_media: StudioMedia, tiny_models_dir: Path,
    tmp_path: Path
) -> None:
    """`swapstream serve --studio DIR` as a process: SIGTERM while the job trains, start it again on DIR."""
    root = tmp_path / "studio"
    args = ["--models", str(tiny_models_dir), "--studio", str(root)]
    server = serve_process(args)
    steps = 120  # the server's own recipe (the demo's shape): a checkpoint every 30 steps of this job

    async def start_job() -> tuple[str, int, int]:
        async with aiohttp.ClientSession() as session:
            client = StudioClient(session, server.url)
            status, job, _ = await client.create(_options("resume me", steps=steps),
                                                 [("a", studio_media.video_a), ("b", studio_media.video_b)])
            assert status == 201, job
            pid = await _child_when_training(root, job["id"])
            # the child runs below the server: niced, under SCHED_IDLE, one thread per numeric library
            nice = int(Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].split()[16])
            assert nice >= os.getpriority(os.PRIO_PROCESS, 0) + StudioConfig(root).nice
            if hasattr(os, "SCHED_IDLE"):
                assert os.sched_getscheduler(pid) == os.SCHED_IDLE
            assert b"OMP_NUM_THREADS=1" in Path(f"/proc/{pid}/environ").read_bytes()
            reached, _ = await client.wait_for(job["id"], lambda s: (s["progress"]["checkpoint_step"] or 0) >= 30)
            return job["id"], pid, reached["progress"]["checkpoint_step"]

    job_id, pid, before = asyncio.run(start_job())
    assert server.stop() == 0, server.log.read_text()[-3000:]  # the child is told to stop and writes a checkpoint
    assert "stopped cleanly" in server.log.read_text()
    assert not _alive(pid)
    assert _job_file(root, job_id)["state"] == "training"
    from stream_server.studio.progress import checkpoint_step

    at_stop = checkpoint_step(root / job_id / "work" / "run")
    assert at_stop is not None and before <= at_stop < steps

    restarted = serve_process(args)

    async def finish() -> tuple[dict[str, Any], dict[str, Any]]:
        async with aiohttp.ClientSession() as session:
            client = StudioClient(session, restarted.url)
            done, _ = await client.wait_for(job_id, lambda s: s["state"] in ("done", "failed"))
            return done, (await client.get("/api/models"))[1]

    done, served = asyncio.run(finish())
    assert done["state"] == "done", done["error"]
    assert done["resumed_from_step"] == at_stop
    with (root / job_id / "work" / "run" / "losses.csv").open(newline="") as handle:
        assert [int(row["step"]) for row in csv.DictReader(handle)] == list(range(1, steps + 1))
    manifest = json.loads((root / job_id / "models" / "manifest.json").read_text())
    assert manifest["models"][0]["source"]["step"] == steps
    # its models joined the restarted server's catalog when it finished, with the consent record
    studio_models = [m for m in served["models"] if m["name"].startswith("resume-me.")]
    assert [m["name"] for m in studio_models] == ["resume-me.swap_a2b", "resume-me.swap_b2a"]
    assert studio_models[0]["consent"]["people"] == CONSENT["people"]
    assert restarted.stop() == 0


def test_cancel_kills_the_child_and_removes_the_files_and_a_dead_child_fails_the_job(
    start_studio: Callable[..., StudioServer], studio_media: StudioMedia, tmp_path: Path
) -> None:
    root = tmp_path / "studio"
    server = start_studio(studio_config(root))
    files = [("a", studio_media.video_a), ("b", studio_media.video_b)]

    async def scenario() -> None:
        async with aiohttp.ClientSession() as session:
            client = StudioClient(session, server.url)
            _, running, _ = await client.create(_options("cancel me", steps=50_000), files)
            _, queued, _ = await client.create(_options("dies", steps=50_000), files)
            _, behind, _ = await client.create(_options("never runs", steps=50_000), files)
            # a queued job is removed at once
            status, removed = await client.delete(behind["id"])
            assert status == 200 and removed["state"] == "cancelled" and not (root / behind["id"]).exists()

            pid = await _child_when_training(root, running["id"])
            events = asyncio.create_task(client.wait_for(running["id"], lambda s: s["state"] == "cancelled"))
            await asyncio.sleep(0.5)
            status, cancelled = await client.delete(running["id"])
            assert status == 200 and cancelled["state"] == "cancelled" and cancelled["removed"] is True
            final, _ = await events  # open event streams end with the cancellation
            assert final["state"] == "cancelled"
            assert not (root / running["id"]).exists() and not _alive(pid)
            assert (await client.get(f"/api/studio/jobs/{running['id']}"))[0] == 404

            # the next job starts; its child is killed from outside: the job fails with its log's tail
            pid = await _child_when_training(root, queued["id"])
            os.killpg(pid, signal.SIGKILL)
            failed, _ = await client.wait_for(queued["id"], lambda s: s["state"] in ("failed", "done"))
            assert failed["state"] == "failed"
            assert "train was killed by SIGKILL" in failed["error"]
            status, detail = await client.get(f"/api/studio/jobs/{queued['id']}")
            assert "train faces" in detail["log_tail"] or "$ " in detail["log_tail"]
            # the server keeps serving
            status, health = await client.get("/healthz")
            assert status == 200 and health["status"] == "ok"
            assert (await client.delete(queued["id"]))[0] == 200
            assert list(root.iterdir()) == []

    asyncio.run(scenario())
    assert server.served() == []
