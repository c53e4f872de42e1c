"""What a perfect swap would score on the expression figures of `swapstream evaluate`, on the demo's synthetic pair.

The synthetic people move by seed: `synth --identity b --seed S` performs exactly what `--identity a --seed S`
does (pose, blinks, mouth, smile, light, background). B's frame is then what a perfect A->B swap of A's frame
would be, and A's frames measured against B's twins with the same mediapipe mesh as the evaluation give the
figures of a swap that changed nothing but the person: the ceiling the measure itself sets for this pair (two
face shapes make mediapipe read the same lid or lip a little differently).

    python -m evaluation.twin_ceiling [--seeds 101 103] [--frames 120] [--fps 15]

The frames are measured as rendered (the evaluation reads H.264 clips, which differ by compression only).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass

import numpy as np

from evaluation.face_measure import FaceMeasurer
from evaluation.metrics import Following, following
from faces.synthetic import IDENTITIES, iter_sequence

FRAME_SIZE = (640, 480)


@dataclass(frozen=True)
class TwinFigures:
    """B's twin frames measured against A's: the expression figures of a perfect swap."""

    seed: int
    pairs: int
    """Frames where mediapipe measured both A's face and its twin's."""
    mouth: Following
    eye: Following


def measure_person(identity: str, seed: int, frames: int, fps: float,
                    measurer: FaceMeasurer) -> list[tuple[float, float] | None]:
    """(mouth opening, eye opening) of each rendered frame, None where mediapipe finds no face."""
    series: list[tuple[float, float] | None] = []
    for frame in iter_sequence(IDENTITIES[identity], frames, FRAME_SIZE, seed=seed, fps=fps):
        measure = measurer.measure(frame.frame)
        series.append(None if measure is None else (measure.mouth_opening, measure.eye_opening))
    return series


def twin_figures(seed: int, frames: int, fps: float, measurer: FaceMeasurer) -> TwinFigures:
    """A's and B's frames of one seed, measured and paired."""
    return pair_figures(seed, measure_person("a", seed, frames, fps, measurer),
                        measure_person("b", seed, frames, fps, measurer))


def pair_figures(seed: int, a_series: list[tuple[float, float] | None],
                 b_series: list[tuple[float, float] | None]) -> TwinFigures:
    """Mouth and eye following of B's series against A's, over the frames measured in both."""
    pairs = np.array([a + b for a, b in zip(a_series, b_series) if a is not None and b is not None])
    if len(pairs) == 0:
        raise ValueError(f"seed {seed}: mediapipe measured no frame of both people")
    a_mouth, a_eye, b_mouth, b_eye = (pairs[:, column].tolist() for column in range(4))
    return TwinFigures(seed, len(pairs), following(a_mouth, b_mouth), following(a_eye, b_eye))


def _number(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evaluation.twin_ceiling", description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[101, 103],
                        help="synth seeds of the held-out clips (default 101 103: docs/quality.md's a101, a103)")
    parser.add_argument("--frames", type=int, default=120, help="frames per clip (default 120)")
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate the clips were made at (default 15)")
    args = parser.parse_args(argv)
    if args.frames < 3:
        parser.error(f"--frames must be at least 3, got {args.frames}")
    print("a perfect swap (B performing A's motion), measured as swapstream evaluate measures a swap:")
    print(f"{'seed':>6} {'pairs':>6} {'mouth corr':>11} {'mouth range':>12} {'eye corr':>9} {'eye range':>10}")
    with FaceMeasurer() as measurer:
        for seed in args.seeds:
            twin = twin_figures(seed, args.frames, args.fps, measurer)
            print(f"{twin.seed:>6} {twin.pairs:>6} {_number(twin.mouth.correlation):>11} "
                  f"{_number(twin.mouth.range_ratio):>12} {_number(twin.eye.correlation):>9} "
                  f"{_number(twin.eye.range_ratio):>10}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
