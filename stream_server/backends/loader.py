"""Open manifest models with the best runtime here: `load_backend` for one entry, `load_models` for a folder."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path

from stream_server.backends.base import InferenceBackend, verify_file
from stream_server.backends.onnx_runtime import OnnxRuntimeBackend, available_providers, provider_options
from stream_server.backends.tensorrt_engine import TensorRTEngineBackend, native_tensorrt_unavailable
from stream_server.errors import ModelLoadError
from swapstream.errors import ManifestError
from swapstream.manifest import Manifest, ModelEntry, model_file, read_manifest

log = logging.getLogger(__name__)


def load_backend(
    entry: ModelEntry,
    models_dir: str | Path,
    providers: Sequence[str] | None = None,
    *,
    intra_op_threads: int | None = None,
) -> InferenceBackend:
    """Check `entry`'s file (inside `models_dir`, sha256, inputs and outputs) and open it with the best runtime here.

    The entry's TensorRT engine where it has one and TensorRT can run here (else a warning saying why); otherwise
    ONNX Runtime with TensorRT EP -> CUDA EP -> CPU, whichever are installed. `providers` names ONNX Runtime
    execution providers to use instead, in order (which also skips the native engine). ModelLoadError names the file.
    """
    models_dir = Path(models_dir)
    where = f"model {entry.name!r}"
    path = _inside(models_dir, entry.file, where)
    verify_file(path, entry.sha256, entry.name)
    if providers is None and entry.engine is not None:
        engine_path = _inside(models_dir, entry.engine.file, f"{where} engine")
        verify_file(engine_path, entry.engine.sha256, entry.name)
        reason = native_tensorrt_unavailable()
        if reason is None:
            return TensorRTEngineBackend(entry, engine_path)
        log.warning("model %s: has a TensorRT engine (%s) but %s; using ONNX Runtime", entry.name, engine_path.name,
                    reason)
    usable = available_providers()
    if providers is None:
        chosen = usable
    else:
        unknown = [name for name in providers if name not in usable]
        if unknown:
            raise ModelLoadError(f"model file {path}: execution providers {unknown} are not available here "
                                 f"(available: {usable})")
        chosen = list(providers)
    return OnnxRuntimeBackend(entry, path, [provider_options(entry, name) for name in chosen],
                              intra_op_threads=intra_op_threads)


def load_manifest(models_dir: str | Path) -> Manifest:
    """`models_dir/manifest.json` read and checked, without opening any model; ModelLoadError names the file."""
    try:
        return read_manifest(models_dir)
    except ManifestError as exc:
        raise ModelLoadError(str(exc)) from exc


def load_models(models_dir: str | Path) -> tuple[Manifest, dict[str, InferenceBackend]]:
    """Read `models_dir/manifest.json` and open every model in it: the manifest and a backend per model name.

    Every problem is a ModelLoadError naming the file, raised here rather than at the first frame; backends
    opened before a failure are closed again.
    """
    manifest = load_manifest(models_dir)
    backends: dict[str, InferenceBackend] = {}
    try:
        for entry in manifest.models:
            backends[entry.name] = load_backend(entry, manifest.models_dir)
    except BaseException:
        for backend in backends.values():
            backend.close()
        raise
    return manifest, backends


def _inside(models_dir: Path, relative: str, where: str) -> Path:
    try:
        return model_file(models_dir, relative, where)
    except ManifestError as exc:
        raise ModelLoadError(str(exc)) from exc
