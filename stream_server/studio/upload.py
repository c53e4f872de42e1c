"""POST /api/studio/jobs: a multipart upload streamed to disk under a size limit, each file probed, then a job.

The parts, in this order: `options` (JSON: name, consent {statement, people}, optional steps and size) first,
so nothing is stored without a consent record; then any number of files named `a` (the person on camera) and
`b` (the face put on them). File names from the client are labels only; files are stored under generated names.
Any failure removes everything received so far.
"""

from __future__ import annotations

import asyncio
import errno
import hashlib
import json
import logging
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import BodyPartReader, MultipartReader, web

from faces.errors import InputError
from faces.media import IMAGE_SUFFIXES, check_image, probe_video
from stream_server.studio.config import FACE_SIZES, MIB, StudioConfig
from stream_server.studio.errors import DiskFullError, JobConflict, UploadError, UploadTooLarge
from stream_server.studio.jobs import SIDES, Consent, FileKind, Job, Side, UploadedFile
from swapstream.manifest import utc_now
from stream_server.studio.store import JobStore

logger = logging.getLogger(__name__)

CHUNK_BYTES = 256 * 1024
DISK_CHECK_BYTES = 8 * MIB
MAX_OPTIONS_BYTES = 64 * 1024
MAX_FILES_PER_SIDE = 200
MAX_NAME_CHARS = 40
MAX_STATEMENT_CHARS = 2000
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".y4m", ".mpg", ".mpeg", ".wmv"})
OPTION_KEYS = ("name", "consent", "steps", "size")


@dataclass(frozen=True)
class JobRequest:
    """The `options` part, checked."""

    name: str
    title: str
    statement: str
    people: tuple[str, ...]
    steps: int
    size: int


def safe_name(title: str) -> str:
    """A job name made safe for model names and logs: lower-case letters, digits, '-' and '_'."""
    return re.sub(r"[^a-z0-9_-]+", "-", title.strip().lower()).strip("-_")[:MAX_NAME_CHARS]


def _people(raw: Any) -> tuple[str, ...]:
    if isinstance(raw, str):
        raw = raw.split(",")
    if not isinstance(raw, list) or not all(isinstance(person, str) for person in raw):
        raise UploadError('options: consent "people" must be a list of names (or one comma-separated string)')
    people = tuple(person.strip() for person in raw if person.strip())
    if not people:
        raise UploadError('options: consent "people": name the people shown (at least one)')
    return people


def parse_options(raw: bytes, config: StudioConfig) -> JobRequest:
    """The options part as a JobRequest; UploadError saying what is missing or wrong."""
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise UploadError(f"options: not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise UploadError('options: must be a JSON object {"name", "consent": {"statement", "people"}, ...}')
    unknown = sorted(set(data) - set(OPTION_KEYS))
    if unknown:
        raise UploadError(f"options: unknown key(s) {', '.join(unknown)}; known: {', '.join(OPTION_KEYS)}")
    title = data.get("name")
    if not isinstance(title, str) or not safe_name(title):
        raise UploadError('options: "name" must be a name with letters or digits (it prefixes the model names)')
    consent = data.get("consent")
    if not isinstance(consent, dict):
        raise UploadError('options: "consent" is required: {"statement": what the people shown agreed to, '
                          '"people": who they are}')
    statement = consent.get("statement")
    if not isinstance(statement, str) or not statement.strip():
        raise UploadError('options: consent "statement" is required: say what the people shown agreed to')
    if len(statement) > MAX_STATEMENT_CHARS:
        raise UploadError(f"options: consent statement is over {MAX_STATEMENT_CHARS} characters")
    recipe = config.recipe
    steps = data.get("steps", recipe.steps)
    if isinstance(steps, bool) or not isinstance(steps, int) or not 1 <= steps <= recipe.max_steps:
        raise UploadError(f'options: "steps" must be a whole number in 1..{recipe.max_steps}, got {steps!r}')
    size = data.get("size", recipe.size)
    if size not in FACE_SIZES or isinstance(size, bool):
        raise UploadError(f'options: "size" must be one of {", ".join(map(str, FACE_SIZES))}, got {size!r}')
    return JobRequest(name=safe_name(title), title=title.strip()[:200], statement=statement.strip(),
                      people=_people(consent.get("people")), steps=steps, size=int(size))


class _Budget:
    """Counts bytes received against the upload limit and checks the disk as they arrive."""

    def __init__(self, config: StudioConfig, folder: Path) -> None:
        self.config, self.folder = config, folder
        self.received = 0
        self._next_disk_check = 0

    def add(self, count: int) -> None:
        self.received += count
        limit = self.config.max_upload_bytes
        if self.received > limit:
            raise UploadTooLarge(f"the upload is over the limit of {limit / MIB:g} MB (--studio-max-mb); "
                                 "send shorter clips or fewer files")
        if self.received >= self._next_disk_check:
            self._next_disk_check = self.received + DISK_CHECK_BYTES
            free = shutil.disk_usage(self.folder).free
            if free - DISK_CHECK_BYTES < self.config.reserve_bytes:
                raise DiskFullError(f"the disk holding the studio folder is full ({free / MIB:.0f} MB free, "
                                    f"{self.config.reserve_bytes / MIB:.0f} MB are kept free); nothing was kept")


def _suffix(label: str, kind: FileKind) -> str:
    """The stored file's suffix: the label's when it is a known one of that kind (extract picks readers by it),
    else a neutral one that extract probes."""
    suffix = Path(label).suffix.lower()
    known = IMAGE_SUFFIXES if kind == "image" else VIDEO_SUFFIXES
    return suffix if suffix in known else (".img" if kind == "image" else ".video")


def probe(path: Path) -> tuple[FileKind, int]:
    """("image", 1) or ("video", frames) for a file; InputError if it is neither."""
    try:
        check_image(path)
        return "image", 1
    except InputError:
        pass
    return "video", probe_video(path).frame_count


async def _read_part(part: BodyPartReader, target: Path | None, budget: _Budget, limit: int | None = None) -> tuple[bytes, str, int]:
    """Stream one part to `target` (or into memory when None); returns (bytes kept in memory, sha256, size)."""
    digest = hashlib.sha256()
    size = 0
    kept = bytearray()
    handle = target.open("wb") if target is not None else None
    try:
        while chunk := await part.read_chunk(CHUNK_BYTES):
            budget.add(len(chunk))
            digest.update(chunk)
            size += len(chunk)
            if handle is not None:
                handle.write(chunk)
            else:
                kept.extend(chunk)
                if limit is not None and size > limit:
                    raise UploadError(f"options: over {limit} bytes")
    finally:
        if handle is not None:
            handle.close()
    return bytes(kept), digest.hexdigest(), size


@dataclass
class _Received:
    """A file part on disk, before probing."""

    side: Side
    label: str
    path: Path
    sha256: str
    size: int


async def _receive_parts(reader: MultipartReader, staging: Path, budget: _Budget,
                         config: StudioConfig) -> tuple[JobRequest, list[_Received]]:
    first = await reader.next()
    if not isinstance(first, BodyPartReader) or first.name != "options":
        raise UploadError('the first part must be "options" (JSON with name and consent), before any file')
    raw, _, _ = await _read_part(first, None, budget, MAX_OPTIONS_BYTES)
    request = parse_options(raw, config)
    received: list[_Received] = []
    counts = {side: 0 for side in SIDES}
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name not in SIDES:
            name = getattr(part, "name", None)
            raise UploadError(f"unexpected part {name!r}: file parts are named 'a' (source) or 'b' (target)")
        side: Side = "a" if part.name == "a" else "b"
        counts[side] += 1
        if counts[side] > MAX_FILES_PER_SIDE:
            raise UploadError(f"more than {MAX_FILES_PER_SIDE} files for side {side}")
        label = Path(part.filename or f"{side}-{counts[side]}").name[:200]
        folder = staging / "uploads" / side
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{side}-{counts[side]:03d}.part"
        _, sha256, size = await _read_part(part, path, budget)
        if size == 0:
            raise UploadError(f"{side}: {label!r} is empty")
        received.append(_Received(side, label, path, sha256, size))
    for side in SIDES:
        if counts[side] == 0:
            what = "the person on camera" if side == "a" else "the face to put on them"
            raise UploadError(f"no files for {side.upper()} ({what}): send at least one video or photo as part '{side}'")
    return request, received


async def _probe_all(received: list[_Received]) -> list[UploadedFile]:
    files = []
    for item in received:
        try:
            kind, frames = await asyncio.to_thread(probe, item.path)
        except InputError as exc:
            raise UploadError(f"{item.side.upper()}: {item.label!r} is neither a photo nor a video this server "
                              "can read") from exc
        stored = item.path.with_suffix(_suffix(item.label, kind))
        item.path.rename(stored)
        files.append(UploadedFile(side=item.side, label=item.label, file=stored.name, kind=kind, bytes=item.size,
                                  sha256=item.sha256, frames=frames))
    return files


async def receive_job(request: web.Request, store: JobStore, config: StudioConfig,
                      name_taken: Callable[[str], bool]) -> Job:
    """Read a job upload into a new job folder (state queued); on any error nothing is kept."""
    length = request.content_length
    if length is not None and length > config.max_upload_bytes:
        raise UploadTooLarge(f"the upload ({length / MIB:.1f} MB) is over the limit of "
                             f"{config.max_upload_bytes / MIB:g} MB (--studio-max-mb)")
    if not request.content_type.startswith("multipart/"):
        raise UploadError(f"POST /api/studio/jobs takes multipart/form-data, not {request.content_type or 'no type'}")
    job_id = store.new_id()
    staging = store.staging_dir(job_id)
    staging.mkdir(parents=True)
    try:
        reader = await request.multipart()
        job_request, received = await _receive_parts(reader, staging, _Budget(config, staging), config)
        if name_taken(job_request.name):
            raise JobConflict(f"a studio job named {job_request.name!r} exists already; choose another name "
                              "or delete that job")
        files = await _probe_all(received)
        # microseconds: jobs uploaded within one second still list and queue in the order they were made
        now = utc_now("microseconds")
        job = Job(id=job_id, name=job_request.name, title=job_request.title, created=now, steps=job_request.steps,
                  size=job_request.size,
                  consent=Consent(statement=job_request.statement, people=job_request.people, time=now),
                  files=tuple(files), updated=now, stage_started=now)
        return store.commit(staging, job)
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise DiskFullError(f"the disk holding the studio folder is full ({exc.strerror}); nothing was kept") \
                from exc
        raise
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
