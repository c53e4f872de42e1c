"""`swapstream extract`: detect and align faces from videos, image folders and images into a face-set folder.

Output (docs/CONTRACTS.md): `DIR/<stem>_f<frame:06d>_<face>.png` (RGB crops made by `faces.align.align_face`),
`DIR/faces.jsonl` (one record per written face) and `DIR/extract_state.json` (resume point per source, counts and
the last run's summary). Every source is checked before anything is written; a crop appears only complete and its
record is appended only after the PNG exists, so an interrupted run resumes cleanly.

The jobs, one module each: the sources (`training.extract_sources`), resume bookkeeping
(`training.extract_state`), writing crops and records (`training.extract_writer`); this module detects, aligns
and filters faces frame by frame and holds the command line.
"""

from __future__ import annotations

import argparse
import logging
import time
from contextlib import closing
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import cv2
import numpy as np
from tqdm import tqdm

from faces.align import align_face
from swapstream.atomic import remove_leftovers
from training.errors import ExtractError
from training.extract_sources import Source, plan_sources
from training.extract_state import RESUME_SETTINGS, STATE_NAME, ExtractState
from training.extract_writer import METADATA_NAME, FaceSetWriter

if TYPE_CHECKING:
    from faces.detect import FaceDetector

__all__ = [
    "METADATA_NAME",
    "STATE_NAME",
    "ExtractConfig",
    "ExtractSummary",
    "extract_faces",
    "main",
    "plan_sources",
    "sharpness",
]

logger = logging.getLogger(__name__)

DEFAULT_MIN_SHARPNESS = 15.0
"""Variance of the Laplacian of the grey crop below which a crop counts as blurry (see docs/extract.md)."""


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


def sharpness(crop_rgb: np.ndarray) -> float:
    """Variance of the Laplacian of the grey image: low for blurry crops."""
    grey = cv2.cvtColor(crop_rgb, cv2.COLOR_RGB2GRAY)
    return float(cv2.Laplacian(grey, cv2.CV_64F).var())


class _FrameBudget:
    """--max-frames: how many more frames this run may process (None: no limit)."""

    def __init__(self, limit: int | None) -> None:
        self.left = limit

    @property
    def spent(self) -> bool:
        return self.left is not None and self.left <= 0

    def take(self) -> None:
        if self.left is not None:
            self.left -= 1


@dataclass
class _Run:
    """What one run carries from frame to frame."""

    config: ExtractConfig
    state: ExtractState
    writer: FaceSetWriter
    summary: ExtractSummary
    budget: _FrameBudget
    bar: tqdm


def extract_faces(config: ExtractConfig) -> ExtractSummary:
    """Run extraction for *config*: validate all sources, then detect, align and write crops, resuming if possible."""
    started = time.monotonic()
    sources = plan_sources(config.sources)
    out = config.out
    if out.exists() and not out.is_dir():
        raise ExtractError(f"--out {out} exists and is not a folder")
    if any(Path(src).is_dir() and Path(src).resolve() == out.resolve() for src in config.sources):
        raise ExtractError(f"--out {out} is also a source folder; choose another --out")
    state = ExtractState.load(out, config.resume_settings())
    sources = state.place(sources)
    summary = ExtractSummary(out=str(out), sources=len(sources))

    out.mkdir(parents=True, exist_ok=True)
    for leftover in out.glob(".*.tmp"):  # temporary files of versions before swapstream.atomic
        leftover.unlink()
    remove_leftovers(out)
    writer = FaceSetWriter(out, config.size)
    total = sum(source.wanted_frames(config.every) for source in sources)
    summary.frames_already_done = state.frames_done(sources, config.every)
    bar = tqdm(total=total, initial=min(summary.frames_already_done, total), desc="extract", unit="frame",
               disable=None if config.progress else True)
    run = _Run(config, state, writer, summary, _FrameBudget(config.max_frames), bar)
    try:
        with writer:
            for source in sources:
                if state.entry(source).get("done"):
                    continue
                if run.budget.spent:
                    summary.stopped_early = True
                    break
                if _extract_source(run, source):
                    state.entry(source)["done"] = True
    finally:
        bar.close()
        summary.faces_in_set = writer.faces_in_set
        summary.seconds = round(time.monotonic() - started, 2)
        state.summary = asdict(summary)
        # Saved also when interrupted, so the next run starts exactly after the last finished frame.
        state.save(out)
    logger.info(
        "extract %s: %d faces written, %d in the set", "stopped early" if summary.stopped_early else "done",
        summary.faces_written, summary.faces_in_set,
    )
    return summary


def _extract_source(run: _Run, source: Source) -> bool:
    """Process the source's remaining frames; True when it is finished, False when the frame budget ran out."""
    from faces.detect import FaceDetector  # mediapipe: imported only when there is work

    config = run.config
    start = run.state.start_frame(source, config.every)
    # Still images are unrelated to each other; video frames let the face mesh track between frames.
    static = source.kind == "image" or config.every > 1
    with FaceDetector(max_faces=config.max_faces, min_score=config.min_score, static_images=static) as detector:
        with closing(source.frames(config.every, start)) as frames:  # releases the video also when stopped early
            for index, frame in frames:
                if run.budget.spent:
                    run.summary.stopped_early = True
                    return False
                _extract_frame(run, detector, source, index, frame)
                run.summary.frames_processed += 1
                run.state.frame_finished(source, index)
                run.budget.take()
                run.bar.update(1)
                run.state.save_if_due(config.out)
    return True


def _extract_frame(run: _Run, detector: FaceDetector, source: Source, index: int, frame: np.ndarray) -> None:
    """Detect the frame's faces, align each, skip blurry ones and write the rest."""
    faces = detector.detect(frame)
    if not faces:
        run.summary.frames_without_face += 1
        run.state.counts["no_face"] += 1
    for face_index, face in enumerate(faces[: run.config.max_faces]):
        run.summary.faces_found += 1
        aligned = align_face(frame, face, run.config.size)
        score = sharpness(aligned.crop)
        if score < run.config.min_sharpness:
            run.summary.faces_blurry += 1
            run.state.counts["blurry"] += 1
            continue
        if run.writer.add(source, index, face_index, face, aligned, score):
            run.summary.faces_written += 1


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
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar (also off when stderr is not a terminal)")
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
