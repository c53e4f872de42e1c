"""The Triton model repository: every config.pbtxt parses as Triton's ModelConfig and matches its ONNX graph."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2

from swapstream.triton_model import MAX_QUEUE_DELAY_US, SHA256_PARAMETER


_ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}


def test_one_valid_config_per_model(exported_models: Path) -> None:
    manifest = json.loads((exported_models / "manifest.json").read_text())
    repository = exported_models / "triton"
    assert sorted(p.name for p in repository.iterdir()) == sorted(m["name"] for m in manifest["models"])
    data_type = model_config_pb2.DataType.DESCRIPTOR

    for entry in manifest["models"]:
        folder = repository / entry["name"]
        # Triton's own ModelConfig (model_config.proto, shipped in tritonclient): unknown fields fail to parse
        config = text_format.Parse((folder / "config.pbtxt").read_text(), model_config_pb2.ModelConfig())
        onnx_path = folder / "1" / "model.onnx"
        assert hashlib.sha256(onnx_path.read_bytes()).hexdigest() == entry["sha256"]
        assert config.name == entry["name"] and config.platform == "onnxruntime_onnx"
        assert config.max_batch_size == 8  # the fixture's --max-batch
        assert config.HasField("dynamic_batching")
        # the shared default (0 since the fleet's hop measurements: a delay only adds latency to live frames)
        assert config.dynamic_batching.max_queue_delay_microseconds == MAX_QUEUE_DELAY_US
        assert all(1 < size <= config.max_batch_size for size in config.dynamic_batching.preferred_batch_size)
        assert config.parameters[SHA256_PARAMETER].string_value == entry["sha256"]

        graph = onnx.load(str(onnx_path)).graph
        for declared, actual in [*zip(config.input, graph.input), *zip(config.output, graph.output)]:
            assert declared.name == actual.name
            assert data_type.values_by_number[declared.data_type].name == _ONNX_TO_TRITON[
                actual.type.tensor_type.elem_type]
            dims = actual.type.tensor_type.shape.dim
            assert dims[0].dim_param  # batch axis is dynamic, as max_batch_size > 0 requires
            assert list(declared.dims) == [d.dim_value for d in dims[1:]]
        assert len(config.input) == len(graph.input) and len(config.output) == len(graph.output)

        # Triton would feed batches up to max_batch_size: the copied graph must take one
        session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        batch = np.zeros((config.max_batch_size, *config.input[0].dims), np.float32)
        outputs = session.run(None, {config.input[0].name: batch})
        for declared, produced in zip(config.output, outputs):
            assert produced.shape == (config.max_batch_size, *declared.dims)


def test_schema_rejects_a_misspelt_field() -> None:
    """The schema above is strict, so the passing test means something."""
    with pytest.raises(text_format.ParseError):
        text_format.Parse('name: "x"\nmax_batch: 4\n', model_config_pb2.ModelConfig())
