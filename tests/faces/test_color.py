"""Colour transfer on real face crops: statistics move to the target's."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faces.align import align_face, transform_points
from faces.color import transfer_color
from faces.errors import FaceError
from faces.mask import hull_mask

SIZE = 128


@pytest.fixture(scope="module")
def astronaut_crop(astronaut, astronaut_face):
    aligned = align_face(astronaut, astronaut_face, SIZE)
    mask = hull_mask(transform_points(astronaut_face.mesh, aligned.matrix), SIZE, feather=0)
    return aligned.crop, mask


@pytest.fixture(scope="module")
def lfw_face():
    """A different real face: an LFW portrait (grey, 25 px) upsampled and toned to a pale skin colour."""
    from skimage import data

    grey = cv2.resize((data.lfw_subset()[0] * 255).astype(np.uint8), (SIZE, SIZE), interpolation=cv2.INTER_CUBIC)
    g = grey.astype(np.float64) / 255
    toned = np.stack([0.95 * g + 0.05, 0.72 * g + 0.03, 0.55 * g], axis=-1)
    return np.clip(toned * 255 + 0.5, 0, 255).astype(np.uint8)


def _lab_stats(rgb: np.ndarray, mask: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
    if mask is not None:
        lab = lab[mask.reshape(-1) > 0.5]
    return lab.mean(axis=0), lab.std(axis=0)


def _relative(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a - b) / np.abs(b)


@pytest.mark.parametrize("masked", [False, True])
def test_rct_moves_lab_mean_and_std_to_the_target(astronaut_crop, lfw_face, masked):
    crop, face_mask = astronaut_crop
    mask = face_mask if masked else None
    out = transfer_color(crop, lfw_face, "rct", mask)
    assert out.shape == crop.shape and out.dtype == np.uint8
    mean_out, std_out = _lab_stats(out, mask)
    mean_t, std_t = _lab_stats(lfw_face, mask)
    mean_s, std_s = _lab_stats(crop, mask)
    # The two faces really differ (else the test proves nothing)...
    assert np.any(_relative(std_s, std_t) > 0.3) and np.any(_relative(mean_s, mean_t) > 0.2)
    # ...and after the transfer every LAB channel's mean and std (L in 0..100, a/b signed) is within 5%.
    assert np.all(_relative(mean_out, mean_t) < 0.05), _relative(mean_out, mean_t)
    assert np.all(_relative(std_out, std_t) < 0.05), _relative(std_out, std_t)


@pytest.mark.parametrize("masked", [False, True])
def test_rct_matches_a_retinted_copy_of_the_same_face(astronaut_crop, masked):
    crop, face_mask = astronaut_crop
    mask = face_mask[:, ::-1] if masked else None  # the mirrored face's hull, used for both images
    x = crop.astype(np.float64) / 255
    # The same face under warmer, flatter light (as another camera would see it), mirrored.
    retinted = x ** np.array([0.9, 1.0, 1.15]) * np.array([0.95, 0.9, 0.8]) + np.array([0.03, 0.015, 0.0])
    target = np.ascontiguousarray(np.clip(retinted * 255 + 0.5, 0, 255).astype(np.uint8)[:, ::-1])
    out = transfer_color(crop, target, "rct", (face_mask if masked else None, mask))
    mean_out, std_out = _lab_stats(out, face_mask if masked else None)
    mean_t, std_t = _lab_stats(target, mask)
    assert np.all(_relative(mean_out, mean_t) < 0.05) and np.all(_relative(std_out, std_t) < 0.05)


@pytest.mark.parametrize("masked", [False, True])
def test_lct_matches_rgb_mean_and_covariance(astronaut_crop, lfw_face, masked):
    crop, face_mask = astronaut_crop
    mask = face_mask if masked else None
    out = transfer_color(crop, lfw_face, "lct", mask)
    keep = np.ones(SIZE * SIZE, bool) if mask is None else mask.reshape(-1) > 0.5
    rgb_out = out.reshape(-1, 3)[keep].astype(np.float64)
    rgb_t = lfw_face.reshape(-1, 3)[keep].astype(np.float64)
    assert np.all(_relative(rgb_out.mean(axis=0), rgb_t.mean(axis=0)) < 0.05)
    assert np.all(_relative(rgb_out.std(axis=0), rgb_t.std(axis=0)) < 0.05)
    cov_out, cov_t = np.cov(rgb_out.T), np.cov(rgb_t.T)
    assert np.linalg.norm(cov_out - cov_t) / np.linalg.norm(cov_t) < 0.05
    # In LAB the means follow too (the stds only roughly: LCT matches RGB, not LAB, spread).
    mean_out, _ = _lab_stats(out, mask)
    mean_t, _ = _lab_stats(lfw_face, mask)
    assert np.all(_relative(mean_out, mean_t) < 0.05)


def test_rct_with_a_feathered_mask_matches_the_weighted_statistics(astronaut_crop, astronaut, astronaut_face,
                                                                   lfw_face):
    """The server's mask: the hull feathered to soft weights. Weighted LAB mean and std follow the target's."""
    crop, _ = astronaut_crop
    aligned = align_face(astronaut, astronaut_face, SIZE)
    weights = hull_mask(transform_points(astronaut_face.mesh, aligned.matrix), SIZE, feather=SIZE / 16)
    soft = (weights > 0.02) & (weights < 0.98)
    assert soft.mean() > 0.1  # a real share of the weights lies strictly between 0 and 1

    def weighted_lab(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        lab = cv2.cvtColor(rgb.astype(np.float32) / 255, cv2.COLOR_RGB2LAB).reshape(-1, 3).astype(np.float64)
        w = weights.reshape(-1).astype(np.float64)
        mean = (lab * w[:, None]).sum(axis=0) / w.sum()
        return mean, np.sqrt((((lab - mean) ** 2) * w[:, None]).sum(axis=0) / w.sum())

    mean_out, std_out = weighted_lab(transfer_color(crop, lfw_face, "rct", weights))
    mean_t, std_t = weighted_lab(lfw_face)
    assert np.all(_relative(mean_out, mean_t) < 0.05), _relative(mean_out, mean_t)
    assert np.all(_relative(std_out, std_t) < 0.05), _relative(std_out, std_t)


def test_statistics_come_from_the_masked_region_only(astronaut_crop):
    crop, _ = astronaut_crop
    target = np.zeros((SIZE, SIZE, 3), np.uint8)
    target[:, : SIZE // 2] = (200, 150, 120)  # skin-coloured half
    target[:, SIZE // 2 :] = (0, 0, 255)  # blue half, outside the mask
    target[:, : SIZE // 2] += np.random.default_rng(0).integers(0, 20, (SIZE, SIZE // 2, 3), dtype=np.uint8)
    left = np.zeros((SIZE, SIZE), np.float32)
    left[:, : SIZE // 2] = 1.0
    out = transfer_color(crop, target, "rct", (None, left))
    mean_out, _ = _lab_stats(out)
    mean_skin, _ = _lab_stats(target, left)
    assert np.all(_relative(mean_out, mean_skin) < 0.05)


def test_none_returns_an_unchanged_copy(astronaut_crop, lfw_face):
    crop, _ = astronaut_crop
    out = transfer_color(crop, lfw_face, "none")
    assert np.array_equal(out, crop) and out is not crop


def test_bad_colour_inputs_are_rejected(astronaut_crop, lfw_face):
    crop, mask = astronaut_crop
    with pytest.raises(FaceError, match="rct, lct, none"):
        transfer_color(crop, lfw_face, "histogram")  # type: ignore[arg-type]
    with pytest.raises(FaceError, match="source mask"):
        transfer_color(crop, lfw_face, "rct", mask[:64])
    with pytest.raises(FaceError, match="selects no pixels"):
        transfer_color(crop, lfw_face, "lct", np.zeros_like(mask))
    with pytest.raises(FaceError, match="target_rgb must be uint8"):
        transfer_color(crop, lfw_face.astype(np.float32), "rct")
