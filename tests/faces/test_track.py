"""Face tracking with the real mediapipe detector: faces are followed between detections, which run beside it."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator

import cv2
import numpy as np
import pytest

from faces.align import transform_points
from faces.detect import FaceDetector
from faces.errors import FaceError
from faces.synthetic import IDENTITY_A, SyntheticFrame, render_sequence
from faces.track import FaceTracker, follow, to_gray
from faces.types import Face

pytestmark = pytest.mark.timeout(120)

FPS = 15.0
# Generous for a loaded 2-core machine: mediapipe detects a 320x240 frame in ~20-30 ms.
DETECTION_SETTLE_S = 0.4


@pytest.fixture(scope="module")
def moving_face() -> list[SyntheticFrame]:
    """Twelve 320x240 frames of synthetic identity A moving like a webcam user (about 25 px in all)."""
    return render_sequence(IDENTITY_A, 12, size=(320, 240), seed=5, fps=FPS)


@pytest.fixture
def tracker_detector() -> Iterator[FaceDetector]:
    detector = FaceDetector(max_faces=2, static_images=False)
    yield detector
    detector.close()


def test_a_face_moved_by_a_known_similarity_is_followed(astronaut: np.ndarray, astronaut_face: Face) -> None:
    centre = astronaut_face.keypoints.mean(axis=0)
    motion = cv2.getRotationMatrix2D((float(centre[0]), float(centre[1])), 3.0, 1.04)
    motion[:, 2] += (6.0, -4.0)
    moved = cv2.warpAffine(astronaut, motion, astronaut.shape[1::-1], flags=cv2.INTER_CUBIC,
                           borderMode=cv2.BORDER_REPLICATE)
    followed = follow(astronaut_face, to_gray(astronaut), to_gray(moved))
    assert followed is not None
    np.testing.assert_allclose(followed.keypoints, transform_points(astronaut_face.keypoints, motion), atol=1.0)
    assert astronaut_face.mesh is not None and followed.mesh is not None
    np.testing.assert_allclose(followed.mesh, transform_points(astronaut_face.mesh, motion), atol=1.5)
    box_shift = followed.box.reshape(2, 2).mean(axis=0) - astronaut_face.box.reshape(2, 2).mean(axis=0)
    expected_shift = transform_points(centre[None], motion)[0] - centre
    np.testing.assert_allclose(box_shift, expected_shift, atol=1.0)


def test_between_detections_the_face_is_followed(tracker_detector: FaceDetector,
                                                 moving_face: list[SyntheticFrame]) -> None:
    tracker = FaceTracker(tracker_detector, detect_every=1000)  # one detection: the first frame's
    try:
        errors = []
        for index, rendered in enumerate(moving_face):
            faces = tracker.faces(rendered.frame, index / FPS)
            assert len(faces) == 1, f"frame {index}: {len(faces)} faces"
            errors.append(float(np.abs(faces[0].keypoints - rendered.keypoints).max()))
    finally:
        tracker.close()
    assert tracker.detections == 1
    travelled = float(np.abs(moving_face[-1].keypoints - moving_face[0].keypoints).max())
    assert travelled > 20, "the synthetic face should move"
    # The detector's own offset from the renderer's keypoints (~5 px here) carries along; tracking adds little.
    assert max(errors) <= errors[0] + 2.0, errors


def test_detection_runs_every_n_frames_beside_the_frame_path(tracker_detector: FaceDetector,
                                                             moving_face: list[SyntheticFrame]) -> None:
    detect_every = 4
    tracker = FaceTracker(tracker_detector, detect_every=detect_every)
    try:
        tracker.faces(moving_face[0].frame, 0.0)
        assert tracker.detections == 1, "the first frame waits for a detection"
        for index in range(1, len(moving_face)):
            time.sleep(DETECTION_SETTLE_S)  # any detection in flight finishes before the next frame
            assert len(tracker.faces(moving_face[index].frame, index / FPS)) == 1
    finally:
        tracker.close()
    # The first frame's, then one started on frames 3, 7 and 11.
    assert tracker.detections == 1 + len(moving_face) // detect_every


def test_frames_never_wait_for_a_background_detection(tracker_detector: FaceDetector,
                                                      moving_face: list[SyntheticFrame]) -> None:
    tracker = FaceTracker(tracker_detector, detect_every=1)
    try:
        tracker.faces(moving_face[0].frame, 0.0)
        started = time.perf_counter()
        for index in range(1, len(moving_face)):
            tracker.faces(moving_face[index].frame, index / FPS)
        per_frame_ms = (time.perf_counter() - started) * 1000 / (len(moving_face) - 1)
    finally:
        tracker.close()
    # Back-to-back frames: at most one detection runs at a time, so most frames are tracked only.
    assert tracker.detections < len(moving_face), f"{tracker.detections} detections for {len(moving_face)} frames"
    assert per_frame_ms < 100, per_frame_ms


def test_a_failed_detection_keeps_the_tracked_faces(tracker_detector: FaceDetector,
                                                    moving_face: list[SyntheticFrame],
                                                    caplog: pytest.LogCaptureFixture) -> None:
    tracker = FaceTracker(tracker_detector, detect_every=1)
    try:
        first = tracker.faces(moving_face[0].frame, 0.0)
        assert len(first) == 1
        offset = float(np.abs(first[0].keypoints - moving_face[0].keypoints).max())
        time.sleep(DETECTION_SETTLE_S)
        tracker_detector.close()  # every detection from now on raises
        with caplog.at_level(logging.WARNING, logger="faces.track"):
            for index in range(1, len(moving_face)):
                faces = tracker.faces(moving_face[index].frame, index / FPS)
                assert len(faces) == 1, f"frame {index}: the tracked face was dropped"
                error = float(np.abs(faces[0].keypoints - moving_face[index].keypoints).max())
                assert error <= offset + 2.0, f"frame {index}: {error:.1f} px off"
                time.sleep(0.05)
    finally:
        tracker.close()
    assert any("face detection failed" in record.getMessage() for record in caplog.records)


def test_bad_settings_are_refused(tracker_detector: FaceDetector) -> None:
    with pytest.raises(FaceError, match="detect_every"):
        FaceTracker(tracker_detector, detect_every=0)
    with pytest.raises(FaceError, match="max_faces"):
        FaceTracker(tracker_detector, max_faces=0)
