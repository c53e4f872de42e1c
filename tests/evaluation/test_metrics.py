"""The plain-numpy figures on constructed cases whose answer is known (real photo, real mediapipe face)."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from evaluation.metrics import (
    crop_detail,
    following,
    mean_change,
    resolution_ceiling,
    seam_delta_e,
    sharpness_ratio,
)
from evaluation.regions import OUTER_WEIGHT, FaceRegions, face_regions
from faces.types import Face

FACE_SIZE = 64
FEATHER = 4


@pytest.fixture(scope="module")
def astronaut_regions(astronaut: np.ndarray, astronaut_face: Face) -> FaceRegions:
    regions = face_regions(astronaut_face, FACE_SIZE, FEATHER, astronaut.shape)
    assert regions is not None
    return regions


def test_following_an_identical_series_is_perfect() -> None:
    series = [0.01, 0.05, 0.02, 0.08, 0.03, 0.0]
    result = following(series, series)
    assert result.correlation == pytest.approx(1.0)
    assert result.range_ratio == pytest.approx(1.0)


def test_following_a_frozen_or_halved_series() -> None:
    series = np.linspace(0.0, 0.08, 10)
    frozen = following(series, np.full(10, 0.02))
    assert frozen.correlation == 0.0 and frozen.range_ratio == pytest.approx(0.0)
    halved = following(series, 0.01 + series / 2)
    assert halved.correlation == pytest.approx(1.0) and halved.range_ratio == pytest.approx(0.5)
    assert following([0.02] * 5, series[:5]).correlation is None  # a still input says nothing


def test_regions_inner_face_lies_inside_the_rings(astronaut_regions: FaceRegions) -> None:
    regions = astronaut_regions
    assert regions.inner.sum() > 2000
    assert not (regions.inner_ring & ~regions.inner).any()
    assert regions.outer_ring.sum() > 500
    assert regions.weight[regions.outer_ring].max() < OUTER_WEIGHT  # (almost) never blended


def test_sharpness_of_an_identical_and_a_blurred_face(astronaut: np.ndarray,
                                                      astronaut_regions: FaceRegions) -> None:
    assert sharpness_ratio(astronaut, astronaut.copy(), astronaut_regions.inner) == pytest.approx(1.0)
    blurred = cv2.GaussianBlur(astronaut, (0, 0), 2.0)
    ratio = sharpness_ratio(astronaut, blurred, astronaut_regions.inner)
    assert ratio is not None and ratio < 0.3
    flat = np.full_like(astronaut, 128)
    assert sharpness_ratio(flat, astronaut, astronaut_regions.inner) is None


def test_resolution_ceiling_falls_with_the_models_size(astronaut: np.ndarray, astronaut_face: Face,
                                                       astronaut_regions: FaceRegions) -> None:
    measured = {size: resolution_ceiling(astronaut, astronaut_face, size, astronaut_regions.inner)
                for size in (16, 32, 64, 256)}
    ceilings = {size: float(c) for size, c in measured.items() if c is not None}
    assert len(ceilings) == len(measured)
    # the face is ~100 px across: a 256 px crop keeps all of its detail (above the sigma-1 noise filter), a
    # 32 px crop (a third of a crop pixel per frame pixel) little, a 16 px crop almost none
    assert ceilings[256] == pytest.approx(1.0, abs=0.05)
    assert ceilings[16] < ceilings[32] < ceilings[64] < ceilings[256]
    assert ceilings[32] < 0.5 and ceilings[16] < 0.2


def test_crop_detail_sees_a_smooth_face_as_less_detailed(astronaut: np.ndarray, astronaut_face: Face) -> None:
    sharp = crop_detail(astronaut, astronaut_face.points, 128)
    assert sharp is not None and sharp == pytest.approx(crop_detail(astronaut.copy(), astronaut_face.points, 128))
    smooth = crop_detail(cv2.GaussianBlur(astronaut, (0, 0), 3.0), astronaut_face.points, 128)
    assert smooth is not None and smooth < 0.5 * sharp


def test_frame_change_counts_flicker(astronaut: np.ndarray, astronaut_regions: FaceRegions) -> None:
    rng = np.random.default_rng(0)

    def noisy(sigma: float) -> list[np.ndarray]:
        return [np.clip(astronaut + rng.normal(0, sigma, astronaut.shape), 0, 255).astype(np.uint8)
                for _ in range(6)]

    still = [astronaut.copy() for _ in range(4)]
    assert mean_change(still, astronaut_regions.inner) == 0.0
    inner = astronaut_regions.inner
    calm, flickering = mean_change(noisy(2.0), inner), mean_change(noisy(6.0), inner)
    # |N(0, s) - N(0, s)| has mean 2 s / sqrt(pi); clipping at 0/255 trims a little.
    assert calm == pytest.approx(2 * 2.0 / np.sqrt(np.pi), rel=0.1)
    assert flickering > 2.5 * calm


def test_seam_of_an_unchanged_and_a_recoloured_face(astronaut: np.ndarray,
                                                    astronaut_regions: FaceRegions) -> None:
    assert seam_delta_e(astronaut, astronaut.copy(), astronaut_regions) == 0.0
    pasted = astronaut.copy()
    inside = astronaut_regions.weight > 0.5
    pasted[inside] = np.clip(pasted[inside].astype(int) + 40, 0, 255)  # a face pasted 40 grey levels too light
    light = seam_delta_e(astronaut, pasted, astronaut_regions)
    assert light is not None and 8 < light < 25  # +40 grey levels is ~10-20 L* units, depending on the skin
    darker = astronaut.copy()
    darker[inside] = np.clip(darker[inside].astype(int) - 20, 0, 255)
    dark = seam_delta_e(astronaut, darker, astronaut_regions)
    assert dark is not None and 3 < dark < light
