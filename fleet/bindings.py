"""A manifest model as a PyTriton model: the same name, tensors, shapes, data types and batching as the model's
folder in `swapstream export --triton`'s repository, run in this process by ONNX Runtime.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pytriton.decorators import batch
from pytriton.model_config import DynamicBatcher, ModelConfig, Tensor
from pytriton.triton import Triton

from fleet.errors import FleetError
from fleet.model_files import InferenceBackend, ModelEntry
from swapstream.manifest_schema import TensorSpec
from swapstream.triton_model import (
    DEFAULT_MAX_BATCH,
    SHA256_PARAMETER,
    preferred_batch_sizes,
    triton_model_name,
)

log = logging.getLogger(__name__)

REPOSITORY_FOLDER = "triton"
_MAX_BATCH_LINE = re.compile(r"^max_batch_size:\s*(\d+)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class ModelBinding:
    """One served model: its Triton name, the manifest entry it comes from and its batching."""

    name: str
    entry: ModelEntry
    max_batch: int
    max_queue_delay_us: int


def repository_max_batch(models_dir: Path, entry: ModelEntry) -> int | None:
    """`max_batch_size` of the entry's `config.pbtxt` in `export --triton`'s repository, or None without one."""
    path = models_dir / REPOSITORY_FOLDER / triton_model_name(entry.name) / "config.pbtxt"
    if not path.is_file():
        return None
    match = _MAX_BATCH_LINE.search(path.read_text(encoding="utf-8"))
    return int(match.group(1)) if match else None


def plan_binding(entry: ModelEntry, models_dir: Path, max_batch: int | None, max_queue_delay_us: int) -> ModelBinding:
    """The binding of one entry; the batch bound is `max_batch`, else the repository's, else swapstream's default."""
    from_repository = repository_max_batch(models_dir, entry)
    chosen = max_batch or from_repository or DEFAULT_MAX_BATCH
    if max_batch is None:
        source = "export --triton's repository" if from_repository else "the default"
        log.info("model %s: max batch %d (%s)", entry.name, chosen, source)
    return ModelBinding(triton_model_name(entry.name), entry, chosen, max_queue_delay_us)


def _tensors(specs: tuple[TensorSpec, ...], model: str) -> list[Tensor]:
    tensors = []
    for spec in specs:
        if not all(isinstance(dim, int) for dim in spec.tail):
            raise FleetError(f"model {model}: {spec.name} has dynamic dimensions past the batch axis "
                             f"{list(spec.shape)}, which Triton's batching cannot serve")
        tensors.append(Tensor(name=spec.name, dtype=np.dtype(spec.dtype).type, shape=tuple(spec.tail)))
    return tensors


class OnnxModelCallable:
    """What PyTriton calls with a batch Triton gathered: the model's input through the backend, outputs by name."""

    def __init__(self, backend: InferenceBackend) -> None:
        self.backend = backend
        self._input = backend.entry.inputs[0].name
        self._outputs = [spec.name for spec in backend.entry.outputs]

    def __call__(self, **inputs: NDArray[Any]) -> dict[str, NDArray[Any]]:
        """Run the backend on the batch of the model's one input."""
        return dict(zip(self._outputs, self.backend.run(inputs[self._input])))


def bind_model(triton: Triton, binding: ModelBinding, backend: InferenceBackend) -> None:
    """Declare `binding`'s model on `triton`, served by `backend`, before Triton loads it."""
    entry = binding.entry
    batcher = DynamicBatcher(max_queue_delay_microseconds=binding.max_queue_delay_us,
                             preferred_batch_size=preferred_batch_sizes(binding.max_batch))
    triton.bind(
        model_name=binding.name,
        # PyTriton's @batch joins the requests Triton gathered into one array per input and splits the outputs back
        infer_func=batch(OnnxModelCallable(backend)),
        inputs=_tensors(entry.inputs, entry.name),
        outputs=_tensors(entry.outputs, entry.name),
        config=ModelConfig(max_batch_size=binding.max_batch, batcher=batcher),
        strict=True,
    )
    _declare_sha256(triton, binding.name, entry.sha256)


def _declare_sha256(triton: Any, model_name: str, sha256: str) -> None:
    """Put the served file's sha256 into the model's Triton config as the `swapstream_sha256` parameter.

    PyTriton 0.7's ModelConfig has no free-form parameters, but the Triton config it generates carries its own
    backend parameters (the workspace path) from a dict it builds once per model and keeps; ours joins them there,
    before the model is loaded. This reaches into PyTriton's internals, hence the pinned version.
    """
    try:
        models = list(triton._model_manager.models)
        model = next(m for m in models if m.model_name == model_name)
        model._get_triton_model_config().backend_parameters[SHA256_PARAMETER] = sha256
    except (AttributeError, StopIteration) as exc:
        raise FleetError(f"cannot declare model {model_name}'s sha256 on this PyTriton version (swapstream needs "
                         f"nvidia-pytriton 0.7.0): {exc!r}") from exc
