"""PyTorch -> ONNX: one graph per servable model, with a dynamic batch axis.

A face run becomes two graphs, `swap_a2b` (shared encoder + decoder B: A's pose with B's face) and `swap_b2a`
(shared encoder + decoder A); a digit run becomes `digits` (N x 256 -> N x 10 logits).
The dynamo exporter (torch.export + onnxscript) is tried first; where it fails the TorchScript exporter is used,
and the log and the manifest say which one wrote the file.
"""

from __future__ import annotations

import contextlib
import copy
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Literal

import numpy as np
import numpy.typing as npt
import onnx
import torch
from torch import nn

from export.errors import ExportError
from export.real_inputs import real_digit_batch, real_face_batch
from swapstream.manifest import Direction, ModelKind
from training.checkpoint import LoadedRun
from training.swap_model import Side, SwapAutoencoder

log = logging.getLogger(__name__)

Exporter = Literal["dynamo", "torchscript"]
BATCH_AXIS = "batch"
# Which decoder each direction uses: a2b encodes A and decodes with B's decoder.
_DECODER_OF: tuple[tuple[Direction, Side], ...] = (("a2b", "b"), ("b2a", "a"))
# Traced with a batch of 2: a batch of 1 would let the exporter specialise the batch axis to 1.
_EXAMPLE_BATCH = 2


class SwapDirection(nn.Module):
    """Shared encoder + one decoder of a swap model as one face -> (rgb, mask) graph."""

    def __init__(self, model: SwapAutoencoder, decoder_side: Side) -> None:
        super().__init__()
        self.model = model
        self.decoder_side = decoder_side

    def forward(self, face: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model.decode(self.model.encode(face), self.decoder_side)


class DigitsGraph(nn.Module):
    """The digit model as one pixels -> logits graph."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        logits: torch.Tensor = self.model(pixels)
        return logits


class HalfPrecision(nn.Module):
    """Runs a float32 graph in float16 inside while keeping float32 inputs and outputs (the server's contract)."""

    def __init__(self, graph: nn.Module) -> None:
        super().__init__()
        # not `self.graph`: torch.export unlifts into a GraphModule, whose `.graph` that name would shadow
        self.half_graph = copy.deepcopy(graph).half().eval()

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        outputs: torch.Tensor | tuple[torch.Tensor, ...] = self.half_graph(x.half())
        if isinstance(outputs, tuple):
            return tuple(output.float() for output in outputs)
        return outputs.float()


@dataclass(frozen=True)
class GraphPlan:
    """One graph to export from a run: its manifest name, wrapper module and I/O names."""

    name: str
    kind: ModelKind
    direction: Direction | None
    module: nn.Module
    input_name: str
    output_names: tuple[str, ...]
    input_tail: tuple[int, ...]
    face_size: int | None
    output_semantics: str | None
    run: LoadedRun

    def random_batch(self, batch: int, seed: int) -> npt.NDArray[np.float32]:
        """Uniform [0,1) float32 inputs of this graph's shape (both models take values in [0,1])."""
        rng = np.random.default_rng(seed)
        return rng.random((batch, *self.input_tail), dtype=np.float32)

    def real_batch(self) -> npt.NDArray[np.float32]:
        """Real inputs of this graph's kind (an aligned face photo, or handwritten digits)."""
        if self.kind == "swap":
            assert self.face_size is not None
            return real_face_batch(self.face_size)
        return real_digit_batch()

    @property
    def file_stem(self) -> str:
        """File name stem for this graph: the name with anything but letters, digits, `._-` made `_`."""
        return "".join(ch if ch.isalnum() or ch in "._-" else "_" for ch in self.name)


def _face_size(run: LoadedRun) -> int:
    size = run.model_config.get("face_size", getattr(run.model, "face_size", None))
    if not isinstance(size, int) or size <= 0:
        raise ExportError(f"run {run.run_dir}: its model_config has no usable face_size ({size!r})")
    return size


def plan_graphs(run: LoadedRun, prefix: str) -> list[GraphPlan]:
    """The graphs a run becomes; names get `prefix` (e.g. `"demo-faces."`) when several runs of a kind are exported."""
    if run.kind == "swap":
        size = _face_size(run)
        if not isinstance(run.model, SwapAutoencoder):
            raise ExportError(f"run {run.run_dir}: a swap run's model is a {type(run.model).__name__}, "
                              "not a SwapAutoencoder")
        model = run.model
        return [
            GraphPlan(
                name=f"{prefix}swap_{direction}",
                kind="swap",
                direction=direction,
                module=SwapDirection(model, decoder_side).eval(),
                input_name="face",
                output_names=("rgb", "mask"),
                input_tail=(3, size, size),
                face_size=size,
                output_semantics=None,
                run=run,
            )
            for direction, decoder_side in _DECODER_OF
        ]
    if run.kind == "digits":
        return [
            GraphPlan(
                name=f"{prefix}digits",
                kind="digits",
                direction=None,
                module=DigitsGraph(run.model).eval(),
                input_name="pixels",
                output_names=("logits",),
                input_tail=(256,),
                face_size=None,
                output_semantics="logits",
                run=run,
            )
        ]
    raise ExportError(f"run {run.run_dir}: unknown model kind {run.kind!r}")


def export_graph(module: nn.Module, plan: GraphPlan, path: Path, opset: int) -> Exporter:
    """Write `module` (plan's graph, or its fp16 variant) to `path`; returns which exporter succeeded."""
    example = torch.from_numpy(plan.random_batch(_EXAMPLE_BATCH, seed=0))
    module = module.eval()
    try:
        _export_dynamo(module, example, plan, path, opset)
        exporter: Exporter = "dynamo"
    except Exception as exc:  # the dynamo exporter fails in many foreign ways; any failure means: try the other
        log.warning("%s: dynamo exporter failed (%s: %s); falling back to the TorchScript exporter",
                    plan.name, type(exc).__name__, str(exc).splitlines()[0] if str(exc) else "")
        path.unlink(missing_ok=True)
        try:
            _export_torchscript(module, example, plan, path, opset)
        except Exception as exc2:
            raise ExportError(f"{plan.name} (run {plan.run.run_dir}): ONNX export failed with both exporters: "
                              f"{type(exc2).__name__}: {exc2}") from exc2
        exporter = "torchscript"
    _require_dynamic_batch(path, plan)
    log.info("%s: written by the %s exporter (%s)", plan.name, exporter, path.name)
    return exporter


@contextlib.contextmanager
def _quiet_exporter_logs() -> Iterator[None]:
    """Hold onnxscript's per-pass INFO lines (and its note that it converts opset 18 down via the onnx C API,
    which the parity check then verifies) out of the export log."""
    loggers = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def _export_dynamo(module: nn.Module, example: torch.Tensor, plan: GraphPlan, path: Path, opset: int) -> None:
    batch = torch.export.Dim(BATCH_AXIS, min=1, max=65536)
    with warnings.catch_warnings(), torch.no_grad(), _quiet_exporter_logs():
        warnings.simplefilter("ignore")  # torch.export's internal deprecation chatter, not ours to fix
        program = torch.onnx.export(
            module,
            (example,),
            None,
            dynamo=True,
            input_names=[plan.input_name],
            output_names=list(plan.output_names),
            dynamic_shapes=({0: batch},),
            opset_version=opset,
            optimize=True,
            verbose=False,
        )
    if program is None:
        raise ExportError("the dynamo exporter returned no program")
    program.save(str(path), external_data=False)


def _export_torchscript(module: nn.Module, example: torch.Tensor, plan: GraphPlan, path: Path, opset: int) -> None:
    names = [plan.input_name, *plan.output_names]
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # the TorchScript exporter's own deprecation notice
        torch.onnx.export(
            module,
            (example,),
            str(path),
            dynamo=False,
            input_names=[plan.input_name],
            output_names=list(plan.output_names),
            dynamic_axes={name: {0: BATCH_AXIS} for name in names},
            opset_version=opset,
        )


def _require_dynamic_batch(path: Path, plan: GraphPlan) -> None:
    model = onnx.load(str(path), load_external_data=False)
    for value in [*model.graph.input, *model.graph.output]:
        dims = value.type.tensor_type.shape.dim
        if not dims or dims[0].dim_param != BATCH_AXIS:
            first = dims[0] if dims else None
            raise ExportError(f"{path}: {value.name}'s first axis should be the dynamic '{BATCH_AXIS}' axis, "
                              f"found {first!r}")
    if model.opset_import and all(op.version < 17 for op in model.opset_import if op.domain in ("", "ai.onnx")):
        raise ExportError(f"{path}: written with opset < 17")
