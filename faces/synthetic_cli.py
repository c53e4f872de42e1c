"""`swapstream synth`: render a synthetic-identity video (and optionally its ground-truth landmarks)."""

from __future__ import annotations

import argparse
import json
import logging
from collections.abc import Iterator
from contextlib import ExitStack
import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from tqdm import tqdm

from faces.errors import FaceError
from faces.synthetic import IDENTITIES, Glasses, MotionRanges, SyntheticFrame, iter_sequence, write_sequence_video
from swapstream.atomic import atomic_path

logger = logging.getLogger(__name__)

VIDEO_SUFFIXES = (".mp4", ".mkv", ".mov", ".avi", ".y4m")


@dataclass(frozen=True)
class SynthConfig:
    """Settings of one `swapstream synth` run."""

    identity: str
    frames: int
    out: Path
    width: int = 640
    height: int = 480
    fps: float = 30.0
    seed: int = 0
    truth: Path | None = None
    """Where to write ground-truth keypoints/outline per frame (JSON lines), if anywhere."""
    glasses: bool = False
    """The identity wears glasses (faces.synthetic.Glasses) in every frame."""
    motion: MotionRanges = field(default_factory=MotionRanges)
    """How the person moves, blinks, talks and smiles (the defaults: as every test video and the demo)."""

    def __post_init__(self) -> None:
        if self.identity not in IDENTITIES:
            raise FaceError(f"--identity must be one of {', '.join(sorted(IDENTITIES))}, got {self.identity!r}")
        if self.frames < 1:
            raise FaceError(f"--frames must be >= 1, got {self.frames}")
        if self.width < 64 or self.height < 64 or self.width % 2 or self.height % 2:
            raise FaceError(f"--size must be WIDTHxHEIGHT, both even and >= 64, got {self.width}x{self.height}")
        if not 1 <= self.fps <= 240:
            raise FaceError(f"--fps must lie in [1, 240], got {self.fps}")
        if self.out.suffix.lower() not in VIDEO_SUFFIXES:
            raise FaceError(f"--out must end in one of {', '.join(VIDEO_SUFFIXES)}, got {self.out}")


def _parse_size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT (e.g. 640x480), got {text!r}") from exc
    return width, height


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of `swapstream synth`."""
    parser = argparse.ArgumentParser(
        prog="swapstream synth",
        description="Render a synthetic person moving like a webcam subject (pose, blinks, talking, light).",
    )
    parser.add_argument("--identity", required=True, choices=sorted(IDENTITIES), help="which synthetic person")
    parser.add_argument("--frames", type=int, default=100, help="number of frames (default 100)")
    parser.add_argument("--out", type=Path, required=True, help="video file: .mp4/.mkv/.mov (H.264), .avi, .y4m")
    parser.add_argument("--size", type=_parse_size, default=(640, 480), help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--fps", type=float, default=30.0, help="frame rate (default 30)")
    parser.add_argument("--seed", type=int, default=0, help="motion, background and noise seed (default 0)")
    parser.add_argument("--truth", type=Path, default=None, help="also write ground-truth landmarks (JSON lines)")
    still = MotionRanges()
    looks = parser.add_argument_group("appearance and expression (defaults: as every test video and the demo)")
    looks.add_argument("--glasses", action="store_true", help="the person wears glasses")
    looks.add_argument("--blink-every", type=_parse_seconds, default=still.blink_every_s, metavar="MIN,MAX",
                       help="seconds between blinks, drawn in this range (default %(default)s)")
    looks.add_argument("--talking", type=float, default=still.talking,
                       help="fraction of the time the mouth moves (default %(default)s)")
    looks.add_argument("--mouth-max", type=float, default=still.mouth_max,
                       help="widest mouth opening while talking; above 1 opens wide (max 1.5; default %(default)s)")
    looks.add_argument("--smile", type=float, default=still.smile, help="largest smile, 0..1 (default %(default)s)")
    looks.add_argument("--grin", type=float, default=still.grin,
                       help="how much smiling bares the teeth, 0..1 (default %(default)s: lips closed)")
    looks.add_argument("--squint", type=float, default=still.squint,
                       help="slow lid lowering between blinks, 0..1 (default %(default)s)")
    return parser


def _parse_seconds(text: str) -> tuple[float, float]:
    try:
        low, high = (float(v) for v in text.split(","))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected MIN,MAX seconds (e.g. 1,3), got {text!r}") from exc
    return low, high


def config_from_args(argv: list[str]) -> SynthConfig:
    """Parse *argv* into a validated SynthConfig."""
    args = build_parser().parse_args(argv)
    motion = MotionRanges(blink_every_s=args.blink_every, talking=args.talking, mouth_max=args.mouth_max,
                          smile=args.smile, grin=args.grin, squint=args.squint)
    return SynthConfig(
        identity=args.identity,
        frames=args.frames,
        out=args.out,
        width=args.size[0],
        height=args.size[1],
        fps=args.fps,
        seed=args.seed,
        truth=args.truth,
        glasses=args.glasses,
        motion=motion,
    )


def run(config: SynthConfig) -> Path:
    """Render and write the video of *config*; returns its path."""
    identity = IDENTITIES[config.identity]
    if config.glasses:
        identity = dataclasses.replace(identity, glasses=Glasses())
    frames = iter_sequence(
        identity,
        config.frames,
        (config.width, config.height),
        seed=config.seed,
        fps=config.fps,
        motion=config.motion,
    )
    with ExitStack() as stack:
        truth_file: TextIO | None = None
        if config.truth is not None:
            # The ground truth appears only with a complete video: both are written in the same block.
            truth_tmp = stack.enter_context(atomic_path(config.truth))
            truth_file = stack.enter_context(open(truth_tmp, "w", encoding="utf-8"))

        def frames_with_truth() -> Iterator[SyntheticFrame]:
            for index, frame in enumerate(tqdm(frames, total=config.frames, desc="render", unit="frame", disable=None)):
                if truth_file is not None:
                    truth_file.write(json.dumps(_truth_record(index, frame)) + "\n")
                yield frame

        return write_sequence_video(config.out, frames_with_truth(), config.fps)


def _truth_record(index: int, frame: SyntheticFrame) -> dict[str, object]:
    return {
        "frame": index,
        "keypoints": frame.keypoints.round(3).tolist(),
        "outline": frame.outline.round(2).tolist(),
        "pose": {"yaw": frame.pose.yaw, "pitch": frame.pose.pitch, "roll": frame.pose.roll},
        "expression": {"mouth_open": frame.expression.mouth_open, "blink": frame.expression.blink,
                       "smile": frame.expression.smile, "teeth": frame.expression.teeth},
    }


def main(argv: list[str]) -> int:
    """Entry point of `swapstream synth`."""
    config = config_from_args(argv)
    path = run(config)
    print(f"wrote {config.frames} frames of identity {config.identity} to {path}")
    if config.truth is not None:
        print(f"ground truth: {config.truth}")
    return 0
