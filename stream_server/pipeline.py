"""A session's two frame stages: locate (faces) and render (align -> infer -> colour + blend -> boxes -> mark).

`FramePipeline.locate` finds the frame's faces with a `faces.track.FaceTracker` (its detector runs beside the
frame path in its own thread); `FramePipeline.render` swaps them and draws. Both run in worker threads, never on
the event loop (frames.FrameScheduler calls them). Echo is the same pipeline with the swap stage off. The
reserved top-left corner (the frame-number code, swapstream.reserved_corner) is restored from the input after
every drawing step, so the server never changes it. When remote inference (Triton) fails, the frame goes on with
its faces unswapped and the client is told, at most once every `OUTAGE_NOTICE_INTERVAL_S` (`OutageNotices`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import cv2
import numpy as np
from numpy.typing import NDArray

from faces.align import AlignedFace, align_face, paste_back, transform_points
from faces.color import transfer_color
from faces.detect import FaceDetector
from faces.errors import FaceError
from faces.mask import hull_mask, mouth_mask
from faces.smooth import LandmarkSmoother
from faces.track import Detector, FaceTracker
from faces.types import Face
from stream_server.catalog import SwapModels
from stream_server.config import PipelineMode, SessionOptions
from stream_server.errors import RemoteInferenceError, ServerError
from stream_server.frames import StageTimes
from stream_server.mark import draw_disclosure_mark
from swapstream.reserved_corner import RESERVED_CORNER_HEIGHT, RESERVED_CORNER_WIDTH

logger = logging.getLogger(__name__)

BOX_COLOUR = (0, 255, 0)
# While inference fails, the client hears about it at once and then at most this often (not once per frame).
OUTAGE_NOTICE_INTERVAL_S = 5.0
# With keep_mouth: how far past the lips the speaker's own face is kept, and how softly it meets the swap, as
# shares of the crop (px at 128 px). The margin covers the swap's own mouth where it is drawn larger than the
# speaker's; towards the nose, which can sit 7 px above the upper lip of a smiling face (tests/faces/test_mask.py),
# it stops sooner.
KEPT_MOUTH_MARGIN = 7 / 128
KEPT_MOUTH_MARGIN_UP = 5 / 128
KEPT_MOUTH_FEATHER = 3 / 128


class Infer(Protocol):
    """A session's way to the swap models (batching.BatcherLane): the pipeline owns it and closes it."""

    def __call__(self, model: str, faces: NDArray[np.float32]) -> list[NDArray[np.float32]]:
        """Run the named model on (N,3,S,S) float32 crops in [0,1]; its outputs in manifest order."""
        ...

    def close(self) -> None:
        """The session has ended."""
        ...


@dataclass(frozen=True)
class PipelineSettings:
    """Server-wide pipeline settings taken from ServerConfig."""

    mode: PipelineMode = "swap"
    detect_every: int = 1
    max_faces: int = 4
    disclosure_mark: bool = True


def video_detector(max_faces: int) -> Detector:
    """The detector a session's tracker uses: mediapipe in video mode (the mesh tracks between frames)."""
    return FaceDetector(max_faces=max_faces, static_images=False)


class OutageNotices:
    """Tells a session's client that its faces go out unswapped because inference failed: the first failure at
    once, then at most one message per `interval_s` saying how many frames it concerned (thread-safe)."""

    def __init__(self, notify: Callable[[str], None], interval_s: float = OUTAGE_NOTICE_INTERVAL_S) -> None:
        self._notify = notify
        self._interval_s = interval_s
        self._lock = threading.Lock()
        self._last_sent = float("-inf")
        self._unsent = 0

    def failed(self, exc: RemoteInferenceError) -> None:
        """A frame went out unswapped because of `exc`."""
        with self._lock:
            self._unsent += 1
            now = time.monotonic()
            if now - self._last_sent < self._interval_s:
                return
            frames, self._unsent, self._last_sent = self._unsent, 0, now
        self._notify(f"inference unavailable, faces are not swapped until it is back ({frames} frame"
                     f"{'s' if frames != 1 else ''} since the last notice): {exc}")


class FramePipeline:
    """One session's frame stages; it owns its face tracker (and detector) and its inference lane.

    `notify` sends the session's client an error event (from the worker thread); without it, inference failures
    are only logged by the lane's backend.
    """

    def __init__(self, settings: PipelineSettings, catalog: SwapModels, infer: Infer | None,
                 detector_factory: Callable[[int], Detector] = video_detector,
                 notify: Callable[[str], None] | None = None) -> None:
        self._settings = settings
        self._catalog = catalog
        self._infer = infer
        self._detector_factory = detector_factory
        self._tracker: FaceTracker | None = None
        self._outages = OutageNotices(notify) if notify is not None else None

    def close(self) -> None:
        """Stop the detector thread, free the detector (native mediapipe graphs) and leave the batcher."""
        try:
            if self._tracker is not None:
                self._tracker.close()
                self._tracker = None
        finally:
            if self._infer is not None:
                self._infer.close()

    def swap_enabled(self, options: SessionOptions) -> bool:
        """Whether the swap stage runs for these options (echo pipeline and swap=False skip it)."""
        return self._settings.mode == "swap" and options.swap and self._infer is not None

    def locate(self, frame_rgb: NDArray[np.uint8], options: SessionOptions,
               timestamp_s: float | None = None) -> tuple[list[Face], StageTimes]:
        """Stage 1, sequential per session: this frame's faces (detected or tracked) and the detect time in ms."""
        if not (self.swap_enabled(options) or options.boxes):
            return [], {}
        t0 = time.perf_counter()
        if self._tracker is None:
            # Built on the first frame that needs faces, in the worker thread: mediapipe takes a while to start.
            settings = self._settings
            self._tracker = FaceTracker(self._detector_factory(settings.max_faces), settings.detect_every,
                                        settings.max_faces, LandmarkSmoother())
        faces = self._tracker.faces(frame_rgb, time.monotonic() if timestamp_s is None else timestamp_s)
        return faces, {"detect": (time.perf_counter() - t0) * 1000}

    def render(self, frame_rgb: NDArray[np.uint8], faces: list[Face],
               options: SessionOptions) -> tuple[NDArray[np.uint8], StageTimes]:
        """Stage 2, no tracking state: align, infer, colour-match and blend each face, then boxes and the mark.

        May draw on `frame_rgb` in place (the scheduler hands it a freshly decoded array).
        """
        stage_ms: StageTimes = {}
        frame = np.ascontiguousarray(frame_rgb)
        corner = frame[:RESERVED_CORNER_HEIGHT, :RESERVED_CORNER_WIDTH].copy()
        if self._infer is not None and self.swap_enabled(options) and faces:
            frame = self._swap(frame, faces, options, self._infer, stage_ms)
        if options.boxes:
            for face in faces:
                x0, y0, x1, y1 = (int(round(float(v))) for v in face.box)
                cv2.rectangle(frame, (x0, y0), (x1, y1), BOX_COLOUR, 2)
        if self._settings.disclosure_mark:
            draw_disclosure_mark(frame)
        frame[:RESERVED_CORNER_HEIGHT, :RESERVED_CORNER_WIDTH] = corner
        return frame, stage_ms

    def _swap(self, frame: NDArray[np.uint8], faces: list[Face], options: SessionOptions, infer: Infer,
              stage_ms: StageTimes) -> NDArray[np.uint8]:
        # The model is held from here until its outputs are back: removed meanwhile, it still serves this frame.
        with self._catalog.use(options.model) as model:
            t0 = time.perf_counter()
            aligned = [align_face(frame, face, model.face_size) for face in faces]
            batch = np.stack([a.crop for a in aligned]).astype(np.float32).transpose(0, 3, 1, 2) / np.float32(255.0)
            stage_ms["align"] = (time.perf_counter() - t0) * 1000
            t0 = time.perf_counter()
            try:
                outputs = infer(model.name, batch)
            except RemoteInferenceError as exc:
                # Triton down or refusing: this frame goes on unswapped (no "infer" time: no face counts as swapped)
                if self._outages is not None:
                    self._outages.failed(exc)
                return frame
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
        return frame


def _blend_face(frame: NDArray[np.uint8], face: Face, crop: AlignedFace, rgb: NDArray[np.float32],
                model_mask: NDArray[np.float32] | None, face_size: int,
                options: SessionOptions) -> NDArray[np.uint8]:
    """Colour-match one generated face to the original crop and paste it back through a feathered hull mask."""
    swapped = (np.clip(rgb.transpose(1, 2, 0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
    points = transform_points(face.points, crop.matrix)
    # The mesh hull where the detector found one, else a face outline grown from the 5 keypoints.
    mask = hull_mask(points, face_size, options.feather)
    if model_mask is not None:
        mask = mask * np.clip(model_mask[0], 0.0, 1.0)
    if options.color != "none" and float(mask.sum()) >= 1.0:
        swapped = transfer_color(swapped, crop.crop, options.color, mask=mask)
    if options.keep_mouth:
        # The colour statistics above are the whole face's; only the paste leaves the mouth out.
        mask = mask * (1.0 - mouth_mask(points, face_size, face_size * KEPT_MOUTH_MARGIN,
                                        face_size * KEPT_MOUTH_FEATHER, face_size * KEPT_MOUTH_MARGIN_UP))
    return np.asarray(paste_back(frame, swapped, crop.matrix, mask.astype(np.float32)), dtype=np.uint8)
