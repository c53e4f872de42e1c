"""The stream server's Triton client against a real `swapstream triton`: same outputs as in-process ONNX Runtime,
requests from many callers batched by Triton, and clear errors for missing or mismatched models."""

from __future__ import annotations

import asyncio
import re
import threading
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from stream_server.backends import load_backend, load_manifest
from stream_server.backends.triton import TritonInference, parse_triton_url
from stream_server.errors import ConfigError, TritonModelError
from swapstream.manifest_schema import TensorSpec
from tests.fixtures.triton import TritonProcess

TOLERANCE = 1e-5
METRICS_WAIT_S = 10.0


@pytest.fixture(scope="module")
def triton(triton_server: TritonProcess, exported_models: Path):
    connection = TritonInference(triton_server.url, load_manifest(exported_models).models)
    connection.check()
    yield connection
    connection.close()


def test_url_parsing() -> None:
    assert parse_triton_url("triton://triton:8001") == "triton:8001"
    assert parse_triton_url("triton://10.0.0.5") == "10.0.0.5:8001"
    assert parse_triton_url("triton://[::1]:9001") == "[::1]:9001"
    for bad in ("http://triton:8001", "triton://", "triton://host:8001/v2", "triton://host:port"):
        with pytest.raises(ConfigError, match=re.escape(f"--inference {bad}")):
            parse_triton_url(bad)


def test_outputs_equal_in_process_onnxruntime(triton: TritonInference, exported_models: Path) -> None:
    manifest = load_manifest(exported_models)
    rng = np.random.default_rng(7)
    for entry in manifest.models:
        local = load_backend(entry, exported_models, providers=["CPUExecutionProvider"])
        # 11 > the model's max batch of 8: the client splits the batch and joins the answers
        for count in (1, 3, 11):
            batch = rng.random((count, *entry.inputs[0].tail), dtype=np.float32)
            expected = local.run(batch)
            through_triton = triton.backend(entry.name).run(batch)
            awaited = asyncio.run(triton.infer(entry.name, batch))
            assert len(through_triton) == len(expected) == len(entry.outputs)
            for want, got, got_async in zip(expected, through_triton, awaited):
                assert got.shape == want.shape and got.dtype == want.dtype
                np.testing.assert_allclose(got, want, rtol=0, atol=TOLERANCE)
                np.testing.assert_allclose(got_async, want, rtol=0, atol=TOLERANCE)
    assert triton.backend("swap_a2b").provider == f"Triton {triton.address}"


def test_concurrent_requests_are_batched_by_triton(triton: TritonInference, triton_server: TritonProcess) -> None:
    """Many callers at once (worker threads, as the media servers' sessions are): Triton's own metrics count every
    request and fewer executions than requests, so some batch held more than one face."""
    model, callers, rounds = "swap_b2a", 8, 4
    face = np.random.default_rng(3).random((1, 3, 64, 64), dtype=np.float32)
    before = triton_server.metrics()
    barrier = threading.Barrier(callers)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            for _ in range(rounds):
                barrier.wait(timeout=30)
                triton.run(model, face)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=call) for _ in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors
    # Triton counts a request a moment after its reply has left (a loaded machine read 30 of 32 right away):
    # read the metrics again until every request is counted or the wait runs out, then compare exactly.
    deadline = time.monotonic() + METRICS_WAIT_S
    while True:
        after = triton_server.metrics()
        counted = after.get(("nv_inference_request_success", model), 0.0) - before.get(
            ("nv_inference_request_success", model), 0.0)
        if counted >= callers * rounds or time.monotonic() > deadline:
            break
        time.sleep(0.2)

    def delta(metric: str) -> float:
        return after[(metric, model)] - before.get((metric, model), 0.0)

    assert delta("nv_inference_request_success") == callers * rounds
    assert delta("nv_inference_count") == callers * rounds  # one face per request
    assert delta("nv_inference_exec_count") < callers * rounds, "every request ran alone: nothing was batched"


def test_check_names_missing_and_mismatched_models(triton_server: TritonProcess, exported_models: Path) -> None:
    entries = {entry.name: entry for entry in load_manifest(exported_models).models}
    swap, digits = entries["swap_a2b"], entries["digits"]
    wrong_shape = replace(digits, inputs=(TensorSpec("pixels", ("batch", 128), "float32"),))
    cases = [
        ([swap, replace(swap, name="ghost_model")], r"not ready \(or not there\): ghost_model"),
        ([replace(swap, sha256="0" * 64)], r"swap_a2b serves a file with sha256 [0-9a-f]{64}, the manifest's"),
        ([wrong_shape], r"digits input 'pixels' is TYPE_FP32 \[256\] per item, the manifest says float32 \[128\]"),
    ]
    for manifest_entries, message in cases:
        connection = TritonInference(triton_server.url, manifest_entries)
        try:
            with pytest.raises(TritonModelError, match=message):
                connection.check()
        finally:
            connection.close()
