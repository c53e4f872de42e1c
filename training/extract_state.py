"""Resume bookkeeping of `swapstream extract`: `extract_state.json` in the face-set folder.

It records the settings that shape a face set (a rerun must use the same ones), each source's next frame and
whether it is done, running counts and the last run's summary. It is saved about once a second and at the end,
also when a run is interrupted, so the next run starts exactly after the last finished frame.
"""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from swapstream.atomic import atomic_write_text
from training.errors import ExtractError
from training.extract_sources import Source, free_stem

STATE_NAME = "extract_state.json"
STATE_VERSION = 1
SAVE_INTERVAL_S = 1.0
# Settings that change what a frame yields: a rerun must use the same ones to continue a face set.
RESUME_SETTINGS = ("size", "every", "min_sharpness", "max_faces", "min_score")


@dataclass
class ExtractState:
    """Contents of extract_state.json (and when it was last saved)."""

    settings: dict[str, Any]
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"frames": 0, "no_face": 0, "blurry": 0})
    summary: dict[str, Any] | None = None
    saved_at: float = field(default_factory=time.monotonic, compare=False)

    @classmethod
    def load(cls, out: Path, settings: dict[str, Any]) -> ExtractState:
        """The state of face-set folder `out`, or a fresh one; ExtractError if it was made with other settings."""
        state_path = out / STATE_NAME
        if not state_path.exists():
            return cls(settings=settings)
        try:
            data = json.loads(state_path.read_text(encoding="utf-8"))
            saved = data["settings"]
            state = cls(settings=saved, sources=data["sources"], counts=data["counts"], summary=data.get("summary"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ExtractError(f"cannot read {state_path} ({exc}); remove it or use another --out") from exc
        changed = [name for name in RESUME_SETTINGS if saved.get(name) != settings[name]]
        if changed:
            flags = ", ".join(f"--{name.replace('_', '-')} {saved.get(name)}" for name in changed)
            raise ExtractError(f"{out} was extracted with {flags}; rerun with the same flags or choose another --out")
        return state

    def to_json(self) -> dict[str, Any]:
        """The file's JSON document."""
        return {
            "version": STATE_VERSION,
            "settings": self.settings,
            "sources": self.sources,
            "counts": self.counts,
            "summary": self.summary,
        }

    def frames_done(self, sources: Sequence[Source], every: int) -> int:
        """How many wanted frames of `sources` earlier runs already processed."""
        done = 0
        for source in sources:
            entry = self.sources.get(source.key, {})
            if entry.get("done"):
                done += source.wanted_frames(every)
            else:
                done += -(-int(entry.get("next_frame", 0)) // every)
        return done

    def place(self, sources: Sequence[Source]) -> list[Source]:
        """`sources` with the stems their crops have in this face set.

        A source an earlier run recorded keeps its stem; a new one whose stem an earlier run gave another file (two
        clips named a.mp4 in different folders) gets the next free `stem-N`: it must not overwrite that file's crops.
        """
        taken = {str(entry.get("stem")) for entry in self.sources.values()}
        placed: list[Source] = []
        for source in sources:
            recorded = self.sources.get(source.key)
            if recorded is not None:
                placed.append(replace(source, stem=str(recorded.get("stem", source.stem))))
                continue
            stem = free_stem(source.stem, taken)
            taken.add(stem)
            placed.append(replace(source, stem=stem))
        return placed

    def entry(self, source: Source) -> dict[str, Any]:
        """The source's progress record (created on first use): stem, kind, next_frame, done."""
        return self.sources.setdefault(
            source.key, {"stem": source.stem, "kind": source.kind, "next_frame": 0, "done": False}
        )

    def start_frame(self, source: Source, every: int) -> int:
        """The first frame of `source` still to do: the first one `--every` keeps at or after next_frame."""
        return -(-int(self.entry(source).get("next_frame", 0)) // every) * every

    def frame_finished(self, source: Source, index: int) -> None:
        """Frame `index` of `source` is fully handled (its faces written or skipped)."""
        self.counts["frames"] += 1
        self.entry(source)["next_frame"] = index + 1

    def save(self, out: Path) -> None:
        """Write extract_state.json into `out` atomically."""
        atomic_write_text(out / STATE_NAME, json.dumps(self.to_json(), indent=1))
        self.saved_at = time.monotonic()

    def save_if_due(self, out: Path) -> None:
        """Save when the last save is more than SAVE_INTERVAL_S old."""
        if time.monotonic() - self.saved_at > SAVE_INTERVAL_S:
            self.save(out)
