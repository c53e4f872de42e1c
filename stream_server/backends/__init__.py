"""Inference backends: the models of `MODELS/manifest.json` opened with a runtime (never imports torch).

`load_models(models_dir)` reads the manifest (swapstream.manifest) and opens every model; `load_backend(entry,
models_dir)` opens one. Each backend is an `InferenceBackend`: `run(batch) -> outputs`, `provider`, `entry`,
`close()`. One module per runtime: `onnx_runtime` (TensorRT EP -> CUDA EP -> CPU) and `tensorrt_engine` (the
entry's serialized engine where TensorRT imports); the checks they share are in `base`. onnxruntime and tensorrt
are imported only when a model is opened.
"""

from __future__ import annotations

from stream_server.backends.base import InferenceBackend
from stream_server.backends.loader import load_backend, load_manifest, load_models
from stream_server.backends.onnx_runtime import CPU_EP, CUDA_EP, TENSORRT_EP, OnnxRuntimeBackend, available_providers
from stream_server.backends.tensorrt_engine import TensorRTEngineBackend

__all__ = [
    "CPU_EP",
    "CUDA_EP",
    "TENSORRT_EP",
    "InferenceBackend",
    "OnnxRuntimeBackend",
    "TensorRTEngineBackend",
    "available_providers",
    "load_backend",
    "load_manifest",
    "load_models",
]
