"""FramePipeline on synthetic faces with the real mediapipe detector, a real ONNX Runtime model and the real batcher."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from stream_server.batching import BatcherLane, InferenceBatcher
from stream_server.catalog import ModelCatalog
from stream_server.config import SessionOptions
from stream_server.backends import load_backend
from stream_server.frames import StageTimes
from stream_server.mark import mark_box
from stream_server.pipeline import FramePipeline, PipelineSettings
from swapstream.manifest import read_manifest
from swapstream.reserved_corner import RESERVED_CORNER_HEIGHT, RESERVED_CORNER_WIDTH
from tests.fixtures.server import Clip

pytestmark = pytest.mark.timeout(120)


class CountingDetector:
    """The real FaceDetector, counting its calls."""

    def __init__(self, max_faces: int) -> None:
        from faces.detect import FaceDetector

        self.detector = FaceDetector(max_faces=max_faces, static_images=False)
        self.calls = 0

    def detect(self, frame: np.ndarray) -> list[Any]:
        self.calls += 1
        return self.detector.detect(frame)

    def close(self) -> None:
        self.detector.close()


@pytest.fixture(scope="module")
def models(tiny_models_dir: Path) -> Iterator[tuple[ModelCatalog, InferenceBatcher]]:
    manifest = read_manifest(tiny_models_dir)
    backends = {e.name: load_backend(e, tiny_models_dir) for e in manifest.of_kind("swap")}
    batcher = InferenceBatcher(backends)
    catalog = ModelCatalog(manifest.of_kind("swap"), backends)
    yield catalog, batcher
    batcher.close()
    catalog.close()


def _pipeline(models: tuple[ModelCatalog, InferenceBatcher], detectors: list[CountingDetector],
              **settings: Any) -> FramePipeline:
    catalog, batcher = models

    def make_detector(max_faces: int) -> CountingDetector:
        detectors.append(CountingDetector(max_faces))
        return detectors[-1]

    lane = BatcherLane(batcher, session=uuid.uuid4().hex)
    pipeline = FramePipeline(PipelineSettings(**settings), catalog, lane, detector_factory=make_detector)
    if isinstance(detectors, MadeDetectors):
        detectors.pipelines.append(pipeline)
    return pipeline


def _process(pipeline: FramePipeline, frame: np.ndarray, options: SessionOptions,
             timestamp_s: float) -> tuple[np.ndarray, StageTimes, int]:
    """Both stages on one frame, as the scheduler runs them: the new frame, stage times, faces swapped."""
    faces, located_ms = pipeline.locate(frame, options, timestamp_s)
    out, rendered_ms = pipeline.render(frame, faces, options)
    return out, {**located_ms, **rendered_ms}, len(faces) if pipeline.swap_enabled(options) else 0


class MadeDetectors(list):  # type: ignore[type-arg]
    """The detectors a test's pipelines made, and those pipelines (closed first: they own detector threads)."""

    def __init__(self) -> None:
        super().__init__()
        self.pipelines: list[FramePipeline] = []


@pytest.fixture
def detectors() -> Iterator[MadeDetectors]:
    made = MadeDetectors()
    yield made
    for pipeline in made.pipelines:
        pipeline.close()
    for detector in made:
        detector.close()


def _diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.abs(a.astype(np.int16) - b.astype(np.int16)).mean(axis=2)


def test_swap_changes_the_face_only(models: Any, detectors: list, server_clip: Clip) -> None:
    pipeline = _pipeline(models, detectors)
    frame = server_clip.frames[0]
    out, stage_ms, faces = _process(pipeline, frame.copy(), SessionOptions(), 0.0)
    assert set(stage_ms) == {"detect", "align", "infer", "blend"}
    assert faces == 1
    inside, outside = server_clip.face_masks(0, shrink=4, grow=3)
    h, w = frame.shape[:2]
    mx0, my0, mx1, my1 = mark_box(w, h)
    outside[my0:my1, mx0:mx1] = False
    diff = _diff(out, frame)
    assert diff[inside].mean() > 40, "the face was not swapped"
    assert diff[outside].max() == 0, "pixels outside the face changed"
    assert diff[my0:my1, mx0:mx1].mean() > 20, "no disclosure mark at the bottom-right"
    cw, ch = RESERVED_CORNER_WIDTH, RESERVED_CORNER_HEIGHT
    assert np.array_equal(out[:ch, :cw], frame[:ch, :cw])
    pipeline.close()


def test_keep_mouth_leaves_the_speakers_lips_and_swaps_the_rest(models: Any, detectors: list,
                                                               server_clip: Clip) -> None:
    import cv2

    from faces.expression import OUTER_LIP

    pipeline = _pipeline(models, detectors, disclosure_mark=False)
    frame = server_clip.frames[2]
    keep = SessionOptions(keep_mouth=True)
    faces, _ = pipeline.locate(frame.copy(), keep, 0.0)
    assert len(faces) == 1 and faces[0].mesh is not None
    kept, _ = pipeline.render(frame.copy(), faces, keep)
    swapped, _ = pipeline.render(frame.copy(), faces, SessionOptions())
    hull = np.zeros(frame.shape[:2], np.uint8)
    cv2.fillConvexPoly(hull, cv2.convexHull(np.round(faces[0].mesh[list(OUTER_LIP)]).astype(np.int32)), 1)
    lips = cv2.erode(hull, np.ones((5, 5), np.uint8)) > 0
    near_mouth = cv2.dilate(hull, np.ones((31, 31), np.uint8)) > 0
    inside, _ = server_clip.face_masks(2, shrink=4, grow=3)
    rest = inside & ~near_mouth
    assert lips.sum() > 20 and rest.sum() > 500
    assert _diff(swapped, frame)[lips].mean() > 20, "without keep_mouth the swap should draw the lips"
    assert _diff(kept, frame)[lips].mean() < 2, "keep_mouth swapped the speaker's lips"
    assert _diff(kept, frame)[rest].mean() > 40, "keep_mouth left the rest of the face unswapped"
    assert _diff(kept, swapped)[rest].max() <= 1, "keep_mouth changed the face away from the mouth"
    pipeline.close()


def test_echo_is_the_same_pipeline_with_swap_off(models: Any, detectors: list, server_clip: Clip) -> None:
    frame = server_clip.frames[1]
    marked = _pipeline(models, detectors, mode="echo")
    out, stage_ms, _ = _process(marked, frame.copy(), SessionOptions(), 0.0)
    assert stage_ms == {} and not detectors, "echo ran detection"
    h, w = frame.shape[:2]
    mx0, my0, mx1, my1 = mark_box(w, h)
    changed = _diff(out, frame) > 0
    assert changed[my0:my1, mx0:mx1].any()
    changed[my0:my1, mx0:mx1] = False
    assert not changed.any(), "echo changed pixels outside the mark"
    plain = _pipeline(models, detectors, mode="echo", disclosure_mark=False)
    assert np.array_equal(_process(plain, frame.copy(), SessionOptions(), 0.0)[0], frame)
    swap_off = _pipeline(models, detectors, disclosure_mark=False)
    assert np.array_equal(_process(swap_off, frame.copy(), SessionOptions(swap=False), 0.0)[0], frame)


def test_detect_every_n_tracks_the_face_in_between(models: Any, detectors: list, server_clip: Clip) -> None:
    pipeline = _pipeline(models, detectors, detect_every=3, disclosure_mark=False)
    for index in range(6):
        frame = server_clip.frames[index]
        out, _, _ = _process(pipeline, frame.copy(), SessionOptions(), index / server_clip.fps)
        inside, _ = server_clip.face_masks(index, shrink=5, grow=3)
        assert _diff(out, frame)[inside].mean() > 40, f"frame {index}: face not swapped"
    # The first frame waits for a detection; later ones start one every 3 frames in the detector's own thread.
    pipeline.close()  # waits for a detection in flight
    assert 1 <= detectors[0].calls <= 3, f"detector ran {detectors[0].calls} times on 6 frames with --detect-every 3"


def test_every_face_up_to_the_maximum_and_boxes(models: Any, detectors: list, server_clip: Clip) -> None:
    pair = np.concatenate([server_clip.frames[0], server_clip.frames[4]], axis=1)  # two people side by side
    two = _pipeline(models, detectors, max_faces=2, disclosure_mark=False)
    assert _process(two, pair.copy(), SessionOptions(), 0.0)[2] == 2
    one = _pipeline(models, detectors, max_faces=1, disclosure_mark=False)
    assert _process(one, pair.copy(), SessionOptions(), 0.0)[2] == 1
    boxed, _, _ = _process(two, pair.copy(), SessionOptions(swap=False, boxes=True), 0.1)
    green = (boxed[:, :, 1] > 200) & (boxed[:, :, 0] < 60) & (boxed[:, :, 2] < 60)
    assert green[:, :320].sum() > 100 and green[:, 320:].sum() > 100, "a box per face"
