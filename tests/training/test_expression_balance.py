"""Expression balance: blinks and other rare expressions are drawn more often, and only when asked for."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from faces.expression import (
    CHIN,
    EYES,
    FOREHEAD_TOP,
    INNER_LIP_LOWER,
    INNER_LIP_UPPER,
    eye_opening,
    mouth_opening,
)
from training.expression_balance import MAX_RATIO, balance_expressions
from training.faceset import draw_indices


def constructed_mesh(eye: float, mouth: float, rng: np.random.Generator) -> np.ndarray:
    """A 468-point mesh (crop px) whose eye opening and mouth opening are the given figures."""
    mesh = rng.uniform(20.0, 100.0, size=(468, 2))
    mesh[FOREHEAD_TOP], mesh[CHIN] = (64.0, 10.0), (64.0, 110.0)  # face height 100
    mesh[INNER_LIP_UPPER] = (64.0, 85.0)
    mesh[INNER_LIP_LOWER] = (64.0, 85.0 + 100.0 * mouth)
    for (corner_a, corner_b), lids in EYES:
        x0 = 30.0 if corner_a == 33 else 70.0
        mesh[corner_a], mesh[corner_b] = (x0, 45.0), (x0 + 20.0, 45.0)  # eye width 20
        for offset, (upper, lower) in enumerate(lids):
            mesh[upper] = (x0 + 5.0 * (offset + 1), 45.0 - 10.0 * eye)
            mesh[lower] = (x0 + 5.0 * (offset + 1), 45.0 + 10.0 * eye)
    return mesh


def blinking_set(count: int = 400, blinks: int = 16, seed: int = 0) -> tuple[list[np.ndarray | None], np.ndarray]:
    """Meshes of a face that blinks on `blinks` of `count` frames (the first ones) and talks on all of them."""
    rng = np.random.default_rng(seed)
    closed = np.arange(count) < blinks
    meshes: list[np.ndarray | None] = [
        constructed_mesh(rng.uniform(0.02, 0.06) if shut else rng.uniform(0.25, 0.35), rng.uniform(0.0, 0.1), rng)
        for shut in closed
    ]
    return meshes, closed


def test_constructed_meshes_measure_as_built() -> None:
    mesh = constructed_mesh(0.3, 0.05, np.random.default_rng(1))
    assert eye_opening(mesh) == pytest.approx(0.3)
    assert mouth_opening(mesh) == pytest.approx(0.05)


def test_blinks_are_drawn_several_times_as_often_and_the_mouth_is_left_alone() -> None:
    meshes, closed = blinking_set()
    balance = balance_expressions(meshes, eyes=1.0, mouth=0.0)
    assert balance is not None
    p = balance.probabilities
    assert p.sum() == pytest.approx(1.0) and (p > 0).all()
    assert closed.mean() == pytest.approx(0.04)
    # the closed eyes are one of a few occupied eye cells, so evened out they are drawn on a quarter of the draws
    assert p[closed].sum() > 0.2
    before, after = balance.closed_eye_share
    assert before == pytest.approx(0.04) and after == pytest.approx(p[closed].sum())
    # the mouth's distribution is what it was: no mouth cell is favoured
    mouth_before, mouth_after = balance.closed_mouth_share
    assert abs(mouth_after - mouth_before) < 0.05
    assert p.max() / p.min() <= MAX_RATIO + 1e-9


def test_mouth_balance_draws_a_rare_wide_mouth_more_often() -> None:
    rng = np.random.default_rng(2)
    wide = np.arange(300) < 12
    meshes: list[np.ndarray | None] = [constructed_mesh(0.3, 0.12 if w else rng.uniform(0.0, 0.03), rng) for w in wide]
    balance = balance_expressions(meshes, eyes=0.0, mouth=1.0)
    assert balance is not None
    assert balance.probabilities[wide].sum() > 3 * wide.mean()


def test_faces_without_a_mesh_keep_the_mean_probability_and_nothing_to_balance_is_none() -> None:
    meshes, _ = blinking_set(count=100, blinks=8)
    meshes[50] = None
    balance = balance_expressions(meshes, eyes=1.0, mouth=0.0)
    assert balance is not None
    known = np.array([m is not None for m in meshes])
    assert balance.probabilities[50] == pytest.approx(balance.probabilities[known].mean())
    assert balance_expressions(meshes, eyes=0.0, mouth=0.0) is None
    assert balance_expressions([None] * 100, eyes=1.0, mouth=0.0) is None
    with pytest.raises(ValueError, match="eyes must be in"):
        balance_expressions(meshes, eyes=1.5, mouth=0.0)


def test_draws_follow_the_probabilities_and_uniform_draws_are_unchanged() -> None:
    meshes, closed = blinking_set()
    balance = balance_expressions(meshes, eyes=1.0, mouth=0.0)
    assert balance is not None
    drawn = np.concatenate([draw_indices(np.random.default_rng([0, step]), len(meshes), 16, balance.probabilities)
                            for step in range(500)])
    assert closed[drawn].mean() == pytest.approx(balance.probabilities[closed].sum(), abs=0.03)
    # without balance the draw is the trainer's old uniform one, so existing runs resume onto the same batches
    uniform = draw_indices(np.random.default_rng([0, 7]), 400, 16, None)
    np.testing.assert_array_equal(uniform, np.random.default_rng([0, 7]).integers(0, 400, size=16))


def test_out_of_range_balance_is_a_usage_error() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "swapstream.cli", "train", "faces", "--a", "x", "--b", "y", "--out", "z",
         "--balance-eyes", "2"], capture_output=True, text=True, timeout=120)
    assert result.returncode == 2
    assert "--balance-eyes must be in [0, 1], got 2.0" in result.stderr
