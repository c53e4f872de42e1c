"""Face detection over mediapipe's bundled models: detector boxes/scores paired with 468-point face meshes."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from types import TracebackType
from typing import Any, Literal

import cv2
import numpy as np
import numpy.typing as npt

from faces.errors import FaceError
from faces.types import MESH_POINTS, Face, Float64Array, ImageRGB, check_frame

logger = logging.getLogger(__name__)

# Mesh indices of the eye contours (16 points each), nose tip and mouth corners. Index 33.. is the subject's
# right eye, which is the eye on the image's left for an upright face.
EYE_IMAGE_LEFT = (33, 7, 163, 144, 145, 153, 154, 155, 133, 173, 157, 158, 159, 160, 161, 246)
EYE_IMAGE_RIGHT = (263, 249, 390, 373, 374, 380, 381, 382, 362, 398, 384, 385, 386, 387, 388, 466)
NOSE_TIP = 1
MOUTH_IMAGE_LEFT = 61
MOUTH_IMAGE_RIGHT = 291
# The detector gives the mouth centre only; corners are put +-0.41 eye distances along the eye line, the mean
# half-width measured on 94 LFW faces.
MOUTH_HALF_WIDTH = 0.41
PAIR_MIN_IOU = 0.3
# The mesh's own face finder is the short-range model on a 128 px view of the whole frame, so it misses faces
# smaller than ~1/5 of the frame that the full-range detector finds; those get a mesh from a square crop of
# CROP_MESH_CONTEXT x the detector box, resized to CROP_MESH_SIZE px.
CROP_MESH_CONTEXT = 2.0
CROP_MESH_SIZE = 256


@dataclass(frozen=True)
class DetectorConfig:
    """Settings of a FaceDetector."""

    max_faces: int = 4
    """Most faces returned per frame (highest scores first)."""
    min_score: float = 0.5
    """Detector confidence below which a face is dropped."""
    static_images: bool = True
    """True for unrelated photos (extraction); False for video, where the mesh tracks between frames."""
    model: Literal["short", "full"] = "full"
    """"short": faces within ~2 m (webcam, faster); "full": also small/far faces (photos, video files)."""
    mesh: bool = True
    """Also run the 468-point face mesh (keypoints then come from the mesh)."""
    refine_landmarks: bool = False
    """Use mediapipe's attention mesh (sharper eyes/lips, slower); only the 468 mesh points are kept."""
    require_mesh: bool = False
    """Drop detections the mesh model cannot confirm (fewer false faces; needs mesh=True)."""

    def __post_init__(self) -> None:
        if isinstance(self.max_faces, bool) or not isinstance(self.max_faces, int) or self.max_faces < 1:
            raise FaceError(f"max_faces must be an integer >= 1, got {self.max_faces!r}")
        if not 0.0 <= float(self.min_score) <= 1.0:
            raise FaceError(f"min_score must lie in [0, 1], got {self.min_score!r}")
        if self.model not in ("short", "full"):
            raise FaceError(f"model must be 'short' or 'full', got {self.model!r}")
        if self.require_mesh and not self.mesh:
            raise FaceError("require_mesh needs mesh=True")


class FaceDetector:
    """Finds every face in an RGB uint8 frame: box, score, 5 keypoints and (if found) the 468-point mesh.

    Not thread-safe: mediapipe graphs keep state between calls; use one detector per thread.
    """

    def __init__(
        self,
        max_faces: int = 4,
        min_score: float = 0.5,
        *,
        static_images: bool = True,
        model: Literal["short", "full"] = "full",
        mesh: bool = True,
        refine_landmarks: bool = False,
        require_mesh: bool = False,
    ) -> None:
        self.config = DetectorConfig(
            max_faces=max_faces,
            min_score=min_score,
            static_images=static_images,
            model=model,
            mesh=mesh,
            refine_landmarks=refine_landmarks,
            require_mesh=require_mesh,
        )
        try:
            # Imported here so `import faces.detect` stays cheap for code that only needs the types.
            from mediapipe.python.solutions import face_detection, face_mesh
        except ImportError as exc:
            raise FaceError("mediapipe is not installed (pip install mediapipe==0.10.21)") from exc
        cfg = self.config
        self._detector = face_detection.FaceDetection(
            model_selection=1 if cfg.model == "full" else 0,
            min_detection_confidence=cfg.min_score,
        )
        # mediapipe ships no type information: its graphs are Any.
        self._mesh: Any = None
        self._crop_mesh: Any = None
        if cfg.mesh:
            self._mesh = face_mesh.FaceMesh(
                static_image_mode=cfg.static_images,
                max_num_faces=cfg.max_faces,
                refine_landmarks=cfg.refine_landmarks,
                min_detection_confidence=cfg.min_score,
                min_tracking_confidence=0.5,
            )
            # Built now although only faces too small for the whole-frame mesh need it: built on first use, its
            # graph's threads appeared in the middle of a live session (the hour's soak saw +2 threads a session
            # at minute 20, which no teardown can tell from a leak).
            self._crop_mesh = face_mesh.FaceMesh(
                static_image_mode=True,
                max_num_faces=1,
                refine_landmarks=cfg.refine_landmarks,
                min_detection_confidence=0.3,
            )
        self._closed = False
        # mediapipe frees a graph's native memory in close(): a detect() still running in another thread
        # (a session's detector thread when the session ends) would then crash the process.
        self._lock = threading.Lock()

    @classmethod
    def from_config(cls, config: DetectorConfig) -> FaceDetector:
        """A detector built from a DetectorConfig."""
        return cls(
            config.max_faces,
            config.min_score,
            static_images=config.static_images,
            model=config.model,
            mesh=config.mesh,
            refine_landmarks=config.refine_landmarks,
            require_mesh=config.require_mesh,
        )

    def detect(self, frame_rgb: ImageRGB) -> list[Face]:
        """Every face in *frame_rgb* (RGB uint8 HxWx3), highest score first, at most max_faces.

        Safe to call from any one thread at a time; close() from another thread waits for it.
        """
        with self._lock:
            if self._closed:
                raise FaceError("FaceDetector is closed")
            return self._detect(frame_rgb)

    def _detect(self, frame_rgb: ImageRGB) -> list[Face]:
        frame = np.ascontiguousarray(check_frame(frame_rgb, "frame_rgb"))
        height, width = frame.shape[:2]
        scale = np.array([width, height], dtype=np.float64)

        result = self._detector.process(frame)
        detections: list[tuple[float, Float64Array, Float64Array]] = []
        for det in result.detections or []:
            score = float(det.score[0]) if det.score else 0.0
            if score < self.config.min_score:
                continue
            rel = det.location_data.relative_bounding_box
            corners = np.array([rel.xmin, rel.ymin, rel.xmin + rel.width, rel.ymin + rel.height]) * np.tile(scale, 2)
            box: Float64Array = np.clip(corners, 0, np.tile(scale, 2))
            rel_kp = np.array([[k.x, k.y] for k in det.location_data.relative_keypoints], dtype=np.float64)
            detections.append((score, box, rel_kp * scale))
        detections.sort(key=lambda d: -d[0])
        detections = detections[: self.config.max_faces]
        if not detections:
            return []

        meshes: list[Float64Array] = []
        if self._mesh is not None:
            mesh_result = self._mesh.process(frame)
            for landmarks in mesh_result.multi_face_landmarks or []:
                pts = np.array([[p.x, p.y] for p in landmarks.landmark[:MESH_POINTS]], dtype=np.float64)
                meshes.append(pts * scale)
        pairs = _pair_meshes([d[1] for d in detections], meshes)

        faces = []
        for i, (score, box, det_kp) in enumerate(detections):
            mesh = meshes[pairs[i]] if i in pairs else self._mesh_in_crop(frame, box)
            if mesh is None and self.config.require_mesh:
                logger.debug("dropping a face at %s that the mesh model did not confirm", box.round())
                continue
            keypoints = keypoints_from_mesh(mesh) if mesh is not None else keypoints_from_detector(det_kp)
            faces.append(Face(box=box.astype(np.float32), score=score, keypoints=keypoints.astype(np.float32),
                              mesh=None if mesh is None else mesh.astype(np.float32)))
        return faces

    def _mesh_in_crop(self, frame: ImageRGB, box: Float64Array) -> Float64Array | None:
        """The mesh of the face in *box*, found on an upscaled crop around it (None if not found)."""
        if self._crop_mesh is None:
            return None
        centre = (box[:2] + box[2:]) / 2
        half = CROP_MESH_CONTEXT * max(box[2] - box[0], box[3] - box[1], 4.0) / 2
        scale = CROP_MESH_SIZE / (2 * half)
        # crop px = (frame px - origin) * scale
        origin = centre - half
        to_crop = np.array([[scale, 0.0, -origin[0] * scale], [0.0, scale, -origin[1] * scale]])
        crop = cv2.warpAffine(
            frame, to_crop, (CROP_MESH_SIZE, CROP_MESH_SIZE), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_CONSTANT
        )
        result = self._crop_mesh.process(crop)
        if not result.multi_face_landmarks:
            return None
        landmarks = result.multi_face_landmarks[0].landmark[:MESH_POINTS]
        pts = np.array([[p.x, p.y] for p in landmarks], dtype=np.float64) * CROP_MESH_SIZE
        mesh: Float64Array = pts / scale + origin
        mesh_box = np.concatenate([mesh.min(axis=0), mesh.max(axis=0)])
        return mesh if _box_iou(box, mesh_box) >= PAIR_MIN_IOU else None

    def close(self) -> None:
        """Release the mediapipe graphs; further detect() calls raise."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._close_graphs()

    def _close_graphs(self) -> None:
        for graph in (self._detector, self._mesh, self._crop_mesh):
            if graph is None:
                continue
            try:
                graph.close()
            except ValueError as exc:
                # mediapipe re-raises, at close, an error a graph run hit earlier; the graph is freed
                # anyway, and the other graphs must still be closed.
                logger.warning("mediapipe graph reported an earlier failure while closing: %s", exc)

    def __enter__(self) -> FaceDetector:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def keypoints_from_mesh(mesh: npt.ArrayLike) -> Float64Array:
    """The 5 keypoints from a (468,2) mesh: eye-contour centres, nose tip, mouth corners."""
    points = np.asarray(mesh, dtype=np.float64)
    return np.stack(
        [
            points[list(EYE_IMAGE_LEFT)].mean(axis=0),
            points[list(EYE_IMAGE_RIGHT)].mean(axis=0),
            points[NOSE_TIP],
            points[MOUTH_IMAGE_LEFT],
            points[MOUTH_IMAGE_RIGHT],
        ]
    )


def keypoints_from_detector(detector_keypoints: npt.ArrayLike) -> Float64Array:
    """The 5 keypoints from mediapipe detector keypoints (eyes, nose, mouth centre, ears; pixels)."""
    kp = np.asarray(detector_keypoints, dtype=np.float64)
    eye_left, eye_right, nose, mouth_centre = kp[0], kp[1], kp[2], kp[3]
    half = (eye_right - eye_left) * MOUTH_HALF_WIDTH
    return np.stack([eye_left, eye_right, nose, mouth_centre - half, mouth_centre + half])


def _box_iou(a: Float64Array, b: Float64Array) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return float(inter / union) if union > 0 else 0.0


def _pair_meshes(boxes: list[Float64Array], meshes: list[Float64Array]) -> dict[int, int]:
    """Greedy one-to-one pairing of detector boxes with meshes by box overlap (IoU >= PAIR_MIN_IOU)."""
    candidates = []
    for i, box in enumerate(boxes):
        for j, mesh in enumerate(meshes):
            mesh_box = np.concatenate([mesh.min(axis=0), mesh.max(axis=0)])
            iou = _box_iou(box, mesh_box)
            if iou >= PAIR_MIN_IOU:
                candidates.append((iou, i, j))
    pairs: dict[int, int] = {}
    used: set[int] = set()
    for _, i, j in sorted(candidates, reverse=True):
        if i not in pairs and j not in used:
            pairs[i] = j
            used.add(j)
    return pairs
