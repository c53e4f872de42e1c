"""Inference backends for the server, loaded only through `MODELS/manifest.json` (never imports torch).

`load_manifest(models_dir)` reads and validates the manifest; `load_backend(entry, models_dir)` checks the model
file (exists, sha256, input/output names and shapes) and opens it with the best runtime here: a native TensorRT
engine when the entry has one and `tensorrt` imports, else ONNX Runtime with TensorRT EP -> CUDA EP -> CPU
(whichever are installed). Every failure is a ModelLoadError naming the file, raised at load time.
`PassthroughBackend` returns its input face and a mask of ones (the echo pipeline).
"""

from __future__ import annotations

import importlib
import json
import logging
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Protocol, Sequence, runtime_checkable

import numpy as np

from stream_server.errors import ModelLoadError
from swapstream.manifest_schema import FORMAT_VERSION, MANIFEST_NAME, EngineInfo, TensorSpec, sha256_file

log = logging.getLogger(__name__)

TENSORRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
PROVIDER_PREFERENCE = (TENSORRT_EP, CUDA_EP, CPU_EP)
# ONNX Runtime intra-op threads when running on the CPU and the caller names no number (see OnnxRuntimeBackend).
CPU_INTRA_OP_THREADS = 1
# TensorRT EP profile bound when the entry brings no engine of its own (which would state its max_batch).
DEFAULT_TENSORRT_MAX_BATCH = 16
_NUMPY_DTYPES = {"float32": np.float32, "float16": np.float16, "int64": np.int64, "int32": np.int32,
                 "uint8": np.uint8}
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
               "tensor(int32)": "int32", "tensor(uint8)": "uint8"}




@dataclass(frozen=True)
class ModelEntry:
    """One model of the manifest."""

    name: str
    kind: Literal["swap", "digits"]
    direction: Literal["a2b", "b2a"] | None
    file: str
    sha256: str
    precision: Literal["fp32", "fp16"]
    engine: EngineInfo | None
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    face_size: int | None
    output_semantics: str | None
    opset: int
    source: dict[str, Any] = field(default_factory=dict)
    parity: dict[str, float] = field(default_factory=dict)
    created: str = ""
    versions: dict[str, str | None] = field(default_factory=dict)
    exporter: str | None = None


@dataclass(frozen=True)
class Manifest:
    """A parsed, validated manifest and the folder its files live in."""

    models_dir: Path
    format_version: int
    created: str
    models: tuple[ModelEntry, ...]

    @property
    def names(self) -> list[str]:
        """Every model name, in manifest order."""
        return [entry.name for entry in self.models]

    def get(self, name: str) -> ModelEntry:
        """The entry called `name`; ModelLoadError listing the names there are."""
        for entry in self.models:
            if entry.name == name:
                return entry
        raise ModelLoadError(f"{self.models_dir / MANIFEST_NAME}: no model named {name!r}; "
                             f"it has {', '.join(self.names) or 'none'}")

    def resolve(self, name_or_direction: str) -> ModelEntry:
        """A model by exact name, or by `"a2b"` / `"b2a"`: the first swap model of that direction."""
        for entry in self.models:
            if entry.name == name_or_direction:
                return entry
        if name_or_direction in ("a2b", "b2a"):
            for entry in self.models:
                if entry.kind == "swap" and entry.direction == name_or_direction:
                    return entry
        return self.get(name_or_direction)

    def of_kind(self, kind: Literal["swap", "digits"]) -> list[ModelEntry]:
        """Entries of one kind, in manifest order."""
        return [entry for entry in self.models if entry.kind == kind]


@runtime_checkable
class InferenceBackend(Protocol):
    """Runs one model on a batch; ONNX Runtime, TensorRT and the pass-through stand behind it."""

    entry: ModelEntry
    provider: str

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs for a float32 batch, in the manifest's output order."""
        ...

    def close(self) -> None:
        """Free what the runtime holds (called at server shutdown)."""
        ...


# ---------------------------------------------------------------------------------------------- manifest


def load_manifest(models_dir: str | Path) -> Manifest:
    """Read and validate `models_dir/manifest.json`; ModelLoadError naming the file on any problem."""
    models_dir = Path(models_dir)
    path = models_dir / MANIFEST_NAME
    if not models_dir.is_dir():
        raise ModelLoadError(f"models folder {models_dir} does not exist")
    if not path.is_file():
        raise ModelLoadError(f"{path} does not exist; create it with `swapstream export RUN... --out {models_dir}`")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ModelLoadError(f"{path} is not readable JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise ModelLoadError(f"{path}: expected a JSON object at the top level")
    if data.get("format_version") != FORMAT_VERSION:
        raise ModelLoadError(f"{path}: format_version {data.get('format_version')!r} is not {FORMAT_VERSION}")
    raw_models = data.get("models")
    if not isinstance(raw_models, list):
        raise ModelLoadError(f"{path}: 'models' must be a list")
    models = tuple(_parse_entry(path, index, raw) for index, raw in enumerate(raw_models))
    names = [entry.name for entry in models]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise ModelLoadError(f"{path}: model names repeat: {', '.join(repeated)}")
    return Manifest(models_dir=models_dir, format_version=FORMAT_VERSION, created=str(data.get("created", "")),
                    models=models)


def _parse_entry(path: Path, index: int, raw: object) -> ModelEntry:
    where = f"{path}: models[{index}]"
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{where} is not an object")
    where = f"{path}: model {raw.get('name', index)!r}"
    try:
        kind = raw["kind"]
        if kind not in ("swap", "digits"):
            raise ModelLoadError(f"{where}: kind {kind!r} is not 'swap' or 'digits'")
        direction = raw.get("direction")
        if kind == "swap" and direction not in ("a2b", "b2a"):
            raise ModelLoadError(f"{where}: a swap model needs direction 'a2b' or 'b2a', not {direction!r}")
        precision = raw.get("precision", "fp32")
        if precision not in ("fp32", "fp16"):
            raise ModelLoadError(f"{where}: precision {precision!r} is not 'fp32' or 'fp16'")
        engine_raw = raw.get("engine")
        engine = None
        if engine_raw is not None:
            engine = EngineInfo(file=str(engine_raw["file"]), sha256=str(engine_raw["sha256"]),
                                max_batch=int(engine_raw["max_batch"]))
        inputs = tuple(_parse_spec(where, spec) for spec in raw["inputs"])
        outputs = tuple(_parse_spec(where, spec) for spec in raw["outputs"])
        if len(inputs) != 1:
            raise ModelLoadError(f"{where}: expected exactly one input, found {len(inputs)}")
        face_size = raw.get("face_size")
        if kind == "swap" and (not isinstance(face_size, int) or face_size <= 0):
            raise ModelLoadError(f"{where}: a swap model needs a positive integer face_size, not {face_size!r}")
        return ModelEntry(
            name=str(raw["name"]),
            kind=kind,
            direction=direction,
            file=str(raw["file"]),
            sha256=str(raw["sha256"]).lower(),
            precision=precision,
            engine=engine,
            inputs=inputs,
            outputs=outputs,
            face_size=face_size,
            output_semantics=raw.get("output_semantics"),
            opset=int(raw.get("opset", 0)),
            source=dict(raw.get("source") or {}),
            parity={str(k): float(v) for k, v in (raw.get("parity") or {}).items()},
            created=str(raw.get("created", "")),
            versions=dict(raw.get("versions") or {}),
            exporter=raw.get("exporter"),
        )
    except (KeyError, TypeError, ValueError) as exc:
        missing = f"missing field {exc}" if isinstance(exc, KeyError) else str(exc)
        raise ModelLoadError(f"{where}: {missing}") from exc


def _parse_spec(where: str, raw: object) -> TensorSpec:
    if not isinstance(raw, dict):
        raise ModelLoadError(f"{where}: tensor spec {raw!r} is not an object")
    shape = tuple(dim if isinstance(dim, str) else int(dim) for dim in raw["shape"])
    dtype = str(raw["dtype"])
    if dtype not in _NUMPY_DTYPES:
        raise ModelLoadError(f"{where}: tensor {raw.get('name')!r} has unsupported dtype {dtype!r}")
    if not shape or not isinstance(shape[0], str):
        raise ModelLoadError(f"{where}: tensor {raw.get('name')!r} must start with the batch axis, shape {list(shape)}")
    return TensorSpec(name=str(raw["name"]), shape=shape, dtype=dtype)


# ---------------------------------------------------------------------------------------------- checks



def verify_file(path: Path, expected_sha256: str, entry_name: str) -> None:
    """ModelLoadError naming `path` if it is missing or its sha256 is not the manifest's."""
    if not path.is_file():
        raise ModelLoadError(f"model file {path} (model {entry_name!r}) does not exist")
    try:
        actual = sha256_file(path)
    except OSError as exc:
        raise ModelLoadError(f"model file {path} (model {entry_name!r}) cannot be read: {exc}") from exc
    if actual != expected_sha256:
        raise ModelLoadError(f"model file {path} (model {entry_name!r}) has sha256 {actual}, but the manifest says "
                             f"{expected_sha256}: the file changed after export; export again")


def _shapes_agree(declared: tuple[int | str, ...], found: Sequence[int | str | None]) -> bool:
    if len(declared) != len(found):
        return False
    for want, got in zip(declared, found):
        if isinstance(want, str):
            if isinstance(got, int):  # the manifest says dynamic but the graph fixes it
                return False
        elif got != want:
            return False
    return True


def check_io(path: Path, entry: ModelEntry, found_inputs: list[TensorSpec], found_outputs: list[TensorSpec]) -> None:
    """ModelLoadError naming `path` where the graph's inputs/outputs differ from the manifest's."""
    for role, declared, found in (("inputs", entry.inputs, found_inputs), ("outputs", entry.outputs, found_outputs)):
        declared_names = [spec.name for spec in declared]
        found_names = [spec.name for spec in found]
        if declared_names != found_names:
            raise ModelLoadError(f"model file {path}: {role} are {found_names}, the manifest says {declared_names}")
        for want, got in zip(declared, found):
            if not _shapes_agree(want.shape, got.shape) or want.dtype != got.dtype:
                raise ModelLoadError(f"model file {path}: {role[:-1]} {want.name!r} is {got.dtype} "
                                     f"{list(got.shape)}, the manifest says {want.dtype} {list(want.shape)}")


def _prepare_batch(entry: ModelEntry, batch: np.ndarray) -> np.ndarray:
    spec = entry.inputs[0]
    array = np.ascontiguousarray(batch, dtype=_NUMPY_DTYPES[spec.dtype])
    if array.ndim != len(spec.shape) or not _shapes_agree(spec.tail, array.shape[1:]):
        raise ValueError(f"model {entry.name!r} takes {spec.name} of shape {list(spec.shape)}, got {list(batch.shape)}")
    return array


# ---------------------------------------------------------------------------------------------- backends


def available_providers() -> list[str]:
    """ONNX Runtime's execution providers here, in our order of preference (only the ones we use)."""
    import onnxruntime as ort

    installed = set(ort.get_available_providers())
    return [name for name in PROVIDER_PREFERENCE if name in installed]


class OnnxRuntimeBackend:
    """An ONNX Runtime session over a checked model file."""

    def __init__(self, entry: ModelEntry, path: Path, providers: Sequence[str | tuple[str, dict[str, Any]]],
                 intra_op_threads: int | None = None) -> None:
        import onnxruntime as ort

        self.entry = entry
        self.path = path
        options = ort.SessionOptions()
        requested = [p if isinstance(p, str) else p[0] for p in providers]
        if intra_op_threads is None and requested[:1] == [CPU_EP]:
            # The server's faces are small and its cores are shared with decode, encode, tracking and the
            # detector: one inference thread, rather than one per core fighting those for the same cores.
            intra_op_threads = CPU_INTRA_OP_THREADS
        if intra_op_threads is not None:
            options.intra_op_num_threads = intra_op_threads
        # ORT's pool threads busy-wait for the next work item by default; between frames that burns the cores
        # the rest of the frame path needs.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.add_session_config_entry("session.inter_op.allow_spinning", "0")
        options.log_severity_level = 3  # ORT's own warnings (e.g. a missing CUDA library) go to our log instead
        try:
            self.session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
        except Exception as exc:  # onnxruntime raises untyped errors (Fail, InvalidProtobuf, ...)
            raise ModelLoadError(f"model file {path} (model {entry.name!r}) cannot be loaded by ONNX Runtime, "
                                 f"it is corrupt or not an ONNX graph: {exc}") from exc
        active = self.session.get_providers()
        self.provider = active[0]
        if requested and requested[0] != self.provider:
            log.warning("%s: asked for %s but ONNX Runtime is using %s", entry.name, requested[0], self.provider)
        self.max_batch = _tensorrt_max_batch(entry) if self.provider == TENSORRT_EP else None
        check_io(path, entry, [_ort_spec(node) for node in self.session.get_inputs()],
                 [_ort_spec(node) for node in self.session.get_outputs()])
        self._output_names = [spec.name for spec in entry.outputs]
        log.info("model %s: ONNX Runtime %s on %s (%s)", entry.name, ort.__version__, self.provider, path.name)

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs for `batch`, in the manifest's output order."""
        array = _prepare_batch(self.entry, batch)
        name = self.entry.inputs[0].name
        if self.max_batch is None or len(array) <= self.max_batch:
            return list(self.session.run(self._output_names, {name: array}))
        parts = [self.session.run(self._output_names, {name: array[i:i + self.max_batch]})
                 for i in range(0, len(array), self.max_batch)]
        return [np.concatenate([part[k] for part in parts]) for k in range(len(self._output_names))]

    def close(self) -> None:
        """Nothing to free by hand: ONNX Runtime releases the session with the object."""


def _ort_spec(node: Any) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, (int, str)) else "?" for dim in node.shape)
    return TensorSpec(name=node.name, shape=shape, dtype=_ORT_DTYPES.get(node.type, node.type))


def _tensorrt_max_batch(entry: ModelEntry) -> int:
    return entry.engine.max_batch if entry.engine is not None else DEFAULT_TENSORRT_MAX_BATCH


def _provider_options(entry: ModelEntry, provider: str) -> str | tuple[str, dict[str, Any]]:
    if provider != TENSORRT_EP:
        return provider
    spec = entry.inputs[0]
    tail = "x".join(str(dim) for dim in spec.tail)
    max_batch = _tensorrt_max_batch(entry)
    cache = Path(tempfile.gettempdir()) / "swapstream-trt-cache" / entry.sha256[:16]
    cache.mkdir(parents=True, exist_ok=True)
    return (TENSORRT_EP, {
        "trt_fp16_enable": True,
        "trt_engine_cache_enable": True,
        "trt_engine_cache_path": str(cache),
        "trt_timing_cache_enable": True,
        "trt_timing_cache_path": str(cache),
        "trt_profile_min_shapes": f"{spec.name}:1x{tail}",
        "trt_profile_opt_shapes": f"{spec.name}:{min(4, max_batch)}x{tail}",
        "trt_profile_max_shapes": f"{spec.name}:{max_batch}x{tail}",
    })


class TensorRTEngineBackend:
    """A serialized TensorRT engine run through cuda-python device buffers (no torch)."""

    def __init__(self, entry: ModelEntry, path: Path) -> None:
        trt = importlib.import_module("tensorrt")
        self._cudart = _import_cudart()
        assert entry.engine is not None
        self.entry = entry
        self.path = path
        self.provider = f"TensorRT {trt.__version__} (native engine)"
        self.max_batch = entry.engine.max_batch
        self._lock = threading.Lock()
        self._buffers: dict[str, int] = {}
        self._stream = None
        runtime = trt.Runtime(trt.Logger(trt.Logger.WARNING))
        engine = runtime.deserialize_cuda_engine(path.read_bytes())
        if engine is None:
            raise ModelLoadError(f"engine file {path} (model {entry.name!r}) cannot be deserialized: corrupt, or built "
                                 f"by another TensorRT version or for another GPU; export again on this machine")
        self._engine = engine
        self._context = engine.create_execution_context()
        inputs, outputs = [], []
        for index in range(engine.num_io_tensors):
            name = engine.get_tensor_name(index)
            dtype = np.dtype(trt.nptype(engine.get_tensor_dtype(name))).name
            spec = TensorSpec(name, tuple("batch" if d < 0 else int(d) for d in engine.get_tensor_shape(name)), dtype)
            (inputs if engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT else outputs).append(spec)
        by_name = {spec.name: spec for spec in outputs}
        if set(by_name) == {spec.name for spec in entry.outputs}:  # engines list I/O in their own order
            outputs = [by_name[spec.name] for spec in entry.outputs]
        check_io(path, entry, inputs, outputs)
        self._specs = {spec.name: spec for spec in [*inputs, *outputs]}
        self._stream = self._call("cudaStreamCreate")[0]
        for spec in self._specs.values():
            count = self.max_batch * int(np.prod([int(d) for d in spec.tail]))
            pointer = self._call("cudaMalloc", count * np.dtype(spec.dtype).itemsize)[0]
            self._buffers[spec.name] = int(pointer)
            self._context.set_tensor_address(spec.name, int(pointer))
        log.info("model %s: %s (%s)", entry.name, self.provider, path.name)

    def _call(self, function: str, *args: Any) -> tuple[Any, ...]:
        result = getattr(self._cudart, function)(*args)
        error, values = (result[0], result[1:]) if isinstance(result, tuple) else (result, ())
        if int(error) != 0:
            raise RuntimeError(f"CUDA {function} failed: {error}")
        return values

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """Outputs for `batch` (split into chunks of the engine's max batch), in the manifest's output order."""
        array = _prepare_batch(self.entry, batch)
        parts = [self._run_chunk(array[i:i + self.max_batch]) for i in range(0, len(array), self.max_batch)]
        if len(parts) == 1:
            return parts[0]
        return [np.concatenate([part[k] for part in parts]) for k in range(len(self.entry.outputs))]

    def _run_chunk(self, chunk: np.ndarray) -> list[np.ndarray]:
        cudart = self._cudart
        to_device = cudart.cudaMemcpyKind.cudaMemcpyHostToDevice
        to_host = cudart.cudaMemcpyKind.cudaMemcpyDeviceToHost
        input_spec = self.entry.inputs[0]
        chunk = np.ascontiguousarray(chunk, dtype=self._specs[input_spec.name].dtype)
        with self._lock:
            self._context.set_input_shape(input_spec.name, tuple(chunk.shape))
            self._call("cudaMemcpyAsync", self._buffers[input_spec.name], chunk.ctypes.data, chunk.nbytes, to_device,
                       self._stream)
            if not self._context.execute_async_v3(int(self._stream)):
                raise RuntimeError(f"TensorRT execution of {self.path} failed")
            results = []
            for spec in self.entry.outputs:
                shape = tuple(self._context.get_tensor_shape(spec.name))
                host = np.empty(shape, dtype=self._specs[spec.name].dtype)
                self._call("cudaMemcpyAsync", host.ctypes.data, self._buffers[spec.name], host.nbytes, to_host,
                           self._stream)
                results.append(host)
            self._call("cudaStreamSynchronize", self._stream)
        return [result.astype(np.float32, copy=False) for result in results]

    def close(self) -> None:
        """Free the device buffers and the stream."""
        for pointer in self._buffers.values():
            self._cudart.cudaFree(pointer)
        self._buffers.clear()
        if self._stream is not None:
            self._cudart.cudaStreamDestroy(self._stream)
            self._stream = None


def _import_cudart() -> Any:
    try:
        return importlib.import_module("cuda.bindings.runtime")
    except ImportError:
        return importlib.import_module("cuda.cudart")  # cuda-python < 12.6


class PassthroughBackend:
    """The echo pipeline's backend: returns the input faces and a mask of ones."""

    def __init__(self, face_size: int = 64) -> None:
        self.provider = "passthrough"
        self.entry = ModelEntry(
            name="passthrough", kind="swap", direction="a2b", file="", sha256="", precision="fp32", engine=None,
            inputs=(TensorSpec("face", ("batch", 3, face_size, face_size), "float32"),),
            outputs=(TensorSpec("rgb", ("batch", 3, face_size, face_size), "float32"),
                     TensorSpec("mask", ("batch", 1, face_size, face_size), "float32")),
            face_size=face_size, output_semantics=None, opset=0,
        )

    def run(self, batch: np.ndarray) -> list[np.ndarray]:
        """`[batch, ones]`: the face unchanged and a full mask."""
        array = _prepare_batch(self.entry, batch)
        return [array.copy(), np.ones((len(array), 1, *array.shape[2:]), dtype=np.float32)]

    def close(self) -> None:
        """Nothing to free."""


def load_backend(
    entry: ModelEntry,
    models_dir: str | Path,
    providers: Sequence[str] | None = None,
    *,
    intra_op_threads: int | None = None,
) -> InferenceBackend:
    """Check `entry`'s file and open it with the best runtime here (see the module docstring).

    `providers`: ONNX Runtime execution providers to use, in order (default: TensorRT EP, CUDA EP, CPU, where
    installed); naming any disables the native TensorRT engine.
    """
    models_dir = Path(models_dir)
    path = models_dir / entry.file
    verify_file(path, entry.sha256, entry.name)
    if providers is None and entry.engine is not None:
        engine_path = models_dir / entry.engine.file
        verify_file(engine_path, entry.engine.sha256, entry.name)
        reason = _native_tensorrt_unavailable()
        if reason is None:
            return TensorRTEngineBackend(entry, engine_path)
        log.info("model %s: has a TensorRT engine but %s; using ONNX Runtime", entry.name, reason)
    usable = available_providers()
    if providers is None:
        chosen = usable
    else:
        unknown = [name for name in providers if name not in usable]
        if unknown:
            raise ModelLoadError(f"model file {path}: execution providers {unknown} are not available here "
                                 f"(available: {usable})")
        chosen = list(providers)
    return OnnxRuntimeBackend(entry, path, [_provider_options(entry, name) for name in chosen],
                              intra_op_threads=intra_op_threads)


def _native_tensorrt_unavailable() -> str | None:
    for module, why in (("tensorrt", "the 'tensorrt' package"), ("cuda.bindings.runtime", "cuda-python")):
        try:
            importlib.import_module(module)
        except Exception:
            if module == "cuda.bindings.runtime":
                try:
                    importlib.import_module("cuda.cudart")
                    continue
                except Exception:
                    pass
            return f"{why} does not import"
    return None
