"""FaceDetector on real photos: faces, scores, keypoint order, mesh pairing, bad input."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from faces.detect import DetectorConfig, FaceDetector, keypoints_from_mesh
from faces.errors import FaceError
from faces.types import Face


def test_astronaut_has_exactly_one_confident_face(astronaut, face_detector):
    faces = face_detector.detect(astronaut)
    assert len(faces) == 1
    face = faces[0]
    assert face.score > 0.8
    assert face.mesh is not None and face.mesh.shape == (468, 2)
    x0, y0, x1, y1 = face.box
    # The face sits in the upper middle of the photo and is about a fifth of it wide.
    assert 150 < x0 < x1 < 300 and 50 < y0 < y1 < 200
    assert 0.15 * 512 < x1 - x0 < 0.3 * 512
    assert np.all((face.keypoints >= face.box[:2] - 5) & (face.keypoints <= face.box[2:] + 5))


def test_keypoints_follow_the_contract_order(astronaut_face):
    eye_l, eye_r, nose, mouth_l, mouth_r = astronaut_face.keypoints
    assert eye_l[0] < nose[0] < eye_r[0]
    assert mouth_l[0] < mouth_r[0]
    assert max(eye_l[1], eye_r[1]) < nose[1] < min(mouth_l[1], mouth_r[1])
    np.testing.assert_allclose(astronaut_face.keypoints, keypoints_from_mesh(astronaut_face.mesh), atol=1e-3)


def test_two_faces_each_get_their_own_mesh(astronaut, face_detector):
    frame = np.concatenate([astronaut, astronaut[:, ::-1]], axis=1)
    faces = face_detector.detect(frame)
    assert len(faces) == 2
    lefts = sorted(faces, key=lambda f: f.box[0])
    assert lefts[0].box[2] < 512 < lefts[1].box[0]
    for face in faces:
        assert face.mesh is not None
        centre = face.mesh.mean(axis=0)
        assert face.box[0] < centre[0] < face.box[2] and face.box[1] < centre[1] < face.box[3]
    # The mirrored copy is still an upright face: its image-left eye is still on the left.
    assert lefts[1].keypoints[0, 0] < lefts[1].keypoints[1, 0]
    with FaceDetector(max_faces=1) as single:
        only = single.detect(frame)
    assert len(only) == 1


def test_detector_keypoints_without_mesh_agree_with_mesh(astronaut, astronaut_face):
    with FaceDetector(mesh=False) as detector:
        faces = detector.detect(astronaut)
    assert len(faces) == 1 and faces[0].mesh is None
    eye_dist = np.linalg.norm(astronaut_face.keypoints[1] - astronaut_face.keypoints[0])
    error = np.linalg.norm(faces[0].keypoints - astronaut_face.keypoints, axis=1)
    # Eyes agree closely; the nose tip and estimated mouth corners only roughly.
    assert np.all(error[:2] < 0.15 * eye_dist), error
    assert np.all(error < 0.35 * eye_dist), error


def test_video_mode_follows_a_moving_face(astronaut):
    with FaceDetector(static_images=False, model="short") as detector:
        for shift in range(0, 60, 12):
            frame = np.ascontiguousarray(np.roll(astronaut, shift, axis=1))
            faces = detector.detect(frame)
            assert len(faces) == 1 and faces[0].mesh is not None
            assert 190 + shift < faces[0].keypoints[0, 0] < 220 + shift


def test_no_face_in_a_plain_or_noisy_frame(face_detector):
    rng = np.random.default_rng(0)
    assert face_detector.detect(np.full((240, 320, 3), 128, np.uint8)) == []
    assert face_detector.detect(rng.integers(0, 256, (240, 320, 3), dtype=np.uint8)) == []


@pytest.mark.parametrize(
    ("frame", "message"),
    [
        (np.zeros((64, 64, 3), np.float32), "uint8"),
        (np.zeros((64, 64), np.uint8), "HxWx3"),
        (np.zeros((64, 64, 4), np.uint8), "HxWx3"),
        ([[0, 0, 0]], "numpy array"),
    ],
)
def test_bad_frames_are_rejected_with_a_clear_message(face_detector, frame, message):
    with pytest.raises(FaceError, match=message):
        face_detector.detect(frame)


def test_bad_settings_and_closed_detector():
    with pytest.raises(FaceError, match="max_faces"):
        DetectorConfig(max_faces=0)
    with pytest.raises(FaceError, match="min_score"):
        DetectorConfig(min_score=1.5)
    with pytest.raises(FaceError, match="model"):
        DetectorConfig(model="medium")  # type: ignore[arg-type]
    detector = FaceDetector()
    detector.close()
    with pytest.raises(FaceError, match="closed"):
        detector.detect(np.zeros((64, 64, 3), np.uint8))


def test_face_from_ground_truth_keypoints():
    keypoints = np.array([[100, 100], [140, 100], [120, 125], [105, 145], [135, 145]], float)
    face = Face.from_keypoints(keypoints)
    assert face.score == 1.0 and face.mesh is None
    assert np.all(face.box[:2] < keypoints.min(axis=0)) and np.all(face.box[2:] > keypoints.max(axis=0))
    with pytest.raises(FaceError, match="5 points"):
        Face.from_keypoints(keypoints[:4])
    with pytest.raises(FaceError, match="NaN"):
        Face.from_keypoints(np.full((5, 2), np.nan))
    with pytest.raises(ValueError):
        face.keypoints[0, 0] = 0.0  # frozen record: arrays are read-only


def test_a_small_face_outside_the_mesh_models_range_still_gets_a_mesh(astronaut, face_detector):
    # 0.8x astronaut in a 1280x720 frame: the face is ~6% of the frame width, too small for the mesh's own
    # short-range finder (it finds nothing here), so the mesh must come from a crop around the detection.
    small = cv2.resize(astronaut, None, fx=0.8, fy=0.8, interpolation=cv2.INTER_AREA)
    frame = np.full((720, 1280, 3), 90, np.uint8)
    frame[150 : 150 + small.shape[0], 600 : 600 + small.shape[1]] = small
    faces = face_detector.detect(frame)
    assert len(faces) == 1 and faces[0].mesh is not None
    expected_eye = np.array([600, 150]) + 0.8 * np.array([204.0, 101.6])
    assert np.linalg.norm(faces[0].keypoints[0] - expected_eye) < 4
