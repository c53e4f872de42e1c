"""Two runs exported in one call -> manifest -> runtime loader -> the same numbers as PyTorch."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from export.real_inputs import real_digit_batch, real_face_batch
from stream_server.backends import load_backend
from swapstream.manifest import read_manifest
from training.checkpoint import LoadedRun, load_run

FP32_ATOL = 1e-4
REPO_ROOT = Path(__file__).resolve().parents[2]


def _torch_reference(loaded: LoadedRun, name: str, batch: np.ndarray) -> list[np.ndarray]:
    """What PyTorch computes for a manifest model, straight from the checkpoint (no export code involved)."""
    with torch.no_grad():
        x = torch.from_numpy(batch)
        if name == "digits":
            return [loaded.model(x).numpy()]
        # a2b: encode with the shared encoder, decode as identity B
        side = {"swap_a2b": "b", "swap_b2a": "a"}[name]
        rgb, mask = loaded.model.decode(loaded.model.encode(x), side)
        return [rgb.numpy(), mask.numpy()]


def test_manifest_describes_both_runs(export_call) -> None:
    data = json.loads((export_call.models_dir / "manifest.json").read_text())
    assert data["format_version"] == 1
    dt.datetime.strptime(data["created"], "%Y-%m-%dT%H:%M:%SZ")
    by_name = {model["name"]: model for model in data["models"]}
    assert set(by_name) == {"swap_a2b", "swap_b2a", "digits"}

    face_size = load_run(export_call.swap_run).model_config["face_size"]
    for name in ("swap_a2b", "swap_b2a"):
        entry = by_name[name]
        assert entry["kind"] == "swap" and entry["direction"] == name[-3:]
        assert entry["face_size"] == face_size
        assert entry["inputs"] == [{"name": "face", "shape": ["batch", 3, face_size, face_size], "dtype": "float32"}]
        assert [o["name"] for o in entry["outputs"]] == ["rgb", "mask"]
        assert entry["outputs"][1]["shape"] == ["batch", 1, face_size, face_size]
        swap_run = load_run(export_call.swap_run)
        assert entry["source"] == {"run": str(export_call.swap_run), "step": swap_run.step,
                                   "model_config": swap_run.model_config}
    digits = by_name["digits"]
    assert digits["kind"] == "digits" and digits["output_semantics"] == "logits"
    assert digits["inputs"][0]["shape"] == ["batch", 256] and digits["outputs"][0]["shape"] == ["batch", 10]
    assert digits["source"]["step"] == load_run(export_call.digits_run).step

    for entry in data["models"]:
        path = export_call.models_dir / entry["file"]
        assert hashlib.sha256(path.read_bytes()).hexdigest() == entry["sha256"]
        assert entry["opset"] >= 17
        assert onnx.load(str(path)).opset_import[0].version == entry["opset"]
        assert entry["precision"] == "fp32" and entry["engine"] is None
        assert entry["versions"]["torch"] == torch.__version__ and entry["versions"]["onnx"] == onnx.__version__
        assert entry["versions"]["tensorrt"] is None
        assert 0 <= entry["parity"]["onnxruntime_vs_torch_max_abs_random"] < 1e-4
        assert 0 <= entry["parity"]["onnxruntime_vs_torch_max_abs_real"] < 1e-4


def test_progress_line_per_model(export_call) -> None:
    for index, name in enumerate(("swap_a2b", "swap_b2a", "digits"), start=1):
        assert f"[{index}/3] {name}" in export_call.log_text
    assert "wrote" in export_call.stdout and "swap_a2b" in export_call.stdout


@pytest.mark.parametrize("name", ["swap_a2b", "swap_b2a", "digits"])
def test_runtime_loader_matches_pytorch(export_call, name: str) -> None:
    manifest = read_manifest(export_call.models_dir)
    entry = manifest.resolve(name)
    backend = load_backend(entry, manifest.models_dir)
    assert backend.provider == "CPUExecutionProvider"  # the only one installed here
    assert backend.entry is entry

    loaded = load_run(export_call.digits_run if name == "digits" else export_call.swap_run)
    rng = np.random.default_rng(7)
    if name == "digits":
        batches = [rng.random((1, 256), dtype=np.float32), real_digit_batch(40)]
    else:
        size = entry.face_size
        batches = [rng.random((1, 3, size, size), dtype=np.float32), rng.random((7, 3, size, size), dtype=np.float32),
                   real_face_batch(size)]
    for batch in batches:
        ours = backend.run(batch)
        reference = _torch_reference(loaded, name, batch)
        assert len(ours) == len(reference)
        for got, want in zip(ours, reference):
            assert got.shape == want.shape and got.dtype == np.float32
            np.testing.assert_allclose(got, want, rtol=0, atol=FP32_ATOL)


def test_directions_differ(export_call) -> None:
    """a2b and b2a are different decoders: a swap model whose two graphs agree would swap nothing."""
    manifest = read_manifest(export_call.models_dir)
    face = real_face_batch(manifest.resolve("swap_a2b").face_size)
    a2b = load_backend(manifest.resolve("a2b"), manifest.models_dir).run(face)[0]
    b2a = load_backend(manifest.resolve("b2a"), manifest.models_dir).run(face)[0]
    assert float(np.abs(a2b - b2a).max()) > 1e-3


def test_server_loader_runs_without_torch(exported_models: Path) -> None:
    code = (
        "import sys, numpy as np\n"
        "from stream_server.backends import load_models\n"
        f"m, backends = load_models({str(exported_models)!r})\n"
        "for e in m.models:\n"
        "    out = backends[e.name].run(np.zeros((2, *e.inputs[0].shape[1:]), np.float32))\n"
        "    assert [o.shape[0] for o in out] == [2] * len(e.outputs)\n"
        "assert 'torch' not in sys.modules, 'the server side imported torch'\n"
        "print('ok', len(m.models))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok 3"
