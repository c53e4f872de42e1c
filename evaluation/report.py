"""report.json and the one-screen text summary of an evaluation."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from evaluation.evaluate import EvaluationResult
from swapstream.atomic import atomic_write_text

REPORT_JSON = "report.json"
SUMMARY_TXT = "summary.txt"
LABEL_WIDTH = 30
COLUMN_WIDTH = 16


def report_json(result: EvaluationResult) -> dict[str, Any]:
    """The whole report as JSON-able data (undefined figures are null)."""
    config = result.config
    return {
        "model": {"models_dir": str(config.models_dir), "name": result.model.name,
                  "direction": result.model.direction, "face_size": result.model.face_size,
                  "provider": result.model.provider},
        "pipeline": {"detect_every": result.detect_every, "color": config.color, "feather": config.feather,
                     "keep_mouth": config.keep_mouth, "faces_per_frame": 1, "disclosure_mark": True},
        "settings": {"every": config.every, "max_frames": config.max_frames, "b_frames": config.b_frames,
                     "still_frames": config.still_frames, "still_noise": config.still_noise},
        "sources": [{"name": s.source.name, "path": str(s.source.path), "kind": s.source.kind, **s.summary,
                     "per_frame": [r.to_json() for r in s.records]} for s in result.sources],
        "temporal_stability": result.temporal,
        "judge": result.judge,
        "seconds": round(result.seconds, 1),
    }


def _format(value: Any, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _span(low_high: Sequence[Any], spec: str) -> str:
    return f"{_format(low_high[0], spec)}..{_format(low_high[1], spec)}"


def _column_name(path: Path) -> str:
    """The source's name as a column heading: without its suffix where the whole name is too long."""
    name = path.name if len(path.name) < COLUMN_WIDTH else path.stem
    return name[:COLUMN_WIDTH - 1]


def _rows(summary: dict[str, Any]) -> list[tuple[str, str]]:
    mouth, eye, pose, sharp, seam = (summary[k] for k in ("mouth", "eye", "pose", "sharpness", "seam"))
    rows = [
        ("frames: sent / swapped / paired", f"{summary['frames']}/{summary['swapped_frames']}/"
                                            f"{summary['measured_pairs']}"),
        ("mouth opening: correlation", _format(mouth["correlation"], ".2f")),
        ("  range ratio out/in", _format(mouth["range_ratio"], ".2f")),
        ("  in p5..p95", _span(mouth["input_range"], ".3f")),
        ("  out p5..p95", _span(mouth["output_range"], ".3f")),
        ("eye opening: correlation", _format(eye["correlation"], ".2f")),
        ("  range ratio out/in", _format(eye["range_ratio"], ".2f")),
        ("head pose in->out deg y/p/r", "/".join(_format(pose[f"{a}_mean_abs_diff_deg"], ".1f")
                                                 for a in ("yaw", "pitch", "roll"))),
        ("  whole rotation, deg", _format(pose["total_mean_abs_diff_deg"], ".1f")),
        ("sharpness out/in: median", _format(sharp["median_ratio"], ".2f")),
        ("  p10..p90", _span((sharp["p10_ratio"], sharp["p90_ratio"]), ".2f")),
        # what a perfect swap could score: the model's size and B's own detail each cap it (evaluation.metrics)
        ("  ceiling: size x B = both", f"{_format(sharp.get('resolution_ceiling'), '.2f')}x"
                                       f"{_format(sharp.get('b_detail_ratio'), '.2f')}="
                                       f"{_format(sharp.get('ceiling'), '.2f')}"),
        ("seam dE76 across the edge: mean", _format(seam["mean_delta_e"], ".1f")),
        ("  p90", _format(seam["p90_delta_e"], ".1f")),
    ]
    identity = summary.get("identity")
    if identity is not None:
        separable = f"{identity['groups_separable']}/{identity['groups']}"
        rows += [
            ("identity: nearer B", _format(identity["share_nearer_b"], ".0%")),
            ("  nearer B, separable pairs", _format(identity["share_nearer_b_separable"], ".0%")
             if identity["meaningful"] else "n/m"),
            ("  judge separates A/B", separable),
            ("  d(out,A) / d(out,B)", f"{_format(identity['mean_distance_a'], '.2f')} / "
                                      f"{_format(identity['mean_distance_b'], '.2f')}"),
            ("  d(in,B)", _format(identity["input_mean_distance_b"], ".2f")),
        ]
    return rows


def summary_text(result: EvaluationResult) -> str:
    """The one-screen summary: a column per A source, then the still-clip and judge lines."""
    model, config = result.model, result.config
    minutes, seconds = divmod(int(round(result.seconds)), 60)
    lines = [
        f"swapstream evaluate: {config.models_dir} {model.name} ({model.direction}, {model.face_size} px, "
        f"{model.provider}) in {minutes}m{seconds:02d}s",
        f"server pipeline: detect every {result.detect_every}, colour {config.color}, feather {config.feather}, "
        + ("A's own mouth kept, " if config.keep_mouth else "") + "one face per frame",
        "",
    ]
    columns = [_column_name(s.source.path) for s in result.sources]
    lines.append(" " * LABEL_WIDTH + "".join(c.rjust(COLUMN_WIDTH) for c in columns))
    table = [_rows(s.summary) for s in result.sources]
    for row_index, (label, _) in enumerate(table[0]):
        cells = [rows[row_index][1] for rows in table]
        lines.append(label.ljust(LABEL_WIDTH) + "".join(c.rjust(COLUMN_WIDTH) for c in cells))
    lines.append("")
    temporal = result.temporal
    if temporal is None:
        lines.append("temporal stability: skipped" + (" (--still-frames 0)" if not config.still_frames
                                                      else " (no A frame with a face)"))
    elif temporal.get("note"):
        lines.append(f"temporal stability: {temporal['note']}")
    else:
        lines.append(f"temporal stability: a still frame of {temporal['source']} sent {temporal['frames']} times "
                     f"with sensor noise {temporal['noise_sigma']:g}:")
        lines.append(f"  mean change per frame inside the face, swap {temporal['swap_mean_change']:.2f} vs echo "
                     f"{temporal['echo_mean_change']:.2f} grey levels (x{_format(temporal['ratio'], '.2f')})")
    judge = result.judge
    if judge is None:
        lines.append("identity: not judged (no --b sources)")
    else:
        lines.append(f"identity judge: {judge['name']}")
        lines.append(f"  B: {judge['b_frames']} frames of {', '.join(Path(p).name for p in judge['b_sources'])}; "
                     f"dlib's finder missed {judge['used_mediapipe_box']} of {judge['described']} faces (given the "
                     "mediapipe box)")
        unseparated = [s.source.name for s in result.sources if s.summary["identity"]["groups_separable"] == 0]
        if unseparated:
            lines.append(f"  n/m: the judge cannot separate A from B on their own frames for {', '.join(unseparated)}:")
            lines.append("  the identity figure is not meaningful there")
    return "\n".join(lines) + "\n"


def write_report(result: EvaluationResult, out: Path) -> tuple[Path, Path]:
    """Write report.json and summary.txt into `out`; returns their paths."""
    out.mkdir(parents=True, exist_ok=True)
    json_path = atomic_write_text(out / REPORT_JSON, json.dumps(report_json(result), indent=1) + "\n")
    text_path = atomic_write_text(out / SUMMARY_TXT, summary_text(result))
    return json_path, text_path
