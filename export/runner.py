"""Export any number of training runs in one call: graphs, checks, engines, manifest, Triton repository."""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import onnx
import onnxruntime as ort
import torch
from tqdm import tqdm

from export.config import ExportConfig
from export.errors import ExportError, ParityError, TensorRTUnavailable
from export.manifest import graph_io_specs
from export.onnx_export import GraphPlan, HalfPrecision, export_graph, plan_graphs
from export.parity import (
    FP16_TOLERANCE,
    FP32_TOLERANCE,
    FloatArray,
    check_onnx_file,
    check_parity,
    cpu_session,
    max_abs_difference,
)
from export.tensorrt_build import TensorRTStatus, build_engine, run_engine, tensorrt_status
from export.triton import write_triton_repository
from swapstream.manifest import Manifest, ModelEntry, utc_now, write_manifest
from swapstream.manifest_schema import EngineInfo, sha256_file
from training.checkpoint import LoadedRun, load_run

log = logging.getLogger(__name__)

_RANDOM_BATCH = 5  # differs from the traced batch of 2, so the dynamic axis is exercised
_ENGINE_TOLERANCE = 1e-2  # FP16 engines against fp32 ONNX Runtime


@dataclass(frozen=True)
class ExportResult:
    """What one export call wrote."""

    manifest_path: Path
    manifest: Manifest
    tensorrt: TensorRTStatus
    triton_repository: Path | None


def run_prefixes(runs: list[tuple[Path, LoadedRun]]) -> dict[Path, str]:
    """Name prefix per run: empty when the run is the only one of its kind, else `"<run folder>."`."""
    kinds = Counter(loaded.kind for _, loaded in runs)
    prefixes: dict[Path, str] = {}
    seen: dict[tuple[str, str], Path] = {}
    for path, loaded in runs:
        if kinds[loaded.kind] == 1:
            prefixes[path] = ""
            continue
        folder = path.resolve().name
        other = seen.get((loaded.kind, folder))
        if other is not None:
            raise ExportError(f"runs {other} and {path} share the folder name {folder!r}, so their models would "
                              "get the same manifest names; rename one of the folders")
        seen[(loaded.kind, folder)] = path
        prefixes[path] = f"{folder}."
    return prefixes


def tool_versions(status: TensorRTStatus) -> dict[str, str | None]:
    """Versions of the tools that wrote and checked the files."""
    return {
        "torch": torch.__version__,
        "onnx": onnx.__version__,
        "onnxruntime": ort.__version__,
        "tensorrt": status.version if status.available else None,
    }


def export_runs(config: ExportConfig) -> ExportResult:
    """Export every run in `config`, check each graph, and write the manifest (and Triton repository)."""
    status = tensorrt_status()
    if config.tensorrt and not status.available:
        raise TensorRTUnavailable(f"--tensorrt: cannot build TensorRT engines: {status.reason}")
    if not status.available:
        log.info("skipping TensorRT engines: %s", status.reason)

    runs = [(path, load_run(path)) for path in config.runs]
    prefixes = run_prefixes(runs)
    plans = [(plan, str(path)) for path, loaded in runs for plan in plan_graphs(loaded, prefixes[path])]

    config.out.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".export-", dir=config.out))
    created = utc_now()
    versions = tool_versions(status)
    entries: list[ModelEntry] = []
    try:
        progress = tqdm(plans, desc="export", unit="model", disable=None)
        for index, (plan, source_run) in enumerate(progress, start=1):
            progress.set_postfix_str(plan.name)
            entry = _export_one(plan, staging, config, status, created, versions, source_run)
            entries.append(entry)
            log.info("[%d/%d] %s (%s, %s): parity %.1e random / %.1e real%s", index, len(plans), entry.name,
                     entry.precision, entry.exporter, entry.parity["onnxruntime_vs_torch_max_abs_random"],
                     entry.parity["onnxruntime_vs_torch_max_abs_real"],
                     ", TensorRT engine" if entry.engine else "")
        for item in staging.iterdir():
            os.replace(item, config.out / item.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)

    manifest = Manifest(config.out, tuple(entries), created=created)
    manifest_path = write_manifest(manifest)
    log.info("wrote %s with %d models", manifest_path, len(entries))
    repository = write_triton_repository(config.out, entries, config.max_batch) if config.triton else None
    return ExportResult(manifest_path, manifest, status, repository)


def _export_one(
    plan: GraphPlan,
    staging: Path,
    config: ExportConfig,
    status: TensorRTStatus,
    created: str,
    versions: dict[str, str | None],
    source_run: str,
) -> ModelEntry:
    random_batch = plan.random_batch(_RANDOM_BATCH, seed=1)
    real_batch = plan.real_batch()

    fp32_path = staging / f"{plan.file_stem}.onnx"
    exporter = export_graph(plan.module, plan, fp32_path, config.opset)
    check_onnx_file(fp32_path)
    fp32_report = check_parity(fp32_path, plan.module, plan.input_name, random_batch, real_batch, FP32_TOLERANCE)
    parity: dict[str, float] = {
        "onnxruntime_vs_torch_max_abs_random": fp32_report.max_abs_random,
        "onnxruntime_vs_torch_max_abs_real": fp32_report.max_abs_real,
        "tolerance": FP32_TOLERANCE,
    }
    path = fp32_path
    if config.fp16:
        path = staging / f"{plan.file_stem}.fp16.onnx"
        exporter = export_graph(HalfPrecision(plan.module), plan, path, config.opset)
        check_onnx_file(path)
        # the half-precision graph is held to the fp32 PyTorch model, not to itself
        fp16_report = check_parity(path, plan.module, plan.input_name, random_batch, real_batch, FP16_TOLERANCE)
        fp32_path.unlink()
        parity = {
            "onnxruntime_vs_torch_max_abs_random": fp16_report.max_abs_random,
            "onnxruntime_vs_torch_max_abs_real": fp16_report.max_abs_real,
            "tolerance": FP16_TOLERANCE,
            "fp32_onnxruntime_vs_torch_max_abs_random": fp32_report.max_abs_random,
            "fp32_onnxruntime_vs_torch_max_abs_real": fp32_report.max_abs_real,
        }

    engine = None
    if status.available:
        # engines are FP16 either way: built from the half-precision graph, typed float16 inside
        half_path = path
        if not config.fp16:
            half_path = staging / f"{plan.file_stem}.engine-source.fp16.onnx"
            export_graph(HalfPrecision(plan.module), plan, half_path, config.opset)
        engine_path = staging / f"{plan.file_stem}.engine"
        try:
            build_engine(half_path, engine_path, plan.input_name, plan.input_tail, config.max_batch,
                         config.timing_cache_path)
        finally:
            if half_path != path:
                half_path.unlink(missing_ok=True)
        parity.update(_verify_engine(engine_path, path, plan, random_batch, real_batch, config.max_batch))
        engine = EngineInfo(file=engine_path.name, sha256=sha256_file(engine_path), max_batch=config.max_batch)

    inputs, outputs = graph_io_specs(path)
    return ModelEntry(
        name=plan.name,
        kind=plan.kind,
        direction=plan.direction,
        file=path.name,
        sha256=sha256_file(path),
        precision="fp16" if config.fp16 else "fp32",
        inputs=inputs,
        outputs=outputs,
        face_size=plan.face_size,
        output_semantics=plan.output_semantics,
        opset=config.opset,
        # model_config lets tools rebuild the PyTorch architecture (e.g. bench/inference.py without the run)
        source={"run": source_run, "step": plan.run.step, "model_config": dict(plan.run.model_config)},
        parity=parity,
        created=created,
        versions=versions,
        exporter=exporter,
        engine=engine,
    )


def _verify_engine(
    engine_path: Path,
    onnx_path: Path,
    plan: GraphPlan,
    random_batch: FloatArray,
    real_batch: FloatArray,
    max_batch: int,
) -> dict[str, float]:
    session = cpu_session(onnx_path)
    output_names = [output.name for output in session.get_outputs()]
    figures = {}
    for label, batch in (("random", random_batch[:max_batch]), ("real", real_batch[:max_batch])):
        expected = session.run(None, {plan.input_name: batch})
        produced = run_engine(engine_path, plan.input_name, batch)
        missing = [name for name in output_names if name not in produced]
        if missing:
            raise ParityError(f"{engine_path}: engine lacks outputs {missing}")
        figure = max_abs_difference([produced[name] for name in output_names], expected, str(engine_path))
        if figure >= _ENGINE_TOLERANCE:
            raise ParityError(f"{engine_path}: TensorRT differs from ONNX Runtime by {figure:.3g} on {label} inputs; "
                              f"the limit is {_ENGINE_TOLERANCE:g}")
        figures[f"tensorrt_vs_onnxruntime_max_abs_{label}"] = figure
    log.info("%s: engine matches ONNX Runtime within %.1e", engine_path.name, max(figures.values()))
    return figures
