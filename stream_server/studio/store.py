"""DIR/<job>/ on disk. A job folder appears whole (its upload is staged in DIR/.incoming-<id> and renamed into
place) and its job.json is only ever replaced atomically, so a crash at any moment leaves either no job or a
readable one.

    DIR/<job>/job.json          the Job record
    DIR/<job>/uploads/a|b/      the uploaded files, under generated names
    DIR/<job>/work/             face sets, the training run, the export in progress
    DIR/<job>/models/           the finished models (manifest.json + ONNX), renamed into place complete
    DIR/<job>/log.txt           every child process's output
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import uuid
from pathlib import Path

from stream_server.studio.errors import JobNotFound, StudioUnavailable
from stream_server.studio.jobs import JOB_ID, Job
from swapstream.atomic import atomic_write_text, fsync_directory

logger = logging.getLogger(__name__)

JOB_FILE = "job.json"
STAGING_PREFIX = ".incoming-"


class JobStore:
    """The jobs under one studio folder."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def open(self) -> None:
        """Create the folder if needed and drop uploads a crash left half-received."""
        try:
            self.root.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise StudioUnavailable(f"--studio {self.root}: cannot create the folder: {exc}") from exc
        if not os.access(self.root, os.W_OK):
            raise StudioUnavailable(f"--studio {self.root}: the folder is not writable")
        for leftover in self.root.glob(f"{STAGING_PREFIX}*"):
            logger.info("removing an upload a restart interrupted: %s", leftover)
            shutil.rmtree(leftover, ignore_errors=True)

    @staticmethod
    def new_id() -> str:
        """A fresh job id (12 hex digits)."""
        return uuid.uuid4().hex[:12]

    def job_dir(self, job_id: str) -> Path:
        """The folder of a job; JobNotFound for anything that is not a job id (ids come from clients)."""
        if not JOB_ID.fullmatch(job_id):
            raise JobNotFound(f"no studio job {job_id!r}")
        return self.root / job_id

    def staging_dir(self, job_id: str) -> Path:
        """Where an upload is received before it becomes a job."""
        return self.root / f"{STAGING_PREFIX}{job_id}"

    def commit(self, staging: Path, job: Job) -> Job:
        """Turn a received upload into a job: write its job.json, then rename the folder into place."""
        atomic_write_text(staging / JOB_FILE, json.dumps(job.to_json(), indent=1))
        os.rename(staging, self.root / job.id)
        fsync_directory(self.root)
        return job

    def load(self, job_id: str) -> Job:
        """The job's record; JobNotFound if there is none."""
        path = self.job_dir(job_id) / JOB_FILE
        try:
            return Job.from_json(json.loads(path.read_text(encoding="utf-8")))
        except FileNotFoundError as exc:
            raise JobNotFound(f"no studio job {job_id!r}") from exc

    def save(self, job: Job) -> Job:
        """Replace the job's record atomically."""
        atomic_write_text(self.job_dir(job.id) / JOB_FILE, json.dumps(job.to_json(), indent=1))
        return job

    def all(self) -> list[Job]:
        """Every job, oldest first; a folder whose job.json cannot be read is skipped with a warning."""
        jobs = []
        for folder in self.root.iterdir() if self.root.is_dir() else ():
            if not JOB_ID.fullmatch(folder.name) or not (folder / JOB_FILE).is_file():
                continue
            try:
                jobs.append(self.load(folder.name))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                logger.warning("skipping studio job folder %s: unreadable %s (%s)", folder, JOB_FILE, exc)
        return sorted(jobs, key=lambda job: (job.created, job.id))

    def remove(self, job_id: str) -> None:
        """Delete a job's folder and everything in it (job.json first, so a crash midway leaves no job)."""
        folder = self.job_dir(job_id)
        (folder / JOB_FILE).unlink(missing_ok=True)
        shutil.rmtree(folder, ignore_errors=True)
