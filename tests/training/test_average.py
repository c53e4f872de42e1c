"""`python -m training.average`: one run holding the weighted mean of several runs' weights (model soup)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch

from training.average import average_runs
from training.average import main as average_main
from training.checkpoint import checkpoint_path, load_run, read_checkpoint, save_checkpoint
from training.errors import CheckpointError, TrainingError
from training.swap_model import SwapAutoencoder

SHAPE: dict[str, Any] = {"face_size": 32, "encoder_channels": 4, "encoder_depth": 3, "bottleneck": 16,
                         "code_channels": 8, "decoder_channels": 8, "residual_blocks": 0}


def _run(folder: Path, seed: int, shape: dict[str, Any] = SHAPE, step: int = 10) -> Path:
    """A run folder whose swap checkpoint holds random weights drawn from `seed`."""
    torch.manual_seed(seed)
    model = SwapAutoencoder(**shape)
    folder.mkdir(parents=True)
    save_checkpoint(checkpoint_path(folder), kind="swap", model=model, model_config=shape, step=step)
    return folder


def test_the_average_holds_the_weighted_mean_and_loads_as_a_run(tmp_path: Path) -> None:
    first, second = _run(tmp_path / "first", 1, step=10), _run(tmp_path / "second", 2, step=30)
    out = tmp_path / "mean"
    average_runs([first, second], out, [1.0, 3.0])
    a = read_checkpoint(checkpoint_path(first)).model_state
    b = read_checkpoint(checkpoint_path(second)).model_state
    mean = read_checkpoint(checkpoint_path(out), expected_kind="swap")
    assert mean.model_state.keys() == a.keys()
    for name, value in mean.model_state.items():
        torch.testing.assert_close(value, 0.25 * a[name] + 0.75 * b[name], rtol=0, atol=1e-6)
    assert [s["weight"] for s in mean.train_config["average_of"]] == [1.0, 3.0] and mean.step == 30
    # what export and `train faces --base` read: the run folder alone
    run = load_run(out)
    assert run.kind == "swap" and (out / "model_config.json").is_file()
    with torch.no_grad():
        rgb, mask = run.model(torch.rand(1, 3, 32, 32))
    assert rgb.shape == (1, 3, 32, 32) and bool(torch.isfinite(rgb).all())


def test_runs_of_other_shapes_and_bad_weights_are_refused_by_name(tmp_path: Path,
                                                                   capsys: pytest.CaptureFixture[str]) -> None:
    first = _run(tmp_path / "first", 1)
    wider = _run(tmp_path / "wider", 2, {**SHAPE, "decoder_channels": 16})
    with pytest.raises(CheckpointError, match="of one shape") as info:
        average_runs([first, wider], tmp_path / "out")
    assert str(checkpoint_path(wider)) in str(info.value)
    with pytest.raises(TrainingError, match="at least two"):
        average_runs([first], tmp_path / "out")
    with pytest.raises(TrainingError, match="positive"):
        average_runs([first, first], tmp_path / "out", [1.0, 0.0])
    missing = tmp_path / "missing"
    assert average_main([str(first), str(missing), "--out", str(tmp_path / "out")]) == 1
    err = capsys.readouterr().err
    assert "training.average: error" in err and str(missing) in err
    assert not (tmp_path / "out").exists()
