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
from swapstream.triton_model import SHA256_PARAMETER, model_config_text, tensor_block
from swapstream.triton_model import triton_model_name as _name_of

log = logging.getLogger(__name__)

PLATFORM = "onnxruntime_onnx"


def triton_model_name(entry: ModelEntry) -> str:
    """The repository folder (= Triton model name) of an entry: its name with anything but `[A-Za-z0-9_.-]` made `_`."""
    return _name_of(entry.name)


def _tensor_block(spec: TensorSpec) -> str:
    try:
        return tensor_block(spec.name, spec.dtype, spec.shape)
    except ValueError as exc:
        raise ExportError(f"Triton: {exc}") from exc


def config_pbtxt(entry: ModelEntry, max_batch: int) -> str:
    """The text-format ModelConfig of one entry (dims exclude the batch axis, as max_batch_size > 0 requires).

    The ONNX file's sha256 rides along as the `swapstream_sha256` parameter, which Triton reports in the model's
    config, so a stream server can check that Triton serves the file its manifest names.
    """
    precision = "FP16" if entry.precision == "fp16" or entry.kind == "swap" else "FP32"
    return (
        f"# {entry.kind} model exported by swapstream from {entry.source.get('run')} "
        f"(step {entry.source.get('step')}); sha256 {entry.sha256}\n"
        + model_config_text(triton_model_name(entry), f'platform: "{PLATFORM}"', max_batch,
                            [_tensor_block(spec) for spec in entry.inputs],
                            [_tensor_block(spec) for spec in entry.outputs], {SHA256_PARAMETER: entry.sha256})
        + "# on GPU instances, let ONNX Runtime hand the graph to TensorRT\n"
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
