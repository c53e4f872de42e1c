"""The export command's configuration, built once from the command line and passed down."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from export.errors import ExportError

MIN_OPSET = 17
# The dynamo exporter writes opset 18 natively and converts down; newer than this onnx knows is an error.
MAX_OPSET = 21


@dataclass(frozen=True)
class ExportConfig:
    """What `swapstream export` should do.

    runs: training run folders (face and digit runs may be mixed).
    out: the models folder that receives the ONNX files and manifest.json.
    fp16: export half-precision graphs (float32 inputs and outputs) instead of fp32 ones.
    tensorrt: TensorRT engines are required (an error where TensorRT is missing); False builds them only
        when TensorRT imports, and says it skipped them otherwise.
    max_batch: the largest batch the TensorRT profile and the Triton config accept.
    triton: also write a Triton Inference Server model repository under `out/triton`.
    opset: ONNX opset of the written graphs.
    timing_cache: TensorRT timing cache file, read before and written after every build.
    """

    runs: tuple[Path, ...]
    out: Path
    fp16: bool = False
    tensorrt: bool = False
    max_batch: int = 16
    triton: bool = False
    opset: int = MIN_OPSET
    timing_cache: Path | None = None

    def __post_init__(self) -> None:
        if not self.runs:
            raise ExportError("RUN: give at least one training run folder")
        if self.max_batch < 1:
            raise ExportError(f"--max-batch must be at least 1, got {self.max_batch}")
        if not MIN_OPSET <= self.opset <= MAX_OPSET:
            raise ExportError(f"--opset must be between {MIN_OPSET} and {MAX_OPSET}, got {self.opset}")
        for run in self.runs:
            if not run.is_dir():
                raise ExportError(f"RUN {run}: not a folder (expected a training run with checkpoint.safetensors)")
        if self.out.exists() and not self.out.is_dir():
            raise ExportError(f"--out {self.out}: exists and is not a folder")

    @property
    def timing_cache_path(self) -> Path:
        """Where the TensorRT timing cache lives (shared by every build into this models folder)."""
        return self.timing_cache if self.timing_cache is not None else self.out / "tensorrt.timing-cache"
