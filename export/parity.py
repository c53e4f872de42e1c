"""Checks at export: `onnx.checker`, then ONNX Runtime (CPU) against PyTorch on random and real inputs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import torch
from torch import nn

from export.errors import ExportError, ParityError

log = logging.getLogger(__name__)

FloatArray = npt.NDArray[np.float32]

FP32_TOLERANCE = 1e-4
FP16_TOLERANCE = 1e-2


@dataclass(frozen=True)
class ParityReport:
    """Largest absolute difference between ONNX Runtime and PyTorch over all outputs, per input set."""

    max_abs_random: float
    max_abs_real: float
    tolerance: float

    @property
    def worst(self) -> float:
        """The larger of the two figures."""
        return max(self.max_abs_random, self.max_abs_real)


def check_onnx_file(path: Path) -> None:
    """Run `onnx.checker` (with shape inference) on a written graph; ExportError naming the file if it fails."""
    try:
        onnx.checker.check_model(str(path), full_check=True)
    except (onnx.checker.ValidationError, onnx.shape_inference.InferenceError) as exc:
        raise ExportError(f"{path}: onnx.checker rejected the graph: {exc}") from exc


def cpu_session(path: Path) -> ort.InferenceSession:
    """An ONNX Runtime CPU session of a file, errors naming it."""
    try:
        return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own untyped exceptions
        raise ExportError(f"{path}: ONNX Runtime cannot load the graph: {exc}") from exc


def torch_outputs(module: nn.Module, batch: FloatArray) -> list[FloatArray]:
    """The PyTorch module's outputs on `batch`, as float32 numpy arrays."""
    with torch.no_grad():
        result = module(torch.from_numpy(batch))
    outputs = result if isinstance(result, tuple) else (result,)
    return [output.detach().float().cpu().numpy() for output in outputs]


def max_abs_difference(ours: list[FloatArray], reference: list[FloatArray], label: str) -> float:
    """Largest |ours - reference| over paired outputs; ParityError if their count or shapes differ."""
    if len(ours) != len(reference):
        raise ParityError(f"{label}: {len(ours)} outputs, PyTorch gives {len(reference)}")
    worst = 0.0
    for index, (a, b) in enumerate(zip(ours, reference)):
        if a.shape != b.shape:
            raise ParityError(f"{label}: output {index} has shape {a.shape}, PyTorch gives {b.shape}")
        if not np.all(np.isfinite(a)):
            raise ParityError(f"{label}: output {index} holds NaN or infinity")
        worst = max(worst, float(np.max(np.abs(a.astype(np.float64) - b.astype(np.float64)))))
    return worst


def check_parity(
    path: Path,
    reference: nn.Module,
    input_name: str,
    random_batch: FloatArray,
    real_batch: FloatArray,
    tolerance: float,
) -> ParityReport:
    """Compare ONNX Runtime CPU on `path` with the PyTorch `reference` on both batches; ParityError beyond `tolerance`."""
    session = cpu_session(path)
    figures = []
    for batch in (random_batch, real_batch):
        ours = session.run(None, {input_name: batch})
        figures.append(max_abs_difference(ours, torch_outputs(reference, batch), str(path)))
    report = ParityReport(max_abs_random=figures[0], max_abs_real=figures[1], tolerance=tolerance)
    if report.worst >= tolerance:
        raise ParityError(
            f"{path}: ONNX Runtime differs from PyTorch by {report.worst:.3g} (random {report.max_abs_random:.3g}, "
            f"real {report.max_abs_real:.3g}); the limit is {tolerance:g}"
        )
    log.info("%s: parity ok, max abs %.2e random / %.2e real (limit %g)", path.name,
             report.max_abs_random, report.max_abs_real, tolerance)
    return report
