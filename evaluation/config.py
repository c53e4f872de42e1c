"""The one frozen config of `swapstream evaluate`, built by its CLI and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from evaluation.errors import EvaluationError
from faces.color import COLOR_MODES, ColorMode

MAX_FEATHER = 64  # the server's own limit on the 'feather' session option


@dataclass(frozen=True)
class EvaluateConfig:
    """Everything one evaluation run needs, validated once."""

    models_dir: Path
    """Folder holding manifest.json."""
    a_sources: tuple[Path, ...]
    """A's held-out media: videos, photos, folders of photos (each a source of its own in the report)."""
    out: Path
    """Report folder: report.json, summary.txt, summary.png."""
    model: str = "a2b"
    """Swap model by manifest name or direction, as the server's 'model' option."""
    b_sources: tuple[Path, ...] = ()
    """B's reference media for the identity judge; without them the identity figures are left out."""
    max_frames: int = 0
    """Most frames taken from each A video (after --every); 0: all."""
    every: int = 1
    """Take every N-th frame of A's videos (the pipeline still sees them at the video's frame rate / N)."""
    b_frames: int = 60
    """Most B frames described by the judge (spread evenly over B's sources)."""
    still_frames: int = 30
    """Length of the still clip for the temporal-stability check; 0 skips it."""
    still_noise: float = 2.0
    """Sensor noise (grey levels, standard deviation) added to each frame of the still clip, as a webcam has."""
    color: ColorMode = "rct"
    feather: int = 4
    keep_mouth: bool = False
    """The server's keep_mouth option: A's own mouth left in the swapped face."""
    detect_every: int | None = None
    """Re-detect every N frames as `swapstream serve --detect-every`; None: the server's default."""
    samples: int = 6
    """Frames shown in the PNG's input/output grid."""
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.a_sources:
            raise EvaluationError("--a needs at least one source (a video, a photo or a folder of photos)")
        for flag, value, low in (("--max-frames", self.max_frames, 0), ("--every", self.every, 1),
                                 ("--b-frames", self.b_frames, 2), ("--still-frames", self.still_frames, 0),
                                 ("--samples", self.samples, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise EvaluationError(f"{flag} must be an integer >= {low}, got {value!r}")
        if 0 < self.still_frames < 3:
            raise EvaluationError(f"--still-frames must be 0 (skip) or >= 3, got {self.still_frames}")
        if not 0.0 <= self.still_noise <= 50.0:
            raise EvaluationError(f"--still-noise must be in 0..50 grey levels, got {self.still_noise}")
        if self.color not in COLOR_MODES:
            raise EvaluationError(f"--color must be one of {', '.join(COLOR_MODES)}, got {self.color!r}")
        if isinstance(self.feather, bool) or not 0 <= self.feather <= MAX_FEATHER:
            raise EvaluationError(f"--feather must be an integer in 0..{MAX_FEATHER} px, got {self.feather!r}")
        if not isinstance(self.keep_mouth, bool):
            raise EvaluationError(f"keep_mouth must be true or false, got {self.keep_mouth!r}")
        if self.detect_every is not None and self.detect_every < 1:
            raise EvaluationError(f"--detect-every must be >= 1, got {self.detect_every}")
        if Path(self.out).exists() and not Path(self.out).is_dir():
            raise EvaluationError(f"--out {self.out} is a file; give a folder for the report")
        if not (Path(self.models_dir) / "manifest.json").is_file():
            raise EvaluationError(f"--models {self.models_dir}: no manifest.json there "
                                  "(make one with `swapstream export`)")
