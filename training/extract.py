"""`swapstream extract`: detect and align faces from videos, image folders and images into a face-set folder.

Output (docs/CONTRACTS.md): `DIR/<stem>_f<frame:06d>_<face>.png` (RGB crops made by `faces.align.align_face`),
`DIR/faces.jsonl` (one record per written face) and `DIR/extract_state.json` (resume point per source, counts and
the last run's summary). Every source is checked before anything is written; a crop appears only complete
(temp file + rename) and its record is appended only after the PNG exists, so an interrupted run resumes cleanly.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import cv2
import numpy as np

from faces.errors import InputError
from faces.media import check_image, is_image_path, iter_video_frames, list_images, probe_video, read_image
from training.errors import ExtractError

logger = logging.getLogger(__name__)

METADATA_NAME = "faces.jsonl"
STATE_NAME = "extract_state.json"
STATE_VERSION = 1
DEFAULT_MIN_SHARPNESS = 15.0
"""Variance of the Laplacian of the grey crop below which a crop counts as blurry (see docs/extract.md)."""
VIDEO_SUFFIXES = frozenset({".mp4", ".mkv", ".mov", ".avi", ".webm", ".m4v", ".y4m", ".mpg", ".mpeg", ".wmv", ".flv"})
STATE_SAVE_INTERVAL_S = 1.0
# Settings that change what a frame yields: a rerun must use the same ones to continue a face set.
RESUME_SETTINGS = ("size", "every", "min_sharpness", "max_faces", "min_score")


@dataclass(frozen=True)
class ExtractConfig:
    """Settings of one `swapstream extract` run."""

    sources: tuple[Path, ...]
    out: Path
    size: int = 128
    """Side of the aligned square crops in pixels (--size)."""
    every: int = 1
    """Use every N-th video frame (--every)."""
    min_sharpness: float = DEFAULT_MIN_SHARPNESS
    """Variance-of-Laplacian threshold below which a crop is skipped as blurry (--min-sharpness)."""
    max_faces: int = 1
    """Most faces taken per frame, highest detector score first (--max-faces)."""
    min_score: float = 0.5
    """Detector confidence threshold (--min-score)."""
    max_frames: int | None = None
    """Stop after this many frames in this run, to continue later (--max-frames)."""
    progress: bool = True
    """Show a progress bar (--no-progress turns it off)."""

    def __post_init__(self) -> None:
        if not self.sources:
            raise ExtractError("give at least one SRC (video file, image folder or image)")
        if not 16 <= self.size <= 2048:
            raise ExtractError(f"--size must lie in [16, 2048], got {self.size}")
        if self.every < 1:
            raise ExtractError(f"--every must be >= 1, got {self.every}")
        if not self.min_sharpness >= 0:
            raise ExtractError(f"--min-sharpness must be >= 0, got {self.min_sharpness}")
        if self.max_faces < 1:
            raise ExtractError(f"--max-faces must be >= 1, got {self.max_faces}")
        if not 0.0 <= self.min_score <= 1.0:
            raise ExtractError(f"--min-score must lie in [0, 1], got {self.min_score}")
        if self.max_frames is not None and self.max_frames < 1:
            raise ExtractError(f"--max-frames must be >= 1, got {self.max_frames}")

    def resume_settings(self) -> dict[str, Any]:
        """The settings a continued face set must share with the run that started it."""
        return {name: getattr(self, name) for name in RESUME_SETTINGS}


@dataclass(frozen=True)
class Source:
    """One checked input: a video, or a single image (folders are expanded into their images)."""

    path: Path
    kind: Literal["video", "image"]
    stem: str
    """Unique file-name stem of its crops in the face set."""
    frame_count: int

    @property
    def key(self) -> str:
        """The source's identity in faces.jsonl and the state file: its absolute path."""
        return str(self.path)


@dataclass
class ExtractSummary:
    """What a run did (this run's numbers) and what the face set now holds."""

    out: str
    sources: int = 0
    frames_processed: int = 0
    frames_already_done: int = 0
    frames_without_face: int = 0
    faces_found: int = 0
    faces_blurry: int = 0
    faces_written: int = 0
    faces_in_set: int = 0
    stopped_early: bool = False
    seconds: float = 0.0

    def lines(self) -> list[str]:
        """Human-readable summary lines."""
        status = "stopped early (rerun to continue)" if self.stopped_early else "complete"
        return [
            f"extract {status}: {self.sources} source(s) -> {self.out}",
            f"  frames processed {self.frames_processed} (already done before: {self.frames_already_done})",
            f"  frames without a face {self.frames_without_face}",
            f"  faces found {self.faces_found}, skipped as blurry {self.faces_blurry}, written {self.faces_written}",
            f"  faces in the set now {self.faces_in_set}; {self.seconds:.1f} s",
        ]


@dataclass
class _State:
    """Contents of extract_state.json."""

    settings: dict[str, Any]
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=lambda: {"frames": 0, "no_face": 0, "blurry": 0})
    summary: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "settings": self.settings,
            "sources": self.sources,
            "counts": self.counts,
            "summary": self.summary,
        }


def sharpness(crop_rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: low for blurry crops."""
    grey = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


def _safe_stem(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text).strip("._") or "source"


def plan_sources(paths: tuple[Path, ...] | list[Path]) -> list[Source]:
    """Check every path (opening each video, decoding each image) and list the sources; InputError names a bad one."""
    found: list[tuple[Path, Literal["video", "image"], int]] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(f"source not found: {path}")
        if path.is_dir():
            for image in list_images(path):
                found.append((check_image(image), "image", 1))
        elif is_image_path(path):
            found.append((check_image(path), "image", 1))
        elif path.suffix.lower() in VIDEO_SUFFIXES:
            found.append((path, "video", probe_video(path).frame_count))
        else:
            found.append(_probe_unknown(path))
    sources: list[Source] = []
    seen: set[Path] = set()
    stems: set[str] = set()
    for path, kind, count in found:
        resolved = path.resolve()
        if resolved in seen:
            continue
        seen.add(resolved)
        stem = base = _safe_stem(path.stem)
        n = 2
        while stem in stems:
            stem, n = f"{base}-{n}", n + 1
        stems.add(stem)
        sources.append(Source(path=resolved, kind=kind, stem=stem, frame_count=count))
    return sources


def _probe_unknown(path: Path) -> tuple[Path, Literal["video", "image"], int]:
    """A file with an unfamiliar suffix: an image if it decodes as one, else a video if it opens as one."""
    try:
        return check_image(path), "image", 1
    except InputError:
        pass
    try:
        return path, "video", probe_video(path).frame_count
    except InputError as exc:
        raise InputError(f"neither a readable image nor a readable video: {path}") from exc


def _read_state(out: Path, config: ExtractConfig) -> _State:
    state_path = out / STATE_NAME
    if not state_path.exists():
        return _State(settings=config.resume_settings())
    try:
        data = json.loads(state_path.read_text(encoding="utf-8"))
        settings = data["settings"]
        state = _State(settings=settings, sources=data["sources"], counts=data["counts"], summary=data.get("summary"))
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise ExtractError(f"cannot read {state_path} ({exc}); remove it or use another --out") from exc
    wanted = config.resume_settings()
    changed = [name for name in RESUME_SETTINGS if settings.get(name) != wanted[name]]
    if changed:
        flags = ", ".join(f"--{name.replace('_', '-')} {settings.get(name)}" for name in changed)
        raise ExtractError(f"{out} was extracted with {flags}; rerun with the same flags or choose another --out")
    return state


def _write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(data, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def _load_written(meta_path: Path) -> set[tuple[str, int, int]]:
    """Keys (source, frame, face_index) already in faces.jsonl; a torn last line (crash mid-write) is cut off."""
    written: set[tuple[str, int, int]] = set()
    if not meta_path.exists():
        return written
    data = meta_path.read_bytes()
    good_end = 0
    lines = data.split(b"\n")
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            good_end += len(line) + 1
            continue
        try:
            record = json.loads(line)
            written.add((record["source"], int(record["frame"]), int(record["face_index"])))
        except (ValueError, KeyError, TypeError) as exc:
            if number == len(lines) or (number == len(lines) - 1 and not lines[-1]):
                logger.warning("%s: dropping a torn last line left by an interrupted run", meta_path)
                break
            raise ExtractError(f"{meta_path} line {number} is not a face record; remove the folder or fix it") from exc
        good_end += len(line) + 1
    if good_end < len(data):
        with open(meta_path, "r+b") as handle:
            handle.truncate(good_end)
    elif data and not data.endswith(b"\n"):
        # A whole record whose newline was lost: end the line so the next record starts on its own.
        with open(meta_path, "ab") as handle:
            handle.write(b"\n")
    return written


def _write_png_atomic(path: Path, crop_rgb: np.ndarray) -> None:
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ExtractError(f"cannot encode {path}")
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(encoded.tobytes())
    os.replace(tmp, path)


def _frames(source: Source, every: int, start: int) -> Iterator[tuple[int, np.ndarray]]:
    if source.kind == "image":
        if start == 0:
            yield 0, read_image(source.path)
        return
    yield from iter_video_frames(source.path, every=every, start=start)


def _first_wanted(index: int, every: int) -> int:
    """The first frame index >= *index* that --every N keeps (frames 0, N, 2N, ...)."""
    return -(-index // every) * every


def extract_faces(config: ExtractConfig) -> ExtractSummary:
    """Run extraction for *config*: validate all sources, then detect, align and write crops, resuming if possible."""
    from faces.align import align_face, transform_points
    from faces.detect import FaceDetector

    started = time.monotonic()
    sources = plan_sources(config.sources)
    out = config.out
    if out.exists() and not out.is_dir():
        raise ExtractError(f"--out {out} exists and is not a folder")
    if any(Path(src).is_dir() and Path(src).resolve() == out.resolve() for src in config.sources):
        raise ExtractError(f"--out {out} is also a source folder; choose another --out")
    state = _read_state(out, config) if out.is_dir() else _State(settings=config.resume_settings())
    summary = ExtractSummary(out=str(out), sources=len(sources))

    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob(".*.tmp"):
        leftover.unlink()
    meta_path = out / METADATA_NAME
    written = _load_written(meta_path)
    state_path = out / STATE_NAME

    total = sum(-(-s.frame_count // config.every) if s.kind == "video" else 1 for s in sources)
    done_before = 0
    for source in sources:
        entry = state.sources.get(source.key, {})
        if entry.get("done"):
            done_before += -(-source.frame_count // config.every) if source.kind == "video" else 1
        else:
            done_before += -(-int(entry.get("next_frame", 0)) // config.every)
    summary.frames_already_done = done_before

    from tqdm import tqdm

    bar = tqdm(total=total, initial=min(done_before, total), desc="extract", unit="frame", disable=not config.progress)
    last_save = time.monotonic()
    budget = config.max_frames
    try:
        with open(meta_path, "a", encoding="utf-8") as meta:
            for source in sources:
                entry = state.sources.setdefault(
                    source.key, {"stem": source.stem, "kind": source.kind, "next_frame": 0, "done": False}
                )
                if entry.get("done"):
                    continue
                if budget is not None and budget <= 0:
                    summary.stopped_early = True
                    break
                start = _first_wanted(int(entry.get("next_frame", 0)), config.every)
                # Still images are unrelated to each other; video frames let the face mesh track between frames.
                with FaceDetector(
                    max_faces=config.max_faces,
                    min_score=config.min_score,
                    static_images=source.kind == "image" or config.every > 1,
                ) as detector:
                    finished = True
                    frames = _frames(source, config.every, start)
                    for index, frame in frames:
                        if budget is not None and budget <= 0:
                            finished = False
                            summary.stopped_early = True
                            break
                        faces = detector.detect(frame)
                        if not faces:
                            summary.frames_without_face += 1
                            state.counts["no_face"] += 1
                        for face_index, face in enumerate(faces[: config.max_faces]):
                            summary.faces_found += 1
                            aligned = align_face(frame, face, config.size)
                            score = sharpness(aligned.crop)
                            if score < config.min_sharpness:
                                summary.faces_blurry += 1
                                state.counts["blurry"] += 1
                                continue
                            key = (source.key, index, face_index)
                            if key in written:
                                continue
                            name = f"{source.stem}_f{index:06d}_{face_index}.png"
                            _write_png_atomic(out / name, aligned.crop)
                            record = {
                                "file": name,
                                "source": source.key,
                                "frame": index,
                                "face_index": face_index,
                                "score": round(face.score, 4),
                                "size": config.size,
                                "matrix": aligned.matrix.tolist(),
                                "keypoints": transform_points(face.keypoints, aligned.matrix).round(3).tolist(),
                                "landmarks": None
                                if face.mesh is None
                                else transform_points(face.mesh, aligned.matrix).round(3).tolist(),
                                "sharpness": round(score, 2),
                            }
                            meta.write(json.dumps(record) + "\n")
                            meta.flush()
                            written.add(key)
                            summary.faces_written += 1
                        summary.frames_processed += 1
                        state.counts["frames"] += 1
                        entry["next_frame"] = index + 1
                        if budget is not None:
                            budget -= 1
                        bar.update(1)
                        if time.monotonic() - last_save > STATE_SAVE_INTERVAL_S:
                            _write_json_atomic(state_path, state.to_json())
                            last_save = time.monotonic()
                    frames.close()  # releases the video now, also when stopped early
                    if finished:
                        entry["done"] = True
    finally:
        bar.close()
        summary.faces_in_set = len(written)
        summary.seconds = round(time.monotonic() - started, 2)
        state.summary = asdict(summary)
        # Saved also when interrupted, so the next run starts exactly after the last finished frame.
        _write_json_atomic(state_path, state.to_json())
    logger.info(
        "extract %s: %d faces written, %d in the set", "stopped early" if summary.stopped_early else "done",
        summary.faces_written, summary.faces_in_set,
    )
    return summary


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `swapstream extract`."""
    parser = argparse.ArgumentParser(
        prog="swapstream extract",
        description="Detect, align and save faces from videos, image folders and images (resumable).",
    )
    parser.add_argument("sources", nargs="+", type=Path, metavar="SRC", help="video file, image folder or image")
    parser.add_argument("--out", type=Path, required=True, help="face-set folder (created; reruns continue it)")
    parser.add_argument("--size", type=int, default=128, help="aligned crop size in pixels (default 128)")
    parser.add_argument("--every", type=int, default=1, help="use every N-th video frame (default 1)")
    parser.add_argument(
        "--min-sharpness",
        type=float,
        default=DEFAULT_MIN_SHARPNESS,
        help=f"skip crops whose variance of Laplacian is below this (default {DEFAULT_MIN_SHARPNESS:g}; 0 keeps all)",
    )
    parser.add_argument("--max-faces", type=int, default=1, help="most faces per frame (default 1)")
    parser.add_argument("--min-score", type=float, default=0.5, help="detector confidence threshold (default 0.5)")
    parser.add_argument("--max-frames", type=int, default=None, help="stop after N frames; a rerun continues")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def config_from_args(argv: list[str]) -> ExtractConfig:
    """Parse *argv* into a validated ExtractConfig."""
    args = build_parser().parse_args(argv)
    return ExtractConfig(
        sources=tuple(args.sources),
        out=args.out,
        size=args.size,
        every=args.every,
        min_sharpness=args.min_sharpness,
        max_faces=args.max_faces,
        min_score=args.min_score,
        max_frames=args.max_frames,
        progress=not args.no_progress,
    )


def main(argv: list[str]) -> int:
    """Entry point of `swapstream extract`."""
    summary = extract_faces(config_from_args(argv))
    print("\n".join(summary.lines()))
    return 0
