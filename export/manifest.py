"""`MODELS/manifest.json`: the one file the server trusts (schema in docs/CONTRACTS.md)."""

from __future__ import annotations

import datetime as _dt
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import onnx

from export.errors import ExportError
from swapstream.manifest_schema import FORMAT_VERSION, MANIFEST_NAME, EngineInfo, TensorSpec, sha256_file


ModelKind = Literal["swap", "digits"]
Precision = Literal["fp32", "fp16"]

_ONNX_DTYPES = {
    onnx.TensorProto.FLOAT: "float32",
    onnx.TensorProto.FLOAT16: "float16",
    onnx.TensorProto.INT64: "int64",
    onnx.TensorProto.INT32: "int32",
    onnx.TensorProto.UINT8: "uint8",
}




@dataclass(frozen=True)
class ManifestEntry:
    """One exported model, as the server will see it."""

    name: str
    kind: ModelKind
    direction: Literal["a2b", "b2a"] | None
    file: str
    sha256: str
    precision: Precision
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    face_size: int | None
    output_semantics: str | None
    opset: int
    source: dict[str, Any]
    parity: dict[str, float]
    created: str
    versions: dict[str, str | None]
    exporter: str
    engine: EngineInfo | None = None

    def to_json(self) -> dict[str, Any]:
        """The manifest's JSON form, keys in the contract's order."""
        return {
            "name": self.name,
            "kind": self.kind,
            "direction": self.direction,
            "file": self.file,
            "sha256": self.sha256,
            "precision": self.precision,
            "engine": asdict(self.engine) if self.engine is not None else None,
            "inputs": [spec.to_json() for spec in self.inputs],
            "outputs": [spec.to_json() for spec in self.outputs],
            "face_size": self.face_size,
            "output_semantics": self.output_semantics,
            "opset": self.opset,
            "source": dict(self.source),
            "parity": dict(self.parity),
            "created": self.created,
            "versions": dict(self.versions),
            "exporter": self.exporter,
        }


@dataclass(frozen=True)
class ManifestDocument:
    """The whole manifest file."""

    created: str
    models: tuple[ManifestEntry, ...] = field(default_factory=tuple)

    def to_json(self) -> dict[str, Any]:
        """The manifest's JSON form."""
        return {
            "format_version": FORMAT_VERSION,
            "created": self.created,
            "models": [entry.to_json() for entry in self.models],
        }


def utc_now() -> str:
    """The current time as the manifest writes it: ISO 8601, UTC, whole seconds, `Z` suffix."""
    return _dt.datetime.now(_dt.timezone.utc).replace(microsecond=0).isoformat().replace("+00:00", "Z")



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


def write_manifest(models_dir: Path, document: ManifestDocument) -> Path:
    """Write `models_dir/manifest.json` atomically (temp file + rename) and return its path."""
    names = [entry.name for entry in document.models]
    duplicates = sorted({name for name in names if names.count(name) > 1})
    if duplicates:
        raise ExportError(f"manifest names must be unique; repeated: {', '.join(duplicates)}")
    target = models_dir / MANIFEST_NAME
    fd, tmp_name = tempfile.mkstemp(prefix=".manifest-", suffix=".json", dir=models_dir)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            json.dump(document.to_json(), handle, indent=2)
            handle.write("\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp makes it private; the server may run as another user
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return target
