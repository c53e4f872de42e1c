"""`swapstream triton` runs the models in Triton's Python backend (fleet/repository.py writes the
repository, fleet/backend_model.py runs ONNX Runtime inside the backend's process).

The repository declares exactly what `export --triton`'s does (so the NGC container and `swapstream triton` look
the same to a media server), the file it serves is the checked one, and, through the real Triton, requests that
Triton batched together each get their own faces back.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from fleet.bindings import plan_binding
from fleet.errors import FleetError
from fleet.process import free_ports, read_metrics
from fleet.repository import BACKEND_MODEL, MODEL_FILE, THREADS_PARAMETER, write_backend_repository
from stream_server.backends import load_manifest
from swapstream.manifest_schema import sha256_file
from swapstream.triton_model import SHA256_PARAMETER
from tests.fixtures.triton import TritonProcess

ROOT = Path(__file__).resolve().parents[2]
MODEL = "swap_a2b"
CONCURRENT = 6
ROUNDS = 20  # rounds of concurrent requests, at most, until Triton has batched two requests into one execution


def _config(path: Path) -> model_config_pb2.ModelConfig:
    return text_format.Parse(path.read_text(), model_config_pb2.ModelConfig())


def _tensors(tensors: object) -> list[tuple[str, int, list[int]]]:
    return [(t.name, t.data_type, list(t.dims)) for t in tensors]  # type: ignore[attr-defined]


def test_repository_declares_what_export_declares(exported_models: Path, tmp_path: Path) -> None:
    manifest = load_manifest(exported_models)
    bindings = [plan_binding(entry, exported_models, None, 0) for entry in manifest.models]
    write_backend_repository(tmp_path, bindings, exported_models, threads=3)
    for binding in bindings:
        served = _config(tmp_path / binding.name / "config.pbtxt")
        exported = _config(exported_models / "triton" / binding.name / "config.pbtxt")
        assert served.backend == "python" and exported.platform == "onnxruntime_onnx"
        assert served.name == exported.name == binding.name
        assert _tensors(served.input) == _tensors(exported.input)
        assert _tensors(served.output) == _tensors(exported.output)
        assert served.max_batch_size == exported.max_batch_size == 8  # the export fixture's --max-batch, read back
        assert served.dynamic_batching == exported.dynamic_batching
        assert served.parameters[SHA256_PARAMETER].string_value == binding.entry.sha256
        assert served.parameters[THREADS_PARAMETER].string_value == "3"
        version = tmp_path / binding.name / "1"
        assert sha256_file(version / MODEL_FILE) == binding.entry.sha256
        assert (version / "model.py").read_bytes() == BACKEND_MODEL.read_bytes()


def test_backend_model_reads_the_names_the_repository_writes() -> None:
    # backend_model.py runs inside tritonserver without swapstream on its path, so it repeats these two names
    source = BACKEND_MODEL.read_text()
    assert f'THREADS_PARAMETER = "{THREADS_PARAMETER}"' in source
    assert f'MODEL_FILE = "{MODEL_FILE}"' in source
    assert "import swapstream" not in source and "from fleet" not in source


def test_a_model_file_that_is_not_the_manifests_is_refused(exported_models: Path, tmp_path: Path) -> None:
    entry = next(entry for entry in load_manifest(exported_models).models if entry.name == MODEL)
    binding = plan_binding(dataclasses.replace(entry, sha256="0" * 64), exported_models, None, 0)
    with pytest.raises(FleetError, match=f"{entry.file}.*sha256"):
        write_backend_repository(tmp_path, [binding], exported_models, threads=1)


def test_batched_requests_each_get_their_own_answer(triton_server: TritonProcess, exported_models: Path) -> None:
    """Concurrent requests of different faces (some of two) until Triton ran two or more in one execution; every
    answer equals ONNX Runtime's on that request's own faces."""
    entry = json.loads((exported_models / "manifest.json").read_text())["models"]
    spec = next(model for model in entry if model["name"] == MODEL)
    input_spec, outputs = spec["inputs"][0], [output["name"] for output in spec["outputs"]]
    local = ort.InferenceSession(str(exported_models / spec["file"]), providers=["CPUExecutionProvider"])
    rng = np.random.default_rng(14)
    metrics_url = triton_server.metrics_url
    before = read_metrics(metrics_url)
    mismatches: list[str] = []

    def ask(index: int, faces: np.ndarray) -> None:
        client = grpcclient.InferenceServerClient(triton_server.address)
        try:
            request = grpcclient.InferInput(input_spec["name"], list(faces.shape), "FP32")
            request.set_data_from_numpy(faces)
            answer = client.infer(MODEL, [request], outputs=[grpcclient.InferRequestedOutput(n) for n in outputs])
            expected = local.run(outputs, {input_spec["name"]: faces})
            for name, want in zip(outputs, expected):
                got = answer.as_numpy(name)
                if got is None or got.shape != want.shape or not np.allclose(got, want, atol=1e-4):
                    mismatches.append(f"request {index}: {name} is not its own faces' answer")
        finally:
            client.close()

    batched = False
    for _ in range(ROUNDS):
        threads = []
        for index in range(CONCURRENT):
            faces = rng.random((1 + index % 2, *input_spec["shape"][1:]), dtype=np.float32)
            threads.append(threading.Thread(target=ask, args=(index, faces)))
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        after = read_metrics(metrics_url)
        executions = after[("nv_inference_exec_count", MODEL)] - before.get(("nv_inference_exec_count", MODEL), 0)
        requests = (after[("nv_inference_request_success", MODEL)]
                    - before.get(("nv_inference_request_success", MODEL), 0))
        batched = executions < requests
        if batched:
            break
    assert not mismatches, mismatches
    assert batched, f"Triton never ran two requests in one execution in {ROUNDS} rounds of {CONCURRENT}"


def test_a_model_the_backend_cannot_load_is_named_at_once(exported_models: Path, tmp_path: Path) -> None:
    """`swapstream triton` with model code that fails inside tritonserver (here: backend_model.py swapped for one that
    raises on import): it exits 1 within seconds, naming a model and Triton's reason (not after PyTriton's 120 s
    wait for readiness), and leaves no repository, tritonserver or /dev/shm region behind."""
    broken = tmp_path / "broken_model.py"
    broken.write_text('raise ImportError("broken on purpose")\n')
    grpc, http, metrics = free_ports(3)
    argv = ["triton", "--models", str(exported_models), "--grpc-port", str(grpc), "--http-port", str(http),
            "--metrics-port", str(metrics), "--threads", "1", "--ready-timeout", "60"]
    # the command as a user runs it, with the one module attribute that names the model code pointed elsewhere
    program = ("import pathlib, sys, fleet.repository, swapstream.cli; "
               f"fleet.repository.BACKEND_MODEL = pathlib.Path({str(broken)!r}); "
               f"sys.exit(swapstream.cli.main({argv!r}))")
    repositories = set(Path(tempfile.gettempdir()).glob("swapstream-triton-*"))
    shm = set(Path("/dev/shm").glob("pytrtion*"))
    started = time.monotonic()
    result = subprocess.run([sys.executable, "-c", program], cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                            capture_output=True, text=True, timeout=120)
    seconds = time.monotonic() - started
    assert result.returncode == 1, result.stderr[-3000:]
    assert re.search(r"swapstream triton: error: .*could not load (swap_a2b|swap_b2a|digits): .*broken on purpose",
                     result.stderr), result.stderr[-3000:]
    assert seconds < 45, f"took {seconds:.0f} s to report it"
    assert set(Path(tempfile.gettempdir()).glob("swapstream-triton-*")) == repositories, "repository left behind"
    assert set(Path("/dev/shm").glob("pytrtion*")) <= shm, "shared memory left behind"
    processes = subprocess.run(["ps", "-eo", "args"], capture_output=True, text=True).stdout
    assert f"--grpc-port={grpc}" not in processes, "its tritonserver is still running"
