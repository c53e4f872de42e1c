"""`swapstream export RUN... --out MODELS [--fp16] [--tensorrt] [--max-batch N] [--triton] [--opset 17]`."""

from __future__ import annotations

import argparse
from pathlib import Path

from export.config import MAX_OPSET, MIN_OPSET, ExportConfig
from export.runner import ExportResult, export_runs


def build_parser() -> argparse.ArgumentParser:
    """The command's flags."""
    parser = argparse.ArgumentParser(
        prog="swapstream export",
        description="Export training runs (face and digit, any number) to ONNX, check them against PyTorch, "
        "build TensorRT engines where TensorRT is installed, and write MODELS/manifest.json.",
    )
    parser.add_argument("runs", nargs="+", type=Path, metavar="RUN", help="training run folders")
    parser.add_argument("--out", required=True, type=Path, metavar="MODELS", help="models folder to write")
    parser.add_argument("--fp16", action="store_true",
                        help="export half-precision graphs (float32 inputs/outputs), checked within 1e-2")
    parser.add_argument("--tensorrt", action="store_true",
                        help="require TensorRT engines (fail if TensorRT is missing; without this flag they "
                        "are built when TensorRT imports and skipped otherwise)")
    parser.add_argument("--max-batch", type=int, default=16, metavar="N",
                        help="largest batch of the TensorRT profile and Triton config (default 16)")
    parser.add_argument("--triton", action="store_true", help="also write a Triton model repository MODELS/triton")
    parser.add_argument("--opset", type=int, default=MIN_OPSET,
                        help=f"ONNX opset, {MIN_OPSET}..{MAX_OPSET} (default {MIN_OPSET})")
    parser.add_argument("--timing-cache", type=Path, default=None, metavar="FILE",
                        help="TensorRT timing cache reused across builds (default MODELS/tensorrt.timing-cache)")
    return parser


def config_from_args(args: argparse.Namespace) -> ExportConfig:
    """The frozen config from parsed flags (validated on construction)."""
    return ExportConfig(
        runs=tuple(args.runs),
        out=args.out,
        fp16=args.fp16,
        tensorrt=args.tensorrt,
        max_batch=args.max_batch,
        triton=args.triton,
        opset=args.opset,
        timing_cache=args.timing_cache,
    )


def summary(result: ExportResult) -> str:
    """A table of what was written, for the terminal."""
    lines = [f"wrote {result.manifest_path}"]
    for entry in result.manifest.models:
        worst = max(entry.parity["onnxruntime_vs_torch_max_abs_random"], entry.parity["onnxruntime_vs_torch_max_abs_real"])
        engine = f"engine {entry.engine.file}" if entry.engine else "no engine"
        lines.append(f"  {entry.name:<28} {entry.kind:<6} {entry.precision}  {entry.file:<32} "
                     f"max|ORT-torch| {worst:.1e}  {engine}")
    if not result.tensorrt.available:
        lines.append(f"TensorRT skipped: {result.tensorrt.reason}")
    if result.triton_repository is not None:
        lines.append(f"Triton repository: {result.triton_repository}")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    """Entry point of `swapstream export`; library errors propagate to swapstream.cli."""
    args = build_parser().parse_args(argv)
    result = export_runs(config_from_args(args))
    print(summary(result))
    return 0
