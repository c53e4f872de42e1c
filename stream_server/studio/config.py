"""The Studio's settings: one frozen StudioConfig (where, how big, which interpreter) and the StudioRecipe a job
trains with, both built once when the server starts."""

from __future__ import annotations

import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stream_server.errors import ConfigError

MIB = 1024 * 1024
FACE_SIZES = (64, 128, 256)
BASE_NAME = "base.safetensors"
"""The base checkpoint the demo recipe writes beside the exported demo models (MODELS/base.safetensors)."""


@dataclass(frozen=True)
class StudioRecipe:
    """How a job extracts and trains: `swapstream extract` / `train faces` flags, and the limits a job is held to.

    The defaults are the demo recipe's (Makefile DEMO_TRAIN_FLAGS) so a job can start from the demo's base
    checkpoint; with a base of the job's face size the shape comes from the base instead of `shape`.
    """

    size: int = 64
    """Face size when a job asks for none."""
    steps: int = 3000
    """Training steps when a job asks for none."""
    max_steps: int = 50_000
    batch: int = 8
    lr: float = 1e-3
    shape: dict[str, int] = field(default_factory=lambda: {
        "encoder_channels": 16, "bottleneck": 128, "code_channels": 64, "decoder_channels": 64,
        "residual_blocks": 0})
    """`train faces` shape flags for a job without a base of its size."""
    checkpoint_every: int = 250
    """Steps between checkpoints, which are also preview grids (the page refreshes its preview with each); a job
    shorter than four times this checkpoints at each quarter of its steps instead."""
    frames_per_side: int = 600
    """Video frames read per side at most (`extract --every` is chosen to stay near this)."""
    min_faces: int = 20
    """Faces each side needs after extraction; fewer fails the job, saying how many were found."""
    photo_variants: int = 24
    """Warped pose / expression variants per photo when B has photos only (training.photo_poses)."""

    def __post_init__(self) -> None:
        if self.size not in FACE_SIZES:
            raise ConfigError(f"studio recipe: size must be one of {FACE_SIZES}, got {self.size}")
        for name in ("steps", "max_steps", "batch", "checkpoint_every", "frames_per_side", "min_faces"):
            if getattr(self, name) < 1:
                raise ConfigError(f"studio recipe: {name} must be at least 1, got {getattr(self, name)}")
        if not 0 <= self.photo_variants <= 500:
            raise ConfigError(f"studio recipe: photo_variants must be in 0..500, got {self.photo_variants}")
        if self.steps > self.max_steps:
            raise ConfigError(f"studio recipe: steps {self.steps} is over max_steps {self.max_steps}")
        if not self.lr > 0:
            raise ConfigError(f"studio recipe: lr must be positive, got {self.lr}")

    def checkpoint_interval(self, steps: int) -> int:
        """Steps between a job's checkpoints: `checkpoint_every`, or a quarter of a shorter job (so its page still
        shows progress and a restart mid-way has a checkpoint to resume from)."""
        return max(1, min(self.checkpoint_every, -(-steps // 4)))

    def shape_flags(self) -> list[str]:
        """The shape as `train faces` flags."""
        return [f"--{key.replace('_', '-')}={value}" for key, value in self.shape.items()]


@dataclass(frozen=True)
class StudioConfig:
    """Everything the Studio needs, validated once (from `serve --studio DIR --studio-max-mb N`)."""

    root: Path
    """DIR: every job lives in DIR/<job id>/."""
    max_upload_bytes: int = 500 * MIB
    """Largest upload (all files of a job together); enforced while the upload streams in."""
    reserve_bytes: int = 256 * MIB
    """Free space an upload must leave on DIR's disk; closer to full is refused as a full disk."""
    base: Path | None = None
    """Base checkpoint jobs start from (`train faces --base`), when its face size is the job's."""
    python: str = sys.executable
    """The interpreter of the child processes; it needs the training extra."""
    nice: int = 10
    """How much lower the children's CPU priority is than the server's, so live sessions keep their frame rate."""
    idle_scheduling: bool = True
    """Also run the children under Linux's SCHED_IDLE policy: CPU time only when nothing else wants it."""
    recipe: StudioRecipe = field(default_factory=StudioRecipe)
    poll_interval_s: float = 1.0
    """How often a running job's progress files are read for the event streams."""
    stop_grace_s: float = 30.0
    """How long a child has to stop (training writes a checkpoint) when the server stops, before it is killed."""

    def __post_init__(self) -> None:
        # children run in their job's folder: every path handed to them must be absolute
        object.__setattr__(self, "root", Path(self.root).absolute())
        if self.base is not None:
            object.__setattr__(self, "base", Path(self.base).absolute())
        if self.root.exists() and not self.root.is_dir():
            raise ConfigError(f"--studio {self.root}: exists and is not a folder")
        if self.max_upload_bytes < 1:
            raise ConfigError(f"--studio-max-mb must be at least 1, got {self.max_upload_bytes / MIB:g}")
        if self.reserve_bytes < 0:
            raise ConfigError(f"studio reserve must be >= 0 bytes, got {self.reserve_bytes}")
        if self.base is not None and not self.base.is_file():
            raise ConfigError(f"studio base checkpoint {self.base} does not exist")
        if not 0 <= self.nice <= 19:
            raise ConfigError(f"studio nice must be in 0..19, got {self.nice}")
        if self.poll_interval_s <= 0 or self.stop_grace_s <= 0:
            raise ConfigError("studio poll interval and stop grace must be > 0 s")

    @classmethod
    def for_server(cls, studio_dir: Path, max_mb: int, models_dir: Path | None, **overrides: Any) -> StudioConfig:
        """The config `serve --studio DIR --studio-max-mb N --models MODELS` means: jobs start from
        MODELS/base.safetensors when the models folder has one."""
        base = models_dir / BASE_NAME if models_dir is not None and (models_dir / BASE_NAME).is_file() else None
        return cls(root=studio_dir, max_upload_bytes=max_mb * MIB, base=base, **overrides)
