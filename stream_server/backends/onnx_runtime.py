"""The ONNX Runtime backend: TensorRT EP -> CUDA EP -> CPU, whichever are installed (onnxruntime imported lazily)."""

from __future__ import annotations

import logging
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from stream_server.backends.base import Array, check_io, prepare_batch, split_batches
from stream_server.errors import ModelLoadError
from swapstream.manifest import ModelEntry
from swapstream.manifest_schema import TensorSpec

log = logging.getLogger(__name__)

TENSORRT_EP = "TensorrtExecutionProvider"
CUDA_EP = "CUDAExecutionProvider"
CPU_EP = "CPUExecutionProvider"
PROVIDER_PREFERENCE = (TENSORRT_EP, CUDA_EP, CPU_EP)
# ONNX Runtime intra-op threads when running on the CPU and the caller names no number (see OnnxRuntimeBackend).
CPU_INTRA_OP_THREADS = 1
# TensorRT EP profile bound when the entry brings no engine of its own (which would state its max_batch).
DEFAULT_TENSORRT_MAX_BATCH = 16
_ORT_DTYPES = {"tensor(float)": "float32", "tensor(float16)": "float16", "tensor(int64)": "int64",
               "tensor(int32)": "int32", "tensor(uint8)": "uint8"}
ProviderChoice = str | tuple[str, dict[str, Any]]


def available_providers() -> list[str]:
    """ONNX Runtime's execution providers here, in our order of preference (only the ones we use)."""
    import onnxruntime as ort

    installed = set(ort.get_available_providers())
    return [name for name in PROVIDER_PREFERENCE if name in installed]


class OnnxRuntimeBackend:
    """An ONNX Runtime session over a checked model file."""

    def __init__(self, entry: ModelEntry, path: Path, providers: Sequence[ProviderChoice],
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
            session = ort.InferenceSession(str(path), sess_options=options, providers=list(providers))
        except Exception as exc:  # onnxruntime raises untyped errors (Fail, InvalidProtobuf, ...)
            raise ModelLoadError(f"model file {path} (model {entry.name!r}) cannot be loaded by ONNX Runtime, "
                                 f"it is corrupt or not an ONNX graph: {exc}") from exc
        self.provider: str = session.get_providers()[0]
        if requested and requested[0] != self.provider:
            log.warning("%s: asked for %s but ONNX Runtime is using %s", entry.name, requested[0], self.provider)
        self.max_batch = tensorrt_max_batch(entry) if self.provider == TENSORRT_EP else None
        check_io(path, entry, [_ort_spec(node) for node in session.get_inputs()],
                 [_ort_spec(node) for node in session.get_outputs()])
        self._session: Any = session
        self._output_names = [spec.name for spec in entry.outputs]
        log.info("model %s: ONNX Runtime %s on %s (%s)", entry.name, ort.__version__, self.provider, path.name)

    def run(self, batch: Array) -> list[Array]:
        """Outputs for `batch`, in the manifest's output order."""
        array = prepare_batch(self.entry, batch)
        return split_batches(array, self.max_batch, self._run_chunk)

    def _run_chunk(self, chunk: Array) -> list[Array]:
        session = self._session  # one read: close() may run meanwhile
        if session is None:
            raise RuntimeError(f"model {self.entry.name!r}: the backend is closed")
        return list(session.run(self._output_names, {self.entry.inputs[0].name: chunk}))

    def close(self) -> None:
        """Drop the session (ONNX Runtime frees its memory and threads with it)."""
        self._session = None


def provider_options(entry: ModelEntry, provider: str) -> ProviderChoice:
    """`provider` as ONNX Runtime takes it; TensorRT EP gets FP16, engine and timing caches and a batch profile."""
    if provider != TENSORRT_EP:
        return provider
    spec = entry.inputs[0]
    tail = "x".join(str(dim) for dim in spec.tail)
    max_batch = tensorrt_max_batch(entry)
    cache = private_directory(tensorrt_cache_root() / entry.sha256[:16])
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


def tensorrt_cache_root() -> Path:
    """This user's TensorRT cache folder in the temporary directory (0700, checked to be ours).

    If that name is taken by something that is not ours, a fresh private folder is used instead (the engines
    are then rebuilt at the next start) and a warning names the folder that was refused.
    """
    shared = Path(tempfile.gettempdir()) / f"swapstream-trt-cache-{os.getuid()}"
    try:
        return private_directory(shared)
    except ModelLoadError as exc:
        fresh = Path(tempfile.mkdtemp(prefix="swapstream-trt-cache-"))
        log.warning("%s; using the fresh private folder %s (engines are not kept across restarts)", exc, fresh)
        return fresh


def private_directory(path: Path) -> Path:
    """`path` made (mode 0700) or checked: a real directory (not a link), owned by this user, closed to others.

    A TensorRT engine is code that runs on the GPU: a folder another user made or can write to could hand
    the server a planted engine, so it is refused (ModelLoadError naming it) rather than used.
    """
    try:
        path.mkdir(mode=0o700, exist_ok=True)
        info = os.lstat(path)
    except OSError as exc:
        raise ModelLoadError(f"TensorRT cache folder {path}: cannot create it: {exc}") from exc
    if not stat.S_ISDIR(info.st_mode):
        raise ModelLoadError(f"TensorRT cache folder {path} is not a directory (a link?); remove it or set TMPDIR")
    if info.st_uid != os.getuid():
        raise ModelLoadError(f"TensorRT cache folder {path} belongs to another user (uid {info.st_uid}); it is not "
                             "used: remove it or set TMPDIR to a folder of your own")
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(path, 0o700)  # ours, made under another umask: close it
    return path


def tensorrt_max_batch(entry: ModelEntry) -> int:
    """The largest batch TensorRT is built for: the entry's engine's, else DEFAULT_TENSORRT_MAX_BATCH."""
    return entry.engine.max_batch if entry.engine is not None else DEFAULT_TENSORRT_MAX_BATCH


def _ort_spec(node: Any) -> TensorSpec:
    shape = tuple(dim if isinstance(dim, (int, str)) else "?" for dim in node.shape)
    return TensorSpec(name=node.name, shape=shape, dtype=_ORT_DTYPES.get(node.type, node.type))
