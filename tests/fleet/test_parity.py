"""`export --triton`'s repository and `swapstream triton` declare the same models: names, tensors, shapes, data
types, batching and sha256, as the running Triton reports them, so a media server cannot tell the NGC Triton
container from `swapstream triton`."""

from __future__ import annotations

import json
from pathlib import Path

import tritonclient.grpc as grpcclient
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from swapstream.triton_model import MAX_QUEUE_DELAY_US, SHA256_PARAMETER
from tests.fixtures.triton import TritonProcess


def _tensors(tensors: object) -> list[tuple[str, str, list[int]]]:
    return [(t.name, model_config_pb2.DataType.Name(t.data_type), list(t.dims)) for t in tensors]  # type: ignore[attr-defined]


def test_repository_configs_and_served_configs_agree(exported_models: Path, triton_server: TritonProcess) -> None:
    manifest = json.loads((exported_models / "manifest.json").read_text())
    repository = exported_models / "triton"
    client = grpcclient.InferenceServerClient(triton_server.address)
    try:
        for entry in manifest["models"]:
            written = text_format.Parse((repository / entry["name"] / "config.pbtxt").read_text(),
                                        model_config_pb2.ModelConfig())
            served = client.get_model_config(entry["name"]).config
            metadata = client.get_model_metadata(entry["name"])

            assert served.name == written.name == entry["name"]
            assert _tensors(served.input) == _tensors(written.input)
            assert _tensors(served.output) == _tensors(written.output)
            assert [t.name for t in written.input] == [spec["name"] for spec in entry["inputs"]]
            assert [t.name for t in written.output] == [spec["name"] for spec in entry["outputs"]]
            assert served.max_batch_size == written.max_batch_size == 8  # the export fixture's --max-batch
            assert (served.dynamic_batching.max_queue_delay_microseconds
                    == written.dynamic_batching.max_queue_delay_microseconds == MAX_QUEUE_DELAY_US)
            assert list(served.dynamic_batching.preferred_batch_size) == list(
                written.dynamic_batching.preferred_batch_size)
            assert (served.parameters[SHA256_PARAMETER].string_value
                    == written.parameters[SHA256_PARAMETER].string_value == entry["sha256"])
            # what a client sees per request: the batch axis (-1) in front of the declared dims
            for spec, tensor in zip(entry["inputs"] + entry["outputs"], [*metadata.inputs, *metadata.outputs]):
                assert tensor.name == spec["name"]
                assert list(tensor.shape) == [-1, *spec["shape"][1:]]
                assert tensor.datatype == "FP32" and spec["dtype"] == "float32"
    finally:
        client.close()
