"""The runtime loader refuses bad model folders at load time, with errors that name the file."""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import json
import logging
import shutil
from pathlib import Path

import numpy as np
import pytest

from stream_server.backends import CPU_EP, load_backend, load_models
from stream_server.errors import ModelLoadError
from swapstream.errors import ManifestError, UnknownModelError
from swapstream.manifest import read_manifest


@pytest.fixture()
def models_copy(exported_models: Path, tmp_path: Path) -> Path:
    """A private copy of the exported models folder, free to damage."""
    target = tmp_path / "models"
    shutil.copytree(exported_models, target, ignore=shutil.ignore_patterns("triton"))
    return target


def _edit_manifest(models_dir: Path, name: str, **changes: object) -> None:
    path = models_dir / "manifest.json"
    data = json.loads(path.read_text())
    for entry in data["models"]:
        if entry["name"] == name:
            entry.update(changes)
    path.write_text(json.dumps(data))


def test_corrupt_onnx_file_is_named(models_copy: Path) -> None:
    path = models_copy / "swap_a2b.onnx"
    payload = bytearray(path.read_bytes())
    payload[: len(payload) // 2] = b"\x07" * (len(payload) // 2)  # not a protobuf any more
    path.write_bytes(bytes(payload))
    # the manifest is made to agree with the damaged bytes, so it is ONNX Runtime that must catch it
    _edit_manifest(models_copy, "swap_a2b", sha256=hashlib.sha256(payload).hexdigest())
    manifest = read_manifest(models_copy)
    with pytest.raises(ModelLoadError, match="corrupt") as info:
        load_backend(manifest.resolve("swap_a2b"), models_copy)
    assert str(path) in str(info.value)


def test_sha256_mismatch_is_named(models_copy: Path) -> None:
    path = models_copy / "digits.onnx"
    payload = bytearray(path.read_bytes())
    payload[-1] ^= 0xFF
    path.write_bytes(bytes(payload))
    manifest = read_manifest(models_copy)
    with pytest.raises(ModelLoadError, match="sha256") as info:
        load_backend(manifest.resolve("digits"), models_copy)
    assert str(path) in str(info.value)
    assert manifest.resolve("digits").sha256 in str(info.value)


def test_missing_file_is_named(models_copy: Path) -> None:
    (models_copy / "swap_b2a.onnx").unlink()
    manifest = read_manifest(models_copy)
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        load_backend(manifest.resolve("swap_b2a"), models_copy)
    assert str(models_copy / "swap_b2a.onnx") in str(info.value)


def test_shape_mismatch_with_manifest_is_named(models_copy: Path) -> None:
    manifest = read_manifest(models_copy)
    entry = manifest.resolve("swap_a2b")
    wrong = entry.face_size * 2
    _edit_manifest(models_copy, "swap_a2b", inputs=[{"name": "face", "shape": ["batch", 3, wrong, wrong],
                                                     "dtype": "float32"}])
    with pytest.raises(ModelLoadError, match="manifest says") as info:
        load_backend(read_manifest(models_copy).resolve("swap_a2b"), models_copy)
    assert "swap_a2b.onnx" in str(info.value) and str(wrong) in str(info.value)


def test_output_name_mismatch_is_named(models_copy: Path) -> None:
    manifest = read_manifest(models_copy)
    outputs = [{"name": "probabilities", "shape": ["batch", 10], "dtype": "float32"}]
    _edit_manifest(models_copy, "digits", outputs=outputs)
    with pytest.raises(ModelLoadError, match="probabilities") as info:
        load_backend(read_manifest(models_copy).resolve("digits"), manifest.models_dir)
    assert "digits.onnx" in str(info.value)


def test_bad_manifests_are_named(models_copy: Path, tmp_path: Path) -> None:
    manifest_path = models_copy / "manifest.json"
    text = manifest_path.read_text()
    manifest_path.write_text(text[: len(text) // 2])
    with pytest.raises(ModelLoadError, match="not readable JSON") as info:
        load_models(models_copy)
    assert str(manifest_path) in str(info.value)

    with pytest.raises(ModelLoadError, match="does not exist"):
        load_models(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="swapstream export"):
        load_models(empty)

    data = json.loads(text)
    data["models"][0]["kind"] = "style-transfer"
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="style-transfer"):
        load_models(models_copy)

    data = json.loads(text)
    data["models"][1]["name"] = data["models"][0]["name"]
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="repeat"):
        load_models(models_copy)
    with pytest.raises(ManifestError, match="repeat"):  # the reader's own error, which the server's wraps
        read_manifest(models_copy)


def test_unknown_model_name_lists_the_known_ones(exported_models: Path) -> None:
    manifest = read_manifest(exported_models)
    with pytest.raises(UnknownModelError, match="swap_a2b, swap_b2a, digits") as info:
        manifest.resolve("swap_c2d")
    assert str(exported_models / "manifest.json") in str(info.value)


def test_unavailable_provider_is_refused(exported_models: Path) -> None:
    manifest = read_manifest(exported_models)
    with pytest.raises(ModelLoadError, match="NoSuchExecutionProvider") as info:
        load_backend(manifest.resolve("digits"), exported_models, providers=["NoSuchExecutionProvider"])
    assert "CPUExecutionProvider" in str(info.value)  # it says what is available


def test_wrong_batch_shape_is_refused(exported_models: Path) -> None:
    manifest = read_manifest(exported_models)
    backend = load_backend(manifest.resolve("digits"), exported_models)
    with pytest.raises(ValueError, match="digits"):
        backend.run(np.zeros((2, 16, 16), np.float32))


@pytest.mark.parametrize("where", ["absolute", "parent", "nested parent", "link out", "engine"])
def test_files_outside_the_models_folder_are_refused(models_copy: Path, tmp_path: Path, where: str) -> None:
    outside = tmp_path / "outside.onnx"
    shutil.copyfile(models_copy / "digits.onnx", outside)  # a valid model, with the manifest's sha256
    named = {"absolute": str(outside), "parent": "../outside.onnx", "nested parent": "sub/../../outside.onnx",
             "link out": "linked.onnx", "engine": "../outside.onnx"}[where]
    if where == "link out":
        (models_copy / "linked.onnx").symlink_to(outside)
    if where == "engine":
        digest = hashlib.sha256(outside.read_bytes()).hexdigest()
        _edit_manifest(models_copy, "digits", engine={"file": named, "sha256": digest, "max_batch": 4})
    else:
        _edit_manifest(models_copy, "digits", file=named)
    with pytest.raises(ModelLoadError, match="models folder") as info:
        load_models(models_copy)
    assert repr(named) in str(info.value) and "'digits'" in str(info.value)


def test_entries_made_in_code_cannot_leave_the_folder_either(exported_models: Path, tmp_path: Path) -> None:
    from swapstream.manifest import Manifest, write_manifest

    entry = dataclasses.replace(read_manifest(exported_models).resolve("digits"), file="../digits.onnx")
    with pytest.raises(ModelLoadError, match="'../digits.onnx'"):
        load_backend(entry, exported_models)
    with pytest.raises(ManifestError, match="'../digits.onnx'"):
        write_manifest(Manifest(tmp_path, (entry,)))
    assert not (tmp_path / "manifest.json").exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="tensorrt is installed here, so the engine would be used rather than refused")
def test_an_engine_tensorrt_cannot_run_is_skipped_with_the_reason_logged(
        models_copy: Path, caplog: pytest.LogCaptureFixture) -> None:
    engine = models_copy / "digits.engine"
    engine.write_bytes(b"a serialized engine, which this machine cannot run")
    _edit_manifest(models_copy, "digits", engine={"file": engine.name, "sha256": hashlib.sha256(
        engine.read_bytes()).hexdigest(), "max_batch": 4})
    with caplog.at_level(logging.WARNING, logger="stream_server.backends"):
        backend = load_backend(read_manifest(models_copy).resolve("digits"), models_copy)
    assert backend.provider == CPU_EP
    assert backend.run(np.zeros((5, 256), np.float32))[0].shape == (5, 10)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("digits.engine" in m and "'tensorrt'" in m and "ModuleNotFoundError" in m for m in warnings), warnings


def test_a_closed_backend_refuses_to_run(exported_models: Path) -> None:
    backend = load_backend(read_manifest(exported_models).resolve("digits"), exported_models)
    backend.close()
    with pytest.raises(RuntimeError, match="closed"):
        backend.run(np.zeros((1, 256), np.float32))
