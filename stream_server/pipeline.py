"""The per-session frame pipeline: detect/track -> align -> infer (batched) -> colour transfer + blend -> mark.

`FramePipeline.process(frame_rgb, options) -> (frame, stage_ms)` runs in worker threads, never on the event
loop; the server calls its two halves, `locate` (faces: tracking state) and `render` (everything else), in two
threads so consecutive frames overlap. The detector itself runs beside them in its own thread (FaceTracker). Echo is the same pipeline with the swap stage off. The top-left 200x24 px (the profiler's frame-number
code) is restored from the input after every drawing step, so the server never changes it.
"""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, Protocol

import cv2
import numpy as np

from stream_server.catalog import ModelCatalog
from stream_server.config import SessionOptions
from stream_server.errors import ServerError
from stream_server.mark import draw_disclosure_mark

logger = logging.getLogger(__name__)

# The profiler's frame-number code lives here (docs/CONTRACTS.md); never drawn on.
RESERVED_CORNER = (200, 24)  # width, height


class Infer(Protocol):
    """Runs a named swap model on a batch of crops: (N,3,S,S) float32 in [0,1] -> [rgb, mask, ...]."""

    def __call__(self, model: str, faces: np.ndarray) -> list[np.ndarray]: ...


@dataclass(frozen=True)
class PipelineSettings:
    """Server-wide pipeline settings taken from ServerConfig."""

    mode: Literal["swap", "echo"] = "swap"
    detect_every: int = 1
    max_faces: int = 4
    disclosure_mark: bool = True


class FaceTracker:
    """Finds faces with a detector running beside the frame path, and follows them with optical flow.

    The first frame waits for a detection; after that every frame's faces come from pyramidal Lucas-Kanade
    tracking (~2 ms) while the detector (~20-30 ms with the mesh) re-detects in its own thread, started every
    `detect_every` frames whenever it is idle. A finished detection is carried forward from the frame it saw to
    the current one by the same tracking, so detection is off the per-frame latency path.
    """

    def __init__(self, detector: Any, detect_every: int, max_faces: int, smoother: Any) -> None:
        self._detector = detector
        self._detect_every = detect_every
        self._max_faces = max_faces
        self._smoother = smoother
        self._faces: list[Any] = []
        self._prev_gray: np.ndarray | None = None
        self._since_detect = 0
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="swapstream-detect")
        self._pending: Future[list[Any]] | None = None
        self._pending_gray: np.ndarray | None = None
        self.detections = 0

    def close(self) -> None:
        """Wait for a detection in flight and stop the detector thread."""
        self._pool.shutdown(wait=True)

    def _detect(self, frame_rgb: np.ndarray) -> list[Any]:
        self.detections += 1
        return list(self._detector.detect(frame_rgb))[: self._max_faces]

    def faces(self, frame_rgb: np.ndarray, timestamp_s: float) -> list[Any]:
        """This frame's faces (highest score first, at most max_faces), landmarks smoothed over time."""
        gray = cv2.cvtColor(frame_rgb, cv2.COLOR_RGB2GRAY)
        if self._prev_gray is None:
            self._faces = self._detect(frame_rgb)  # nothing to track from yet
        elif self._pending is not None and self._pending.done():
            pending, base_gray = self._pending, self._pending_gray
            self._pending = self._pending_gray = None
            try:
                detected = pending.result()
            except Exception as exc:  # noqa: BLE001 - keep tracking what we have; the next detection may work
                logger.warning("face detection failed: %s", exc)
                detected = None
            if detected is not None:
                assert base_gray is not None
                self._faces = self._follow_all(detected, base_gray, gray)
            else:
                self._faces = self._follow_all(self._faces, self._prev_gray, gray)
        else:
            self._faces = self._follow_all(self._faces, self._prev_gray, gray)
        self._since_detect += 1
        if self._pending is None and (self._since_detect >= self._detect_every or not self._faces):
            # A copy: the render stage draws on this frame while the detector reads it.
            self._pending = self._pool.submit(self._detect, frame_rgb.copy())
            self._pending_gray = gray
            self._since_detect = 0
        self._prev_gray = gray
        return [face for _, face in self._smoother.smooth_faces(self._faces, timestamp_s)]

    def _follow_all(self, faces: list[Any], from_gray: np.ndarray, to_gray: np.ndarray) -> list[Any]:
        if from_gray is to_gray:
            return list(faces)
        followed = (self._follow(face, from_gray, to_gray) for face in faces)
        return [face for face in followed if face is not None]

    @staticmethod
    def _follow(face: Any, prev_gray: np.ndarray, gray: np.ndarray) -> Any | None:
        """Move a face by the similarity transform its keypoints followed (pyramidal Lucas-Kanade)."""
        old = face.keypoints.reshape(-1, 1, 2).astype(np.float32)
        new, status, _ = cv2.calcOpticalFlowPyrLK(prev_gray, gray, old, None, winSize=(21, 21), maxLevel=3)
        ok = status.reshape(-1).astype(bool)
        if ok.sum() < 3:
            return None
        matrix, _ = cv2.estimateAffinePartial2D(old[ok], new[ok])
        if matrix is None:
            return None

        def move(points: np.ndarray) -> np.ndarray:
            return (points.astype(np.float64) @ matrix[:, :2].T + matrix[:, 2]).astype(np.float32)

        mesh = move(face.mesh) if face.mesh is not None else None
        return face.with_points(move(face.keypoints), mesh)


class FramePipeline:
    """Processes one session's frames; one instance per session (it owns the detector and tracking state)."""

    def __init__(
        self,
        settings: PipelineSettings,
        catalog: ModelCatalog,
        infer: Infer | None,
        detector_factory: Callable[[int], Any] | None = None,
        smoother_factory: Callable[[], Any] | None = None,
    ) -> None:
        self._settings = settings
        self._catalog = catalog
        self._infer = infer
        self._detector_factory = detector_factory or _default_detector
        self._smoother_factory = smoother_factory or _default_smoother
        self._tracker: FaceTracker | None = None
        self._detector: Any = None
        self.last_face_count = 0

    def close(self) -> None:
        """Stop the detector thread and free the detector (mediapipe graphs hold native memory and threads)."""
        if self._tracker is not None:
            self._tracker.close()
        if self._detector is not None:
            self._detector.close()
            self._detector = None
            self._tracker = None

    def _faces(self, frame_rgb: np.ndarray, timestamp_s: float) -> list[Any]:
        if self._tracker is None:
            self._detector = self._detector_factory(self._settings.max_faces)
            self._tracker = FaceTracker(self._detector, self._settings.detect_every, self._settings.max_faces,
                                        self._smoother_factory())
        return self._tracker.faces(frame_rgb, timestamp_s)

    def swap_enabled(self, options: SessionOptions) -> bool:
        """Whether the swap stage runs for these options (echo pipeline and swap=False skip it)."""
        return self._settings.mode == "swap" and options.swap and self._infer is not None

    def locate(self, frame_rgb: np.ndarray, options: SessionOptions,
               timestamp_s: float | None = None) -> tuple[list[Any], dict[str, float]]:
        """Stage 1, sequential per session: this frame's faces (detected or tracked) and the detect time in ms."""
        if not (self.swap_enabled(options) or options.boxes):
            return [], {}
        t0 = time.perf_counter()
        faces = self._faces(frame_rgb, time.monotonic() if timestamp_s is None else timestamp_s)
        return faces, {"detect": (time.perf_counter() - t0) * 1000}

    def render(self, frame_rgb: np.ndarray, faces: list[Any],
               options: SessionOptions) -> tuple[np.ndarray, dict[str, float]]:
        """Stage 2, no tracking state: align, infer, colour-match and blend each face, then boxes and the mark.

        May draw on `frame_rgb` in place (the server hands it a freshly decoded array).
        """
        from faces.align import align_face
        from faces.errors import FaceError

        stage_ms: dict[str, float] = {}
        frame = np.ascontiguousarray(frame_rgb)
        corner_w, corner_h = RESERVED_CORNER
        corner = frame[:corner_h, :corner_w].copy()
        if self.swap_enabled(options) and faces:
            model = self._catalog.resolve(options.model)
            t0 = time.perf_counter()
            aligned = [align_face(frame, face, model.face_size) for face in faces]
            batch = np.stack([a.crop for a in aligned]).astype(np.float32).transpose(0, 3, 1, 2) / 255.0
            stage_ms["align"] = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            assert self._infer is not None
            outputs = self._infer(model.name, batch)
            stage_ms["infer"] = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            rgb = outputs[model.rgb_index]
            model_masks = outputs[model.mask_index] if model.mask_index is not None else None
            if rgb.shape[0] != len(faces):
                raise ServerError(f"model {model.name} returned {rgb.shape[0]} faces for a batch of {len(faces)}")
            for i, (face, crop) in enumerate(zip(faces, aligned)):
                try:
                    model_mask = None if model_masks is None else model_masks[i]
                    frame = _blend_face(frame, face, crop, rgb[i], model_mask, model.face_size, options)
                except FaceError as exc:
                    # A face at the frame edge or a degenerate mask: leave that face as it is, keep the frame.
                    logger.debug("face %d not blended: %s", i, exc)
            stage_ms["blend"] = (time.perf_counter() - t0) * 1000
        if options.boxes:
            for face in faces:
                x0, y0, x1, y1 = (int(round(v)) for v in face.box)
                cv2.rectangle(frame, (x0, y0), (x1, y1), (0, 255, 0), 2)
        if self._settings.disclosure_mark:
            draw_disclosure_mark(frame)
        frame[:corner_h, :corner_w] = corner
        return frame, stage_ms

    def process(self, frame_rgb: np.ndarray, options: SessionOptions,
                timestamp_s: float | None = None) -> tuple[np.ndarray, dict[str, float]]:
        """Swap every face (up to the maximum) in an RGB uint8 frame; returns the new frame and stage times in ms."""
        faces, located_ms = self.locate(frame_rgb, options, timestamp_s)
        frame, rendered_ms = self.render(frame_rgb, faces, options)
        self.last_face_count = len(faces) if self.swap_enabled(options) else 0
        return frame, {**located_ms, **rendered_ms}


def _blend_face(frame: np.ndarray, face: Any, crop: Any, rgb: np.ndarray, model_mask: np.ndarray | None,
                face_size: int, options: SessionOptions) -> np.ndarray:
    """Colour-match one generated face to the original crop and paste it back through a feathered hull mask."""
    from faces.align import paste_back, transform_points
    from faces.color import transfer_color
    from faces.mask import hull_mask

    swapped = (np.clip(rgb.transpose(1, 2, 0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    # The mesh hull where the detector found one, else a face outline grown from the 5 keypoints.
    mask = hull_mask(transform_points(face.points, crop.matrix), face_size, options.feather)
    if model_mask is not None:
        mask = mask * np.clip(model_mask[0], 0.0, 1.0)
    if options.color != "none" and float(mask.sum()) >= 1.0:
        swapped = transfer_color(swapped, crop.crop, options.color, mask=mask)
    return paste_back(frame, swapped, crop.matrix, mask.astype(np.float32))


def _default_detector(max_faces: int) -> Any:
    from faces.detect import FaceDetector

    # Video mode: the mesh model tracks between frames instead of re-detecting from scratch.
    return FaceDetector(max_faces=max_faces, static_images=False)


def _default_smoother() -> Any:
    from faces.smooth import LandmarkSmoother

    return LandmarkSmoother()
