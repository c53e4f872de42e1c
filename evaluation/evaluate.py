"""One evaluation run: every A source through the server's pipeline, measured frame by frame, then summed up.

Per frame (input = the frame sent, output = what the pipeline returned):
- the mesh measures of input and output (face_measure), paired where both have a face;
- sharpness ratio inside the pasted face, and the seam across its edge (regions, metrics);
- the judge's descriptors of input and output (identity), when B sources are given.
Then per source: expression following, pose difference, median sharpness ratio, seam, identity; and once per
run the temporal-stability check on a still clip made from A's first frame with a face.
"""

from __future__ import annotations

import logging
import time
from contextlib import closing
from dataclasses import asdict, dataclass, field
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from evaluation.arrays import Floats, Image
from evaluation.config import EvaluateConfig
from evaluation.errors import EvaluationError
from evaluation.face_measure import FaceMeasure, FaceMeasurer, euler_angles, pose_difference
from evaluation.identity import SAME_PERSON_DISTANCE, IdentityJudge, Separation, centroid, distances, separation
from evaluation.metrics import (
    crop_detail,
    following,
    mean_change,
    resolution_ceiling,
    seam_delta_e,
    sharpness_ratio,
)
from evaluation.regions import face_regions
from evaluation.sources import MediaSource, SourceFrame, iter_frames, open_source, spread_frames
from evaluation.swap_runner import PipelineMode, RenderedFrame, SwapModel, SwapRunner

log = logging.getLogger(__name__)

SAMPLE_SIZE = 128  # px, the side of each input/output crop kept for the PNG's grid
SAMPLE_CONTEXT = 1.6  # crop side over the face box's longer side
STILL_WARMUP = 2  # still-clip frames left out of the change figure while the detector and smoother settle
STILL_SEED = 0


@dataclass(eq=False)
class FrameRecord:
    """Everything measured on one frame of an A source."""

    clip: str
    index: int
    swapped: bool
    """The pipeline found and pasted a face."""
    measured_in: FaceMeasure | None
    measured_out: FaceMeasure | None
    sharpness_ratio: float | None
    seam: float | None
    resolution_ceiling: float | None = None
    """The sharpness ratio of the input's own face after the round trip through the model's crop size."""
    detail_in: float | None = None
    """The input face's Laplacian variance at the model's size (crop_detail)."""
    descriptor_in: Floats | None = None
    descriptor_out: Floats | None = None
    distance_a: float | None = None
    distance_b: float | None = None

    def to_json(self) -> dict[str, Any]:
        """The per-frame row of report.json."""
        row: dict[str, Any] = {"clip": self.clip, "index": self.index, "swapped": self.swapped}
        for side, measure in (("in", self.measured_in), ("out", self.measured_out)):
            row[f"mouth_{side}"] = _number(measure.mouth_opening if measure else None)
            row[f"eye_{side}"] = _number(measure.eye_opening if measure else None)
            row[f"pose_{side}"] = [_number(a, 2) for a in euler_angles(measure.rotation)] if measure else None
        row.update(sharpness_ratio=_number(self.sharpness_ratio), resolution_ceiling=_number(self.resolution_ceiling),
                   seam=_number(self.seam),
                   distance_a=_number(self.distance_a),
                   distance_b=_number(self.distance_b))
        return row


@dataclass(frozen=True, eq=False)
class Sample:
    """An input/output pair of face crops for the PNG's grid."""

    source: str
    clip: str
    index: int
    input_crop: Image
    output_crop: Image


@dataclass(eq=False)
class SourceResult:
    """One A source's frames and figures."""

    source: MediaSource
    records: list[FrameRecord]
    samples: list[Sample]
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(eq=False)
class EvaluationResult:
    """Everything the report writers need."""

    config: EvaluateConfig
    model: SwapModel
    detect_every: int
    sources: list[SourceResult]
    temporal: dict[str, Any] | None
    judge: dict[str, Any] | None
    seconds: float


def _number(value: float | None, digits: int = 5) -> float | None:
    if value is None or not np.isfinite(value):
        return None
    return float(round(float(value), digits))


def _face_box(measure: FaceMeasure | None, rendered: RenderedFrame) -> Floats | None:
    if measure is not None:
        return measure.box
    return np.asarray(rendered.faces[0].box, dtype=np.float64) if rendered.faces else None


def _sample_crop(frame: Image, box: Floats) -> Image:
    """A square crop around `box`, SAMPLE_CONTEXT times its longer side, resized to SAMPLE_SIZE."""
    x0, y0, x1, y1 = (float(v) for v in box)
    side = SAMPLE_CONTEXT * max(x1 - x0, y1 - y0, 1.0)
    scale = SAMPLE_SIZE / side
    matrix = np.array([[scale, 0.0, SAMPLE_SIZE / 2 - scale * (x0 + x1) / 2],
                       [0.0, scale, SAMPLE_SIZE / 2 - scale * (y0 + y1) / 2]])
    crop = cv2.warpAffine(frame, matrix, (SAMPLE_SIZE, SAMPLE_SIZE), flags=cv2.INTER_AREA,
                          borderMode=cv2.BORDER_CONSTANT)
    return np.asarray(crop, dtype=np.uint8)


class FrameMeasurer:
    """Measures one (input, output) pair: mesh, regions, sharpness, seam, descriptors."""

    def __init__(self, measurer: FaceMeasurer, judge: IdentityJudge | None, face_size: int, feather: int) -> None:
        self.measurer = measurer
        self.judge = judge
        self.face_size = face_size
        self.feather = feather

    def record(self, item: SourceFrame, rendered: RenderedFrame) -> tuple[FrameRecord, Floats | None]:
        frame, output = item.frame, rendered.output
        measured_in = self.measurer.measure(frame)
        measured_out = self.measurer.measure(output)
        regions = (face_regions(rendered.faces[0], self.face_size, self.feather, frame.shape)
                   if rendered.faces else None)
        record = FrameRecord(
            clip=item.clip, index=item.index, swapped=bool(rendered.faces), measured_in=measured_in,
            measured_out=measured_out,
            sharpness_ratio=sharpness_ratio(frame, output, regions.inner) if regions else None,
            seam=seam_delta_e(frame, output, regions) if regions else None,
            resolution_ceiling=(resolution_ceiling(frame, rendered.faces[0], self.face_size, regions.inner)
                                if regions else None),
            detail_in=crop_detail(frame, measured_in.mesh, self.face_size) if measured_in else None,
        )
        box_in = _face_box(measured_in, rendered)
        if self.judge is not None:
            record.descriptor_in = self.judge.describe(frame, box_in)
            record.descriptor_out = self.judge.describe(output, _face_box(measured_out, rendered) if measured_out
                                                        else box_in)
        return record, box_in


def evaluate_source(source: MediaSource, runner: SwapRunner, measure: FrameMeasurer,
                    config: EvaluateConfig) -> tuple[SourceResult, Image | None]:
    """Run one A source through the pipeline and measure every frame; also returns its first frame with a face."""
    fps = source.fps / config.every if source.kind == "video" else source.fps
    total = source.frame_count if source.kind == "photos" else -(-source.frame_count // config.every)
    if config.max_frames and source.kind == "video":
        total = min(total, config.max_frames)
    records: list[FrameRecord] = []
    samples: list[Sample] = []  # small crops of every frame with a face: whole frames would not fit long clips
    first_face: Image | None = None
    clip_run = None
    clip_name = None
    progress = tqdm(total=total, desc=f"evaluate {source.name}", unit="frame", disable=None if config.progress
                    else True)
    try:
        for item in iter_frames(source, config.every, config.max_frames):
            if item.clip != clip_name:
                if clip_run is not None:
                    clip_run.close()
                clip_run, clip_name = runner.clip("swap", fps), item.clip
            assert clip_run is not None
            rendered = clip_run.process(item.frame)
            record, box = measure.record(item, rendered)
            records.append(record)
            if box is not None:
                samples.append(Sample(source.name, item.clip, item.index, _sample_crop(item.frame, box),
                                      _sample_crop(rendered.output, box)))
                if first_face is None:
                    first_face = item.frame
            progress.update(1)
    finally:
        progress.close()
        if clip_run is not None:
            clip_run.close()
    if not records:
        raise EvaluationError(f"source {source.path} has no frames")
    kept = [samples[round(i)] for i in np.linspace(0, len(samples) - 1, min(config.samples, len(samples)))]
    return SourceResult(source, records, kept), first_face


def summarise(records: list[FrameRecord]) -> dict[str, Any]:
    """A source's figures (everything but identity) from its frame records."""
    paired = [(r.measured_in, r.measured_out) for r in records if r.measured_in and r.measured_out]
    mouth = following([i.mouth_opening for i, _ in paired], [o.mouth_opening for _, o in paired])
    eye = following([i.eye_opening for i, _ in paired], [o.eye_opening for _, o in paired])
    differences = np.array([pose_difference(i.rotation, o.rotation) for i, o in paired]).reshape(-1, 4)
    pose = {}
    for column, angle in enumerate(("yaw", "pitch", "roll", "total")):
        finite = np.abs(differences[:, column][np.isfinite(differences[:, column])])
        pose[f"{angle}_mean_abs_diff_deg"] = _number(float(finite.mean()) if finite.size else None, 2)
    sharp = [r.sharpness_ratio for r in records if r.sharpness_ratio is not None]
    ceiling = [r.resolution_ceiling for r in records if r.resolution_ceiling is not None]
    seams = [r.seam for r in records if r.seam is not None]
    return {
        "frames": len(records),
        "swapped_frames": sum(r.swapped for r in records),
        "measured_pairs": len(paired),
        "mouth": _following_json(mouth),
        "eye": _following_json(eye),
        "pose": pose,
        "sharpness": {"median_ratio": _number(float(np.median(sharp)) if sharp else None, 3),
                      "p10_ratio": _number(float(np.percentile(sharp, 10)) if sharp else None, 3),
                      "p90_ratio": _number(float(np.percentile(sharp, 90)) if sharp else None, 3),
                      "frames": len(sharp),
                      "resolution_ceiling": _number(float(np.median(ceiling)) if ceiling else None, 3)},
        "seam": {"mean_delta_e": _number(float(np.mean(seams)) if seams else None, 2),
                 "p90_delta_e": _number(float(np.percentile(seams, 90)) if seams else None, 2),
                 "frames": len(seams)},
    }


def _following_json(result: Any) -> dict[str, Any]:
    data = asdict(result)
    data["correlation"] = _number(data["correlation"], 3)
    data["range_ratio"] = _number(data["range_ratio"], 3)
    data["input_range"] = [_number(v) for v in data["input_range"]]
    data["output_range"] = [_number(v) for v in data["output_range"]]
    return data


def identity_groups(result: SourceResult) -> dict[str, list[FrameRecord]]:
    """Frames that show one A person: a whole video, or each photo on its own."""
    groups: dict[str, list[FrameRecord]] = {}
    for record in result.records:
        key = result.source.name if result.source.kind == "video" else record.clip
        groups.setdefault(key, []).append(record)
    return groups


def judge_source(result: SourceResult, b_descriptors: list[Floats]) -> dict[str, Any]:
    """Identity figures of one source: per frame, the output's distance to A's centroid and to B's."""
    centre_b = centroid(b_descriptors)
    separations: list[Separation] = []
    nearer_b: list[bool] = []
    nearer_b_separable: list[bool] = []
    input_to_b: list[float] = []
    for records in identity_groups(result).values():
        a_descriptors = [r.descriptor_in for r in records if r.descriptor_in is not None]
        if not a_descriptors:
            continue
        centre_a = centroid(a_descriptors)
        split = separation(a_descriptors, b_descriptors)
        separations.append(split)
        input_to_b += list(distances(a_descriptors, centre_b))
        for record in records:
            if record.descriptor_out is None:
                continue
            record.distance_a = float(np.linalg.norm(record.descriptor_out - centre_a))
            record.distance_b = float(np.linalg.norm(record.descriptor_out - centre_b))
            nearer_b.append(record.distance_b < record.distance_a)
            if split.separable:
                nearer_b_separable.append(nearer_b[-1])
    to_a = [r.distance_a for r in result.records if r.distance_a is not None]
    to_b = [r.distance_b for r in result.records if r.distance_b is not None]
    separable = sum(s.separable for s in separations)
    return {
        "frames_judged": len(to_a),
        "groups": len(separations),
        "groups_separable": separable,
        "a_nearer_a_min": _number(min((s.a_nearer_a for s in separations if s.a_nearer_a is not None),
                                      default=None), 3),
        "b_nearer_b_min": _number(min((s.b_nearer_b for s in separations), default=None), 3),
        "meaningful": bool(nearer_b_separable),
        "share_nearer_b": _number(float(np.mean(nearer_b)) if nearer_b else None, 3),
        "share_nearer_b_separable": _number(float(np.mean(nearer_b_separable)) if nearer_b_separable else None, 3),
        "mean_distance_a": _number(float(np.mean(to_a)) if to_a else None, 3),
        "mean_distance_b": _number(float(np.mean(to_b)) if to_b else None, 3),
        "input_mean_distance_b": _number(float(np.mean(input_to_b)) if input_to_b else None, 3),
    }


@dataclass(frozen=True, eq=False)
class Reference:
    """What the evaluation knows of B: the judge's descriptors and each face's detail at the model's size."""

    descriptors: list[Floats]
    details: list[float]


def describe_reference(sources: list[MediaSource], count: int, measurer: FaceMeasurer, judge: IdentityJudge,
                       face_size: int) -> Reference:
    """B's descriptors and crop details from about `count` frames spread over B's sources (the mediapipe box as
    the judge's hint)."""
    descriptors: list[Floats] = []
    details: list[float] = []
    for item in spread_frames(sources, count):
        measured = measurer.measure(item.frame)
        descriptor = judge.describe(item.frame, measured.box if measured else None)
        if descriptor is not None:
            descriptors.append(descriptor)
        detail = crop_detail(item.frame, measured.mesh, face_size) if measured else None
        if detail is not None:
            details.append(detail)
    if len(descriptors) < 2:
        names = ", ".join(str(s.path) for s in sources)
        raise EvaluationError(f"--b {names}: the judge found a face in {len(descriptors)} frame(s); it needs 2 or "
                              "more to know B")
    return Reference(descriptors, details)


def sharpness_ceiling(records: list[FrameRecord], b_details: list[float]) -> dict[str, Any]:
    """What a perfect swap could score on sharpness: B's detail over the input's (both at the model's size),
    times the model size's own ceiling; None where either is unknown."""
    details_in = [r.detail_in for r in records if r.detail_in is not None]
    ceiling = [r.resolution_ceiling for r in records if r.resolution_ceiling is not None]
    detail_in = float(np.median(details_in)) if details_in else 0.0
    b_ratio = float(np.median(b_details)) / detail_in if b_details and detail_in > 1e-9 else None
    overall = b_ratio * float(np.median(ceiling)) if b_ratio is not None and ceiling else None
    return {"b_detail_ratio": _number(b_ratio, 3), "ceiling": _number(overall, 3)}


def temporal_stability(still: Image, source: MediaSource, runner: SwapRunner,
                       config: EvaluateConfig) -> dict[str, Any]:
    """Mean frame-to-frame change inside the face on a still clip with sensor noise: swap vs echo pipeline."""
    rng = np.random.default_rng(STILL_SEED)
    frames = [np.clip(still + rng.normal(0.0, config.still_noise, still.shape), 0, 255).astype(np.uint8)
              for _ in range(config.still_frames)]
    outputs: dict[str, list[RenderedFrame]] = {}
    modes: tuple[PipelineMode, ...] = ("swap", "echo")
    for mode in modes:
        with runner.clip(mode, source.fps) as clip_run:
            outputs[mode] = [clip_run.process(frame) for frame in frames]
    located = next((r.faces[0] for r in outputs["swap"][STILL_WARMUP:] if r.faces), None)
    regions = face_regions(located, runner.model.face_size, config.feather, still.shape) if located else None
    base = {"source": source.name, "frames": config.still_frames, "warmup_frames": STILL_WARMUP,
            "noise_sigma": config.still_noise}
    if regions is None:
        return {**base, "swap_mean_change": None, "echo_mean_change": None, "ratio": None,
                "note": "the pipeline found no face in the still clip"}
    swap = mean_change([r.output for r in outputs["swap"][STILL_WARMUP:]], regions.inner)
    echo = mean_change([r.output for r in outputs["echo"][STILL_WARMUP:]], regions.inner)
    return {**base, "swap_mean_change": _number(swap, 3), "echo_mean_change": _number(echo, 3),
            "ratio": _number(swap / echo if echo > 1e-9 else None, 3)}


def run_evaluation(config: EvaluateConfig) -> EvaluationResult:
    """Evaluate the configured model on every A source (and against B when given)."""
    started = time.perf_counter()
    a_sources = [open_source(path) for path in config.a_sources]
    b_sources = [open_source(path) for path in config.b_sources]
    with closing(SwapRunner(config.models_dir, config.model, config.color, config.feather,
                            config.detect_every, keep_mouth=config.keep_mouth)) as runner:
        log.info("evaluating %s (%d px, %s) on %d source(s)", runner.model.name, runner.model.face_size,
                 runner.model.provider, len(a_sources))
        judge = IdentityJudge() if b_sources else None
        results: list[SourceResult] = []
        temporal = None
        judge_info = None
        with FaceMeasurer() as measurer:
            reference = (describe_reference(b_sources, config.b_frames, measurer, judge, runner.model.face_size)
                         if judge else Reference([], []))
            b_descriptors = reference.descriptors
            frame_measurer = FrameMeasurer(measurer, judge, runner.model.face_size, config.feather)
            still: tuple[Image, MediaSource] | None = None
            for source in a_sources:
                result, first_face = evaluate_source(source, runner, frame_measurer, config)
                result.summary = summarise(result.records)
                result.summary["sharpness"].update(sharpness_ceiling(result.records, reference.details))
                if judge is not None:
                    result.summary["identity"] = judge_source(result, b_descriptors)
                results.append(result)
                if still is None and first_face is not None:
                    still = (first_face, source)
        if config.still_frames and still is not None:
            temporal = temporal_stability(still[0], still[1], runner, config)
        if judge is not None:
            judge_info = {"name": judge.name, "b_sources": [str(s.path) for s in b_sources],
                          "b_frames": len(b_descriptors), "described": judge.described, "used_mediapipe_box":
                          judge.used_hint, "same_person_distance": SAME_PERSON_DISTANCE}
    return EvaluationResult(config, runner.model, runner.detect_every, results, temporal, judge_info,
                            time.perf_counter() - started)
