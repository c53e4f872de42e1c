"""What export needs onnx for in the manifest: tensor specs read back from a written graph.

The manifest itself (ModelEntry, Manifest, write_manifest, utc_now) is swapstream.manifest, shared with the
server; export builds entries of that type from what `graph_io_specs` reads back.
"""

from __future__ import annotations

from pathlib import Path

import onnx

from export.errors import ExportError
from swapstream.manifest_schema import TensorSpec

_ONNX_DTYPES: dict[int, str] = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.UINT8: "uint8",
}


def graph_io_specs(onnx_path: Path) -> tuple[tuple[TensorSpec, ...], tuple[TensorSpec, ...]]:
    """Read input and output specs back from an ONNX file, so the manifest describes the file as written."""
    model = onnx.load(str(onnx_path), load_external_data=False)
    initializers = {init.name for init in model.graph.initializer}

    def spec(value: onnx.ValueInfoProto) -> TensorSpec:
        tensor_type = value.type.tensor_type
        dims: list[int | str] = []
        for dim in tensor_type.shape.dim:
            if dim.HasField("dim_value"):
                dims.append(int(dim.dim_value))
            elif dim.HasField("dim_param"):
                dims.append(dim.dim_param)
            else:
                raise ExportError(f"{onnx_path}: {value.name} has a dimension with neither size nor name")
        dtype = _ONNX_DTYPES.get(tensor_type.elem_type)
        if dtype is None:
            raise ExportError(f"{onnx_path}: {value.name} has unsupported element type {tensor_type.elem_type}")
        return TensorSpec(value.name, tuple(dims), dtype)

    inputs = tuple(spec(v) for v in model.graph.input if v.name not in initializers)
    outputs = tuple(spec(v) for v in model.graph.output)
    return inputs, outputs
