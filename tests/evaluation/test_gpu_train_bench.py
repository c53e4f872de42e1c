"""bench/gpu_train.py: its --cpu-smoke mode runs every step (speed, data, train, export, evaluate) on the CPU,
so the GPU run is known to work before a GPU is lent; without CUDA (and without --cpu-smoke) it says so."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path
from types import ModuleType

import pytest
import torch

REPO_ROOT = Path(__file__).resolve().parents[2]


def _bench_module() -> ModuleType:
    spec = importlib.util.spec_from_file_location("bench_gpu_train", REPO_ROOT / "bench" / "gpu_train.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has CUDA: the no-GPU message does not apply")
def test_without_cuda_it_exits_with_a_clear_message(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench_module().main(["--out", str(tmp_path)]) == 2
    assert "torch sees no CUDA GPU here" in capsys.readouterr().err
    assert not (tmp_path / "gpu_train.json").exists()


@pytest.mark.slow  # ~80 s on 2 busy cores: every step of the real run, tiny
def test_cpu_smoke_runs_every_step(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert _bench_module().main(["--out", str(tmp_path), "--cpu-smoke", "--cpu-threads", "1"]) == 0
    data = json.loads((tmp_path / "gpu_train.json").read_text())
    (speed,) = data["speed"]
    assert speed["size"] == 64 and speed["accelerator_images_per_s"] > 0 and speed["cpu_images_per_s"] > 0
    assert data["train"]["steps"] == 4 and data["train"]["images_per_s"] > 0
    figures = data["evaluation"]["sources"]["heldout_a.mp4"]
    assert figures["sharpness_ratio"] is not None and figures["sharpness_ratio"] > 0
    assert (tmp_path / "evaluation" / "report.json").is_file() and (tmp_path / "evaluation" / "summary.png").is_file()
    assert set(data["stages_s"]) == {"speed", "data", "train", "export+evaluate"}
    printed = capsys.readouterr().out
    assert "trained 64 px: 4 steps" in printed and "heldout_a.mp4" in printed
