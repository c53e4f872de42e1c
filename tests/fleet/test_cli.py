"""`swapstream triton`'s refusals: bad flags, a missing manifest, a port in use, a model that cannot load.

Each is refused before tritonserver starts, with a message naming the flag or the file.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from fleet.cli import parse_args
from fleet.config import TritonServeConfig
from fleet.errors import ConfigError, TritonStartError
from fleet.server import TritonModelServer
from stream_server.errors import ModelLoadError
from fleet.process import free_ports

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--grpc-port", "0"], "--grpc-port"),
        (["--metrics-port", "70000"], "--metrics-port"),
        (["--grpc-port", "9000", "--http-port", "9000"], "must differ"),
        (["--max-batch", "0"], "--max-batch"),
        (["--threads", "0"], "--threads"),
        (["--max-queue-delay-us", "-1"], "--max-queue-delay-us"),
    ],
)
def test_bad_flags_are_named(argv: list[str], message: str, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=re.escape(message)):
        parse_args(["--models", str(tmp_path), *argv])


def test_defaults_are_triton_ports_on_loopback(tmp_path: Path) -> None:
    config = parse_args(["--models", str(tmp_path)])
    assert (config.host, config.grpc_port, config.http_port, config.metrics_port) == ("127.0.0.1", 8001, 8000, 8002)


def test_missing_manifest_exits_1_naming_it(tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    grpc, http, metrics = free_ports(3)
    result = subprocess.run(
        [sys.executable, "-m", "swapstream.cli", "triton", "--models", str(tmp_path), "--grpc-port", str(grpc),
         "--http-port", str(http), "--metrics-port", str(metrics)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert result.returncode == 1, result.stderr
    assert "swapstream triton: error:" in result.stderr
    assert str(tmp_path / "manifest.json") in result.stderr


def _config(models_dir: Path) -> TritonServeConfig:
    grpc, http, metrics = free_ports(3)
    return TritonServeConfig(models_dir=models_dir, grpc_port=grpc, http_port=http, metrics_port=metrics)


def test_port_in_use_is_named(exported_models: Path) -> None:
    config = _config(exported_models)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", config.grpc_port))
        taken.listen()
        with pytest.raises(TritonStartError, match=rf"--grpc-port {config.grpc_port} .*already in use"):
            TritonModelServer(config).start()


def _copy_models(exported_models: Path, tmp_path: Path) -> Path:
    copy = tmp_path / "models"
    shutil.copytree(exported_models, copy, ignore=shutil.ignore_patterns("triton"))
    return copy


def test_a_changed_model_file_is_named(exported_models: Path, tmp_path: Path) -> None:
    models = _copy_models(exported_models, tmp_path)
    target = models / "swap_b2a.onnx"
    target.write_bytes(target.read_bytes()[:-64])
    with pytest.raises(ModelLoadError, match=re.escape(str(target)) + ".*sha256"):
        TritonModelServer(_config(models)).start()


def test_a_model_onnx_runtime_cannot_load_is_named(exported_models: Path, tmp_path: Path) -> None:
    """A file whose sha256 matches the manifest but is no ONNX graph fails at start-up, naming the file."""
    import hashlib

    models = _copy_models(exported_models, tmp_path)
    target = models / "digits.onnx"
    target.write_bytes(b"not an onnx graph")
    manifest = json.loads((models / "manifest.json").read_text())
    for entry in manifest["models"]:
        if entry["file"] == target.name:
            entry["sha256"] = hashlib.sha256(target.read_bytes()).hexdigest()
    (models / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ModelLoadError, match=re.escape(str(target)) + ".*cannot be loaded by ONNX Runtime"):
        TritonModelServer(_config(models)).start()
