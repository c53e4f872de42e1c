"""Checkpoints: self-describing safetensors, atomic writes, errors that name the file."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest
import torch

from training.checkpoint import (
    capture_rng,
    checkpoint_path,
    load_run,
    read_checkpoint,
    restore_optimizer,
    restore_rng,
    save_checkpoint,
)
from training.digits_model import DigitNet
from training.errors import CheckpointError
from training.swap_model import SwapAutoencoder

TINY = {"face_size": 64, "encoder_channels": 8, "bottleneck": 32, "code_channels": 16, "decoder_channels": 16,
        "residual_blocks": 0}


def _trained_pair(steps: int = 2) -> tuple[SwapAutoencoder, torch.optim.Adam]:
    torch.manual_seed(0)
    model = SwapAutoencoder(**TINY)
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        rgb, mask = model(torch.rand(2, 3, 64, 64), "a")
        loss = rgb.mean() + mask.mean()
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    return model, optimizer


def test_round_trip_rebuilds_the_same_model_from_the_file_alone(tmp_path: Path) -> None:
    model, optimizer = _trained_pair()
    save_checkpoint(checkpoint_path(tmp_path), kind="swap", model=model, model_config=model.config, step=7,
                    train_config={"batch": 2}, optimizer=optimizer, rng=capture_rng())
    run = load_run(tmp_path)
    assert run.kind == "swap" and run.step == 7 and run.model_config == model.config
    assert not run.model.training
    x = torch.rand(3, 3, 64, 64)
    model.eval()
    for side in ("a", "b"):
        expected = model.decode(model.encode(x), side)
        got = run.model.decode(run.model.encode(x), side)
        for e, g in zip(expected, got):
            torch.testing.assert_close(g, e, rtol=0, atol=0)
    # the metadata is plain JSON strings, as the export contract says
    header_len = int.from_bytes(checkpoint_path(tmp_path).read_bytes()[:8], "little")
    header = json.loads(checkpoint_path(tmp_path).read_bytes()[8 : 8 + header_len])
    meta = header["__metadata__"]
    assert json.loads(meta["kind"]) == "swap" and json.loads(meta["step"]) == 7
    assert json.loads(meta["model_config"]) == model.config
    assert any(name.startswith("optim.") for name in header) and any(name.startswith("model.") for name in header)


def test_optimizer_and_rng_state_resume_exactly(tmp_path: Path) -> None:
    model, optimizer = _trained_pair(steps=3)
    save_checkpoint(checkpoint_path(tmp_path), kind="swap", model=model, model_config=model.config, step=3,
                    optimizer=optimizer, rng=capture_rng())
    expected_draw = torch.rand(5)
    checkpoint = read_checkpoint(checkpoint_path(tmp_path), expected_kind="swap")
    fresh = SwapAutoencoder(**TINY)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=1e-3)
    restore_optimizer(checkpoint, fresh_opt)
    restore_rng(checkpoint.rng)
    assert torch.equal(torch.rand(5), expected_draw)
    original, restored = optimizer.state_dict(), fresh_opt.state_dict()
    assert restored["param_groups"] == original["param_groups"]
    for index, state in original["state"].items():
        for key, value in state.items():
            torch.testing.assert_close(restored["state"][index][key], value, rtol=0, atol=0)


def test_digits_checkpoint_loads_as_digit_net(tmp_path: Path) -> None:
    net = DigitNet("cnn")
    save_checkpoint(checkpoint_path(tmp_path), kind="digits", model=net, model_config=net.config, step=1)
    run = load_run(tmp_path)
    assert run.kind == "digits" and isinstance(run.model, DigitNet)
    x = torch.rand(4, 256)
    net.eval()
    torch.testing.assert_close(run.model(x), net(x))
    with pytest.raises(CheckpointError, match="digits model, not a swap model"):
        read_checkpoint(checkpoint_path(tmp_path), expected_kind="swap")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "flip_tensor_byte", "empty"])
def test_damaged_checkpoint_is_reported_with_its_file_name(tmp_path: Path, damage: str) -> None:
    model, _ = _trained_pair(steps=1)
    path = save_checkpoint(checkpoint_path(tmp_path), kind="swap", model=model, model_config=model.config, step=1)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    elif damage == "garbage":
        raw = bytearray(b"this is not a checkpoint" * 10)
    elif damage == "flip_tensor_byte":
        raw[-10] ^= 0xFF  # inside the last tensor's data: only the checksum can notice
    else:
        raw = bytearray()
    path.write_bytes(bytes(raw))
    with pytest.raises(CheckpointError) as info:
        load_run(tmp_path)
    assert str(path) in str(info.value)


def test_missing_checkpoint_and_run_dir_are_named(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="does not exist") as info:
        load_run(tmp_path)
    assert str(checkpoint_path(tmp_path)) in str(info.value)
    with pytest.raises(CheckpointError, match=str(tmp_path / "nope")):
        load_run(tmp_path / "nope")


def test_config_that_does_not_fit_the_weights_is_a_checkpoint_error(tmp_path: Path) -> None:
    model, _ = _trained_pair(steps=1)
    path = save_checkpoint(checkpoint_path(tmp_path), kind="swap", model=model,
                           model_config={**TINY, "bottleneck": 64}, step=1)
    with pytest.raises(CheckpointError, match="does not fit the model") as info:
        load_run(tmp_path)
    assert str(path) in str(info.value)


def test_failed_write_leaves_the_previous_checkpoint_intact(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    model, optimizer = _trained_pair(steps=1)
    path = checkpoint_path(tmp_path)
    save_checkpoint(path, kind="swap", model=model, model_config=model.config, step=1, optimizer=optimizer)

    def failing_replace(src: str, dst: str) -> None:
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(path, kind="swap", model=model, model_config=model.config, step=2, optimizer=optimizer)
    monkeypatch.undo()
    assert read_checkpoint(path).step == 1
    assert [p.name for p in tmp_path.iterdir()] == [path.name], "the temp file must be cleaned up"
