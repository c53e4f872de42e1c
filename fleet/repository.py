"""The model repository `swapstream triton` serves: each manifest model in Triton's Python backend.

Per model: `<name>/config.pbtxt` (the same name, tensors, batching and sha256 parameter as `export --triton`'s
repository, written by the same function, with `backend: "python"`), `<name>/1/model.onnx` (a copy of the
manifest's file, its sha256 checked after copying, so the file Triton opens is the file that was checked) and
`<name>/1/model.py` (fleet/backend_model.py, which runs it with ONNX Runtime inside the backend's stub process).
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path

from fleet.bindings import ModelBinding
from fleet.errors import FleetError
from swapstream.manifest_schema import TensorSpec, sha256_file
from swapstream.triton_model import SHA256_PARAMETER, model_config_text, tensor_block

log = logging.getLogger(__name__)

BACKEND_LINE = 'backend: "python"'
# The Python-backend model, copied as model.py; it is not imported here (it needs the backend's own modules).
BACKEND_MODEL = Path(__file__).with_name("backend_model.py")
# What backend_model.py reads (it repeats both names: it must stay free of swapstream imports).
THREADS_PARAMETER = "swapstream_threads"
MODEL_FILE = "model.onnx"


def _blocks(specs: tuple[TensorSpec, ...], model: str) -> list[str]:
    try:
        return [tensor_block(spec.name, spec.dtype, spec.shape) for spec in specs]
    except ValueError as exc:
        raise FleetError(f"model {model}: {exc}") from exc


def backend_config_text(binding: ModelBinding, threads: int) -> str:
    """The Python-backend ModelConfig of one binding (CPU instances, ONNX Runtime threads as a parameter)."""
    entry = binding.entry
    return model_config_text(binding.name, BACKEND_LINE, binding.max_batch, _blocks(entry.inputs, entry.name),
                             _blocks(entry.outputs, entry.name),
                             {SHA256_PARAMETER: entry.sha256, THREADS_PARAMETER: str(threads)},
                             max_queue_delay_us=binding.max_queue_delay_us, instance_kind="KIND_CPU")


def write_backend_repository(folder: Path, bindings: list[ModelBinding], models_dir: Path, threads: int) -> Path:
    """Fill the empty `folder` with one model folder per binding; returns `folder`.

    FleetError naming the file when a copied model's sha256 is not the manifest's (changed on disk meanwhile).
    """
    for binding in bindings:
        version = folder / binding.name / "1"
        version.mkdir(parents=True)
        copied = version / MODEL_FILE
        shutil.copyfile(models_dir / binding.entry.file, copied)
        if sha256_file(copied) != binding.entry.sha256:
            raise FleetError(f"{models_dir / binding.entry.file} changed while swapstream triton was starting: its "
                             f"sha256 is no longer the manifest's {binding.entry.sha256}")
        shutil.copyfile(BACKEND_MODEL, version / "model.py")
        (folder / binding.name / "config.pbtxt").write_text(backend_config_text(binding, threads), encoding="utf-8")
        log.debug("Triton repository: wrote %s", folder / binding.name)
    return folder
