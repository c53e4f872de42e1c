"""One swapstream model inside tritonserver's Python backend, run by ONNX Runtime in the backend's own process.

`swapstream triton` copies this file as `<model>/1/model.py` into the repository it serves (fleet/repository.py),
beside the checked `model.onnx`. Triton's Python backend runs it in its stub process, which receives each batch
from tritonserver through shared memory; PyTriton's own bindings would hand the batch on once more, from that stub
to the `swapstream triton` process and back, which cost 3-4 ms per request on a 2-core CPU (docs/scale.md).

Self-contained on purpose: the stub imports it by path, so it needs only numpy, onnxruntime and the backend's
`triton_python_backend_utils`, never the rest of swapstream.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import triton_python_backend_utils as pb_utils  # provided by the Python backend's stub at run time

# As fleet/repository.py writes them (the swapstream_sha256 parameter is there for the media servers).
THREADS_PARAMETER = "swapstream_threads"
MODEL_FILE = "model.onnx"
PROVIDERS = ("CUDAExecutionProvider", "CPUExecutionProvider")


class TritonPythonModel:
    """Triton's Python-backend interface: `initialize` once, `execute` per batch Triton gathered, `finalize`."""

    def initialize(self, args: dict[str, str]) -> None:
        config = json.loads(args["model_config"])
        parameters = {key: value["string_value"] for key, value in config.get("parameters", {}).items()}
        options = ort.SessionOptions()
        options.intra_op_num_threads = int(parameters.get(THREADS_PARAMETER, "1"))
        options.inter_op_num_threads = 1
        # ORT's pool threads busy-wait for work by default; between requests that would burn the shared cores
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3
        path = Path(args["model_repository"]) / args["model_version"] / MODEL_FILE
        # CUDA where onnxruntime-gpu is installed (TensorRT is the NGC container's job), else the CPU
        providers = [name for name in PROVIDERS if name in ort.get_available_providers()]
        self.session = ort.InferenceSession(str(path), options, providers=providers)
        self.input_name: str = config["input"][0]["name"]
        self.output_names: list[str] = [output["name"] for output in config["output"]]

    def execute(self, requests: list[Any]) -> list[Any]:
        """One ONNX Runtime call for every face of every request, the outputs split back per request."""
        try:
            arrays = [pb_utils.get_input_tensor_by_name(request, self.input_name).as_numpy() for request in requests]
            batch = arrays[0] if len(arrays) == 1 else np.concatenate(arrays)
            results = self.session.run(self.output_names, {self.input_name: batch})
        except Exception as exc:  # a failed batch answers every request with the reason, the model stays up
            error = pb_utils.TritonError(f"{type(exc).__name__}: {exc}")
            return [pb_utils.InferenceResponse(output_tensors=[], error=error) for _ in requests]
        responses = []
        start = 0
        for array in arrays:
            end = start + len(array)
            tensors = [pb_utils.Tensor(name, np.ascontiguousarray(result[start:end]))
                       for name, result in zip(self.output_names, results)]
            responses.append(pb_utils.InferenceResponse(output_tensors=tensors))
            start = end
        return responses

    def finalize(self) -> None:
        self.session = None
