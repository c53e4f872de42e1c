"""Landmark smoothing: a still face stops jittering, a moving face is not lagged."""

from __future__ import annotations

import numpy as np
import pytest

from faces.errors import FaceError
from faces.smooth import LandmarkSmoother, OneEuroFilter, SmoothingConfig
from faces.types import Face

FPS = 30.0
NOISE_PX = 1.0  # about mediapipe's frame-to-frame landmark jitter on a still face


def _run(face: Face, velocity: np.ndarray, frames: int, seed: int) -> tuple[np.ndarray, ...]:
    """Feed a noisy face moving at *velocity* px/frame; return (true, raw, smoothed) keypoints and meshes."""
    rng = np.random.default_rng(seed)
    smoother = LandmarkSmoother()
    true_kp, raw_kp, out_kp, true_mesh, out_mesh = [], [], [], [], []
    for i in range(frames):
        shift = velocity * i
        kp = face.keypoints + shift
        mesh = face.mesh + shift
        noisy_kp = kp + rng.normal(0, NOISE_PX, kp.shape)
        noisy_mesh = mesh + rng.normal(0, NOISE_PX, mesh.shape)
        smooth_kp, smooth_mesh = smoother.smooth("face", noisy_kp, i / FPS, noisy_mesh)
        true_kp.append(kp)
        raw_kp.append(noisy_kp)
        out_kp.append(smooth_kp)
        true_mesh.append(mesh)
        out_mesh.append(smooth_mesh)
    return tuple(np.array(a) for a in (true_kp, raw_kp, out_kp, true_mesh, out_mesh))


def test_still_face_jitter_drops_at_least_3x(astronaut_face):
    true_kp, raw_kp, out_kp, true_mesh, out_mesh = _run(astronaut_face, np.zeros(2), 120, seed=0)
    warm = 30  # skip the first second while the filter settles
    raw_jitter = raw_kp[warm:].std(axis=0).mean()
    kp_jitter = out_kp[warm:].std(axis=0).mean()
    mesh_jitter = out_mesh[warm:].std(axis=0).mean()
    assert raw_jitter / kp_jitter >= 3.0, f"keypoint jitter only drops {raw_jitter / kp_jitter:.2f}x"
    assert NOISE_PX / mesh_jitter >= 3.0, f"mesh jitter only drops {NOISE_PX / mesh_jitter:.2f}x"
    # Smoothing must not move the still face either.
    assert np.abs(out_kp[warm:].mean(axis=0) - true_kp[0]).max() < 0.5


@pytest.mark.parametrize("speed", [2.0, 4.0, 8.0, 16.0])
def test_constant_speed_lag_is_under_2_frames(astronaut_face, speed):
    # Lag = steady-state offset behind the true position along the motion, divided by the speed per frame.
    direction = np.array([0.8, 0.6])
    true_kp, _, out_kp, true_mesh, out_mesh = _run(astronaut_face, speed * direction, 60, seed=1)
    steady = slice(30, None)
    kp_lag = ((true_kp[steady] - out_kp[steady]) @ direction).mean() / speed
    mesh_lag = ((true_mesh[steady] - out_mesh[steady]) @ direction).mean() / speed
    assert kp_lag < 2.0, f"keypoints lag {kp_lag:.2f} frames at {speed} px/frame"
    assert mesh_lag < 2.0, f"mesh lags {mesh_lag:.2f} frames at {speed} px/frame"


def test_a_gap_restarts_the_track(astronaut_face):
    smoother = LandmarkSmoother(SmoothingConfig(max_gap=0.2))
    smoother.smooth(1, astronaut_face.keypoints, 0.0)
    smoother.smooth(1, astronaut_face.keypoints, 1 / FPS)
    jumped = astronaut_face.keypoints + 50.0
    after_gap, _ = smoother.smooth(1, jumped, 1.0)
    np.testing.assert_allclose(after_gap, jumped)
    without_gap, _ = LandmarkSmoother().smooth(1, astronaut_face.keypoints, 0.0)
    np.testing.assert_allclose(without_gap, astronaut_face.keypoints, atol=1e-5)


def test_faces_keep_their_track_ids(astronaut_face):
    smoother = LandmarkSmoother()
    left = astronaut_face
    right = Face.from_keypoints(astronaut_face.keypoints + [400.0, 0.0], mesh=astronaut_face.mesh + [400.0, 0.0])
    first = smoother.smooth_faces([left, right], 0.0)
    second = smoother.smooth_faces([right, left], 1 / FPS)  # order changes; tracks must not swap
    ids_first = {int(face.keypoints[0, 0] > 400): tid for tid, face in first}
    ids_second = {int(face.keypoints[0, 0] > 400): tid for tid, face in second}
    assert ids_first == ids_second and len(set(ids_first.values())) == 2
    for _, face in second:
        assert face.mesh is not None and face.mesh.shape == (468, 2)
    later = smoother.smooth_faces([left], 5.0)  # after a long gap the old tracks are gone
    assert later[0][0] not in ids_first.values()


def test_one_euro_filter_basics():
    filt = OneEuroFilter(min_cutoff=1.0, beta=0.0)
    values = [filt(np.array([5.0, -3.0]), i / FPS) for i in range(10)]
    np.testing.assert_allclose(values[-1], [5.0, -3.0])
    step = [filt(np.array([10.0, -3.0]), (10 + i) / FPS) for i in range(90)]
    assert 5.0 < step[0][0] < 10.0 and abs(step[-1][0] - 10.0) < 0.1
    with pytest.raises(FaceError, match="timestamps must increase"):
        filt(np.array([1.0, 1.0]), 0.0)
    with pytest.raises(FaceError, match="reset"):
        filt(np.zeros(3), 10.0)
    filt.reset()
    np.testing.assert_allclose(filt(np.zeros(3), 10.0), 0.0)


def test_bad_smoothing_settings_are_rejected():
    with pytest.raises(FaceError, match="min_cutoff"):
        OneEuroFilter(min_cutoff=0.0)
    with pytest.raises(FaceError, match="beta"):
        OneEuroFilter(beta=-1.0)
    with pytest.raises(FaceError, match="speed"):
        OneEuroFilter(speed="fast")  # type: ignore[arg-type]
    with pytest.raises(FaceError, match="needs points shaped"):
        OneEuroFilter(speed="rigid")(np.zeros(4), 0.0)
    with pytest.raises(FaceError, match="max_gap"):
        SmoothingConfig(max_gap=0.0)
    with pytest.raises(FaceError, match=r"\(5,2\)"):
        LandmarkSmoother().smooth(0, np.zeros((4, 2)), 0.0)


def test_real_mediapipe_jitter_on_a_still_photo_drops_at_least_3x(astronaut, face_detector):
    # The same photo with fresh sensor-like noise (sigma 3 grey levels) each frame: whatever the landmarks do is
    # mediapipe's own jitter (about 0.13 px here).
    rng = np.random.default_rng(2)
    base = astronaut.astype(np.int16)
    smoother = LandmarkSmoother()
    raw, smoothed = [], []
    for i in range(45):
        frame = np.clip(base + rng.normal(0, 3, base.shape), 0, 255).astype(np.uint8)
        faces = face_detector.detect(frame)
        assert len(faces) == 1
        raw.append(faces[0].keypoints)
        smoothed.append(smoother.smooth("still", faces[0].keypoints, i / FPS, faces[0].mesh)[0])
    raw_jitter = np.array(raw)[15:].std(axis=0).mean()
    smooth_jitter = np.array(smoothed)[15:].std(axis=0).mean()
    assert raw_jitter > 0.01, "mediapipe landmarks did not move at all; the test would prove nothing"
    assert raw_jitter / smooth_jitter >= 3.0, f"jitter {raw_jitter:.3f} -> {smooth_jitter:.3f} px"
