"""`swapstream evaluate` end to end: the tiny exported model through the server's pipeline, report files checked."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from swapstream.cli import main
from tests.fixtures.faces import SyntheticVideo

VIDEO_FRAMES = 8


@pytest.mark.slow  # ~20 s on 2 busy cores, after the shared tiny-model fixtures
def test_evaluate_writes_report_summary_and_figure(exported_models: Path, synthetic_video_a: Path,
                                                    synthetic_clip_b: SyntheticVideo, astronaut: np.ndarray,
                                                    tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    photo = tmp_path / "astronaut.png"
    cv2.imwrite(str(photo), cv2.cvtColor(astronaut, cv2.COLOR_RGB2BGR))
    out = tmp_path / "report"
    code = main(["evaluate", "--models", str(exported_models), "--a", str(synthetic_video_a), str(photo),
                 "--b", str(synthetic_clip_b.path), "--out", str(out), "--every", "4",
                 "--max-frames", str(VIDEO_FRAMES), "--b-frames", "8", "--still-frames", "6"])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert report["model"]["name"] == "swap_a2b" and report["model"]["face_size"] == 64
    video, still_photo = report["sources"]
    assert (video["kind"], video["frames"], len(video["per_frame"])) == ("video", VIDEO_FRAMES, VIDEO_FRAMES)
    assert video["swapped_frames"] >= VIDEO_FRAMES - 1 and video["measured_pairs"] >= VIDEO_FRAMES // 2
    for feature in ("mouth", "eye"):
        assert -1.0 <= video[feature]["correlation"] <= 1.0
        assert video[feature]["range_ratio"] > 0.0
    assert all(0.0 <= value < 90.0 for value in video["pose"].values())
    sharpness = video["sharpness"]
    assert 0.0 < sharpness["median_ratio"] < 10.0
    # a round trip through the model's crop cannot add detail (cubic resampling overshoots by a few per cent)
    assert 0.1 < sharpness["resolution_ceiling"] < 1.1
    assert sharpness["b_detail_ratio"] > 0.0
    assert sharpness["ceiling"] == pytest.approx(sharpness["resolution_ceiling"] * sharpness["b_detail_ratio"],
                                                 abs=0.01)
    assert video["seam"]["mean_delta_e"] >= 0.0
    identity = video["identity"]
    assert identity["frames_judged"] >= VIDEO_FRAMES // 2 and 0.0 <= identity["share_nearer_b"] <= 1.0
    assert identity["mean_distance_a"] > 0.0 and identity["mean_distance_b"] > 0.0
    assert still_photo["kind"] == "photos" and still_photo["frames"] == 1 and still_photo["swapped_frames"] == 1
    assert still_photo["mouth"]["correlation"] is None  # one photo: nothing to correlate, said as null
    temporal = report["temporal_stability"]
    assert temporal["swap_mean_change"] > 0.0 and temporal["echo_mean_change"] > 0.0
    assert report["judge"]["b_frames"] >= 2
    summary = (out / "summary.txt").read_text()
    assert summary in printed
    assert "mouth opening: correlation" in summary and "temporal stability" in summary
    assert "ceiling: size x B = both" in summary
    assert len(summary.splitlines()) <= 30  # one screen
    figure = cv2.imread(str(out / "summary.png"))
    assert figure is not None and figure.shape[0] > 400 and figure.shape[1] > 400


def test_bad_models_folder_source_and_model_are_named(tmp_path: Path, exported_models: Path,
                                                      synthetic_video_a: Path,
                                                      capsys: pytest.CaptureFixture[str]) -> None:
    missing_source = tmp_path / "nowhere.mp4"
    assert main(["evaluate", "--models", str(tmp_path), "--a", str(missing_source), "--out", str(tmp_path)]) == 1
    assert f"--models {tmp_path}: no manifest.json" in capsys.readouterr().err
    assert main(["evaluate", "--models", str(exported_models), "--a", str(missing_source),
                 "--out", str(tmp_path / "r")]) == 1
    assert f"source not found: {missing_source}" in capsys.readouterr().err
    assert main(["evaluate", "--models", str(exported_models), "--model", "nope", "--a", str(synthetic_video_a),
                 "--out", str(tmp_path / "r")]) == 1
    assert "no swap model 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()  # nothing written before the inputs check out


def test_keep_mouth_reaches_the_server_options(exported_models: Path, synthetic_video_a: Path,
                                                tmp_path: Path) -> None:
    from evaluation.cli import config_from_args
    from evaluation.swap_runner import SwapRunner

    argv = ["--models", str(exported_models), "--a", str(synthetic_video_a), "--out", str(tmp_path / "r")]
    assert config_from_args(argv).keep_mouth is False
    config = config_from_args(argv + ["--keep-mouth"])
    assert config.keep_mouth is True
    runner = SwapRunner(config.models_dir, config.model, config.color, config.feather, keep_mouth=config.keep_mouth)
    try:
        assert runner.options.keep_mouth is True
    finally:
        runner.close()
