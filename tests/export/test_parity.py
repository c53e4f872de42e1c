"""The export-time checks catch a graph that does not reproduce PyTorch, and the fp16 variant stays within 1e-2."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from export.cli import main
from export.errors import ExportError, ParityError
from export.onnx_export import plan_graphs
from export.parity import FP32_TOLERANCE, check_onnx_file, check_parity
from export.real_inputs import real_face_batch
from stream_server.backends import load_backend
from swapstream.manifest import read_manifest
from training.checkpoint import load_run


def test_parity_check_fails_on_a_different_model(exported_models: Path, tiny_swap_run: Path) -> None:
    plan = plan_graphs(load_run(tiny_swap_run), "")[0]
    path = exported_models / "swap_a2b.onnx"
    random_batch = plan.random_batch(3, seed=5)
    real_batch = plan.real_batch()
    report = check_parity(path, plan.module, "face", random_batch, real_batch, FP32_TOLERANCE)
    assert report.worst < FP32_TOLERANCE

    with torch.no_grad():  # nudge the weights: the exported graph no longer matches this model
        for parameter in plan.module.parameters():
            parameter.add_(0.01)
    with pytest.raises(ParityError, match=r"swap_a2b\.onnx: ONNX Runtime differs from PyTorch"):
        check_parity(path, plan.module, "face", random_batch, real_batch, FP32_TOLERANCE)


def test_checker_rejects_a_broken_graph(exported_models: Path, tmp_path: Path) -> None:
    model = onnx.load(str(exported_models / "digits.onnx"))
    model.graph.node[0].input[0] = "no_such_tensor"
    broken = tmp_path / "broken.onnx"
    onnx.save(model, str(broken))
    with pytest.raises(ExportError, match="broken.onnx: onnx.checker rejected"):
        check_onnx_file(broken)


@pytest.mark.slow
def test_fp16_variant_within_1e_2(tiny_swap_run: Path, tmp_path: Path) -> None:
    out = tmp_path / "models16"
    assert main([str(tiny_swap_run), "--out", str(out), "--fp16"]) == 0
    manifest = read_manifest(out)
    assert manifest.names == ["swap_a2b", "swap_b2a"]
    raw = {m["name"]: m for m in json.loads((out / "manifest.json").read_text())["models"]}
    loaded = load_run(tiny_swap_run)
    face = real_face_batch(loaded.model_config["face_size"])
    for entry in manifest.models:
        assert entry.precision == "fp16" and entry.file == f"{entry.name}.fp16.onnx"
        assert raw[entry.name]["parity"]["tolerance"] == 1e-2
        assert raw[entry.name]["parity"]["onnxruntime_vs_torch_max_abs_real"] < 1e-2
        assert raw[entry.name]["parity"]["fp32_onnxruntime_vs_torch_max_abs_real"] < 1e-4
        graph = onnx.load(str(out / entry.file)).graph
        weight_types = {init.data_type for init in graph.initializer if len(init.dims) >= 2}
        assert weight_types == {onnx.TensorProto.FLOAT16}  # the weights really are half precision
        assert entry.inputs[0].dtype == "float32"  # ... behind the same float32 interface

        rgb, mask = load_backend(entry, out).run(face)
        with torch.no_grad():
            side = "b" if entry.direction == "a2b" else "a"
            want_rgb, want_mask = loaded.model.decode(loaded.model.encode(torch.from_numpy(face)), side)
        assert float(np.abs(rgb - want_rgb.numpy()).max()) < 1e-2
        assert float(np.abs(mask - want_mask.numpy()).max()) < 1e-2


def test_torchscript_fallback_when_dynamo_fails(tiny_digits_run: Path, tmp_path: Path, monkeypatch, caplog) -> None:
    import export.onnx_export as onnx_export

    def dynamo_breaks(*args: object, **kwargs: object) -> None:
        raise RuntimeError("simulated torch.export failure")

    monkeypatch.setattr(onnx_export, "_export_dynamo", dynamo_breaks)
    plan = plan_graphs(load_run(tiny_digits_run), "")[0]
    path = tmp_path / "digits.onnx"
    with caplog.at_level("WARNING", logger="export.onnx_export"):
        assert onnx_export.export_graph(plan.module, plan, path, 17) == "torchscript"
    assert "dynamo exporter failed (RuntimeError: simulated torch.export failure)" in caplog.text
    check_onnx_file(path)
    report = check_parity(path, plan.module, "pixels", plan.random_batch(6, seed=2), plan.real_batch(), FP32_TOLERANCE)
    assert report.worst < FP32_TOLERANCE
