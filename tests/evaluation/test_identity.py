"""The identity judge (dlib's ResNet descriptor) on real photos: other people lie farther than other crops."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from evaluation.identity import SAME_PERSON_DISTANCE, IdentityJudge, judge_model_files, separation


def _crop(image: np.ndarray, x0: int, y0: int, x1: int, y1: int, size: int) -> np.ndarray:
    return cv2.resize(np.ascontiguousarray(image[y0:y1, x0:x1]), (size, size), interpolation=cv2.INTER_AREA)


def _describe(judge: IdentityJudge, image: np.ndarray) -> np.ndarray:
    descriptor = judge.describe(np.ascontiguousarray(image), None)
    assert descriptor is not None, "dlib found no face in a real photo"
    return descriptor


def test_weights_found_without_importing_the_package() -> None:
    shape, descriptor = judge_model_files()
    assert shape.stat().st_size > 1e6 and descriptor.stat().st_size > 1e7


def test_two_people_lie_farther_apart_than_two_crops_of_one_photo(
        identity_judge: IdentityJudge, astronaut: np.ndarray, grace_hopper: np.ndarray) -> None:
    astronaut_wide = _describe(identity_judge, astronaut)
    astronaut_tight = _describe(identity_judge, _crop(astronaut, 100, 0, 340, 240, 300))
    hopper = _describe(identity_judge, grace_hopper)
    same = float(np.linalg.norm(astronaut_wide - astronaut_tight))
    different = float(np.linalg.norm(astronaut_wide - hopper))
    assert same < SAME_PERSON_DISTANCE < different
    assert different > 2 * same


def test_lfw_people_lie_farther_apart_than_crops_of_one_lfw_photo(identity_judge: IdentityJudge) -> None:
    from training.real_photos import lfw_faces

    faces = lfw_faces(192)
    first, second = faces[0], faces[50]
    size = first.shape[0]
    base = _describe(identity_judge, first)
    recropped = _describe(identity_judge, _crop(first, 20, 20, size - 10, size - 30, size))
    other = _describe(identity_judge, second)
    assert np.linalg.norm(base - other) > np.linalg.norm(base - recropped)


def test_separation_tells_two_people_apart_but_not_one_from_itself(
        identity_judge: IdentityJudge, astronaut: np.ndarray, grace_hopper: np.ndarray) -> None:
    def views(image: np.ndarray, count: int) -> list[np.ndarray]:
        height, width = image.shape[:2]
        shifts = np.linspace(0.0, 0.08, count)
        return [_describe(identity_judge, _crop(image, int(s * width), int(s * height), width - int(s * width / 2),
                                                 height - int(s * height / 2), 400)) for s in shifts]

    astronauts, hoppers = views(astronaut, 4), views(grace_hopper, 4)
    assert separation(astronauts, hoppers).separable
    itself = separation(astronauts[::2], astronauts[1::2])
    assert not itself.separable
    assert itself.centroid_distance < SAME_PERSON_DISTANCE / 2


def test_a_face_dlib_misses_is_described_in_the_box_given(identity_judge: IdentityJudge,
                                                           astronaut: np.ndarray) -> None:
    sideways = np.ascontiguousarray(np.rot90(astronaut))  # HOG finds upright faces only
    before = identity_judge.used_hint
    descriptor = identity_judge.describe(sideways, np.array([0.0, 170.0, 260.0, 350.0]))
    assert descriptor is not None and descriptor.shape == (128,)
    assert identity_judge.used_hint == before + 1


@pytest.mark.parametrize("hint", [None])
def test_no_face_no_descriptor(identity_judge: IdentityJudge, hint: None) -> None:
    assert identity_judge.describe(np.full((200, 200, 3), 90, dtype=np.uint8), hint) is None
