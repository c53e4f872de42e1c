"""A Triton Inference Server model repository from the exported graphs (`--triton`).

Layout: `REPO/<model>/config.pbtxt` and `REPO/<model>/1/model.onnx`, served by Triton's ONNX Runtime backend
with dynamic batching, so the same models can run on a Triton fleet when one machine is not enough.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from export.errors import ExportError
from swapstream.manifest import ModelEntry
from swapstream.manifest_schema import TensorSpec
from swapstream.triton_model import (
    MAX_QUEUE_DELAY_US,
    SHA256_PARAMETER,
    TRITON_DATATYPES,
    preferred_batch_sizes,
)
from swapstream.triton_model import triton_model_name as _name_of

log = logging.getLogger(__name__)

PLATFORM = "onnxruntime_onnx"


def triton_model_name(entry: ModelEntry) -> str:
    """The repository folder (= Triton model name) of an entry: its name with anything but `[A-Za-z0-9_.-]` made `_`."""
    return _name_of(entry.name)


def _tensor_block(spec: TensorSpec) -> str:
    datatype = TRITON_DATATYPES.get(spec.dtype)
    if datatype is None:
        raise ExportError(f"Triton: no Triton data type for {spec.name}'s {spec.dtype}")
    dtype = f"TYPE_{datatype}"
    if not isinstance(spec.shape[0], str):
        raise ExportError(f"Triton: {spec.name}'s first axis must be the batch axis, found {spec.shape[0]!r}")
    tail = spec.shape[1:]
    if not all(isinstance(dim, int) for dim in tail):
        raise ExportError(f"Triton: {spec.name} has dynamic dimensions past the batch axis: {list(spec.shape)}")
    dims = ", ".join(str(dim) for dim in tail)
    return f'  {{\n    name: "{spec.name}"\n    data_type: {dtype}\n    dims: [ {dims} ]\n  }}'


def config_pbtxt(entry: ModelEntry, max_batch: int) -> str:
    """The text-format ModelConfig of one entry (dims exclude the batch axis, as max_batch_size > 0 requires).

    The ONNX file's sha256 rides along as the `swapstream_sha256` parameter, which Triton reports in the model's
    config, so a stream server can check that Triton serves the file its manifest names.
    """
    preferred = preferred_batch_sizes(max_batch)
    inputs = ",\n".join(_tensor_block(spec) for spec in entry.inputs)
    outputs = ",\n".join(_tensor_block(spec) for spec in entry.outputs)
    precision = "FP16" if entry.precision == "fp16" or entry.kind == "swap" else "FP32"
    return (
        f"# {entry.kind} model exported by swapstream from {entry.source.get('run')} "
        f"(step {entry.source.get('step')}); sha256 {entry.sha256}\n"
        f'name: "{triton_model_name(entry)}"\n'
        f'platform: "{PLATFORM}"\n'
        f"max_batch_size: {max_batch}\n"
        f"input [\n{inputs}\n]\n"
        f"output [\n{outputs}\n]\n"
        "dynamic_batching {\n"
        f"  preferred_batch_size: [ {', '.join(str(size) for size in preferred)} ]\n"
        f"  max_queue_delay_microseconds: {MAX_QUEUE_DELAY_US}\n"
        "}\n"
        "instance_group [\n  {\n    count: 1\n    kind: KIND_AUTO\n  }\n]\n"
        f'parameters {{\n  key: "{SHA256_PARAMETER}"\n  value: {{ string_value: "{entry.sha256}" }}\n}}\n'
        "# on GPU instances, let ONNX Runtime hand the graph to TensorRT\n"
        "optimization {\n  execution_accelerators {\n    gpu_execution_accelerator: [\n"
        f'      {{\n        name: "tensorrt"\n        parameters {{ key: "precision_mode" value: "{precision}" }}\n'
        "      }\n    ]\n  }\n}\n"
    )


def write_triton_repository(models_dir: Path, entries: list[ModelEntry], max_batch: int) -> Path:
    """Write `models_dir/triton/` with one model folder per entry; returns the repository path."""
    repo = models_dir / "triton"
    names = [triton_model_name(entry) for entry in entries]
    if len(set(names)) != len(names):
        raise ExportError(f"Triton: model folder names collide: {names}")
    if repo.exists():
        shutil.rmtree(repo)
    for entry, name in zip(entries, names):
        version_dir = repo / name / "1"
        version_dir.mkdir(parents=True)
        shutil.copyfile(models_dir / entry.file, version_dir / "model.onnx")
        (repo / name / "config.pbtxt").write_text(config_pbtxt(entry, max_batch), encoding="utf-8")
        log.info("Triton: wrote %s", repo / name)
    return repo
