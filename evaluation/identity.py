"""The identity judge: dlib's ResNet face descriptor, a face-recognition model our trainer never saw.

Two faces of one person lie within ~0.6 of each other in its 128-d descriptor space (dlib's own threshold).
The weights come inside the `face-recognition-models` wheel (the `eval` extra): no download. That package's
`__init__` imports pkg_resources, which newer setuptools no longer ship, so its files are found through
importlib's module spec without importing it.

dlib's HOG face finder misses many cartoon-like synthetic faces; where it misses, the judge describes the face
in the mediapipe box it is given instead (and counts how often).
"""

from __future__ import annotations

import importlib.util
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from evaluation.arrays import Floats, Image
from evaluation.errors import JudgeError

SHAPE_PREDICTOR = "shape_predictor_5_face_landmarks.dat"
DESCRIPTOR_MODEL = "dlib_face_recognition_resnet_model_v1.dat"
SAME_PERSON_DISTANCE = 0.6
"""dlib's threshold: descriptors nearer than this are the same person (99.38% on LFW)."""
SEPARATION_SHARE = 0.95
"""The judge separates A from B when at least this share of each one's own frames is nearer its own centroid
(the issue's target share for the swap itself)."""
HOG_MIN_FACE = 80  # px: dlib's HOG finder sees faces from about this size; smaller crops are upsampled once
SEARCH_MARGIN = 0.5  # of the hint box's size, added around it before the HOG finder looks


def judge_model_files() -> tuple[Path, Path]:
    """The shape predictor and descriptor weights inside the installed face-recognition-models package."""
    spec = importlib.util.find_spec("face_recognition_models")
    if spec is None or not spec.submodule_search_locations:
        raise JudgeError("the identity judge needs the 'face-recognition-models' package: "
                         "pip install -e '.[eval]'")
    for location in spec.submodule_search_locations:
        folder = Path(location) / "models"
        files = (folder / SHAPE_PREDICTOR, folder / DESCRIPTOR_MODEL)
        if all(path.is_file() for path in files):
            return files
    raise JudgeError(f"face-recognition-models is installed but {SHAPE_PREDICTOR} and {DESCRIPTOR_MODEL} are not "
                     f"in {list(spec.submodule_search_locations)}; reinstall it")


class IdentityJudge:
    """Describes faces with dlib: HOG finder (or the given box), 5-point shape, 128-d ResNet descriptor."""

    def __init__(self) -> None:
        try:
            import dlib
        except ImportError as exc:
            raise JudgeError("the identity judge needs dlib: pip install -e '.[eval]' (dlib-bin)") from exc
        shape_file, descriptor_file = judge_model_files()
        try:
            self._shape = dlib.shape_predictor(str(shape_file))
            self._descriptor = dlib.face_recognition_model_v1(str(descriptor_file))
        except RuntimeError as exc:
            raise JudgeError(f"dlib cannot load {shape_file.parent}: {exc}") from exc
        self._finder = dlib.get_frontal_face_detector()
        self._dlib: Any = dlib
        self.name = f"dlib {dlib.__version__} ResNet face descriptor (face-recognition-models)"
        self.described = 0
        self.used_hint = 0
        """How many faces dlib's own finder missed and were described in the mediapipe box instead."""

    def describe(self, frame: Image, hint: Floats | None) -> Floats | None:
        """The 128-d descriptor of the face in `frame` near the box `hint` (x0, y0, x1, y1); None if none."""
        rectangle = self._find(frame, hint)
        if rectangle is None:
            return None
        image = np.ascontiguousarray(frame)
        shape = self._shape(image, rectangle)
        self.described += 1
        return np.asarray(self._descriptor.compute_face_descriptor(image, shape), dtype=np.float64)

    def _find(self, frame: Image, hint: Floats | None) -> Any:
        height, width = frame.shape[:2]
        if hint is None:
            found = self._finder(np.ascontiguousarray(frame), 0)
            return max(found, key=lambda r: r.area()) if len(found) else None
        x0, y0, x1, y1 = (float(v) for v in hint)
        size = max(x1 - x0, y1 - y0)
        left, top = int(max(0, x0 - SEARCH_MARGIN * size)), int(max(0, y0 - SEARCH_MARGIN * size))
        right, bottom = int(min(width, x1 + SEARCH_MARGIN * size)), int(min(height, y1 + SEARCH_MARGIN * size))
        region = np.ascontiguousarray(frame[top:bottom, left:right])
        found = self._finder(region, 1 if size < HOG_MIN_FACE else 0) if region.size else []
        if len(found):
            best = max(found, key=lambda r: _overlap((r.left() + left, r.top() + top, r.right() + left,
                                                      r.bottom() + top), (x0, y0, x1, y1)))
            return self._dlib.rectangle(best.left() + left, best.top() + top, best.right() + left,
                                        best.bottom() + top)
        self.used_hint += 1
        return self._dlib.rectangle(int(x0), int(y0), int(x1), int(y1))


def _overlap(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> float:
    width = min(a[2], b[2]) - max(a[0], b[0])
    height = min(a[3], b[3]) - max(a[1], b[1])
    return max(width, 0.0) * max(height, 0.0)


def centroid(descriptors: list[Floats]) -> Floats:
    """The mean descriptor of a set of faces."""
    if not descriptors:
        raise JudgeError("a centroid needs at least one described face")
    return np.asarray(np.mean(np.stack(descriptors), axis=0), dtype=np.float64)


def distances(descriptors: list[Floats], to: Floats) -> Floats:
    """Euclidean distance of each descriptor to `to`."""
    if not descriptors:
        return np.zeros(0)
    return np.asarray(np.linalg.norm(np.stack(descriptors) - to, axis=1), dtype=np.float64)


@dataclass(frozen=True)
class Separation:
    """Whether the judge tells A from B on their own frames (leave-one-out nearest centroid)."""

    a_nearer_a: float | None
    """Share of A's frames nearer the centroid of A's other frames than B's centroid; None with one A frame."""
    b_nearer_b: float
    """Share of B's frames nearer the centroid of B's other frames than A's centroid."""
    centroid_distance: float

    @property
    def separable(self) -> bool:
        """Both shares reach SEPARATION_SHARE: the judge's verdict on a swap of this pair means something."""
        a_ok = self.a_nearer_a is None or self.a_nearer_a >= SEPARATION_SHARE
        return a_ok and self.b_nearer_b >= SEPARATION_SHARE


def _nearer_own(own: list[Floats], other_centre: Floats) -> float | None:
    """Share of `own` nearer the centroid of the rest of `own` (itself left out) than `other_centre`."""
    if len(own) < 2:
        return None
    stacked = np.stack(own)
    rest_centres = (stacked.sum(axis=0) - stacked) / (len(own) - 1)
    to_own = np.linalg.norm(stacked - rest_centres, axis=1)
    to_other = np.linalg.norm(stacked - other_centre, axis=1)
    return float((to_own < to_other).mean())


def separation(a: list[Floats], b: list[Floats]) -> Separation:
    """How well the judge separates the faces `a` (one or more) from the faces `b` (two or more).

    Each face is compared with the centroid of the OTHER faces of its own set, so a set does not win by
    containing the face itself (with few frames that alone would "separate" two sets of one person).
    """
    if len(b) < 2:
        raise JudgeError("separating A from B needs at least two B faces")
    centre_a, centre_b = centroid(a), centroid(b)
    b_nearer_b = _nearer_own(b, centre_a)
    assert b_nearer_b is not None
    return Separation(_nearer_own(a, centre_b), b_nearer_b, float(np.linalg.norm(centre_a - centre_b)))
