"""Face tracking for video: a detector running beside the frame path, optical flow on every frame.

`FaceTracker.faces(frame, t)` gives each frame's faces. The first frame waits for a detection; after that
every frame's faces come from pyramidal Lucas-Kanade tracking of the keypoints (~2 ms), while the detector
(~20-30 ms with the mesh) re-detects in its own thread, started every `detect_every` frames whenever it is
idle (at once when no face is known). A finished detection is carried forward by the same tracking from the
frame it saw to the current one, so detection stays off the per-frame latency path. `follow(face, a, b)` is
the tracking step for one face.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from faces.errors import FaceError
from faces.smooth import LandmarkSmoother
from faces.types import Face

logger = logging.getLogger(__name__)

# Lucas-Kanade search window (px) and pyramid levels: follows a face moving ~40 px between frames.
FLOW_WINDOW = (21, 21)
FLOW_LEVELS = 3
# A similarity transform needs two points; three keep one bad match from steering it.
MIN_FOLLOWED_KEYPOINTS = 3


class Detector(Protocol):
    """What the tracker needs from a face detector; `faces.detect.FaceDetector` is one."""

    def detect(self, frame_rgb: NDArray[np.uint8]) -> list[Face]:
        """Every face in an RGB uint8 frame, highest score first."""
        ...

    def close(self) -> None:
        """Free the detector."""
        ...


def to_gray(frame_rgb: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """The grey image optical flow works on."""
    return np.asarray(cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY), dtype=np.uint8)


def follow(face: Face, from_gray: NDArray[np.uint8], to_gray: NDArray[np.uint8]) -> Face | None:
    """`face` moved by the similarity transform its keypoints followed between two grey frames; None if lost.

    The keypoints are tracked with pyramidal Lucas-Kanade; the mesh and the box move with the fitted transform.
    """
    old = face.keypoints.reshape(-1, 1, 2).astype(np.float32)
    new, status, _ = cv2.calcOpticalFlowPyrLK(from_gray, to_gray, old, old.copy(), winSize=FLOW_WINDOW,
                                              maxLevel=FLOW_LEVELS)
    ok = np.asarray(status).reshape(-1).astype(bool)
    if ok.sum() < MIN_FOLLOWED_KEYPOINTS:
        return None
    found, _ = cv2.estimateAffinePartial2D(old[ok], np.asarray(new, dtype=np.float32)[ok])
    if found is None:
        return None
    matrix = np.asarray(found, dtype=np.float64)

    def move(points: NDArray[np.float32]) -> NDArray[np.float32]:
        return np.asarray(points.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2], dtype=np.float32)

    mesh = move(face.mesh) if face.mesh is not None else None
    return face.with_points(move(face.keypoints), mesh)


def _follow_all(faces: list[Face], from_gray: NDArray[np.uint8], to_gray: NDArray[np.uint8]) -> list[Face]:
    if from_gray is to_gray:
        return list(faces)
    followed = (follow(face, from_gray, to_gray) for face in faces)
    return [face for face in followed if face is not None]


class FaceTracker:
    """One video's faces: detected beside the frame path, followed by optical flow on every frame.

    The tracker owns its detector and one detector thread; `close()` frees both. `faces()` is called for the
    frames of one video in order, from one thread at a time.
    """

    def __init__(self, detector: Detector, detect_every: int = 3, max_faces: int = 4,
                 smoother: LandmarkSmoother | None = None) -> None:
        if detect_every < 1:
            raise FaceError(f"detect_every must be >= 1, got {detect_every}")
        if max_faces < 1:
            raise FaceError(f"max_faces must be >= 1, got {max_faces}")
        self._detector = detector
        self._detect_every = detect_every
        self._max_faces = max_faces
        self._smoother = smoother
        self._faces: list[Face] = []
        self._prev_gray: NDArray[np.uint8] | None = None
        self._since_detect = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swapstream-detect")
        self._pending: Future[list[Face]] | None = None
        self._pending_gray: NDArray[np.uint8] | None = None
        self.detections = 0
        """Detections started so far (the first frame's included)."""

    def close(self) -> None:
        """Wait for a detection in flight, stop the detector thread and close the detector."""
        self._pool.shutdown(wait=True)
        self._detector.close()

    def _detect(self, frame_rgb: NDArray[np.uint8]) -> list[Face]:
        self.detections += 1
        return list(self._detector.detect(frame_rgb))[: self._max_faces]

    def faces(self, frame_rgb: NDArray[np.uint8], timestamp_s: float) -> list[Face]:
        """This frame's faces (highest score first, at most max_faces), smoothed over time if a smoother is set."""
        gray = to_gray(frame_rgb)
        if self._prev_gray is None:
            self._faces = self._detect(frame_rgb)  # nothing to track from yet
        else:
            self._faces = self._carry_forward(gray, self._prev_gray)
        self._since_detect += 1
        if self._pending is None and (self._since_detect >= self._detect_every or not self._faces):
            # A copy: the caller may draw on this frame while the detector reads it.
            self._pending = self._pool.submit(self._detect, frame_rgb.copy())
            self._pending_gray = gray
            self._since_detect = 0
        self._prev_gray = gray
        if self._smoother is None:
            return list(self._faces)
        return [face for _, face in self._smoother.smooth_faces(self._faces, timestamp_s)]

    def _carry_forward(self, gray: NDArray[np.uint8], prev_gray: NDArray[np.uint8]) -> list[Face]:
        """A finished detection followed from the frame it saw to this one, else the last faces followed."""
        pending, base_gray = self._pending, self._pending_gray
        if pending is None or not pending.done() or base_gray is None:
            return _follow_all(self._faces, prev_gray, gray)
        self._pending = self._pending_gray = None
        try:
            detected = pending.result()
        except Exception as exc:  # noqa: BLE001 - keep tracking what we have; the next detection may work
            logger.warning("face detection failed: %s", exc)
            return _follow_all(self._faces, prev_gray, gray)
        return _follow_all(detected, base_gray, gray)
