"""Per-call latency and throughput of the swap model: ONNX Runtime against PyTorch eager, CPU and (where present) GPU.

Every timed call goes numpy in -> numpy out, as the server calls it (host<->device copies included on GPU).
Backends: ONNX Runtime CPU and PyTorch eager CPU always; with a CUDA GPU also PyTorch eager CUDA and ONNX
Runtime's CUDA and TensorRT execution providers (where installed), and the native TensorRT engine when the
manifest entry has one and `tensorrt` imports.

    PYTHONPATH=. .venv/bin/python bench/inference.py --models models/demo            # PyTorch from the manifest's run
    PYTHONPATH=. .venv/bin/python bench/inference.py --models MODELS --run runs/demo  # an explicit run
    PYTHONPATH=. .venv/bin/python bench/inference.py                                  # random weights, demo config

Without a run (given, or the manifest's source run on disk) nothing is trained: a model of the demo
configuration gets random weights, which time exactly like trained ones; the output says so.
"""

from __future__ import annotations

import argparse
import logging
import os
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from stream_server.backends import (  # noqa: E402
    CPU_EP,
    CUDA_EP,
    TENSORRT_EP,
    InferenceBackend,
    available_providers,
    load_backend,
)
from swapstream.manifest import Manifest, ModelEntry, read_manifest  # noqa: E402

log = logging.getLogger("bench.inference")


@dataclass(frozen=True)
class BenchConfig:
    """Flags of this benchmark."""

    models: Path | None
    run: Path | None
    model: str
    batches: tuple[int, ...]
    seconds: float
    warmup: int
    threads: int

    def __post_init__(self) -> None:
        if not self.batches or min(self.batches) < 1:
            raise SystemExit("--batches: give positive batch sizes")
        if self.seconds <= 0:
            raise SystemExit("--seconds must be positive")
        if self.threads < 1:
            raise SystemExit("--threads must be at least 1")
        if self.models is not None and not self.models.is_dir():
            raise SystemExit(f"--models {self.models}: not a folder")
        if self.run is not None and not self.run.is_dir():
            raise SystemExit(f"--run {self.run}: not a folder")


@dataclass(frozen=True)
class Timing:
    """Latency figures of one backend at one batch size."""

    backend: str
    batch: int
    median_ms: float
    p90_ms: float
    calls: int

    @property
    def faces_per_s(self) -> float:
        """Throughput at the median latency."""
        return self.batch / (self.median_ms / 1000.0)


def time_calls(call: Callable[[], object], seconds: float, warmup: int, min_calls: int = 5) -> list[float]:
    """Milliseconds per call, over about `seconds` of calls after `warmup` untimed ones."""
    for _ in range(warmup):
        call()
    samples: list[float] = []
    deadline = time.perf_counter() + seconds
    while time.perf_counter() < deadline or len(samples) < min_calls:
        start = time.perf_counter()
        call()
        samples.append((time.perf_counter() - start) * 1000.0)
    return samples


def summarize(name: str, batch: int, samples: list[float]) -> Timing:
    """Median and 90th percentile of the samples."""
    ordered = sorted(samples)
    return Timing(name, batch, statistics.median(ordered), ordered[min(len(ordered) - 1, int(0.9 * len(ordered)))],
                  len(ordered))


def torch_call(module: torch.nn.Module, side: str, batch: np.ndarray, device: torch.device) -> Callable[[], object]:
    """One PyTorch eager call from numpy to numpy on `device`."""

    def call() -> object:
        with torch.inference_mode():
            x = torch.from_numpy(batch).to(device)
            rgb, mask = module.decode(module.encode(x), side)
            out = (rgb.cpu().numpy(), mask.cpu().numpy())
        return out

    return call


def pytorch_model(config: BenchConfig, entry: ModelEntry | None, face_size: int) -> tuple[torch.nn.Module, str]:
    """The PyTorch swap model to time and a note on where its weights came from."""
    from training.checkpoint import load_run
    from training.swap_model import SwapAutoencoder

    run = config.run
    if run is None and entry is not None:
        source = Path(str(entry.source.get("run", "")))
        candidates = [source] if source.is_absolute() else [source, config.models / source if config.models else source]
        run = next((path for path in candidates if (path / "checkpoint.safetensors").is_file()), None)
    if run is not None:
        loaded = load_run(run)
        return loaded.model.eval(), f"weights of run {run} (step {loaded.step})"
    model_config = dict(entry.source.get("model_config") or {}) if entry is not None else {}
    model_config.setdefault("face_size", face_size)
    model = SwapAutoencoder(**model_config).eval()
    return model, (f"RANDOM weights (no run given or found; nothing trained), config {model_config} "
                   "— timing is the same as a trained model's")


def export_random_model(work: Path, face_size: int) -> tuple[Path, Path]:
    """Save a random-weight demo-config model as a run and export it with `swapstream export`: (models, run)."""
    from export.cli import main as export_main
    from training.checkpoint import save_checkpoint
    from training.swap_model import SwapAutoencoder

    model = SwapAutoencoder(face_size=face_size)
    run = work / "random-demo-run"
    save_checkpoint(run / "checkpoint.safetensors", kind="swap", model=model, model_config=model.config, step=0)
    models = work / "models"
    export_main([str(run), "--out", str(models)])
    return models, run


def backends_to_time(manifest: Manifest, entry: ModelEntry, threads: int) -> list[tuple[str, InferenceBackend]]:
    """ONNX Runtime backends available here, each with its provider list; plus the native engine if any."""
    installed = available_providers()
    chosen: list[tuple[str, InferenceBackend]] = [
        ("onnxruntime CPU", load_backend(entry, manifest.models_dir, [CPU_EP], intra_op_threads=threads))]
    if CUDA_EP in installed:
        chosen.append(("onnxruntime CUDA EP", load_backend(entry, manifest.models_dir, [CUDA_EP, CPU_EP])))
    if TENSORRT_EP in installed:
        chosen.append(("onnxruntime TensorRT EP",
                       load_backend(entry, manifest.models_dir, [TENSORRT_EP, CUDA_EP, CPU_EP])))
    if entry.engine is not None:
        native = load_backend(entry, manifest.models_dir)  # picks the engine where tensorrt imports
        if native.provider.startswith("TensorRT"):
            chosen.append(("TensorRT engine", native))
    # a provider ONNX Runtime silently fell back from is not what its label claims: say so, time it anyway
    for label, backend in chosen:
        if "EP" in label and backend.provider == CPU_EP:
            print(f"note: {label} fell back to {backend.provider}", file=sys.stderr)
    return chosen


def run_bench(config: BenchConfig) -> list[Timing]:
    """Time every backend at every batch size and print the table; returns the timings."""
    torch.set_num_threads(config.threads)
    with tempfile.TemporaryDirectory(prefix="bench-inference-") as work:
        random_run = None
        if config.models is not None:
            manifest = read_manifest(config.models)
        else:
            print("no --models given: exporting a random-weight demo-config model to a temporary folder")
            models_dir, random_run = export_random_model(Path(work), face_size=64)
            manifest = read_manifest(models_dir)
        entry = manifest.resolve(config.model)
        if entry.kind != "swap":
            raise SystemExit(f"--model {config.model}: {entry.name} is a {entry.kind} model, not a swap model")
        face_size = int(entry.face_size or 64)
        if random_run is not None:
            from training.checkpoint import load_run

            model = load_run(random_run).model
            weights_note = (f"RANDOM weights (no --models/--run given; nothing trained), demo config "
                            f"{dict(entry.source.get('model_config') or {})}; times like a trained model")
        else:
            model, weights_note = pytorch_model(config, entry, face_size)
        side = "b" if entry.direction == "a2b" else "a"
        gpu = torch.cuda.is_available()

        print(f"model {entry.name} ({entry.precision}, {face_size}px) from {manifest.models_dir}")
        print(f"PyTorch {torch.__version__}: {weights_note}")
        print(f"CPU threads: {config.threads} (torch and onnxruntime); "
              f"GPU: {torch.cuda.get_device_name(0) if gpu else 'none'}; ORT providers here: {available_providers()}")
        timings: list[Timing] = []
        backends = backends_to_time(manifest, entry, config.threads)
        rng = np.random.default_rng(0)
        for batch_size in config.batches:
            batch = rng.random((batch_size, 3, face_size, face_size), dtype=np.float32)
            calls: list[tuple[str, Callable[[], object]]] = [(label, _bound(b, batch)) for label, b in backends]
            calls.append(("pytorch eager CPU", torch_call(model, side, batch, torch.device("cpu"))))
            if gpu:
                cuda_model = _cuda_copy(model)
                calls.append(("pytorch eager CUDA", torch_call(cuda_model, side, batch, torch.device("cuda"))))
            for label, call in calls:
                timings.append(summarize(label, batch_size, time_calls(call, config.seconds, config.warmup)))
        print(format_table(timings))
    return timings


def _bound(backend: InferenceBackend, batch: np.ndarray) -> Callable[[], object]:
    return lambda: backend.run(batch)


def _cuda_copy(model: torch.nn.Module) -> torch.nn.Module:
    import copy

    return copy.deepcopy(model).to("cuda").eval()


def format_table(timings: list[Timing]) -> str:
    """One row per backend and batch, with each backend's speed relative to PyTorch eager on the same device."""
    reference = {(t.batch, "CPU"): t for t in timings if t.backend == "pytorch eager CPU"}
    reference.update({(t.batch, "GPU"): t for t in timings if t.backend == "pytorch eager CUDA"})
    lines = [f"{'backend':<26}{'batch':>6}{'median ms':>11}{'p90 ms':>9}{'faces/s':>10}{'calls':>7}   speed-up"]
    for t in sorted(timings, key=lambda t: (t.batch, t.backend)):
        device = "CPU" if "CPU" in t.backend else "GPU"
        ref = reference.get((t.batch, device))
        if ref is None or ref is t:
            ratio = "(reference)" if ref is t else ""
        else:
            ratio = f"x{ref.median_ms / t.median_ms:.2f} vs {ref.backend}"
        lines.append(f"{t.backend:<26}{t.batch:>6}{t.median_ms:>11.2f}{t.p90_ms:>9.2f}{t.faces_per_s:>10.0f}"
                     f"{t.calls:>7}   {ratio}")
    return "\n".join(lines)


def parse_args(argv: list[str]) -> BenchConfig:
    """Flags -> BenchConfig."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=None, help="models folder with manifest.json")
    parser.add_argument("--run", type=Path, default=None, help="training run for the PyTorch side")
    parser.add_argument("--model", default="a2b", help="manifest name or a2b/b2a (default a2b)")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 4, 16])
    parser.add_argument("--seconds", type=float, default=3.0, help="timed seconds per backend and batch")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args(argv)
    return BenchConfig(args.models, args.run, args.model, tuple(args.batches), args.seconds, args.warmup, args.threads)


def main(argv: list[str] | None = None) -> int:
    """Entry point."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    run_bench(parse_args(sys.argv[1:] if argv is None else argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
