"""The runtime loader refuses bad model folders at load time, with errors that name the file."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from stream_server.errors import ModelLoadError
from stream_server.inference import PassthroughBackend, load_backend, load_manifest


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
    manifest = load_manifest(models_copy)
    with pytest.raises(ModelLoadError, match="corrupt") as info:
        load_backend(manifest.get("swap_a2b"), models_copy)
    assert str(path) in str(info.value)


def test_sha256_mismatch_is_named(models_copy: Path) -> None:
    path = models_copy / "digits.onnx"
    payload = bytearray(path.read_bytes())
    payload[-1] ^= 0xFF
    path.write_bytes(bytes(payload))
    manifest = load_manifest(models_copy)
    with pytest.raises(ModelLoadError, match="sha256") as info:
        load_backend(manifest.get("digits"), models_copy)
    assert str(path) in str(info.value)
    assert manifest.get("digits").sha256 in str(info.value)


def test_missing_file_is_named(models_copy: Path) -> None:
    (models_copy / "swap_b2a.onnx").unlink()
    manifest = load_manifest(models_copy)
    with pytest.raises(ModelLoadError, match="does not exist") as info:
        load_backend(manifest.get("swap_b2a"), models_copy)
    assert str(models_copy / "swap_b2a.onnx") in str(info.value)


def test_shape_mismatch_with_manifest_is_named(models_copy: Path) -> None:
    manifest = load_manifest(models_copy)
    entry = manifest.get("swap_a2b")
    wrong = entry.face_size * 2
    _edit_manifest(models_copy, "swap_a2b", inputs=[{"name": "face", "shape": ["batch", 3, wrong, wrong],
                                                     "dtype": "float32"}])
    with pytest.raises(ModelLoadError, match="manifest says") as info:
        load_backend(load_manifest(models_copy).get("swap_a2b"), models_copy)
    assert "swap_a2b.onnx" in str(info.value) and str(wrong) in str(info.value)


def test_output_name_mismatch_is_named(models_copy: Path) -> None:
    manifest = load_manifest(models_copy)
    outputs = [{"name": "probabilities", "shape": ["batch", 10], "dtype": "float32"}]
    _edit_manifest(models_copy, "digits", outputs=outputs)
    with pytest.raises(ModelLoadError, match="probabilities") as info:
        load_backend(load_manifest(models_copy).get("digits"), manifest.models_dir)
    assert "digits.onnx" in str(info.value)


def test_bad_manifests_are_named(models_copy: Path, tmp_path: Path) -> None:
    manifest_path = models_copy / "manifest.json"
    text = manifest_path.read_text()
    manifest_path.write_text(text[: len(text) // 2])
    with pytest.raises(ModelLoadError, match="not readable JSON") as info:
        load_manifest(models_copy)
    assert str(manifest_path) in str(info.value)

    with pytest.raises(ModelLoadError, match="does not exist"):
        load_manifest(tmp_path / "nowhere")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelLoadError, match="swapstream export"):
        load_manifest(empty)

    data = json.loads(text)
    data["models"][0]["kind"] = "style-transfer"
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="style-transfer"):
        load_manifest(models_copy)

    data = json.loads(text)
    data["models"][1]["name"] = data["models"][0]["name"]
    manifest_path.write_text(json.dumps(data))
    with pytest.raises(ModelLoadError, match="repeat"):
        load_manifest(models_copy)


def test_unknown_model_name_lists_the_known_ones(exported_models: Path) -> None:
    manifest = load_manifest(exported_models)
    with pytest.raises(ModelLoadError, match="swap_a2b, swap_b2a, digits"):
        manifest.resolve("swap_c2d")


def test_unavailable_provider_is_refused(exported_models: Path) -> None:
    manifest = load_manifest(exported_models)
    with pytest.raises(ModelLoadError, match="NoSuchExecutionProvider") as info:
        load_backend(manifest.get("digits"), exported_models, providers=["NoSuchExecutionProvider"])
    assert "CPUExecutionProvider" in str(info.value)  # it says what is available


def test_wrong_batch_shape_is_refused(exported_models: Path) -> None:
    manifest = load_manifest(exported_models)
    backend = load_backend(manifest.get("digits"), exported_models)
    with pytest.raises(ValueError, match="digits"):
        backend.run(np.zeros((2, 16, 16), np.float32))


def test_passthrough_returns_face_and_full_mask() -> None:
    backend = PassthroughBackend(face_size=32)
    faces = np.random.default_rng(0).random((3, 3, 32, 32), dtype=np.float32)
    rgb, mask = backend.run(faces)
    np.testing.assert_array_equal(rgb, faces)
    assert mask.shape == (3, 1, 32, 32) and np.all(mask == 1.0)
    assert backend.provider == "passthrough" and backend.entry.face_size == 32
    with pytest.raises(ValueError):
        backend.run(np.zeros((1, 3, 64, 64), np.float32))
