"""The PNG summary: input/output face pairs from every source, and the longest source's figures over time."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from evaluation.arrays import Floats, Image
from evaluation.evaluate import EvaluationResult, FrameRecord, Sample, SourceResult
from swapstream.atomic import atomic_path

SUMMARY_PNG = "summary.png"
GAP = 4  # px between crops in the grid
GRID_COLUMNS = 8
LABEL_HEIGHT = 16  # px of the label bar above each sample
LABEL_CHARS = 24


def _tile(sample: Sample) -> Image:
    """One sample: a label bar (clip and frame), the input crop, then the output crop below it."""
    size = sample.input_crop.shape[0]
    tile = np.full((LABEL_HEIGHT + 2 * size + GAP, size, 3), 255, dtype=np.uint8)
    label = sample.clip if sample.clip != sample.source or sample.index == 0 else f"{sample.clip} #{sample.index}"
    cv2.putText(tile, label[:LABEL_CHARS], (2, LABEL_HEIGHT - 5), cv2.FONT_HERSHEY_SIMPLEX, 0.35, (0, 0, 0), 1,
                cv2.LINE_AA)
    tile[LABEL_HEIGHT:LABEL_HEIGHT + size] = sample.input_crop
    tile[LABEL_HEIGHT + size + GAP:] = sample.output_crop
    return tile


def sample_grid(sources: list[SourceResult]) -> Image:
    """Every source's samples in reading order, GRID_COLUMNS to a row: input above output (RGB uint8)."""
    tiles = [_tile(sample) for result in sources for sample in result.samples]
    if not tiles:
        return np.full((8, 8, 3), 255, dtype=np.uint8)
    height, width = tiles[0].shape[:2]
    columns = min(GRID_COLUMNS, len(tiles))
    rows = -(-len(tiles) // columns)
    grid = np.full((rows * (height + GAP), columns * (width + GAP), 3), 255, dtype=np.uint8)
    for index, tile in enumerate(tiles):
        y, x = (index // columns) * (height + GAP), (index % columns) * (width + GAP)
        grid[y:y + height, x:x + width] = tile
    return grid


def _series(records: list[FrameRecord], side: str, name: str) -> Floats:
    values = []
    for record in records:
        measure = record.measured_in if side == "in" else record.measured_out
        values.append(getattr(measure, name) if measure is not None else np.nan)
    return np.asarray(values, dtype=np.float64)


def write_figure(result: EvaluationResult, out: Path) -> Path:
    """Write summary.png into `out` and return its path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    grid = sample_grid(result.sources)
    timeline = max(result.sources, key=lambda s: len(s.records))
    records = timeline.records
    frames = np.arange(len(records))
    grid_height = 12 * grid.shape[0] / grid.shape[1]
    figure = plt.figure(figsize=(12, grid_height + 6.5), dpi=100)
    layout = figure.add_gridspec(3, 2, height_ratios=[grid_height, 3, 3])
    pictures = figure.add_subplot(layout[0, :])
    pictures.imshow(grid)
    pictures.set_axis_off()
    pictures.set_title(f"{result.model.name} ({result.model.face_size} px, {result.config.models_dir}): "
                       "input above output, samples of every source", fontsize=10)
    plots = [figure.add_subplot(layout[1 + i // 2, i % 2]) for i in range(4)]
    for axis, name, label in ((plots[0], "mouth_opening", "mouth opening (inner-lip gap / face height)"),
                              (plots[1], "eye_opening", "eye opening (lid gap / eye width)")):
        axis.plot(frames, _series(records, "in", name), ".-", markersize=3, linewidth=0.8, label="input")
        axis.plot(frames, _series(records, "out", name), ".-", markersize=3, linewidth=0.8, label="output")
        axis.set_title(label, fontsize=9)
        axis.legend(fontsize=8)
    sharpness = [r.sharpness_ratio if r.sharpness_ratio is not None else np.nan for r in records]
    plots[2].plot(frames, sharpness, ".-", markersize=3, linewidth=0.8, color="tab:green")
    plots[2].axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    plots[2].set_title("sharpness out/in (Laplacian variance inside the face)", fontsize=9)
    if result.judge is not None:
        for attribute, label in (("distance_a", "to A's centroid"), ("distance_b", "to B's centroid")):
            values = [getattr(r, attribute) if getattr(r, attribute) is not None else np.nan for r in records]
            plots[3].plot(frames, values, ".-", markersize=3, linewidth=0.8, label=f"output {label}")
        plots[3].axhline(0.6, color="grey", linewidth=0.8, linestyle="--", label="same person below 0.6")
        plots[3].legend(fontsize=8)
        plots[3].set_title("identity judge (dlib descriptor distance)", fontsize=9)
    else:
        plots[3].text(0.5, 0.5, "identity not judged (no --b sources)", ha="center", va="center")
        plots[3].set_axis_off()
    for axis in plots:
        axis.set_xlabel(f"frame of {timeline.source.name}", fontsize=8)
        axis.grid(alpha=0.3)
    figure.tight_layout()
    path = out / SUMMARY_PNG
    with atomic_path(path) as tmp:
        figure.savefig(tmp, format="png")
    plt.close(figure)
    return path
