"""bench/inference.py times ONNX Runtime and PyTorch on the same model in one run and prints their ratio."""

from __future__ import annotations

import importlib.util
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bench_module():
    spec = importlib.util.spec_from_file_location("bench_inference", REPO_ROOT / "bench" / "inference.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    assert spec.loader is not None
    spec.loader.exec_module(module)
    return module


def test_bench_prints_both_backends_and_ratio(exported_models: Path, tiny_swap_run: Path, capsys) -> None:
    bench = _bench_module()
    timings = bench.run_bench(bench.parse_args(["--models", str(exported_models), "--run", str(tiny_swap_run),
                                                "--batches", "1", "3", "--seconds", "0.05", "--warmup", "1",
                                                "--threads", "1"]))
    out = capsys.readouterr().out
    assert f"weights of run {tiny_swap_run}" in out
    for batch in (1, 3):
        rows = {t.backend: t for t in timings if t.batch == batch}
        assert {"onnxruntime CPU", "pytorch eager CPU"} <= set(rows)
        for timing in rows.values():
            assert timing.median_ms > 0 and timing.calls >= 5
            assert abs(timing.faces_per_s - batch * 1000 / timing.median_ms) < 1e-6
        ratio = rows["pytorch eager CPU"].median_ms / rows["onnxruntime CPU"].median_ms
        line = next(l for l in out.splitlines() if re.match(rf"onnxruntime CPU\s+{batch}\s", l))
        assert f"x{ratio:.2f} vs pytorch eager CPU" in line
