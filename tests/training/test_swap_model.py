"""The swap and digit models: shapes, output ranges, shared encoder, one decoder per identity."""

from __future__ import annotations

import pytest
import torch

from training.digits_model import DigitNet
from training.swap_model import SwapAutoencoder, SwapPath
from training.train_faces import ModelShape

SMALL = {"encoder_channels": 8, "bottleneck": 32, "code_channels": 16, "decoder_channels": 16, "residual_blocks": 1}


@pytest.mark.parametrize("size", [64, 128])
def test_swap_model_outputs_faces_and_masks_in_range(size: int) -> None:
    torch.manual_seed(0)
    model = SwapAutoencoder(**ModelShape(**SMALL).model_config(size)).eval()
    x = torch.rand(2, 3, size, size)
    with torch.no_grad():
        _check_outputs(model, x)


def _check_outputs(model: SwapAutoencoder, x: torch.Tensor) -> None:
    size = x.shape[-1]
    code = model.encode(x)
    assert code.shape[-1] == 8, "the shared code is a small spatial map"
    for side in ("a", "b"):
        rgb, mask = model.decode(code, side)
        assert rgb.shape == (2, 3, size, size) and mask.shape == (2, 1, size, size)
        assert 0.0 <= float(rgb.min()) and float(rgb.max()) <= 1.0
        assert 0.0 <= float(mask.min()) and float(mask.max()) <= 1.0
    a_out, b_out = model.decode(code, "a")[0], model.decode(code, "b")[0]
    assert not torch.allclose(a_out, b_out), "each identity has its own decoder"
    torch.testing.assert_close(SwapPath(model, "a2b")(x)[0], b_out)
    torch.testing.assert_close(SwapPath(model, "b2a")(x)[0], a_out)


def test_parameter_counts_add_up() -> None:
    model = SwapAutoencoder(**SMALL)
    counts = model.parameter_counts()
    assert counts["total"] == sum(p.numel() for p in model.parameters())
    assert counts["decoder_a"] == counts["decoder_b"] > 0 and counts["encoder"] > 0


def test_bad_model_arguments_are_refused() -> None:
    with pytest.raises(ValueError, match="divisible"):
        SwapAutoencoder(face_size=72)
    with pytest.raises(ValueError, match="side"):
        SwapAutoencoder(**SMALL).decode(torch.zeros(1, 16, 8, 8), "c")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="arch"):
        DigitNet("rnn")  # type: ignore[arg-type]


@pytest.mark.parametrize("arch", ["mlp", "cnn"])
def test_digit_net_takes_256_values_and_gives_10_logits(arch: str) -> None:
    net = DigitNet(arch).eval()
    assert net(torch.rand(5, 256)).shape == (5, 10)
    assert net.config["arch"] == arch and DigitNet(**net.config).parameter_count() == net.parameter_count()
