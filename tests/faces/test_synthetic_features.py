"""The synthetic features the swap model is trained on so that it learns what the quality judge checks: a wide-open
mouth, a grin with teeth, half-closed lids, more blinks and glasses. Each is checked by mediapipe's mesh (the same
measure `swapstream evaluate` uses): the feature is there and moves as asked, and it is off by default."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from faces.detect import FaceDetector
from faces.errors import FaceError
from faces.synthetic import (
    IDENTITY_A,
    IDENTITY_B,
    Expression,
    FaceRenderer,
    Glasses,
    Lighting,
    MotionRanges,
    Pose,
    make_background,
    render_sequence,
)
from faces.synthetic_cli import main as synth_main

SIZE = (320, 240)
POSE = Pose(yaw=8, pitch=-4, head_size=0.75)
# mediapipe face mesh indices: inner lips, forehead top and chin, and the right eye's lids and corners
LIP_TOP, LIP_BOTTOM, FOREHEAD, CHIN = 13, 14, 10, 152
EYE_LIDS, EYE_CORNERS = ((159, 145), (158, 153), (160, 144)), (33, 133)


@pytest.fixture(scope="module")
def detector() -> FaceDetector:
    with FaceDetector(max_faces=1, static_images=True, refine_landmarks=True) as found:
        yield found


def _mesh(detector: FaceDetector, frame: np.ndarray) -> np.ndarray:
    faces = detector.detect(frame)
    assert faces and faces[0].mesh is not None, "mediapipe found no face (mesh) in the render"
    return faces[0].mesh


def _mouth_opening(mesh: np.ndarray) -> float:
    return float(np.linalg.norm(mesh[LIP_BOTTOM] - mesh[LIP_TOP]) / np.linalg.norm(mesh[CHIN] - mesh[FOREHEAD]))


def _eye_opening(mesh: np.ndarray) -> float:
    gaps = [np.linalg.norm(mesh[a] - mesh[b]) for a, b in EYE_LIDS]
    return float(np.mean(gaps) / np.linalg.norm(mesh[EYE_CORNERS[0]] - mesh[EYE_CORNERS[1]]))


def _render(renderer: FaceRenderer, expression: Expression) -> np.ndarray:
    return renderer.render(POSE, expression, Lighting(), make_background(SIZE, 2), SIZE, noise_seed=1).frame


@pytest.mark.parametrize("identity", [IDENTITY_A, IDENTITY_B], ids=["a", "b"])
def test_mouth_opens_wider_than_talking_and_a_grin_parts_the_lips(identity: object, detector: FaceDetector) -> None:
    renderer = FaceRenderer(identity)  # type: ignore[arg-type]
    openings = [_mouth_opening(_mesh(detector, _render(renderer, Expression(mouth_open=m)))) for m in (0, 0.5, 1, 1.5)]
    assert openings == sorted(openings), f"mouth opening does not grow with mouth_open: {openings}"
    assert openings[3] > 1.25 * openings[2], f"wide open (1.5) is not wider than talking's widest (1): {openings}"
    grin = _mouth_opening(_mesh(detector, _render(renderer, Expression(smile=0.6, teeth=1.0))))
    closed_smile = _mouth_opening(_mesh(detector, _render(renderer, Expression(smile=0.6))))
    assert grin > closed_smile + 0.01, f"a grin should part the lips: {grin:.3f} vs {closed_smile:.3f} closed"


def test_grin_shows_teeth_between_the_lips() -> None:
    renderer = FaceRenderer(IDENTITY_A)
    shot = renderer.render(POSE, Expression(smile=0.6, teeth=1.0), Lighting(), make_background(SIZE, 2), SIZE,
                           noise_seed=None)
    closed = renderer.render(POSE, Expression(smile=0.6), Lighting(), make_background(SIZE, 2), SIZE, noise_seed=None)
    left, right = shot.keypoints[3], shot.keypoints[4]
    centre = ((left + right) / 2).astype(int)
    half = int(np.linalg.norm(right - left) * 0.25)
    patch = (slice(centre[1] - 3, centre[1] + 4), slice(centre[0] - half, centre[0] + half))
    # teeth are near-white in all channels; closed lips are red (their minimum channel is low)
    assert np.percentile(shot.frame[patch].min(axis=-1), 75) > np.percentile(closed.frame[patch].min(axis=-1), 75) + 60


def test_lids_close_in_steps_as_blink_grows(detector: FaceDetector) -> None:
    renderer = FaceRenderer(IDENTITY_A)
    openings = [_eye_opening(_mesh(detector, _render(renderer, Expression(blink=b)))) for b in (0.0, 0.5, 0.9)]
    assert openings[0] > openings[1] > openings[2], f"eye opening should fall as the lids close: {openings}"


def test_glasses_sit_on_the_eyes_and_leave_the_truth_and_the_detector_alone(detector: FaceDetector) -> None:
    bare = FaceRenderer(IDENTITY_B)
    worn = FaceRenderer(dataclasses.replace(IDENTITY_B, glasses=Glasses()))
    for yaw in (-25, 0, 25):
        pose = Pose(yaw=yaw, head_size=0.75)
        without = bare.render(pose, Expression(), Lighting(), make_background(SIZE, 2), SIZE, noise_seed=1)
        with_glasses = worn.render(pose, Expression(), Lighting(), make_background(SIZE, 2), SIZE, noise_seed=1)
        np.testing.assert_array_equal(with_glasses.keypoints, without.keypoints)
        changed = np.abs(with_glasses.frame.astype(int) - without.frame.astype(int)).max(axis=-1) > 30
        rows = np.nonzero(changed.any(axis=1))[0]
        eyes_y = with_glasses.keypoints[:2, 1].mean()
        eye_distance = float(np.linalg.norm(with_glasses.keypoints[1] - with_glasses.keypoints[0]))
        # the rims are drawn (many changed pixels), all of them within an eye distance of the eyes' row
        assert changed.sum() > 100, f"yaw {yaw}: the glasses changed only {changed.sum()} pixels"
        assert rows.min() > eyes_y - 0.6 * eye_distance and rows.max() < eyes_y + 0.6 * eye_distance
        faces = detector.detect(with_glasses.frame)
        assert faces, f"yaw {yaw}: mediapipe finds no face behind the glasses"
        error = np.linalg.norm(faces[0].keypoints - with_glasses.keypoints, axis=1).mean() / eye_distance
        assert error < 0.15, f"yaw {yaw}: mediapipe's keypoints are {error:.2f} eye distances off behind glasses"


def test_more_lively_motion_is_asked_for_and_the_defaults_change_nothing() -> None:
    lively = MotionRanges(blink_every_s=(0.6, 1.2), talking=0.9, mouth_max=1.4, grin=1.0, squint=0.6)
    default = render_sequence(IDENTITY_A, 60, (128, 96), seed=2)
    asked = render_sequence(IDENTITY_A, 60, (128, 96), seed=2, motion=lively)
    plain = np.array([[f.expression.blink, f.expression.mouth_open, f.expression.teeth] for f in default])
    more = np.array([[f.expression.blink, f.expression.mouth_open, f.expression.teeth] for f in asked])
    assert (plain[:, 2] == 0).all(), "teeth show by default"
    assert ((more[:, 0] > 0.1) & (more[:, 0] < 0.9)).sum() > 10, "squint should give half-closed lids"
    assert (more[:, 0] > 0.1).sum() > 2 * max(1, (plain[:, 0] > 0.1).sum())
    assert plain[:, 1].max() <= 1.0 and 1.2 * plain[:, 1].max() < more[:, 1].max() <= 1.4
    assert (more[:, 2] > 0.3).any()
    # the pose and the light come from the same draws as before: only the expression is livelier
    assert [f.pose for f in default] == [f.pose for f in asked]


@pytest.mark.parametrize("field, value", [("blink_every_s", (2.0, 1.0)), ("mouth_max", 2.0), ("grin", -0.1),
                                          ("squint", 1.5), ("talking", 1.2)])
def test_bad_motion_ranges_are_named(field: str, value: object) -> None:
    with pytest.raises(FaceError, match=field):
        MotionRanges(**{field: value})  # type: ignore[arg-type]


def test_synth_cli_renders_glasses_and_a_grin_with_their_truth(tmp_path: Path) -> None:
    out, truth = tmp_path / "grin.mp4", tmp_path / "truth.jsonl"
    args = ["--identity", "a", "--frames", "30", "--size", "160x120", "--seed", "2", "--out", str(out),
            "--truth", str(truth), "--glasses", "--grin", "1", "--smile", "1", "--squint", "0.5",
            "--blink-every", "0.5,1", "--mouth-max", "1.4"]
    assert synth_main(args) == 0
    records = [json.loads(line) for line in truth.read_text().splitlines()]
    assert len(records) == 30
    assert max(r["expression"]["teeth"] for r in records) > 0.3
    assert max(r["expression"]["mouth_open"] for r in records) <= 1.4
