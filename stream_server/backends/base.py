"""What every inference backend is (`InferenceBackend`) and the checks they share before they run a model."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from stream_server.errors import ModelLoadError
from swapstream.manifest import ModelEntry
from swapstream.manifest_schema import TensorSpec, sha256_file

Array = npt.NDArray[Any]
# The numpy type of each manifest dtype (swapstream.manifest.TENSOR_DTYPES).
NUMPY_DTYPES: dict[str, type[np.generic]] = {"float32": np.float32, "float16": np.float16, "int64": np.int64,
                                             "int32": np.int32, "uint8": np.uint8}


@runtime_checkable
class InferenceBackend(Protocol):
    """Runs one manifest model on a batch. ONNX Runtime and a native TensorRT engine stand behind it here; a
    remote one (Triton over gRPC) fits the same four members."""

    @property
    def entry(self) -> ModelEntry:
        """The manifest entry this backend runs."""
        ...

    @property
    def provider(self) -> str:
        """What really runs the model, for logs and /healthz (e.g. "CPUExecutionProvider")."""
        ...

    def run(self, batch: Array) -> list[Array]:
        """Outputs for a batch (first axis), in the manifest's output order; ValueError for a wrong shape."""
        ...

    def close(self) -> None:
        """Free what the backend holds (sessions, device buffers, connections); it cannot run afterwards."""
        ...


def verify_file(path: Path, expected_sha256: str, entry_name: str) -> None:
    """ModelLoadError naming `path` if it is missing or its sha256 is not the manifest's."""
    if not path.is_file():
        raise ModelLoadError(f"model file {path} (model {entry_name!r}) does not exist")
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise ModelLoadError(f"model file {path} (model {entry_name!r}) cannot be read: {exc}") from exc
    if actual != expected_sha256:
        raise ModelLoadError(f"model file {path} (model {entry_name!r}) has sha256 {actual}, but the manifest says "
                             f"{expected_sha256}: the file changed after export; export again")


def shapes_agree(declared: tuple[int | str, ...], found: Sequence[int | str | None]) -> bool:
    """Whether a found shape fits the manifest's (a named axis there must be dynamic here too)."""
    if len(declared) != len(found):
        return False
    for want, got in zip(declared, found):
        if isinstance(want, str):
            if isinstance(got, int):  # the manifest says dynamic but the graph fixes it
                return False
        elif got != want:
            return False
    return True


def check_io(path: Path, entry: ModelEntry, found_inputs: Sequence[TensorSpec],
             found_outputs: Sequence[TensorSpec]) -> None:
    """ModelLoadError naming `path` where the graph's inputs/outputs differ from the manifest's."""
    for role, declared, found in (("inputs", entry.inputs, found_inputs), ("outputs", entry.outputs, found_outputs)):
        declared_names = [spec.name for spec in declared]
        found_names = [spec.name for spec in found]
        if declared_names != found_names:
            raise ModelLoadError(f"model file {path}: {role} are {found_names}, the manifest says {declared_names}")
        for want, got in zip(declared, found):
            if not shapes_agree(want.shape, got.shape) or want.dtype != got.dtype:
                raise ModelLoadError(f"model file {path}: {role[:-1]} {want.name!r} is {got.dtype} "
                                     f"{list(got.shape)}, the manifest says {want.dtype} {list(want.shape)}")


def prepare_batch(entry: ModelEntry, batch: Array) -> Array:
    """`batch` as a contiguous array of the model's input dtype; ValueError naming the model for a wrong shape."""
    spec = entry.inputs[0]
    array = np.ascontiguousarray(batch, dtype=NUMPY_DTYPES[spec.dtype])
    if array.ndim != len(spec.shape) or not shapes_agree(spec.tail, array.shape[1:]):
        raise ValueError(f"model {entry.name!r} takes {spec.name} of shape {list(spec.shape)}, got {list(batch.shape)}")
    return array


def split_batches(batch: Array, max_batch: int | None, run_chunk: Callable[[Array], Sequence[Array]]) -> list[Array]:
    """`run_chunk` over slices of at most `max_batch` items (None: no limit), outputs joined in order."""
    if max_batch is None or len(batch) <= max_batch:
        return list(run_chunk(batch))
    parts = [run_chunk(batch[i:i + max_batch]) for i in range(0, len(batch), max_batch)]
    return [np.concatenate([part[k] for part in parts]) for k in range(len(parts[0]))]
