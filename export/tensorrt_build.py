"""TensorRT engines from the exported graphs: FP16, a batch 1..max-batch profile, a shared timing cache.

Engines are specific to the GPU, CUDA and TensorRT versions that built them: build them on the serving machine.
Where the `tensorrt` package does not import, `tensorrt_status()` says why; a plain export logs that it skipped
TensorRT, an explicit `--tensorrt` raises TensorRTUnavailable with the same reason.
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import numpy.typing as npt

from export.errors import ExportError, TensorRTUnavailable
from swapstream.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

_WORKSPACE_BYTES = 1 << 30


@dataclass(frozen=True)
class TensorRTStatus:
    """Whether TensorRT engines can be built here, and if not, why."""

    available: bool
    version: str | None
    reason: str | None


def tensorrt_status() -> TensorRTStatus:
    """Try to import `tensorrt` and see a CUDA device through torch; never raises."""
    try:
        trt = importlib.import_module("tensorrt")
    except Exception as exc:  # ImportError, or a broken install failing to load its shared libraries
        return TensorRTStatus(False, None, f"the 'tensorrt' package does not import ({type(exc).__name__}: {exc}); "
                                           "install the gpu extra on a machine with an NVIDIA GPU")
    version = str(getattr(trt, "__version__", "unknown"))
    import torch

    if not torch.cuda.is_available():
        return TensorRTStatus(False, version, f"tensorrt {version} imports but torch sees no CUDA device "
                                              "(engine verification runs through torch CUDA tensors)")
    return TensorRTStatus(True, version, None)


def require_tensorrt() -> ModuleType:
    """The `tensorrt` module, or TensorRTUnavailable saying why it cannot be used."""
    status = tensorrt_status()
    if not status.available:
        raise TensorRTUnavailable(f"--tensorrt: cannot build TensorRT engines: {status.reason}")
    return importlib.import_module("tensorrt")


def build_engine(
    onnx_path: Path,
    engine_path: Path,
    input_name: str,
    input_tail: tuple[int, ...],
    max_batch: int,
    timing_cache_path: Path,
) -> None:
    """Parse `onnx_path` (a half-precision graph), build an engine for batch 1..max_batch, write it to `engine_path`.

    The network is strongly typed where TensorRT offers it (10.x; always so in 11.x, which dropped the FP16
    builder flag), so the graph's own float16 types make it an FP16 engine; only a TensorRT without strong
    typing gets the old FP16 builder flag instead. The timing cache at `timing_cache_path` is loaded first
    (if present) and written back after the build, so later builds, in this call or the next, skip tactic
    timing they have done before.
    """
    trt = require_tensorrt()
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    creation = trt.NetworkDefinitionCreationFlag
    strongly_typed = getattr(creation, "STRONGLY_TYPED", None)
    flags = 0
    if strongly_typed is not None:
        flags |= 1 << int(strongly_typed)
    if int(trt.__version__.split(".")[0]) < 10 and hasattr(creation, "EXPLICIT_BATCH"):
        flags |= 1 << int(creation.EXPLICIT_BATCH)  # implicit batch was the default before TensorRT 10
    network = builder.create_network(flags)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ExportError(f"{onnx_path}: TensorRT's ONNX parser failed: {errors}")

    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, _WORKSPACE_BYTES)
    if strongly_typed is None and hasattr(trt.BuilderFlag, "FP16"):
        config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    opt_batch = max(1, min(max_batch, 8))
    profile.set_shape(input_name, (1, *input_tail), (opt_batch, *input_tail), (max_batch, *input_tail))
    config.add_optimization_profile(profile)

    cache_bytes = timing_cache_path.read_bytes() if timing_cache_path.is_file() else b""
    timing_cache = config.create_timing_cache(cache_bytes)
    config.set_timing_cache(timing_cache, ignore_mismatch=False)
    log.info("%s: building TensorRT %s engine (batch 1..%d, %s, timing cache %s, %d bytes)", onnx_path.name,
             trt.__version__, max_batch, "strongly typed" if strongly_typed is not None else "FP16 flag",
             timing_cache_path, len(cache_bytes))

    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise ExportError(f"{onnx_path}: TensorRT failed to build an engine (see the TensorRT log above)")
    atomic_write_bytes(engine_path, bytes(memoryview(serialized)))
    atomic_write_bytes(timing_cache_path, bytes(memoryview(config.get_timing_cache().serialize())))


def run_engine(engine_path: Path, input_name: str, batch: npt.NDArray[np.float32]) -> dict[str, npt.NDArray[np.float32]]:
    """Run a serialized engine once on `batch` through torch CUDA buffers; outputs by tensor name."""
    trt = require_tensorrt()
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    runtime = trt.Runtime(logger)
    engine = runtime.deserialize_cuda_engine(engine_path.read_bytes())
    if engine is None:
        raise ExportError(f"{engine_path}: TensorRT cannot deserialize the engine")
    context = engine.create_execution_context()
    device = torch.device("cuda")
    buffers: dict[str, Any] = {}
    stream = torch.cuda.Stream()  # type: ignore[no-untyped-call]  # torch leaves Stream.__init__ unannotated
    context.set_input_shape(input_name, tuple(batch.shape))
    output_names = []
    for index in range(engine.num_io_tensors):
        name = engine.get_tensor_name(index)
        if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
            tensor = torch.from_numpy(np.ascontiguousarray(batch)).to(device)
        else:
            shape = tuple(context.get_tensor_shape(name))
            dtype = torch.from_numpy(np.zeros(0, dtype=trt.nptype(engine.get_tensor_dtype(name)))).dtype
            tensor = torch.empty(shape, dtype=dtype, device=device)
            output_names.append(name)
        buffers[name] = tensor
        context.set_tensor_address(name, int(tensor.data_ptr()))
    if not context.execute_async_v3(stream.cuda_stream):
        raise ExportError(f"{engine_path}: TensorRT execution failed")
    stream.synchronize()
    return {name: buffers[name].float().cpu().numpy() for name in output_names}
