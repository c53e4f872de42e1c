"""Expression, pose and sharpness through the report's own path (mediapipe mesh on input and output frames),
on constructed "swaps" whose answer is known: the input itself, the input blurred, the mouth frozen."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np
import pytest

from evaluation.evaluate import FrameMeasurer, summarise
from evaluation.face_measure import FaceMeasurer, euler_angles, pose_difference
from evaluation.sources import SourceFrame
from evaluation.swap_runner import RenderedFrame
from faces.detect import keypoints_from_mesh
from faces.types import Face
from tests.fixtures.evaluation import TalkingFrames


def _rotation(yaw: float, pitch: float, roll: float) -> np.ndarray:
    """A head rotation in camera axes from angles signed as faces.synthetic.Pose."""
    matrix, _ = cv2.Rodrigues(np.array([np.radians(-pitch), 0.0, 0.0]))
    yawed, _ = cv2.Rodrigues(np.array([0.0, np.radians(-yaw), 0.0]))
    rolled, _ = cv2.Rodrigues(np.array([0.0, 0.0, np.radians(roll)]))
    return rolled @ yawed @ matrix


def test_pose_difference_is_the_rotation_between_heads_not_of_euler_triplets() -> None:
    head = _rotation(55.0, 12.0, 20.0)
    assert pose_difference(head, head) == pytest.approx((0.0, 0.0, 0.0, 0.0), abs=1e-6)
    turned = _rotation(10.0, 0.0, 0.0) @ head  # the same head turned 10 degrees more about the camera's y axis
    yaw, pitch, roll, total = pose_difference(head, turned)
    assert total == pytest.approx(10.0, abs=1e-6) and abs(yaw) == pytest.approx(10.0, abs=1e-6)
    assert abs(pitch) < 1e-6 and abs(roll) < 1e-6
    assert euler_angles(_rotation(5.0, -3.0, 2.0)) == pytest.approx((5.0, -3.0, 2.0), abs=1e-6)


def _summary(measurer: FaceMeasurer, inputs: list[np.ndarray], outputs: list[np.ndarray]) -> dict[str, Any]:
    """The report's figures for outputs pasted where mediapipe finds each input's face."""
    frame_measurer = FrameMeasurer(measurer, None, face_size=64, feather=4)
    records = []
    for index, (frame, output) in enumerate(zip(inputs, outputs)):
        measured = measurer.measure(frame)
        assert measured is not None, f"no face in constructed frame {index}"
        face = Face.from_keypoints(keypoints_from_mesh(measured.mesh), mesh=measured.mesh)
        record, _ = frame_measurer.record(SourceFrame("clip", index, frame), RenderedFrame(output, (face,)))
        records.append(record)
    return summarise(records)


def test_the_input_itself_scores_perfect(face_measurer: FaceMeasurer, talking_frames: TalkingFrames) -> None:
    frames = talking_frames.talking
    summary = _summary(face_measurer, frames, [frame.copy() for frame in frames])
    assert summary["measured_pairs"] == len(frames)
    for feature in ("mouth", "eye"):
        assert summary[feature]["correlation"] == 1.0
        assert summary[feature]["range_ratio"] == 1.0
    assert summary["sharpness"]["median_ratio"] == 1.0
    assert all(value == 0.0 for value in summary["pose"].values())
    assert summary["seam"]["mean_delta_e"] == 0.0
    # The constructed clip does open the mouth wide and blink: the figures above are not about a still face.
    assert summary["mouth"]["input_range"][1] - summary["mouth"]["input_range"][0] > 0.04
    assert summary["eye"]["input_range"][1] - summary["eye"]["input_range"][0] > 0.1


def test_a_blurred_output_scores_lower_sharpness(face_measurer: FaceMeasurer,
                                                 talking_frames: TalkingFrames) -> None:
    frames = talking_frames.talking
    summary = _summary(face_measurer, frames, [cv2.GaussianBlur(frame, (0, 0), 2.0) for frame in frames])
    assert summary["sharpness"]["median_ratio"] < 0.5
    assert summary["mouth"]["correlation"] > 0.8  # the blur keeps the expression: only sharpness falls


def test_a_frozen_mouth_scores_low_mouth_correlation(face_measurer: FaceMeasurer,
                                                     talking_frames: TalkingFrames) -> None:
    summary = _summary(face_measurer, talking_frames.talking, talking_frames.frozen_mouth)
    assert summary["mouth"]["correlation"] < 0.5
    assert summary["mouth"]["range_ratio"] < 0.3
    assert summary["eye"]["correlation"] > 0.9  # the eyes still blink with the input
    assert max(summary["pose"].values()) < 3.0  # and the head still turns with it
