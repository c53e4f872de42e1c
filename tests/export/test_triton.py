"""The Triton model repository: every config.pbtxt parses as Triton's ModelConfig and matches its ONNX graph."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from google.protobuf import descriptor_pb2, descriptor_pool, message_factory, text_format

_F = descriptor_pb2.FieldDescriptorProto


def _model_config_class() -> type:
    """Triton's ModelConfig message, the subset these configs use, with the field names and numbers of
    triton-inference-server/common protobuf/model_config.proto; unknown fields make text_format.Parse fail."""
    file = descriptor_pb2.FileDescriptorProto(name="swapstream_test_model_config.proto", package="inference",
                                              syntax="proto3")
    data_type = file.enum_type.add(name="DataType")
    for number, name in enumerate(["TYPE_INVALID", "TYPE_BOOL", "TYPE_UINT8", "TYPE_UINT16", "TYPE_UINT32",
                                   "TYPE_UINT64", "TYPE_INT8", "TYPE_INT16", "TYPE_INT32", "TYPE_INT64",
                                   "TYPE_FP16", "TYPE_FP32", "TYPE_FP64", "TYPE_STRING", "TYPE_BF16"]):
        data_type.value.add(name=name, number=number)

    def message(name: str, fields: list[tuple[str, int, int, int, str]]) -> descriptor_pb2.DescriptorProto:
        proto = file.message_type.add(name=name)
        for field_name, number, kind, label, type_name in fields:
            field = proto.field.add(name=field_name, number=number, type=kind, label=label)
            if type_name:
                field.type_name = type_name
        return proto

    one, many = _F.LABEL_OPTIONAL, _F.LABEL_REPEATED
    message("ModelInput", [("name", 1, _F.TYPE_STRING, one, ""), ("data_type", 2, _F.TYPE_ENUM, one, ".inference.DataType"),
                           ("dims", 4, _F.TYPE_INT64, many, "")])
    message("ModelOutput", [("name", 1, _F.TYPE_STRING, one, ""), ("data_type", 2, _F.TYPE_ENUM, one, ".inference.DataType"),
                            ("dims", 3, _F.TYPE_INT64, many, "")])
    message("ModelDynamicBatching", [("preferred_batch_size", 1, _F.TYPE_INT32, many, ""),
                                     ("max_queue_delay_microseconds", 2, _F.TYPE_UINT64, one, "")])
    group = message("ModelInstanceGroup", [("count", 2, _F.TYPE_INT32, one, ""),
                                           ("kind", 4, _F.TYPE_ENUM, one, ".inference.ModelInstanceGroup.Kind")])
    kind = group.enum_type.add(name="Kind")
    for number, name in enumerate(["KIND_AUTO", "KIND_GPU", "KIND_CPU", "KIND_MODEL"]):
        kind.value.add(name=name, number=number)
    policy = message("ModelOptimizationPolicy", [("execution_accelerators", 4, _F.TYPE_MESSAGE, one,
                                                  ".inference.ModelOptimizationPolicy.ExecutionAccelerators")])
    accelerators = policy.nested_type.add(name="ExecutionAccelerators")
    accelerators.field.add(name="gpu_execution_accelerator", number=1, type=_F.TYPE_MESSAGE, label=many,
                           type_name=".inference.ModelOptimizationPolicy.ExecutionAccelerators.Accelerator")
    accelerator = accelerators.nested_type.add(name="Accelerator")
    accelerator.field.add(name="name", number=1, type=_F.TYPE_STRING, label=one)
    accelerator.field.add(name="parameters", number=2, type=_F.TYPE_MESSAGE, label=many,
                          type_name=".inference.ModelOptimizationPolicy.ExecutionAccelerators.Accelerator."
                                    "ParametersEntry")
    entry = accelerator.nested_type.add(name="ParametersEntry")
    entry.options.map_entry = True
    entry.field.add(name="key", number=1, type=_F.TYPE_STRING, label=one)
    entry.field.add(name="value", number=2, type=_F.TYPE_STRING, label=one)
    message("ModelConfig", [
        ("name", 1, _F.TYPE_STRING, one, ""), ("platform", 2, _F.TYPE_STRING, one, ""),
        ("max_batch_size", 4, _F.TYPE_INT32, one, ""),
        ("input", 5, _F.TYPE_MESSAGE, many, ".inference.ModelInput"),
        ("output", 6, _F.TYPE_MESSAGE, many, ".inference.ModelOutput"),
        ("instance_group", 7, _F.TYPE_MESSAGE, many, ".inference.ModelInstanceGroup"),
        ("dynamic_batching", 11, _F.TYPE_MESSAGE, one, ".inference.ModelDynamicBatching"),
        ("optimization", 12, _F.TYPE_MESSAGE, one, ".inference.ModelOptimizationPolicy"),
    ])
    pool = descriptor_pool.DescriptorPool()
    pool.Add(file)
    return message_factory.GetMessageClass(pool.FindMessageTypeByName("inference.ModelConfig"))


_ONNX_TO_TRITON = {onnx.TensorProto.FLOAT: "TYPE_FP32", onnx.TensorProto.FLOAT16: "TYPE_FP16"}


def test_one_valid_config_per_model(exported_models: Path) -> None:
    manifest = json.loads((exported_models / "manifest.json").read_text())
    repository = exported_models / "triton"
    assert sorted(p.name for p in repository.iterdir()) == sorted(m["name"] for m in manifest["models"])
    config_class = _model_config_class()
    data_type = config_class.DESCRIPTOR.file.pool.FindEnumTypeByName("inference.DataType")

    for entry in manifest["models"]:
        folder = repository / entry["name"]
        config = text_format.Parse((folder / "config.pbtxt").read_text(), config_class())
        onnx_path = folder / "1" / "model.onnx"
        assert hashlib.sha256(onnx_path.read_bytes()).hexdigest() == entry["sha256"]
        assert config.name == entry["name"] and config.platform == "onnxruntime_onnx"
        assert config.max_batch_size == 8  # the fixture's --max-batch
        assert config.HasField("dynamic_batching")
        assert 0 < config.dynamic_batching.max_queue_delay_microseconds <= 10_000
        assert all(1 < size <= config.max_batch_size for size in config.dynamic_batching.preferred_batch_size)

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
        text_format.Parse('name: "x"\nmax_batch: 4\n', _model_config_class()())
