"""Alignment to the canonical template and the inverse paste-back, on a real photo."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faces.align import (
    TEMPLATE_5,
    align_face,
    alignment_matrix,
    estimate_similarity,
    invert_matrix,
    paste_back,
    template_points,
    transform_points,
)
from faces.errors import FaceError
from faces.mask import hull_mask


def test_eyes_land_on_the_template_at_128(astronaut, astronaut_face):
    aligned = align_face(astronaut, astronaut_face, 128)
    assert aligned.crop.shape == (128, 128, 3) and aligned.crop.dtype == np.uint8
    assert aligned.matrix.shape == (2, 3)
    in_crop = transform_points(astronaut_face.keypoints, aligned.matrix)
    eye_error = np.linalg.norm(in_crop[:2] - TEMPLATE_5[:2] * 128, axis=1)
    assert np.all(eye_error < 2.0), eye_error


def test_whole_mesh_fits_inside_the_crop(astronaut_face):
    in_crop = transform_points(astronaut_face.mesh, alignment_matrix(astronaut_face.keypoints, 128))
    assert in_crop.min() > 0.05 * 128 and in_crop.max() < 0.95 * 128


def test_align_paste_round_trip_keeps_the_face(astronaut, astronaut_face):
    aligned = align_face(astronaut, astronaut_face, 128)
    mask = hull_mask(transform_points(astronaut_face.mesh, aligned.matrix), 128, feather=0)
    restored = paste_back(astronaut, aligned.crop, aligned.matrix, mask)
    face_region = np.zeros(astronaut.shape[:2], np.uint8)
    cv2.fillConvexPoly(face_region, cv2.convexHull(np.round(astronaut_face.mesh).astype(np.int32)), 1)
    face_region = cv2.erode(face_region, np.ones((3, 3), np.uint8)).astype(bool)
    error = np.abs(restored.astype(np.float64) - astronaut)[face_region].mean() / 255
    assert error < 2 / 255, f"round trip mean abs error {error * 255:.2f}/255"
    # Everything outside the face's bounding region is untouched.
    x0, y0 = np.floor(astronaut_face.mesh.min(axis=0)).astype(int) - 3
    x1, y1 = np.ceil(astronaut_face.mesh.max(axis=0)).astype(int) + 3
    outside = np.ones(astronaut.shape[:2], bool)
    outside[y0:y1, x0:x1] = False
    assert np.array_equal(restored[outside], astronaut[outside])


def test_paste_back_blends_by_the_mask(astronaut, astronaut_face):
    aligned = align_face(astronaut, astronaut_face, 64)
    red = np.zeros_like(aligned.crop)
    red[..., 0] = 255
    unchanged = paste_back(astronaut, red, aligned.matrix, np.zeros((64, 64), np.float32))
    assert np.array_equal(unchanged, astronaut)
    half = paste_back(astronaut, red, aligned.matrix, np.full((64, 64), 0.5, np.float32))
    centre = np.round(transform_points(TEMPLATE_5[2:3] * 64, invert_matrix(aligned.matrix))[0]).astype(int)
    expected = 0.5 * astronaut[centre[1], centre[0]].astype(float) + 0.5 * np.array([255, 0, 0])
    np.testing.assert_allclose(half[centre[1], centre[0]], expected, atol=1.0)


def test_paste_back_of_a_face_outside_the_frame_changes_nothing(astronaut, astronaut_face):
    matrix = alignment_matrix(astronaut_face.keypoints + 2000, 64)
    out = paste_back(astronaut, np.zeros((64, 64, 3), np.uint8), matrix, np.ones((64, 64), np.float32))
    assert np.array_equal(out, astronaut)


def test_similarity_estimate_recovers_a_known_transform_and_ignores_an_outlier():
    rng = np.random.default_rng(1)
    src = template_points(256)
    angle, scale, shift = 0.4, 1.7, np.array([30.0, -12.0])
    rot = scale * np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    dst = src @ rot.T + shift
    np.testing.assert_allclose(estimate_similarity(src, dst)[:, :2], rot, atol=1e-9)
    moved = dst + rng.normal(0, 0.2, dst.shape)
    moved[4] += [60.0, 40.0]  # one wildly wrong mouth corner
    fit = estimate_similarity(src, moved, robust_iterations=5)
    error = np.linalg.norm(transform_points(src[:4], fit) - dst[:4], axis=1)
    assert error.max() < 2.0, error


def test_transform_points_round_trips_through_the_inverse(astronaut_face):
    matrix = alignment_matrix(astronaut_face.keypoints, 128)
    there = transform_points(astronaut_face.keypoints, matrix)
    np.testing.assert_allclose(transform_points(there, invert_matrix(matrix)), astronaut_face.keypoints, atol=1e-4)


def test_align_accepts_plain_keypoints(astronaut, astronaut_face):
    by_face = align_face(astronaut, astronaut_face, 96)
    by_points = align_face(astronaut, np.asarray(astronaut_face.keypoints), 96)
    assert np.array_equal(by_face.crop, by_points.crop)


def test_bad_alignment_inputs_are_rejected(astronaut, astronaut_face):
    with pytest.raises(FaceError, match="crop size"):
        align_face(astronaut, astronaut_face, 0)
    with pytest.raises(FaceError, match="5 points"):
        align_face(astronaut, astronaut_face.keypoints[:3], 64)
    with pytest.raises(FaceError, match="uint8"):
        align_face(astronaut.astype(np.float32), astronaut_face, 64)
    with pytest.raises(FaceError, match="degenerate"):
        align_face(astronaut, np.zeros((5, 2)), 64)
    aligned = align_face(astronaut, astronaut_face, 64)
    with pytest.raises(FaceError, match="crop's size"):
        paste_back(astronaut, aligned.crop, aligned.matrix, np.ones((32, 32), np.float32))
    with pytest.raises(FaceError, match=r"\[0, 1\]"):
        paste_back(astronaut, aligned.crop, aligned.matrix, np.full((64, 64), 2.0, np.float32))
    with pytest.raises(FaceError, match="singular"):
        paste_back(astronaut, aligned.crop, np.zeros((2, 3)), np.ones((64, 64), np.float32))
    with pytest.raises(FaceError, match="2x3"):
        transform_points(astronaut_face.keypoints, np.eye(3))
