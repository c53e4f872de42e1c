"""The trainer's loss terms on constructed inputs whose value is known."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from faces.align import template_points
from swapstream.cli import main as swapstream_main
from training.faceset import SideBatch
from training.losses import (LossWeights, code_gap, face_losses, feature_weight_map, gaussian_blur_matrix,
                             image_gradients, masked_edge_l1, pixel_weights, ssim_map)
from training.swap_model import SwapAutoencoder
from training.train_faces import ModelShape, training_step


def _stripes(size: int = 16) -> torch.Tensor:
    """Vertical black/white stripes one pixel wide: every x gradient is +-1, every y gradient 0."""
    image = torch.zeros(1, 3, size, size)
    image[..., :, ::2] = 1.0
    return image


def test_edge_loss_is_zero_for_the_target_and_one_for_a_flat_face() -> None:
    target = _stripes()
    ones = torch.ones(1, 1, 16, 16)
    assert float(masked_edge_l1(target, target, ones)) == 0.0
    # a flat grey face has no gradient: it misses |+-1| on every x difference and nothing on the y ones
    x_pairs, y_pairs = 16 * 15, 15 * 16
    expected = x_pairs / (x_pairs + y_pairs)
    assert float(masked_edge_l1(torch.full_like(target, 0.5), target, ones)) == pytest.approx(expected)


def test_edge_loss_sees_blur_that_costs_l1_little() -> None:
    """A blurred face keeps the mean colour (small L1 on smooth regions) but loses its edges."""
    torch.manual_seed(0)
    target = torch.rand(1, 3, 32, 32).clamp(0.2, 0.8)
    blurred = torch.nn.functional.avg_pool2d(target, 3, stride=1, padding=1, count_include_pad=False)
    ones = torch.ones(1, 1, 32, 32)
    edge_blur = float(masked_edge_l1(blurred, target, ones))
    edge_shift = float(masked_edge_l1(target + 0.05, target, ones))
    assert edge_shift == pytest.approx(0.0, abs=1e-6), "a colour shift changes no gradient"
    assert edge_blur > 0.1


def test_edge_loss_counts_a_difference_only_where_both_pixels_are_weighted() -> None:
    target = _stripes()
    weight = torch.zeros(1, 1, 16, 16)
    weight[..., :, :8] = 1.0  # left half only
    pred = target.clone()
    pred[..., :, 8:] = 0.5  # wrong on the right half, and on the pair straddling the edge (x 7-8)
    assert float(masked_edge_l1(pred, target, weight)) == 0.0
    dx, dy = image_gradients(target)
    assert dx.shape == (1, 3, 16, 15) and dy.shape == (1, 3, 15, 16)


def test_edge_term_joins_the_total_only_when_weighted() -> None:
    target = _stripes()
    mask = torch.ones(1, 1, 16, 16)
    flat = torch.full_like(target, 0.5)
    off = face_losses(flat, mask, target, mask, None, LossWeights())
    on = face_losses(flat, mask, target, mask, None, LossWeights(edge=2.0))
    assert "edge" not in off and float(on["edge"]) > 0.4
    assert float(on["total"]) == pytest.approx(float(off["total"]) + 2.0 * float(on["edge"]))


@pytest.mark.parametrize("flag", ["--edge-weight", "--dssim-weight", "--l1-weight", "--mask-weight",
                                  "--code-align-weight", "--eyes-mouth-weight", "--eyes-weight", "--mouth-weight"])
def test_negative_loss_weights_are_named(flag: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["train", "faces", "--a", str(tmp_path), "--b", str(tmp_path), "--out", str(tmp_path / "r"), flag, "-1"]
    with pytest.raises(SystemExit) as info:
        swapstream_main(argv)
    assert info.value.code == 2
    assert flag in capsys.readouterr().err


def _feature_maps(size: int = 64) -> tuple[torch.Tensor, tuple[int, int], tuple[int, int]]:
    """(1,2,S,S) eye and mouth maps of a face on the alignment template; an eye's and the mouth's pixel (x, y)."""
    points = template_points(size)
    maps = torch.from_numpy(feature_weight_map(points, size)).permute(2, 0, 1)[None]
    eye = (int(round(points[0][0])), int(round(points[0][1])))
    mouth = tuple(int(round(v)) for v in (points[3] + points[4]) / 2)
    return maps, eye, (mouth[0], mouth[1])


def test_eye_and_mouth_maps_each_cover_only_their_own_feature() -> None:
    maps, (ex, ey), (mx, my) = _feature_maps()
    assert maps.shape == (1, 2, 64, 64)
    assert float(maps[0, 0, ey, ex]) > 0.9 and float(maps[0, 1, ey, ex]) < 0.01
    assert float(maps[0, 1, my, mx]) > 0.9 and float(maps[0, 0, my, mx]) < 0.01


def test_mouth_and_eye_weights_raise_only_their_own_pixels() -> None:
    maps, (ex, ey), (mx, my) = _feature_maps()
    face = torch.ones(1, 1, 64, 64)
    mouth_only = pixel_weights(face, maps, LossWeights(eyes=0.0, mouth=20.0))
    assert float(mouth_only[0, 0, my, mx]) > 19.0 and float(mouth_only[0, 0, ey, ex]) == pytest.approx(1.0, abs=0.2)
    eyes_only = pixel_weights(face, maps, LossWeights(eyes=5.0, mouth=0.0))
    assert float(eyes_only[0, 0, ey, ex]) > 5.5 and float(eyes_only[0, 0, my, mx]) == pytest.approx(1.0, abs=0.05)
    # the same error at the mouth costs far more under a mouth weight; the eyes' weight leaves it alone
    target = torch.zeros(1, 3, 64, 64)
    pred = target.clone()
    pred[..., my - 2:my + 3, mx - 6:mx + 7] = 1.0

    def l1(weights: LossWeights) -> float:
        return float(face_losses(pred, face, target, face, maps, weights)["l1"])
    assert l1(LossWeights(eyes=0.0, mouth=20.0)) > 5 * l1(LossWeights(eyes=0.0, mouth=0.0))
    assert l1(LossWeights(eyes=20.0, mouth=0.0)) < l1(LossWeights(eyes=0.0, mouth=0.0))
    with pytest.raises(ValueError, match="eyes, mouth"):
        pixel_weights(face, maps[:, :1], LossWeights())


def test_code_gap_is_zero_for_equal_means_and_the_squared_offset_otherwise() -> None:
    codes = torch.randn(8, 16)
    assert float(code_gap(codes, codes.flip(0))) == pytest.approx(0.0, abs=1e-6)
    assert float(code_gap(codes + 0.5, codes)) == pytest.approx(0.25)


def _side(colour: tuple[float, float, float], generator: torch.Generator, size: int = 64) -> SideBatch:
    """Eight noisy faces tinted `colour`: two people the encoder tells apart at once."""
    faces = (torch.tensor(colour).view(1, 3, 1, 1) + 0.2 * torch.rand(8, 3, size, size, generator=generator))
    faces = faces.clamp(0, 1)
    ones = torch.ones(8, 1, size, size)
    return SideBatch(input=faces, target=faces, mask=ones, features=torch.cat([ones, torch.zeros_like(ones)], 1))


def _gap_after_training(code_align: float, steps: int = 40) -> tuple[float, float]:
    """(gap before, gap after) `steps` training steps of a tiny model on two differently tinted people."""
    torch.manual_seed(0)
    model = SwapAutoencoder(**ModelShape(encoder_channels=4, bottleneck=16, code_channels=8, decoder_channels=8,
                                         residual_blocks=0).model_config(64))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    generator = torch.Generator().manual_seed(1)
    side_a, side_b = _side((0.7, 0.3, 0.2), generator), _side((0.1, 0.3, 0.6), generator)
    gaps = []
    for _ in range(steps):
        gaps.append(float(training_step(model, optimizer, side_a, side_b, LossWeights(code_align=code_align))[2]))
    return gaps[0], gaps[-1]


def test_code_align_weight_pulls_the_two_peoples_codes_together() -> None:
    """Trained with the term, A's and B's mean codes end far closer than without it (the same start)."""
    before_off, after_off = _gap_after_training(0.0)
    before_on, after_on = _gap_after_training(10.0)
    assert before_on == pytest.approx(before_off)
    assert after_on < 0.2 * after_off


def test_ssim_by_blur_matrices_equals_padded_depthwise_convolution() -> None:
    """The matrix form of the Gaussian window is the textbook one (reflect padding, separable 11-tap Gaussian)."""
    torch.manual_seed(1)
    x, y = torch.rand(2, 3, 40, 56), torch.rand(2, 3, 40, 56)
    taps = torch.exp(-((torch.arange(11) - 5.0) ** 2) / (2 * 1.5**2))
    taps = taps / taps.sum()
    stacked = torch.cat([x, y, x * x, y * y, x * y], dim=1)
    padded = torch.nn.functional.pad(stacked, (5, 5, 5, 5), mode="reflect")
    row, col = taps.view(1, 1, 1, 11).repeat(15, 1, 1, 1), taps.view(1, 1, 11, 1).repeat(15, 1, 1, 1)
    blurred = torch.nn.functional.conv2d(torch.nn.functional.conv2d(padded, row, groups=15), col, groups=15)
    mu_x, mu_y, xx, yy, xy = blurred.split(3, dim=1)
    c1, c2 = 0.01**2, 0.03**2
    expected = ((2 * mu_x * mu_y + c1) * (2 * (xy - mu_x * mu_y) + c2)) / (
        (mu_x**2 + mu_y**2 + c1) * (xx - mu_x**2 + yy - mu_y**2 + c2))
    torch.testing.assert_close(ssim_map(x, y), expected.mean(dim=1, keepdim=True), rtol=0, atol=1e-5)
    torch.testing.assert_close(ssim_map(x, x), torch.ones(2, 1, 40, 56), rtol=0, atol=1e-5)
    blur = gaussian_blur_matrix(40, 11, 1.5, torch.device("cpu"), torch.float32)
    torch.testing.assert_close(blur.sum(dim=1), torch.ones(40), rtol=0, atol=1e-6)  # a flat image stays flat
    with pytest.raises(ValueError, match="larger than 5 px"):
        gaussian_blur_matrix(4, 11, 1.5, torch.device("cpu"), torch.float32)
