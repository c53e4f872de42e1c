"""One job's steps, each the project's own command in a child process: (photo poses for a photos-only B),
`extract` A and B, `train faces` (from the base checkpoint, or resuming its own), `export`.

Children run in their own process group at a lower CPU priority with one thread each (torch, OpenMP, MKL,
OpenBLAS, batch workers), so live sessions keep their frame rate; their output goes to DIR/<job>/log.txt. A step
that fails raises StepFailed with the end of that log. Nothing half-written reaches the catalog: export writes
into a temporary folder that is renamed to DIR/<job>/models only once its manifest is complete.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path

import swapstream
from stream_server.studio.config import StudioConfig
from stream_server.studio.errors import StepFailed, StudioUnavailable
from stream_server.studio.jobs import SIDES, Job, JobState, Side
from stream_server.studio.progress import checkpoint_step, count_faces, safetensors_metadata
from swapstream.atomic import fsync_directory
from swapstream.manifest import read_manifest, write_manifest

logger = logging.getLogger(__name__)

LOG_NAME = "log.txt"
LOG_TAIL_LINES = 25
# Modules a job's child imports that the server's own install leaves out (the `train` extra).
TRAINING_MODULES = ("torch", "onnx", "onnxscript", "safetensors", "training", "export")
SINGLE_THREAD_ENV = {"OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
# absl / glog lines from mediapipe and TensorFlow Lite ("W0000 00:00:...", "I0000 ...") say nothing to a user
_LOG_NOISE = re.compile(r"^([IWE]\d{4} |WARNING: All log messages before absl)")
_PHASES: dict[JobState, int] = {"queued": 0, "extracting": 1, "training": 2, "exporting": 3}


class JobStopped(Exception):
    """The server is stopping: the job stays in its state and resumes at the next start."""


class JobCancelled(Exception):
    """The job was cancelled (DELETE) while a step ran."""


@dataclass(frozen=True)
class JobPaths:
    """Where one job's files live."""

    root: Path

    def uploads(self, side: Side) -> Path:
        return self.root / "uploads" / side

    def faces(self, side: Side) -> Path:
        return self.root / "work" / f"faces-{side}"

    @property
    def poses_b(self) -> Path:
        """Photos of a photos-only B with their warped pose variants."""
        return self.root / "work" / "poses-b"

    @property
    def run(self) -> Path:
        return self.root / "work" / "run"

    @property
    def export_tmp(self) -> Path:
        return self.root / "work" / "export-in-progress"

    @property
    def models(self) -> Path:
        return self.root / "models"

    @property
    def log(self) -> Path:
        return self.root / LOG_NAME


def project_root() -> Path:
    """The folder the server's own packages are imported from; children import the same code from it."""
    return Path(swapstream.__file__).resolve().parent.parent


def child_env() -> dict[str, str]:
    """The children's environment: one thread per numeric library, the server's packages first on the path."""
    env = {**os.environ, **SINGLE_THREAD_ENV, "PYTHONUNBUFFERED": "1"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(project_root()), os.environ.get("PYTHONPATH", "")) if p)
    return env


def check_training_extra(python: str) -> None:
    """StudioUnavailable, naming the fix, unless `python` can import what extract, train and export need."""
    probe = ("import importlib.util as u; "
             f"print(','.join(m for m in {TRAINING_MODULES!r} if u.find_spec(m) is None))")
    try:
        result = subprocess.run([python, "-c", probe], capture_output=True, text=True, timeout=120, env=child_env(),
                                check=False)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise StudioUnavailable(f"--studio: cannot run the training interpreter {python}: {exc}") from exc
    if result.returncode != 0:
        raise StudioUnavailable(f"--studio: the training interpreter {python} failed: {result.stderr.strip()[-500:]}")
    missing = [name for name in result.stdout.strip().split(",") if name]
    if missing:
        raise StudioUnavailable(
            f"--studio needs the training extra, and {python} cannot import {', '.join(missing)}: install it with "
            "pip install -e '.[train]' (or serve without --studio)")


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    """The last `lines` meaningful lines of a log (mediapipe's absl chatter left out)."""
    try:
        with path.open("rb") as handle:
            handle.seek(max(0, path.stat().st_size - 64 * 1024))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return ""
    kept = [line for line in text.splitlines() if line.strip() and not _LOG_NOISE.match(line)]
    return "\n".join(kept[-lines:])


def _exit_reason(code: int) -> str:
    if code < 0:
        try:
            return f"was killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _error_line(tail: str) -> str:
    """The child's own error message (`swapstream <cmd>: error: ...`, or a Python exception), if it printed one."""
    for line in reversed(tail.splitlines()):
        if ": error: " in line or re.match(r"^\w+(\.\w+)*(Error|Exception): ", line):
            return line.strip()
    return ""


class JobRunner:
    """Runs the steps of one job at a time; `stop()` and `cancel()` reach the running child."""

    def __init__(self, config: StudioConfig, save: Callable[[Job], Awaitable[Job]]) -> None:
        self.config = config
        self._save = save
        self._process: asyncio.subprocess.Process | None = None
        self._stopping = False
        self._cancelled: set[str] = set()
        self._python = config.python

    # ------------------------------------------------------------------ control

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Ask the running child to stop (training writes a checkpoint on SIGTERM); the job is left to resume."""
        self._stopping = True
        self._signal(sig)

    def cancel(self, job_id: str) -> None:
        """Kill the running child of `job_id` at once (its files are about to be removed)."""
        self._cancelled.add(job_id)
        self._signal(signal.SIGKILL)

    @property
    def running(self) -> bool:
        """True while a child process runs."""
        return self._process is not None and self._process.returncode is None

    def _signal(self, sig: signal.Signals) -> None:
        process = self._process
        if process is not None and process.returncode is None:
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                pass

    # ------------------------------------------------------------------ the steps

    async def run(self, job: Job) -> Job:
        """Carry `job` from its stored state to exported models (DIR/<job>/models); returns it in `exporting`
        with its model names. Raises StepFailed, JobCancelled or JobStopped."""
        paths = JobPaths(self.config.root / job.id)
        phase = _PHASES.get(job.state, 0)
        if phase <= _PHASES["extracting"]:
            job = await self._extract(job, paths)
        if phase <= _PHASES["training"]:
            job = await self._train(job, paths)
        return await self._export(job, paths)

    async def _extract(self, job: Job, paths: JobPaths) -> Job:
        sources: dict[Side, list[Path]] = {side: [paths.uploads(side) / f.file for f in job.files_of(side)]
                                           for side in SIDES}
        notes = list(job.notes)
        if job.photos_only("b"):
            note = ("B has photos only and no video: training sees B in poses warped from those photos, so the swap "
                    "is rougher than with a video of B (quality is limited)")
            notes += [note] if note not in notes else []
            job = await self._save(job.moved("extracting", "poses B", notes=tuple(notes)))
            await self._child(job, paths, ["-m", "training.photo_poses", *map(str, sources["b"]),
                                           "--out", str(paths.poses_b),
                                           "--per-photo", str(self.config.recipe.photo_variants)])
            sources["b"] = [paths.poses_b]
        for side in SIDES:
            job = await self._save(job.moved("extracting", f"extract {side.upper()}"))
            await self._child(job, paths, ["-m", "swapstream.cli", "extract", *map(str, sources[side]),
                                           "--out", str(paths.faces(side)), "--size", str(job.size),
                                           "--every", str(self.every(job, side)), "--no-progress"])
        faces: dict[Side, int] = {side: sum(count_faces(paths.faces(side)).values()) for side in SIDES}
        job = await self._save(job.moved("extracting", "check faces", faces=faces))
        needed = self.config.recipe.min_faces
        if min(faces.values()) < needed:
            raise StepFailed(self._too_few_faces(job, paths, faces, needed))
        return job

    def every(self, job: Job, side: Side) -> int:
        """`extract --every`: keeps a side near the recipe's frames per side however long its videos are."""
        frames = sum(item.frames for item in job.files_of(side) if item.kind == "video")
        return max(1, round(frames / self.config.recipe.frames_per_side))

    def _too_few_faces(self, job: Job, paths: JobPaths, faces: dict[Side, int], needed: int) -> str:
        per_upload: dict[str, int] = {}  # by stored stem; a photo's pose variants are <stem>_v<k>
        for side in SIDES:
            for source, count in count_faces(paths.faces(side)).items():
                stem = Path(source).stem.split("_v")[0]
                per_upload[stem] = per_upload.get(stem, 0) + count
        without = [f"{item.side.upper()} {item.label!r}" for item in job.files
                   if per_upload.get(Path(item.file).stem, 0) == 0]
        message = (f"too few faces to train: found {faces['a']} in A (source) and {faces['b']} in B (target); each "
                   f"side needs at least {needed}.")
        if without:
            message += f" No face was found in {', '.join(without)}."
        return message + " Upload clips or photos where one face is clearly visible, front-on and sharp."

    def _base_flags(self, job: Job, paths: JobPaths) -> tuple[list[str], str | None]:
        """`train faces` flags for the model's starting point and shape, and the base used (None: from scratch)."""
        metadata = safetensors_metadata(paths.run / "checkpoint.safetensors")
        if metadata and isinstance(metadata.get("model_config"), dict):  # resuming: the checkpoint's own shape
            config = metadata["model_config"]
            flags = [f"--{key.replace('_', '-')}={config[key]}" for key in self.config.recipe.shape if key in config]
            return ["--resume", *flags], job.base
        base = self.config.base
        base_config = (safetensors_metadata(base) or {}).get("model_config") if base is not None else None
        if base is not None and isinstance(base_config, dict) and base_config.get("face_size") == job.size:
            return ["--base", str(base)], str(base)
        return self.config.recipe.shape_flags(), None

    async def _train(self, job: Job, paths: JobPaths) -> Job:
        recipe = self.config.recipe
        resumed = checkpoint_step(paths.run) if job.state == "training" else None
        flags, base = self._base_flags(job, paths)
        notes = job.notes
        if base is None and resumed is None and self.config.base is not None:
            notes += (f"no base checkpoint for {job.size} px faces: training starts from scratch and takes longer",)
        job = await self._save(job.moved("training", "train", base=base, notes=notes,
                                         resumed_from_step=resumed if resumed is not None else job.resumed_from_step))
        every = recipe.checkpoint_interval(job.steps)
        await self._child(job, paths, [
            "-m", "swapstream.cli", "train", "faces", "--a", str(paths.faces("a")), "--b", str(paths.faces("b")),
            "--out", str(paths.run), "--size", str(job.size), "--steps", str(job.steps), "--batch", str(recipe.batch),
            "--lr", str(recipe.lr), "--checkpoint-every", str(every), "--preview-every", str(every),
            "--workers", "1", "--threads", "1", "--no-progress", *flags])
        return job

    async def _export(self, job: Job, paths: JobPaths) -> Job:
        job = await self._save(job.moved("exporting", "export"))
        shutil.rmtree(paths.export_tmp, ignore_errors=True)
        await self._child(job, paths, ["-m", "swapstream.cli", "export", str(paths.run),
                                       "--out", str(paths.export_tmp)])
        names = publish_models(paths.export_tmp, paths.models, job)
        return await self._save(job.moved("exporting", "export", models=tuple(names)))

    # ------------------------------------------------------------------ one child

    async def _child(self, job: Job, paths: JobPaths, args: list[str]) -> None:
        """Run `python args...` for `job`; StepFailed (with the log's tail) unless it exits 0."""
        if self._stopping:
            raise JobStopped(job.id)
        if job.id in self._cancelled:
            self._cancelled.discard(job.id)
            raise JobCancelled(job.id)
        command = [self._python, *args]
        with paths.log.open("ab") as log:
            log.write(f"\n$ {' '.join(command)}\n".encode())
            log.flush()
            process = await asyncio.create_subprocess_exec(
                *command, stdin=asyncio.subprocess.DEVNULL, stdout=log, stderr=asyncio.subprocess.STDOUT,
                cwd=paths.root, env=child_env(), start_new_session=True)
        self._process = process
        try:
            lower_priority(process.pid, self.config.nice, self.config.idle_scheduling)
            await self._save(job.moved(job.state, job.stage, child_pid=process.pid))
            code = await process.wait()
        except BaseException:
            self._signal(signal.SIGKILL)
            await process.wait()
            raise
        finally:
            self._process = None
        if self._stopping:
            raise JobStopped(job.id)
        if job.id in self._cancelled:
            self._cancelled.discard(job.id)
            raise JobCancelled(job.id)
        if code != 0:
            tail = log_tail(paths.log)
            reason = _error_line(tail)
            raise StepFailed(f"{job.stage} {_exit_reason(code)}" + (f": {reason}" if reason else ""), tail)



def lower_priority(pid: int, nice: int, idle: bool) -> None:
    """Put process `pid` `nice` steps below this process's priority, and under SCHED_IDLE when `idle` (Linux: it
    then only gets CPU time no other thread wants, so live sessions go first).

    Set from the parent rather than in the child (preexec_fn is unsafe in a threaded server): a child has only
    its main thread this early, and every thread it starts later inherits the priority and the policy.
    """
    try:
        os.setpriority(os.PRIO_PROCESS, pid, min(19, os.getpriority(os.PRIO_PROCESS, 0) + nice))
        if idle and hasattr(os, "SCHED_IDLE"):
            os.sched_setscheduler(pid, os.SCHED_IDLE, os.sched_param(0))
    except OSError as exc:
        logger.warning("could not lower the priority of studio child %d: %s", pid, exc)


def publish_models(exported: Path, models: Path, job: Job) -> list[str]:
    """Name the exported entries `<job name>.<name>`, attach the consent record (and, in `source`, the job and
    whether its quality is limited), then rename the folder to `models` (complete or not at all). Returns the
    model names."""
    exported_manifest = read_manifest(exported)
    consent = job.consent.for_manifest(job.files)
    studio = {"studio_job": job.id, "quality_limited": job.photos_only("b")}
    entries = tuple(replace(entry, name=f"{job.name}.{entry.name}", consent=consent,
                            source={**entry.source, **studio}) for entry in exported_manifest.models)
    write_manifest(replace(exported_manifest, models=entries))
    if models.exists():  # an earlier export of this job that never reached the catalog (a restart in between)
        shutil.rmtree(models)
    os.rename(exported, models)
    fsync_directory(models.parent)
    return [entry.name for entry in entries]
