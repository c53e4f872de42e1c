"""training.photo_poses: a photo warped along its face mesh shows the head turned and the mouth opened, as a
re-detected face mesh sees it."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest

from faces.synthetic import IDENTITY_B, Pose, make_background, render_face
from training.photo_poses import (
    LOWER_INNER_LIP,
    UPPER_INNER_LIP,
    MeshFinder,
    PhotoPosesConfig,
    PoseChange,
    warp_photo,
    write_photo_poses,
)

NOSE_TIP = 1
EYE_CORNERS = (33, 133, 263, 362)


@pytest.fixture(scope="module")
def finder() -> Iterator[MeshFinder]:
    with MeshFinder() as mesh_finder:
        yield mesh_finder


@pytest.fixture(scope="module")
def frontal() -> np.ndarray:
    return render_face(IDENTITY_B, Pose(), seed=3).frame


def _turn(reference: np.ndarray, moved: np.ndarray) -> tuple[float, float]:
    """(yaw, pitch) in degrees of the rotation that best maps the reference mesh (3D) onto `moved`'s 2D points
    (scaled orthographic camera), in photo_poses' convention (yaw + to the image's right, pitch + down)."""
    source = reference - reference.mean(axis=0)
    target = moved[:, :2] - moved[:, :2].mean(axis=0)
    affine, *_ = np.linalg.lstsq(source, target, rcond=None)
    u, _, vt = np.linalg.svd(affine.T)
    rows = u @ np.eye(2, 3) @ vt  # the nearest two orthonormal rows
    return float(np.degrees(np.arctan2(-rows[0, 2], rows[0, 0]))), float(np.degrees(np.arctan2(-rows[1, 2], rows[1, 1])))


@pytest.mark.parametrize("yaw", [-20.0, 20.0])
def test_a_warped_photo_turns_as_far_as_a_real_turn(finder: MeshFinder, frontal: np.ndarray, yaw: float) -> None:
    reference = finder.find(frontal)
    assert reference is not None
    warped = finder.find(warp_photo(frontal, reference, PoseChange(yaw=yaw)))
    # ground truth: the renderer turning the same head by the same angle, measured the same way
    truly_turned = finder.find(render_face(IDENTITY_B, Pose(yaw=yaw), seed=3).frame)
    assert warped is not None and truly_turned is not None
    measured, _ = _turn(reference, warped)
    truth, _ = _turn(reference, truly_turned)
    assert np.sign(measured) == np.sign(yaw)
    assert 0.6 * abs(truth) <= abs(measured) <= 1.6 * abs(truth), (measured, truth)


def test_pitch_moves_the_nose_and_the_mouth_opens(finder: MeshFinder, frontal: np.ndarray) -> None:
    reference = finder.find(frontal)
    assert reference is not None
    nodded = finder.find(warp_photo(frontal, reference, PoseChange(pitch=15.0)))
    opened = finder.find(warp_photo(frontal, reference, PoseChange(mouth_open=0.4)))
    assert nodded is not None and opened is not None

    def nose_below_eyes(mesh: np.ndarray) -> float:
        return float(mesh[NOSE_TIP, 1] - mesh[list(EYE_CORNERS), 1].mean())

    assert nose_below_eyes(nodded) > nose_below_eyes(reference) + 3
    _, pitch = _turn(reference, nodded)
    assert 5 < pitch < 25

    def lip_gap(mesh: np.ndarray) -> float:
        return float(mesh[list(LOWER_INNER_LIP[3:8]), 1].mean() - mesh[list(UPPER_INNER_LIP[3:8]), 1].mean())

    assert lip_gap(opened) > lip_gap(reference) + 4


def test_the_cli_writes_photos_and_variants_and_skips_photos_without_a_face(tmp_path: Path) -> None:
    photos = tmp_path / "photos"
    photos.mkdir()
    for name, image in (("b one.jpg", render_face(IDENTITY_B, Pose(yaw=5), seed=1).frame),
                        ("b-two.png", render_face(IDENTITY_B, Pose(yaw=-8), seed=2).frame),
                        ("wall.png", make_background((640, 480), seed=4))):
        cv2.imwrite(str(photos / name), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    out = tmp_path / "out"
    summary = write_photo_poses(PhotoPosesConfig(sources=(photos,), out=out, per_photo=3, seed=1))
    assert (summary.photos, summary.with_face, summary.written) == (3, 2, 9)
    written = sorted(path.name for path in out.glob("*.png"))
    assert written == ["b-two.png", "b-two_v000.png", "b-two_v001.png", "b-two_v002.png", "b_one.png",
                       "b_one_v000.png", "b_one_v001.png", "b_one_v002.png", "wall.png"]
    records = [json.loads(line) for line in (out / "poses.jsonl").read_text().splitlines()]
    assert len(records) == 6 and all(abs(record["yaw"]) <= 25 for record in records)
    # the three variants of a photo spread across both sides
    assert min(r["yaw"] for r in records[:3]) < 0 < max(r["yaw"] for r in records[:3])
