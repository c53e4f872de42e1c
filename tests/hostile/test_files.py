"""Hostile files: manifest entries that point out of the models folder, a shared TensorRT cache another user
made, checkpoints with missing or malformed metadata, and a losses CSV rewritten in place on resume."""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable
from dataclasses import replace
from typing import Any
from pathlib import Path

import pytest

from stream_server.backends.onnx_runtime import provider_options
from stream_server.config import ServerConfig
from swapstream.errors import SwapstreamError
from swapstream.manifest import ModelEntry, read_manifest
from tests.fixtures.server import write_tiny_models

TENSORRT_EP = "TensorrtExecutionProvider"
OTHER_UID = 65534  # "nobody"


def _tiny_models_with_file(folder: Path, name: str, file_for: Callable[[Path], str]) -> Path:
    """Hand-built models whose entry `name` names the file `file_for(models_dir)` (moved there first)."""
    models = write_tiny_models(folder / "models")
    manifest_path = models / "manifest.json"
    manifest = json.loads(manifest_path.read_text())
    entry = next(e for e in manifest["models"] if e["name"] == name)
    target = file_for(models)
    destination = (models / target) if not os.path.isabs(target) else Path(target)
    destination.parent.mkdir(parents=True, exist_ok=True)
    shutil.move(models / entry["file"], destination)
    entry["file"] = target
    manifest_path.write_text(json.dumps(manifest))
    return models


@pytest.mark.parametrize("where", ["dot-dot", "absolute"])
def test_manifest_files_outside_the_models_folder_are_refused(tmp_path: Path, where: str) -> None:
    from stream_server.app import create_app

    outside = tmp_path / "outside" / "swap_a2b.onnx"

    def file_for(models: Path) -> str:
        return "../outside/swap_a2b.onnx" if where == "dot-dot" else str(outside)

    models = _tiny_models_with_file(tmp_path, "swap_a2b", file_for)
    assert outside.is_file()  # the file is really there: only the path rule can refuse it
    with pytest.raises(SwapstreamError) as refused:
        create_app(ServerConfig(pipeline="swap", models_dir=models))
    message = str(refused.value)
    assert "swap_a2b.onnx" in message and "models" in message, message


def _swap_entry(models_dir: Path) -> ModelEntry:
    return next(e for e in read_manifest(models_dir).models if e.kind == "swap")


def _cache_path(entry: ModelEntry) -> Path:
    choice = provider_options(entry, TENSORRT_EP)
    provider, options = choice
    assert provider == TENSORRT_EP
    assert options["trt_engine_cache_path"] == options["trt_timing_cache_path"]
    return Path(options["trt_engine_cache_path"])


def _private_chain(path: Path, stop: Path) -> list[str]:
    """Problems with `path` and its parents below `stop`: each must be a real directory, ours, mode 0700."""
    problems = []
    current = path
    while current != stop and stop in current.parents:
        info = os.lstat(current)
        if not stat.S_ISDIR(info.st_mode):
            problems.append(f"{current} is not a directory (a link?)")
        if info.st_uid != os.getuid():
            problems.append(f"{current} belongs to uid {info.st_uid}")
        if stat.S_IMODE(info.st_mode) != 0o700:
            problems.append(f"{current} has mode {oct(stat.S_IMODE(info.st_mode))}")
        current = current.parent
    return problems


def test_the_tensorrt_cache_is_private_and_never_another_users(tiny_models_dir: Path, tmp_path: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    entry = _swap_entry(tiny_models_dir)
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(fresh))
    cache = _cache_path(entry)
    assert fresh in cache.parents and cache.is_dir()
    assert not _private_chain(cache, fresh), _private_chain(cache, fresh)
    # Another user got there first and made the shared folder (world-writable, theirs): never use it.
    if os.getuid() != 0:
        print("SKIP reason: only root can make a folder owned by another user; the rest of the test ran")
        return
    shared = tmp_path / "shared"
    shared.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(shared))
    planted = shared / cache.relative_to(fresh).parts[0]
    planted.mkdir(mode=0o777)
    os.chmod(planted, 0o777)
    os.chown(planted, OTHER_UID, OTHER_UID)
    try:
        cache = _cache_path(entry)
    except SwapstreamError as exc:
        assert str(planted) in str(exc), exc  # refused, naming the folder
        return
    assert planted not in cache.parents and cache != planted, f"uses {cache}, inside another user's {planted}"
    assert not _private_chain(cache, shared), _private_chain(cache, shared)


# -- training files ---------------------------------------------------------------------------------------------------

def _write_checkpoint(path: Path, **metadata_changes: str | None) -> Path:
    """A real (tiny) digits checkpoint, then its safetensors metadata changed (None removes a key)."""
    import torch
    from safetensors.torch import load as load_bytes
    from safetensors.torch import save as save_bytes

    from training.checkpoint import save_checkpoint

    model = torch.nn.Linear(4, 2)
    save_checkpoint(path, kind="digits", model=model, model_config={"arch": "mlp"}, step=3)
    raw = path.read_bytes()
    header = json.loads(raw[8 : 8 + int.from_bytes(raw[:8], "little")])
    metadata = dict(header["__metadata__"])
    for key, value in metadata_changes.items():
        if value is None:
            metadata.pop(key, None)
        else:
            metadata[key] = value
    path.write_bytes(save_bytes(load_bytes(raw), metadata=metadata))
    return path


@pytest.mark.parametrize(("change", "expected"), [
    pytest.param({"content_sha256": None}, "content_sha256", id="no-digest"),
    pytest.param({"content_sha256": json.dumps(12345)}, "content_sha256", id="digest-a-number"),
    pytest.param({"model_config": json.dumps([1, 2])}, "model_config", id="config-a-list"),
    pytest.param({"step": json.dumps(None)}, "step", id="step-null"),
    pytest.param({"step": json.dumps("three")}, "step", id="step-a-word"),
    pytest.param({"train_config": json.dumps(5)}, "train_config", id="train-config-a-number"),
    pytest.param({"rng": json.dumps([1])}, "rng", id="rng-a-list"),
    # Already a checkpoint error naming the field on the old code (kept so the fix does not lose it).
    pytest.param({"kind": json.dumps(["swap"])}, "kind", id="kind-a-list"),
])
def test_a_checkpoint_with_missing_or_malformed_metadata_is_a_checkpoint_error(tmp_path: Path,
                                                                               change: dict[str, str | None],
                                                                               expected: str) -> None:
    pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from training.checkpoint import read_checkpoint
    from training.errors import CheckpointError

    path = _write_checkpoint(tmp_path / "checkpoint.safetensors", **change)
    with pytest.raises(CheckpointError) as refused:
        read_checkpoint(path)
    assert expected in str(refused.value) and str(path) in str(refused.value), refused.value


def test_resume_replaces_the_losses_csv_atomically(synthetic_facesets: Any, tmp_path: Path) -> None:
    pytest.importorskip("torch", reason="the train extra (torch) is not installed")
    from tests.training.test_train_faces import _micro_config
    from training.train_faces import EVAL_CSV, LOSSES_CSV, train_faces

    config = _micro_config(synthetic_facesets, tmp_path / "run", steps=3)
    train_faces(config)
    logs = {name: config.out / name for name in (LOSSES_CSV, EVAL_CSV)}
    before = {name: (path.stat().st_ino, path.read_text()) for name, path in logs.items()}
    # A reader (a plot, `tail -f`) holding the old file open while the run resumes.
    readers = {name: path.open() for name, path in logs.items()}
    try:
        train_faces(replace(config, steps=6, resume=True))
        for name, path in logs.items():
            inode, text = before[name]
            assert path.stat().st_ino != inode, f"{name} was rewritten in place, not replaced"
            assert readers[name].read() == text, f"{name}: a reader of the old file saw it change under it"
            assert path.read_text().startswith(text.splitlines()[0])  # same columns
    finally:
        for reader in readers.values():
            reader.close()
