"""A Studio job as stored in DIR/<job>/job.json: its request, consent record, files, state and outcome."""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from swapstream import manifest
from swapstream.manifest import utc_now

JobState = Literal["queued", "extracting", "training", "exporting", "done", "failed", "cancelled"]
Side = Literal["a", "b"]
FileKind = Literal["video", "image"]
SIDES: tuple[Side, ...] = ("a", "b")
ACTIVE_STATES: tuple[JobState, ...] = ("extracting", "training", "exporting")
FINAL_STATES: tuple[JobState, ...] = ("done", "failed", "cancelled")
JOB_ID = re.compile(r"[0-9a-f]{12}")
JOB_VERSION = 1


@dataclass(frozen=True)
class UploadedFile:
    """One uploaded file: stored under a generated name; the client's file name is only a label."""

    side: Side
    label: str
    file: str
    """Name inside DIR/<job>/uploads/<side>/ (generated, never from the client)."""
    kind: FileKind
    bytes: int
    sha256: str
    frames: int
    """Frames as the container reports them (1 for a photo)."""

    def to_json(self) -> dict[str, Any]:
        return {"side": self.side, "label": self.label, "file": self.file, "kind": self.kind, "bytes": self.bytes,
                "sha256": self.sha256, "frames": self.frames}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> UploadedFile:
        return cls(side=data["side"], label=str(data["label"]), file=str(data["file"]), kind=data["kind"],
                   bytes=int(data["bytes"]), sha256=str(data["sha256"]), frames=int(data["frames"]))


@dataclass(frozen=True)
class Consent:
    """What the uploader confirmed (statement), about whom (people) and when; with the files' sha256 it is the
    consent record carried into the exported manifest entries."""

    statement: str
    people: tuple[str, ...]
    time: str

    def for_manifest(self, files: tuple[UploadedFile, ...]) -> manifest.Consent:
        """The consent record of the exported manifest entries: this, and {name, sha256} of every uploaded file."""
        return manifest.Consent(statement=self.statement, people=self.people, time=self.time,
                                files=tuple(manifest.ConsentFile(item.label, item.sha256) for item in files))

    def record(self, files: tuple[UploadedFile, ...]) -> dict[str, Any]:
        """The consent record in its JSON form (as the manifest stores it)."""
        return self.for_manifest(files).to_json()


@dataclass(frozen=True)
class Job:
    """A job's stored record. Progress while it runs is read from its files (see progress.py), not stored here."""

    id: str
    name: str
    """Safe name (letters, digits, - and _): the prefix of its models' manifest names, `<name>.swap_a2b`."""
    title: str
    """The name as the user typed it."""
    created: str
    steps: int
    size: int
    consent: Consent
    files: tuple[UploadedFile, ...]
    state: JobState = "queued"
    stage: str = ""
    """What the active state is doing now, e.g. "extract A" or "train"."""
    stage_started: str = ""
    updated: str = ""
    base: str | None = None
    """The base checkpoint training started from, once training has started."""
    faces: dict[str, int] = field(default_factory=dict)
    """Faces found per side after extraction."""
    resumed_from_step: int | None = None
    """Set when a server restart resumed training from a checkpoint at this step."""
    models: tuple[str, ...] = ()
    error: str | None = None
    log_tail: str | None = None
    notes: tuple[str, ...] = ()
    child_pid: int | None = None
    """The running child's pid (its process group), so a restarted server can stop one left behind."""

    def files_of(self, side: Side) -> tuple[UploadedFile, ...]:
        """The uploaded files of one side, in upload order."""
        return tuple(item for item in self.files if item.side == side)

    def photos_only(self, side: Side) -> bool:
        """True when a side has photos and no video."""
        return all(item.kind == "image" for item in self.files_of(side))

    def moved(self, state: JobState, stage: str = "", **changes: Any) -> Job:
        """A copy in a new state (and stage), stamped now."""
        now = utc_now()
        started = now if (state, stage) != (self.state, self.stage) else self.stage_started
        return replace(self, state=state, stage=stage, stage_started=started, updated=now, **changes)

    def to_json(self) -> dict[str, Any]:
        return {
            "version": JOB_VERSION, "id": self.id, "name": self.name, "title": self.title, "created": self.created,
            "steps": self.steps, "size": self.size,
            "consent": {"statement": self.consent.statement, "people": list(self.consent.people),
                        "time": self.consent.time},
            "files": [item.to_json() for item in self.files], "state": self.state, "stage": self.stage,
            "stage_started": self.stage_started, "updated": self.updated, "base": self.base, "faces": self.faces,
            "resumed_from_step": self.resumed_from_step, "models": list(self.models), "error": self.error,
            "log_tail": self.log_tail, "notes": list(self.notes), "child_pid": self.child_pid,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Job:
        consent = data["consent"]
        return cls(
            id=str(data["id"]), name=str(data["name"]), title=str(data.get("title", data["name"])),
            created=str(data["created"]), steps=int(data["steps"]), size=int(data["size"]),
            consent=Consent(statement=str(consent["statement"]), people=tuple(consent["people"]),
                            time=str(consent["time"])),
            files=tuple(UploadedFile.from_json(item) for item in data["files"]), state=data["state"],
            stage=str(data.get("stage", "")), stage_started=str(data.get("stage_started", "")),
            updated=str(data.get("updated", "")), base=data.get("base"), faces=dict(data.get("faces") or {}),
            resumed_from_step=data.get("resumed_from_step"), models=tuple(data.get("models") or ()),
            error=data.get("error"), log_tail=data.get("log_tail"), notes=tuple(data.get("notes") or ()),
            child_pid=data.get("child_pid"),
        )
