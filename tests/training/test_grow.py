"""`python -m training.grow`: a trained swap model's decoders made wider and deeper at full size, drawing what
they drew before, and still learning."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from tests.fixtures.training import FACE_SIZE, SyntheticFaceSets
from training.checkpoint import checkpoint_path, read_checkpoint, restore_model, save_checkpoint
from training.cli import main as train_main
from training.errors import CheckpointError
from training.grow import grow_model
from training.grow import main as grow_main
from training.swap_model import SwapAutoencoder

SHAPE: dict[str, Any] = {"face_size": 32, "encoder_channels": 4, "encoder_depth": 3, "bottleneck": 16,
                         "code_channels": 8, "decoder_channels": 16, "residual_blocks": 0}


def _trained_like(shape: dict[str, Any] = SHAPE) -> SwapAutoencoder:
    """A model whose every weight is non-zero, as a trained one's are (fresh biases may start at zero)."""
    torch.manual_seed(3)
    model = SwapAutoencoder(**shape)
    with torch.no_grad():
        for param in model.parameters():
            param.add_(0.05 * torch.randn_like(param))
    return model.eval()


def test_models_of_the_old_shape_keep_their_old_config() -> None:
    # checkpoints and manifests written before the grow options existed must still compare equal
    assert SwapAutoencoder(**SHAPE).config == SHAPE
    grown = SwapAutoencoder(**SHAPE, decoder_min_channels=16, full_size_blocks=1).config
    assert grown == {**SHAPE, "decoder_min_channels": 16, "full_size_blocks": 1}


@pytest.mark.parametrize("growth", [{"decoder_min_channels": 16, "full_size_blocks": 0},
                                    {"decoder_min_channels": 8, "full_size_blocks": 2},
                                    {"decoder_min_channels": 16, "full_size_blocks": 1}])
def test_a_grown_model_draws_what_it_drew_before(growth: dict[str, int]) -> None:
    old = _trained_like()
    grown = grow_model(old, **growth).eval()
    assert sum(p.numel() for p in grown.parameters()) > sum(p.numel() for p in old.parameters())
    faces = torch.rand(3, 3, 32, 32)
    with torch.no_grad():
        for side in ("a", "b"):
            old_rgb, old_mask = old(faces, side)
            rgb, mask = grown(faces, side)
            torch.testing.assert_close(rgb, old_rgb, rtol=0, atol=1e-6)
            torch.testing.assert_close(mask, old_mask, rtol=0, atol=1e-6)


def test_the_grown_parts_learn() -> None:
    grown = grow_model(_trained_like(), decoder_min_channels=16, full_size_blocks=1).train()
    # the weights that start at zero so the grown model draws as before: the new channels' way into the output and
    # the added block's last convolution
    to_rgb = grown.decoder_b.to_rgb.weight
    block = grown.decoder_b.body[-1]

    def largest(weight: torch.Tensor) -> float:
        return float(weight.detach().abs().max())

    assert largest(to_rgb[:, 8:]) == 0.0 and largest(block.body[2].weight) == 0.0
    optimizer = torch.optim.Adam(grown.parameters(), lr=1e-3)
    faces, target = torch.rand(4, 3, 32, 32), torch.rand(4, 3, 32, 32)
    for _ in range(3):
        optimizer.zero_grad()
        loss = (grown(faces, "b")[0] - target).abs().mean()
        loss.backward()
        optimizer.step()
    assert largest(to_rgb[:, 8:]) > 0.0, "the new channels must reach the output"
    assert largest(block.body[2].weight) > 0.0, "the added block must not stay a pass-through"


def test_shrinking_is_refused_by_name() -> None:
    grown = grow_model(_trained_like(), decoder_min_channels=16, full_size_blocks=1)
    with pytest.raises(CheckpointError, match="--decoder-min-channels 8 would shrink"):
        grow_model(grown, decoder_min_channels=8, full_size_blocks=1)
    with pytest.raises(CheckpointError, match="--full-size-blocks 0 would shrink"):
        grow_model(grown, decoder_min_channels=16, full_size_blocks=0)


def test_a_grown_checkpoint_is_a_base_a_run_trains_from(tmp_path: Path, tiny_swap_run: Path,
                                                        synthetic_facesets: SyntheticFaceSets,
                                                        capsys: pytest.CaptureFixture[str]) -> None:
    grown_file = tmp_path / "grown.safetensors"
    assert grow_main([str(tiny_swap_run), "--decoder-min-channels", "16", "--full-size-blocks", "1",
                      "--out", str(grown_file)]) == 0
    assert "wrote" in capsys.readouterr().out
    source = read_checkpoint(checkpoint_path(tiny_swap_run))
    grown = read_checkpoint(grown_file, expected_kind="swap")
    assert grown.model_config == {**source.model_config, "decoder_min_channels": 16, "full_size_blocks": 1}
    assert grown.step == source.step and grown.train_config["grown_from"] == str(tiny_swap_run)
    # the checkpoint's own weights, loaded, draw the source run's faces
    faces = torch.rand(2, 3, FACE_SIZE, FACE_SIZE)
    with torch.no_grad():
        torch.testing.assert_close(restore_model(grown).eval()(faces)[0], restore_model(source).eval()(faces)[0],
                                   rtol=0, atol=1e-6)
    # no shape flags: the run takes the grown shape
    run = tmp_path / "from-grown"
    assert train_main(["faces", "--a", str(synthetic_facesets.a), "--b", str(synthetic_facesets.b), "--out", str(run),
                       "--size", str(FACE_SIZE), "--steps", "2", "--batch", "2", "--checkpoint-every", "2",
                       "--preview-every", "2", "--workers", "1", "--threads", "1", "--device", "cpu",
                       "--no-progress", "--base", str(grown_file)]) == 0
    assert json.loads((run / "model_config.json").read_text()) == grown.model_config


def test_a_checkpoint_that_is_not_a_swap_model_is_refused(tmp_path: Path,
                                                           capsys: pytest.CaptureFixture[str]) -> None:
    from training.digits_model import DigitNet

    digits = tmp_path / "digits.safetensors"
    net = DigitNet("mlp")
    save_checkpoint(digits, kind="digits", model=net, model_config=net.config, step=1)
    assert grow_main([str(digits), "--full-size-blocks", "1", "--out", str(tmp_path / "out.safetensors")]) == 1
    assert "swap" in capsys.readouterr().err
    assert not (tmp_path / "out.safetensors").exists()
