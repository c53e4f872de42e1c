"""The native TensorRT backend: a serialized engine run through cuda-python device buffers (no torch).

Used when a manifest entry has an engine and both `tensorrt` and cuda-python import; `native_tensorrt_unavailable`
says why not otherwise, with the import error's own text.
"""

from __future__ import annotations

import importlib
import logging
import threading
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from stream_server.backends.base import Array, check_io, prepare_batch, split_batches
from stream_server.errors import ModelLoadError
from swapstream.manifest import ModelEntry
from swapstream.manifest_schema import TensorSpec

log = logging.getLogger(__name__)


def native_tensorrt_unavailable() -> str | None:
    """None where TensorRT engines can run here, else why not (naming the package and its import error)."""
    try:
        importlib.import_module("tensorrt")
    except Exception as exc:  # ImportError, or a broken install failing to load its shared libraries
        return f"the 'tensorrt' package does not import ({type(exc).__name__}: {exc})"
    try:
        _import_cudart()
    except Exception as exc:  # noqa: BLE001 - the same: any failure means cuda-python is unusable
        return f"cuda-python does not import ({type(exc).__name__}: {exc})"
    return None


def _import_cudart() -> ModuleType:
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        return importlib.import_module("cuda.cudart")  # cuda-python < 12.6


class TensorRTEngineBackend:
    """A serialized TensorRT engine with its device buffers and stream; batches above its max are split."""

    def __init__(self, entry: ModelEntry, path: Path) -> None:
        trt = importlib.import_module("tensorrt")
        self._cudart: Any = _import_cudart()
        if entry.engine is None:
            raise ModelLoadError(f"model {entry.name!r} has no TensorRT engine in its manifest entry")
        self.entry = entry
        self.path = path
        self.provider = f"TensorRT {trt.__version__} (native engine)"
        self.max_batch = entry.engine.max_batch
        self._lock = threading.Lock()
        self._buffers: dict[str, int] = {}
        self._stream: Any = None
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ModelLoadError(f"engine file {path} (model {entry.name!r}) cannot be deserialized: corrupt, or built "
                                 f"by another TensorRT version or for another GPU; export again on this machine")
        self._engine = engine
        self._context = engine.create_execution_context()
        inputs: list[TensorSpec] = []
        outputs: list[TensorSpec] = []
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
            spec = TensorSpec(name, tuple("batch" if d < 0 else int(d) for d in engine.get_tensor_shape(name)), dtype)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        by_name = {spec.name: spec for spec in outputs}
        if set(by_name) == {spec.name for spec in entry.outputs}:  # engines list I/O in their own order
            outputs = [by_name[spec.name] for spec in entry.outputs]
        check_io(path, entry, inputs, outputs)
        self._specs = {spec.name: spec for spec in [*inputs, *outputs]}
        try:
            self._stream = self._call("cudaStreamCreate")[0]
            for spec in self._specs.values():
                count = self.max_batch * int(np.prod([int(d) for d in spec.tail]))
                pointer = int(self._call("cudaMalloc", count * np.dtype(spec.dtype).itemsize)[0])
                self._buffers[spec.name] = pointer
                self._context.set_tensor_address(spec.name, pointer)
        except BaseException:
            self.close()  # what was allocated before the failure
            raise
        log.info("model %s: %s (%s)", entry.name, self.provider, path.name)

    def _call(self, function: str, *args: Any) -> tuple[Any, ...]:
        result = getattr(self._cudart, function)(*args)
        error, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(error) != 0:
            raise RuntimeError(f"CUDA {function} failed: {error}")
        return tuple(values)

    def run(self, batch: Array) -> list[Array]:
        """Outputs for `batch` (split into chunks of the engine's max batch), in the manifest's output order."""
        return split_batches(prepare_batch(self.entry, batch), self.max_batch, self._run_chunk)

    def _run_chunk(self, chunk: Array) -> list[Array]:
        cudart = self._cudart
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        input_spec = self.entry.inputs[0]
        chunk = np.ascontiguousarray(chunk, dtype=self._specs[input_spec.name].dtype)
        with self._lock:
            if self._stream is None:
                raise RuntimeError(f"model {self.entry.name!r}: the backend is closed")
            self._context.set_input_shape(input_spec.name, tuple(chunk.shape))
            self._call("cudaMemcpyAsync", self._buffers[input_spec.name], chunk.ctypes.data, chunk.nbytes, to_device,
                       self._stream)
            if not self._context.execute_async_v3(int(self._stream)):
                raise RuntimeError(f"TensorRT execution of {self.path} failed")
            results = []
            for spec in self.entry.outputs:
                shape = tuple(self._context.get_tensor_shape(spec.name))
                host = np.empty(shape, dtype=self._specs[spec.name].dtype)
                self._call("cudaMemcpyAsync", host.ctypes.data, self._buffers[spec.name], host.nbytes, to_host,
                           self._stream)
                results.append(host)
            self._call("cudaStreamSynchronize", self._stream)
        return [result.astype(np.float32, copy=False) for result in results]

    def close(self) -> None:
        """Free the device buffers and the stream (waits for a run in progress)."""
        with self._lock:
            for pointer in self._buffers.values():
                self._cudart.cudaFree(pointer)
            self._buffers.clear()
            if self._stream is not None:
                self._cudart.cudaStreamDestroy(self._stream)
                self._stream = None
