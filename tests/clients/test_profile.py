"""`swapstream profile --baseline` against a real local server: latency figures, report.json, PNG, readable codes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from clients import profile, roundtrip
from clients.errors import ClientConfigError
from clients.webrtc import ServerEndpoint


@pytest.mark.slow
def test_profile_baseline_prints_added_latency_and_writes_report_and_png(inverting_server, tmp_path: Path,
                                                                        capsys) -> None:
    out = tmp_path / "profile"
    code = profile.main(["--url", inverting_server.url, "--baseline", "--seconds", "5", "--size", "320x240",
                         "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    assert "added latency (swap - echo): p50" in printed
    report = json.loads((out / "report.json").read_text())
    assert set(report["runs"]) == {"swap", "echo"}
    for label, run in report["runs"].items():
        assert run["frames_sent"] >= 70, label  # 5 s at 15 fps
        assert run["decode_rate"] >= 0.99, (label, run["decode_rate"], run["frames_received"])
        # On a loaded 2-core machine the swap run drops frames (the server keeps only the newest); many must arrive.
        assert run["frames_unique"] >= 15, (label, run["frames_unique"])
        latency = run["latency_ms"]
        assert 0 < latency["p50"] <= latency["p95"] <= latency["p99"] < 2000, (label, latency)
        assert run["fps_out"] > 0 and run["fps_in"] == pytest.approx(15, rel=0.15)
        assert run["frames_dropped"] == run["frames_sent"] - run["frames_unique"]
    # Only the swap run detects and swaps faces; the server's stage times say so.
    assert "infer" in report["runs"]["swap"]["server_stage_ms"] or "detect" in report["runs"]["swap"]["server_stage_ms"]
    added = report["added_latency_ms"]["p50"]
    assert added == pytest.approx(report["runs"]["swap"]["latency_ms"]["p50"] - report["runs"]["echo"]["latency_ms"]["p50"], abs=0.02)
    png = (out / "latency.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 10_000


def test_prometheus_stage_means_are_deltas_over_the_run() -> None:
    before = profile.parse_prometheus(
        '# TYPE swapstream_stage_duration_ms histogram\n'
        'swapstream_stage_duration_ms_sum{stage="detect"} 100\nswapstream_stage_duration_ms_count{stage="detect"} 10\n')
    after = profile.parse_prometheus(
        'swapstream_stage_duration_ms_sum{stage="detect"} 160\nswapstream_stage_duration_ms_count{stage="detect"} 20\n'
        'swapstream_stage_duration_ms_sum{stage="infer"} 30\nswapstream_stage_duration_ms_count{stage="infer"} 10\n')
    assert profile.stage_means(before, after) == {"detect": 6.0, "infer": 3.0}


def test_percentiles_and_flag_validation(tmp_path: Path) -> None:
    summary = roundtrip.percentiles([float(v) for v in range(1, 101)])
    assert summary["p50"] == pytest.approx(50.5) and summary["p99"] == pytest.approx(99.01)
    endpoint = ServerEndpoint("http://127.0.0.1:8080")
    with pytest.raises(ClientConfigError, match="--seconds"):
        profile.ProfileConfig(endpoint, tmp_path, seconds=0)
    with pytest.raises(ClientConfigError, match="--size"):
        profile.ProfileConfig(endpoint, tmp_path, size=(100, 80))
    with pytest.raises(ClientConfigError, match="--baseline-url needs --baseline"):
        profile.ProfileConfig(endpoint, tmp_path, baseline_endpoint=endpoint)


def test_profile_compare_jitter_buffers_reports_both_modes_and_the_gain(echo_server, tmp_path: Path, capsys) -> None:
    out = tmp_path / "compare"
    code = profile.main(["--url", echo_server.url, "--compare-jitter-buffers", "--seconds", "3", "--size", "320x240",
                         "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    report = json.loads((out / "report.json").read_text())
    assert set(report["runs"]) == {"swap:marker", "swap:stock"}
    for mode in ("marker", "stock"):
        run = report["runs"][f"swap:{mode}"]
        assert run["jitter_buffer"] == mode
        assert run["frames_unique"] >= 30, (mode, run["frames_unique"])
    gain = report["jitter_buffer_gain_ms"]["swap"]
    marker_p50 = report["runs"]["swap:marker"]["latency_ms"]["p50"]
    stock_p50 = report["runs"]["swap:stock"]["latency_ms"]["p50"]
    assert gain["p50"] == pytest.approx(stock_p50 - marker_p50, abs=0.02)
    # one aiortc receiver (this client's) changes mode: the gain is about one frame interval (67 ms at 15 fps)
    assert gain["p50"] >= 1000 / 15 / 2, (marker_p50, stock_p50)
    assert "client jitter buffer gain on swap (stock - marker): p50 +" in printed
    assert "server jitter buffer: " in printed


def test_profile_av_reports_the_offset_between_flashes_and_clicks(echo_server, tmp_path: Path, capsys) -> None:
    out = tmp_path / "av"
    code = profile.main(["--url", echo_server.url, "--av", "--seconds", "5", "--size", "320x240", "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr().out
    av = json.loads((out / "report.json").read_text())["av"]
    assert av["flashes_sent"] == 5 and len(av["pairs"]) >= 2, av
    assert "A/V offset (sound minus picture" in printed and "|offset| p50" in printed
    # Echo: the frame's time in the server is small, and the sound waits about as long.
    assert abs(av["offset_ms"]["p50"]) < 40, av["offset_ms"]
    assert not (out / "latency.png").exists()
    with pytest.raises(ClientConfigError, match="--av"):
        profile.ProfileConfig(ServerEndpoint(echo_server.url), tmp_path, av=True, baseline=True)
