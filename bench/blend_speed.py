"""Per-stage cost of the swap pipeline on one process, against the echo (pass-through) pipeline.

Renders the same 640x480 synthetic video as bench/stream_latency.py, runs it through the server's FramePipeline
in echo mode (the pass-through baseline: decode-side work, disclosure mark) and in swap mode with a real model
and the real mediapipe detector, and prints the mean and p50 ms of every stage. It then times the blend
stage's parts (hull mask, colour transfer, paste-back; the mouth mask with --keep-mouth) on the faces the swap
run found, so a slow part shows.
No network, no codec: this isolates the pipeline's own work from WebRTC.

    python bench/blend_speed.py --models models/demo [--frames 48] [--repeat 3] [--color rct] [--feather 4] \
        [--keep-mouth]
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from stream_server.backends import load_models  # noqa: E402
from stream_server.batching import BatcherLane, InferenceBatcher  # noqa: E402
from stream_server.catalog import ModelCatalog  # noqa: E402
from stream_server.config import SessionOptions  # noqa: E402
from stream_server.pipeline import (  # noqa: E402
    KEPT_MOUTH_FEATHER,
    KEPT_MOUTH_MARGIN,
    KEPT_MOUTH_MARGIN_UP,
    FramePipeline,
    PipelineSettings,
)

logger = logging.getLogger("bench.blend_speed")


def _summary(values: list[float]) -> str:
    if not values:
        return "     -        -"
    return f"{np.mean(values):6.2f}   {np.percentile(values, 50):6.2f}"


def run_pipeline(pipeline: FramePipeline, frames: list[np.ndarray], options: SessionOptions, repeat: int,
                 fps: float) -> tuple[dict[str, list[float]], list[list[Any]]]:
    """Locate + render every frame `repeat` times; per-stage and total ms, and the faces of the last pass."""
    stages: dict[str, list[float]] = {"total": []}
    faces_seen: list[list[Any]] = []
    index = 0
    for rep in range(repeat):
        faces_seen = []
        for frame in frames:
            rgb = frame.copy()  # the server hands the pipeline a freshly decoded array each frame
            t0 = time.perf_counter()
            faces, located = pipeline.locate(rgb, options, index / fps)
            _, rendered = pipeline.render(rgb, faces, options)
            total = (time.perf_counter() - t0) * 1000
            index += 1
            faces_seen.append(faces)
            if rep == 0 and index <= 3:
                continue  # the first frames wait for the first detection and warm the model
            stages["total"].append(total)
            for stage, ms in {**located, **rendered}.items():
                stages.setdefault(stage, []).append(ms)
    return stages, faces_seen


def time_call(fn: Callable[[], Any], count: int) -> float:
    """Mean ms of `fn()` over `count` calls after one warm-up call."""
    fn()
    t0 = time.perf_counter()
    for _ in range(count):
        fn()
    return (time.perf_counter() - t0) * 1000 / count


def blend_parts(frames: list[np.ndarray], faces_per_frame: list[list[Any]], backend: Any, face_size: int,
                options: SessionOptions, count: int) -> dict[str, list[float]]:
    """Time the blend stage's parts on each frame's first face: hull mask, colour transfer, paste-back (and the
    mouth mask when the options keep the mouth)."""
    from faces.align import align_face, paste_back, transform_points
    from faces.color import transfer_color
    from faces.mask import hull_mask, mouth_mask

    parts: dict[str, list[float]] = {"hull_mask": [], "transfer_color": [], "paste_back": []}
    if options.keep_mouth:
        parts["mouth_mask"] = []
    for frame, faces in zip(frames, faces_per_frame):
        if not faces:
            continue
        face = faces[0]
        crop = align_face(frame, face, face_size)
        batch = crop.crop.astype(np.float32).transpose(2, 0, 1)[None] / 255.0
        outputs = backend.run(batch)
        swapped = (np.clip(outputs[0][0].transpose(1, 2, 0), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
        points = transform_points(face.points, crop.matrix)
        mask = hull_mask(points, face_size, options.feather)
        if len(outputs) > 1:
            mask = mask * np.clip(outputs[1][0][0], 0.0, 1.0)
        parts["hull_mask"].append(time_call(lambda: hull_mask(points, face_size, options.feather), count))
        if options.color != "none":
            parts["transfer_color"].append(
                time_call(lambda: transfer_color(swapped, crop.crop, options.color, mask=mask), count))
        parts["paste_back"].append(time_call(lambda: paste_back(frame, swapped, crop.matrix, mask), count))
        if options.keep_mouth:
            parts["mouth_mask"].append(time_call(
                lambda: mouth_mask(points, face_size, face_size * KEPT_MOUTH_MARGIN, face_size * KEPT_MOUTH_FEATHER,
                                   face_size * KEPT_MOUTH_MARGIN_UP), count))
    return parts


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo", help="folder with manifest.json")
    parser.add_argument("--model", default="a2b", help="swap model name or direction (default a2b)")
    parser.add_argument("--frames", type=int, default=48, help="distinct synthetic frames (default 48)")
    parser.add_argument("--repeat", type=int, default=3, help="passes over the frames (default 3)")
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate the timestamps follow (default 15)")
    parser.add_argument("--detect-every", type=int, default=3, help="as swapstream serve (default 3)")
    parser.add_argument("--feather", type=int, default=4, help="mask feather in crop px (default 4)")
    parser.add_argument("--color", default="rct", choices=("rct", "lct", "none"), help="colour transfer")
    parser.add_argument("--keep-mouth", action="store_true", help="the session option keep_mouth on")
    parser.add_argument("--part-calls", type=int, default=20, help="calls per frame when timing blend parts")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.frames < 4 or args.repeat < 1 or args.part_calls < 1:
        parser.error("--frames must be >= 4, --repeat and --part-calls >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")

    from faces.synthetic import IDENTITY_A, render_sequence

    logger.info("rendering %d synthetic 640x480 frames of identity A", args.frames)
    frames = [f.frame for f in render_sequence(IDENTITY_A, args.frames, size=(640, 480), seed=3, fps=args.fps)]
    manifest, backends = load_models(args.models)
    catalog = ModelCatalog(manifest.models, backends)
    info = catalog.resolve(args.model)
    backend = catalog.backends[info.name]
    options = SessionOptions(model=args.model, feather=args.feather, color=args.color, keep_mouth=args.keep_mouth)

    # The server's own way to the model: one session's lane into the inference batcher.
    batcher = InferenceBatcher({info.name: backend})
    results: dict[str, dict[str, list[float]]] = {}
    faces_seen: list[list[Any]] = []
    try:
        for mode in ("echo", "swap"):
            settings = PipelineSettings(mode=mode, detect_every=args.detect_every, disclosure_mark=True)
            pipeline = FramePipeline(settings, catalog, BatcherLane(batcher, session=mode))
            try:
                results[mode], seen = run_pipeline(pipeline, frames, options, args.repeat, args.fps)
            finally:
                pipeline.close()
            if mode == "swap":
                faces_seen = seen
    finally:
        batcher.close()
    found = sum(1 for faces in faces_seen if faces)
    parts = blend_parts(frames, faces_seen, backend, info.face_size, options, args.part_calls)

    print(f"\nmodel {info.name} ({info.face_size} px, {backend.provider}), {args.frames} frames x {args.repeat}, "
          f"faces found in {found}/{len(frames)} frames, color {args.color}, feather {args.feather}"
          + (", keep_mouth" if args.keep_mouth else ""))
    print(f"{'stage':<28} {'mean':>6}   {'p50':>6}  ms")
    print(f"{'echo: frame total':<28} {_summary(results['echo']['total'])}")
    for stage in ("detect", "align", "infer", "blend", "total"):
        label = "swap: tracking" if stage == "detect" else f"swap: {stage}"
        print(f"{label:<28} {_summary(results['swap'].get(stage, []))}")
    for part, values in parts.items():
        print(f"{'  blend part: ' + part:<28} {_summary(values)}")
    added = float(np.mean(results["swap"]["total"]) - np.mean(results["echo"]["total"]))
    print(f"{'swap - echo (mean)':<28} {added:6.2f}")
    if args.json:
        figures = {
            "echo": {k: float(np.mean(v)) for k, v in results["echo"].items()},
            "swap": {k: float(np.mean(v)) for k, v in results["swap"].items()},
            "blend_parts": {k: float(np.mean(v)) for k, v in parts.items() if v},
            "added_mean_ms": added,
        }
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
