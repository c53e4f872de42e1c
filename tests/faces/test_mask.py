"""Face masks: mesh hull, keypoint-only outline, feathering."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faces.align import alignment_matrix, transform_points
from faces.errors import FaceError
from faces.expression import OUTER_LIP
from faces.mask import feather_mask, hull_mask, mouth_mask, mouth_outline


@pytest.fixture(scope="module")
def crop_points(astronaut_face):
    matrix = alignment_matrix(astronaut_face.keypoints, 128)
    return transform_points(astronaut_face.mesh, matrix), transform_points(astronaut_face.keypoints, matrix)


def _hard_hull(points: np.ndarray, size: int) -> np.ndarray:
    out = np.zeros((size, size), np.uint8)
    cv2.fillConvexPoly(out, cv2.convexHull(np.round(points).astype(np.int32)), 1)
    return out.astype(bool)


def test_mesh_hull_mask_covers_the_face_and_nothing_else(crop_points):
    mesh, _ = crop_points
    mask = hull_mask(mesh, 128, feather=0)
    assert mask.dtype == np.float32 and mask.shape == (128, 128)
    reference = _hard_hull(mesh, 128)
    inner = cv2.erode(reference.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    outer = cv2.dilate(reference.astype(np.uint8), np.ones((3, 3), np.uint8)).astype(bool)
    assert np.all(mask[inner] > 0.99)
    assert np.all(mask[~outer] == 0)


def test_feather_softens_the_edge_but_stays_inside_the_hull(crop_points):
    mesh, _ = crop_points
    hard = hull_mask(mesh, 128, feather=0)
    soft = hull_mask(mesh, 128, feather=6)
    assert np.all(soft <= hard + 0.05), "feathering must not spill past the hull"
    edge_band = (hard > 0.5) & (soft > 0.05) & (soft < 0.95)
    assert edge_band.sum() > 200, "a 6 px feather should leave a visible soft band"
    assert soft[64, 64] > 0.99  # the crop centre (nose) is deep inside the face


def test_keypoint_outline_approximates_the_mesh_hull(crop_points):
    mesh, keypoints = crop_points
    from_keypoints = hull_mask(keypoints, 128, feather=0) > 0.5
    from_mesh = hull_mask(mesh, 128, feather=0) > 0.5
    iou = (from_keypoints & from_mesh).sum() / (from_keypoints | from_mesh).sum()
    assert iou > 0.75, f"keypoint outline vs mesh hull IoU {iou:.2f}"
    for x, y in np.round(keypoints).astype(int):
        assert from_keypoints[y, x]


def test_feather_mask_blur_amounts():
    square = np.zeros((64, 64), np.float32)
    square[16:48, 16:48] = 1.0
    assert np.array_equal(feather_mask(square, 0), square)
    blurred = feather_mask(square, 8)
    assert 0.3 < blurred[32, 16] < 0.7 and blurred[32, 32] > 0.95 and blurred[32, 2] < 0.01
    assert abs(blurred.sum() - square.sum()) / square.sum() < 0.02


def test_bad_mask_inputs_are_rejected(crop_points):
    mesh, _ = crop_points
    with pytest.raises(FaceError, match="feather"):
        hull_mask(mesh, 128, feather=-1)
    with pytest.raises(FaceError, match="size"):
        hull_mask(mesh, "128", feather=0)  # type: ignore[arg-type]
    with pytest.raises(FaceError, match=r"\(N,2\)"):
        hull_mask(mesh.reshape(-1), 128)
    with pytest.raises(FaceError, match=">= 3 landmarks"):
        hull_mask(mesh[:2], 128)
    with pytest.raises(FaceError, match="2-D"):
        feather_mask(np.zeros((4, 4, 3)), 2)


def test_mouth_mask_keeps_the_lips_whole_and_stays_off_the_eyes_and_nose(crop_points):
    mesh, keypoints = crop_points
    lips = _hard_hull(mesh[list(OUTER_LIP)], 128)
    nose = tuple(np.round(keypoints[2]).astype(int)[::-1])
    # The server's keep_mouth at 128 px. The astronaut smiles: her nose tip is 7 px above her upper lip.
    for points, nose_limit in ((mesh, 0.1), (keypoints, 0.25)):
        mask = mouth_mask(points, 128, margin=7, feather=3, margin_up=5)
        assert mask.dtype == np.float32 and mask.shape == (128, 128)
        assert mask[lips].min() > 0.95, "part of the lips would be swapped"
        for eye in keypoints[:2]:
            x, y = np.round(eye).astype(int)
            assert mask[y, x] < 0.01, "the mouth mask reaches an eye"
        assert mask[nose] < nose_limit, f"the mouth mask reaches the nose tip ({mask[nose]:.2f})"
    assert mouth_mask(mesh, 128, margin=7, feather=3)[nose] > 0.5, "margin_up does not keep the mask down"
    small = mouth_mask(mesh, 128, margin=0, feather=0)
    assert np.array_equal(small > 0.5, hull_mask(mesh[list(OUTER_LIP)], 128) > 0.5)
    assert mouth_mask(mesh, 128, margin=7, feather=3, margin_up=5).sum() > 1.5 * small.sum(), \
        "the margin does not grow the mask"


def test_mouth_outline_needs_the_mesh_or_five_keypoints(crop_points):
    mesh, keypoints = crop_points
    assert mouth_outline(mesh).shape == (len(OUTER_LIP), 2)
    with pytest.raises(FaceError, match="5 keypoints or the 468-point mesh"):
        mouth_outline(mesh[:10])
    with pytest.raises(FaceError, match="mouth corners"):
        mouth_outline(np.array([keypoints[0], keypoints[1], keypoints[2], keypoints[3], keypoints[3]]))
    with pytest.raises(FaceError, match="margin"):
        mouth_mask(mesh, 128, margin=-1, feather=0)
