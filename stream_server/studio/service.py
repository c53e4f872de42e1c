"""StudioService: the jobs of one studio folder, a queue (one job runs, the rest wait), the worker that runs
them, their status and change notifications, and restart survival.

At start a job found mid-way (extracting, training, exporting) runs again first: extraction continues where it
stopped, training resumes from its last checkpoint, export starts over. A child a crashed server left running is
stopped first. Finished jobs' models are handed to `on_models_ready` again, so a restarted server serves them.
At stop the running child is asked to stop (training writes a checkpoint) and the job is left to resume.
"""

from __future__ import annotations

import asyncio
import datetime as _dt
import logging
import os
import signal
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from aiohttp import web

from stream_server.errors import ServerError
from stream_server.studio.config import StudioConfig
from stream_server.studio.errors import JobNotFound, StepFailed
from stream_server.studio.jobs import ACTIVE_STATES, FINAL_STATES, SIDES, Job
from stream_server.studio.progress import LossLog, PreviewCache, checkpoint_step, frames_done
from stream_server.studio.runner import JobCancelled, JobPaths, JobRunner, JobStopped, check_training_extra
from stream_server.studio.store import JobStore
from stream_server.studio.upload import receive_job

logger = logging.getLogger(__name__)

ModelsHook = Callable[[Path], Awaitable[None]]
"""Called with a finished job's models folder (it holds manifest.json); raising ServerError refuses them."""
KEEP_GONE = 64
ORPHAN_WAIT_S = 10.0


@dataclass
class _Live:
    """Per-job readers of a running job's growing files."""

    losses: LossLog
    preview: PreviewCache


@dataclass
class _Removed:
    """Final statuses of deleted jobs, so event streams still open on them can end with it."""

    statuses: OrderedDict[str, dict[str, Any]] = field(default_factory=OrderedDict)

    def add(self, status: dict[str, Any]) -> None:
        self.statuses[status["id"]] = status
        while len(self.statuses) > KEEP_GONE:
            self.statuses.popitem(last=False)


def _seconds_since(stamp: str) -> float | None:
    try:
        started = _dt.datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    return max(0.0, (_dt.datetime.now(_dt.timezone.utc) - started).total_seconds())


class StudioService:
    """The Studio behind the HTTP API; `start()` before use, `stop()` at shutdown (api.install wires both)."""

    def __init__(self, config: StudioConfig, on_models_ready: ModelsHook | None = None,
                 on_models_removed: ModelsHook | None = None) -> None:
        self.config = config
        self.store = JobStore(config.root)
        self._on_models_ready = on_models_ready
        self._on_models_removed = on_models_removed
        self._runner = JobRunner(config, self._save)
        self._queue: list[str] = []
        self._current: str | None = None
        self._queued = asyncio.Event()
        self._job_left = asyncio.Event()
        self._changed = asyncio.Condition()
        self._worker: asyncio.Task[None] | None = None
        self._stopping = False
        self._live: dict[str, _Live] = {}
        self._removed = _Removed()

    # ------------------------------------------------------------------ life cycle

    def check(self) -> None:
        """StudioUnavailable (naming the fix) when the child interpreter lacks the training extra."""
        check_training_extra(self.config.python)

    async def start(self) -> None:
        """Check the child interpreter, open the folder, recover jobs, start the worker."""
        await asyncio.to_thread(self.check)
        self.store.open()
        jobs = self.store.all()
        for job in sorted(jobs, key=lambda job: job.state not in ACTIVE_STATES):  # interrupted jobs first
            if job.state in ACTIVE_STATES:
                await self._stop_orphan(job)
                logger.info("studio job %s (%s) was %s when the server stopped: resuming", job.id, job.name, job.state)
                self._queue.append(job.id)
            elif job.state == "queued":
                self._queue.append(job.id)
            elif job.state == "done":
                await self._publish(job)
            elif job.state == "cancelled":  # a removal that a crash interrupted
                self.store.remove(job.id)
        if self._queue:
            self._queued.set()
        self._worker = asyncio.create_task(self._work(), name="studio-worker")
        logger.info("studio: %d job(s) in %s, %d to run", len(jobs), self.config.root, len(self._queue))

    async def stop(self) -> None:
        """Stop the worker; a running child gets SIGTERM (training checkpoints), then SIGKILL after the grace."""
        self._stopping = True
        worker, self._worker = self._worker, None
        if worker is None:
            return
        self._runner.stop(signal.SIGTERM)
        self._queued.set()
        done, _ = await asyncio.wait({worker}, timeout=self.config.stop_grace_s)
        if not done:
            logger.warning("studio: the running job did not stop within %.0f s; killing it", self.config.stop_grace_s)
            self._runner.stop(signal.SIGKILL)
            done, _ = await asyncio.wait({worker}, timeout=10)
        if not done:
            worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
        async with self._changed:
            self._changed.notify_all()

    async def _stop_orphan(self, job: Job) -> None:
        """Kill a child a crashed server left running for `job` (checked by its command line, not just its pid)."""
        pid = job.child_pid
        if not pid:
            return
        try:
            command = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if str(self.config.root / job.id).encode() not in command:
            return
        logger.warning("studio job %s: stopping child %d left by the previous server", job.id, pid)
        try:
            os.killpg(pid, signal.SIGKILL)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + ORPHAN_WAIT_S
        while time.monotonic() < deadline:
            try:
                if Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1].startswith("Z"):
                    return
            except (OSError, IndexError):
                return
            await asyncio.sleep(0.05)

    # ------------------------------------------------------------------ the worker

    async def _work(self) -> None:
        while not self._stopping:
            if not self._queue:
                self._queued.clear()
                await self._queued.wait()
                continue
            job_id = self._queue.pop(0)
            self._current = job_id
            self._job_left.clear()
            try:
                await self._run(job_id)
            finally:
                self._current = None
                self._job_left.set()

    async def _run(self, job_id: str) -> None:
        try:
            job = self.store.load(job_id)
        except JobNotFound:
            return
        logger.info("studio job %s (%s): %s", job.id, job.name, "resuming" if job.state != "queued" else "starting")
        try:
            job = await self._runner.run(job)
        except (JobStopped, JobCancelled):
            return
        except StepFailed as exc:
            logger.warning("studio job %s failed: %s", job_id, exc)
            await self._fail(job_id, str(exc), exc.log_tail)
            return
        except Exception as exc:  # noqa: BLE001 - a job's failure must never stop the server
            logger.exception("studio job %s failed", job_id)
            await self._fail(job_id, f"internal error: {type(exc).__name__}: {exc}", None)
            return
        await self._publish(job)

    async def _publish(self, job: Job) -> None:
        """Hand a finished job's models to the catalog, then mark it done (failed if the catalog refuses them)."""
        models = JobPaths(self.config.root / job.id).models
        if self._on_models_ready is not None:
            try:
                await self._on_models_ready(models)
            except (ServerError, OSError, ValueError) as exc:
                await self._fail(job.id, f"the models could not join the live catalog: {exc}", None)
                return
        if job.state != "done":
            await self._save(job.moved("done", "", child_pid=None))
        logger.info("studio job %s (%s) done: %s", job.id, job.name, ", ".join(job.models))

    async def _fail(self, job_id: str, error: str, tail: str | None) -> None:
        try:
            job = self.store.load(job_id)
        except JobNotFound:
            return
        await self._save(job.moved("failed", job.stage, error=error, log_tail=tail, child_pid=None))

    async def _save(self, job: Job) -> Job:
        self.store.save(job)
        async with self._changed:
            self._changed.notify_all()
        return job

    # ------------------------------------------------------------------ requests

    async def create_job(self, request: web.Request) -> Job:
        """Receive a job upload (see upload.py) and queue it; it runs when the jobs before it are done."""
        job = await receive_job(request, self.store, self.config,
                                name_taken=lambda name: any(other.name == name for other in self.store.all()))
        self._queue.append(job.id)
        self._queued.set()
        logger.info("studio job %s (%s) queued: %d file(s) for A, %d for B", job.id, job.name,
                    len(job.files_of("a")), len(job.files_of("b")))
        async with self._changed:
            self._changed.notify_all()
        return job

    async def delete(self, job_id: str) -> dict[str, Any]:
        """Cancel a job (kill its child if it runs) and remove its files; its final status (state `cancelled`
        unless it had finished) is returned and sent to its event streams."""
        self.store.load(job_id)
        if job_id in self._queue:
            self._queue.remove(job_id)
        if self._current == job_id:
            self._runner.cancel(job_id)
            await asyncio.wait_for(self._job_left.wait(), timeout=60)
        job = self.store.load(job_id)
        if job.state == "done" and self._on_models_removed is not None:
            await self._on_models_removed(JobPaths(self.config.root / job.id).models)
        final = job if job.state in ("done", "failed") else job.moved("cancelled", "", child_pid=None)
        status = {**self._status(final, detail=False), "removed": True}
        self.store.save(final)  # a crash before the removal finishes leaves a "cancelled" job, removed at start
        self.store.remove(job_id)
        self._live.pop(job_id, None)
        self._removed.add(status)
        async with self._changed:
            self._changed.notify_all()
        logger.info("studio job %s (%s) removed (%s)", job_id, job.name, status["state"])
        return status

    def status(self, job_id: str, detail: bool = True) -> dict[str, Any]:
        """The job as the API shows it: stored record plus live progress read from its files."""
        return self._status(self.store.load(job_id), detail)

    def jobs(self) -> list[dict[str, Any]]:
        """Every job, oldest first (without loss curves and log tails)."""
        return [self._status(job, detail=False) for job in self.store.all()]

    def preview_png(self, job_id: str) -> bytes | None:
        """The latest preview grid (rows A, A->B, B, B->A) of a job, or None before training's first preview."""
        job = self.store.load(job_id)
        return self._live_of(job).preview.png()

    async def events(self, job_id: str) -> AsyncIterator[dict[str, Any] | None]:
        """The job's status now and at every change (None when a poll found no change, so a stream can send a
        keep-alive); ends after a final state, or when the job is removed."""
        last: dict[str, Any] | None = None
        while True:
            try:
                current = self.status(job_id)
            except JobNotFound:
                removed = self._removed.statuses.get(job_id)
                if removed is not None and removed != last:
                    yield removed
                return
            if current != last:
                last = current
                yield current
            else:
                yield None
            if current["state"] in FINAL_STATES or (self._stopping and self._worker is None):
                return
            async with self._changed:
                try:
                    await asyncio.wait_for(self._changed.wait(), timeout=self.config.poll_interval_s)
                except TimeoutError:
                    pass

    # ------------------------------------------------------------------ status

    def _live_of(self, job: Job) -> _Live:
        live = self._live.get(job.id)
        if live is None:
            run = JobPaths(self.config.root / job.id).run
            live = self._live[job.id] = _Live(LossLog(run / "losses.csv"), PreviewCache(run / "preview.png"))
        return live

    def _status(self, job: Job, detail: bool) -> dict[str, Any]:
        paths = JobPaths(self.config.root / job.id)
        live = self._live_of(job)
        rows = live.losses.refresh() if job.state in ("training", "exporting", "done") else []
        progress: dict[str, Any] = {"stage": job.stage, "step": None, "steps": job.steps, "fraction": None,
                                    "seconds_left": None, "images_per_s": None, "checkpoint_step": None}
        if job.state == "extracting":
            progress.update(self._extract_progress(job, paths))
        elif rows:
            last = rows[-1]
            step = int(last["step"])
            progress.update(step=step, fraction=round(min(1.0, step / job.steps), 4),
                            images_per_s=round(last.get("images_per_s", 0.0), 1),
                            checkpoint_step=checkpoint_step(paths.run))
            steps_per_s = last.get("images_per_s", 0.0) / (2 * self.config.recipe.batch)
            if job.state == "training" and steps_per_s > 0:
                progress["seconds_left"] = round((job.steps - step) / steps_per_s, 1)
        status: dict[str, Any] = {
            "id": job.id, "name": job.name, "title": job.title, "state": job.state, "created": job.created,
            "updated": job.updated, "steps": job.steps, "size": job.size, "progress": progress,
            "faces": {"a": job.faces.get("a"), "b": job.faces.get("b"), "needed": self.config.recipe.min_faces},
            "files": [{"side": f.side, "name": f.label, "kind": f.kind, "bytes": f.bytes, "sha256": f.sha256}
                      for f in job.files],
            "consent": job.consent.record(job.files), "base": job.base is not None,
            "resumed_from_step": job.resumed_from_step, "models": list(job.models), "error": job.error,
            "notes": list(job.notes), "quality_limited": job.photos_only("b"),
            "preview": f"/api/studio/jobs/{job.id}/preview.png" if (paths.run / "preview.png").exists() else None,
            "queue_position": self._queue.index(job.id) + 1 if job.id in self._queue else None,
        }
        if detail:
            status["losses"] = live.losses.curve()
            status["log_tail"] = job.log_tail
        return status

    def _extract_progress(self, job: Job, paths: JobPaths) -> dict[str, Any]:
        """Fraction and time left of the extraction stage running now (frames looked at / frames planned)."""
        side = next((s for s in SIDES if job.stage == f"extract {s.upper()}"), None)
        if side is None:
            return {}
        every = self._runner.every(job, side)
        planned = sum(-(-f.frames // every) if f.kind == "video" else 1 for f in job.files_of(side))
        if side == "b" and job.photos_only("b"):
            planned = len(list(paths.poses_b.glob("*.png")))
        fraction = min(1.0, frames_done(paths.faces(side)) / max(planned, 1))
        elapsed = _seconds_since(job.stage_started)
        left = round(elapsed * (1 - fraction) / fraction, 1) if elapsed is not None and fraction > 0.02 else None
        return {"fraction": round(fraction, 4), "seconds_left": left}
