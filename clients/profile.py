"""`swapstream profile`: true round-trip latency per frame, measured with a frame-number code the server leaves alone.

Each outgoing frame gets its number stamped in the top-left 200x24 px (clients.framecode); the number is read back
from each returned frame, so the round trip is timed per frame whatever the codec or the server did to timestamps,
and frames the server dropped are counted exactly. The server's per-stage times come from /metrics (the change
over the run). `--baseline` repeats the run with the swap switched off (or against --baseline-url, e.g. a server
started with --pipeline echo) and reports the latency the swap adds. `--compare-jitter-buffers` measures every run
twice, with this client's receive buffer `marker` and then `stock` (issue 7), and reports the gain; the server's
receive buffer is the server's own `--jitter-buffer` flag. `--av` measures A/V sync instead (clients.avsync): the
offset between flashes and clicks sent together, in the returned stream.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import logging
import math
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from clients import framecode
from clients.avsync import format_av_summary, measure_av
from clients.errors import ClientConfigError, ConnectionFailed, MediaError
from clients.media import iter_video_rgb, parse_size, probe_input
from clients.roundtrip import RunReport, collect_round_trips, stamped_track, summarize_run
from clients.webrtc import (
    JITTER_BUFFER_MODES,
    JitterBufferMode,
    ServerEndpoint,
    SwapPeer,
    endpoint_from_flags,
    fetch_json,
    fetch_text,
    parse_options,
)
from swapstream.atomic import atomic_write_text

logger = logging.getLogger(__name__)

MAX_SOURCE_FRAMES = 300  # frames of the input kept in memory and looped
SYNTHETIC_SOURCE_FRAMES = 30


@dataclass(frozen=True)
class ProfileConfig:
    """Everything `swapstream profile` needs, built once from its flags."""

    endpoint: ServerEndpoint
    out: Path
    input: Path | None = None
    seconds: float = 10.0
    fps: float | None = None
    size: tuple[int, int] = (640, 480)
    baseline: bool = False
    baseline_endpoint: ServerEndpoint | None = None
    options: dict[str, Any] = field(default_factory=dict)
    jitter_buffer: JitterBufferMode = "marker"
    warmup_s: float = 1.0
    compare_jitter_buffers: bool = False
    av: bool = False

    def __post_init__(self) -> None:
        if self.input is not None and not self.input.is_file():
            raise ClientConfigError(f"--input {self.input}: no such file")
        if not (0 < self.seconds <= 3600):
            raise ClientConfigError(f"--seconds must be in (0, 3600], got {self.seconds}")
        if self.fps is not None and not (0 < self.fps <= 120):
            raise ClientConfigError(f"--fps must be in (0, 120], got {self.fps}")
        width, height = self.size
        if width < framecode.CODE_WIDTH or height < 64 or width % 2 or height % 2:
            raise ClientConfigError(f"--size must be even, at least {framecode.CODE_WIDTH}x64, got {width}x{height}")
        if self.baseline_endpoint is not None and not self.baseline:
            raise ClientConfigError("--baseline-url needs --baseline")
        if self.jitter_buffer not in JITTER_BUFFER_MODES:
            raise ClientConfigError(f"--jitter-buffer must be marker or stock, got {self.jitter_buffer!r}")
        if self.warmup_s < 0 or self.warmup_s >= self.seconds:
            raise ClientConfigError(f"--warmup must be in [0, --seconds), got {self.warmup_s}")
        if self.out.exists() and not self.out.is_dir():
            raise ClientConfigError(f"--out {self.out} is a file; give a folder")
        if self.av and (self.baseline or self.compare_jitter_buffers):
            raise ClientConfigError("--av is a run of its own: leave out --baseline and --compare-jitter-buffers")


_SAMPLE_LINE = re.compile(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{[^}]*\})?\s+(\S+)$")
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def parse_prometheus(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Samples of a Prometheus text exposition: (metric name, sorted labels) -> value."""
    samples: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
    for line in text.splitlines():
        if not line or line.startswith("#"):
            continue
        match = _SAMPLE_LINE.match(line.strip())
        if not match:
            continue
        name, labels, value = match.groups()
        try:
            number = float(value)
        except ValueError:
            continue
        samples[(name, tuple(sorted(_LABEL.findall(labels or ""))))] = number
    return samples


def stage_means(before: dict, after: dict, metric: str = "swapstream_stage_duration_ms") -> dict[str, float]:
    """Mean milliseconds per stage over the interval between two /metrics scrapes."""
    means: dict[str, float] = {}
    for (name, labels), total in after.items():
        if name != f"{metric}_sum":
            continue
        count = after.get((f"{metric}_count", labels), 0.0) - before.get((f"{metric}_count", labels), 0.0)
        if count > 0:
            stage = dict(labels).get("stage", "all")
            means[stage] = round((total - before.get((name, labels), 0.0)) / count, 3)
    return means


def _synthetic_frames(size: tuple[int, int], fps: float) -> list[np.ndarray]:
    from faces.synthetic import IDENTITY_A, render_sequence

    rendered = render_sequence(IDENTITY_A, SYNTHETIC_SOURCE_FRAMES, size=size, seed=3, fps=fps)
    return [r.frame for r in rendered]


def load_source(config: ProfileConfig) -> tuple[list[np.ndarray], float]:
    """The frames to loop and their rate: the --input file, or a synthetic face rendered now."""
    if config.input is None:
        fps = config.fps or 15.0
        logger.info("rendering a synthetic face clip (%dx%d) as input", *config.size)
        return _synthetic_frames(config.size, fps), fps
    info = probe_input(config.input)
    frames = list(itertools.islice(iter_video_rgb(config.input), MAX_SOURCE_FRAMES))
    if not frames:
        raise MediaError(f"--input {config.input}: no frames")
    if frames[0].shape[1] < framecode.CODE_WIDTH or frames[0].shape[0] < framecode.CODE_HEIGHT:
        raise MediaError(f"--input {config.input}: frames must be at least {framecode.CODE_WIDTH}x{framecode.CODE_HEIGHT}")
    return frames, config.fps or info.fps


async def _scrape(endpoint: ServerEndpoint) -> dict | None:
    try:
        return parse_prometheus(await fetch_text(endpoint, "/metrics"))
    except ConnectionFailed as exc:
        logger.warning("no server stage times: %s", exc)
        return None


async def measure_run(label: str, endpoint: ServerEndpoint, frames: list[np.ndarray], fps: float,
                      config: ProfileConfig, options: dict[str, Any]) -> RunReport:
    """Stream the stamped frames to the server for config.seconds and time every frame that comes back."""
    count = max(1, round(config.seconds * fps))
    track = stamped_track(frames, fps, count)
    report = RunReport(label=label, url=endpoint.url, options=options)
    before = await _scrape(endpoint)
    async with SwapPeer(endpoint, send=track, options=options, jitter_buffer=config.jitter_buffer) as peer:
        assert peer.video is not None
        report.jitter_buffer = "marker" if peer.jitter_buffer_installed else "stock"
        received_at = await collect_round_trips(peer.video, track, report, endpoint.url, count, config.seconds)
    after = await _scrape(endpoint)
    summarize_run(report, track, received_at, config.warmup_s)
    if before is not None and after is not None:
        report.server_stage_ms = stage_means(before, after)
        added = stage_means(before, after, "swapstream_added_latency_ms")
        report.server_added_ms = added.get("all")
    return report


def plot_report(runs: list[RunReport], path: Path, title: str, warmup_s: float = 0.0) -> Path:
    """A PNG with each run's latency timeline (per frame) and its latency histogram after the warm-up."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (timeline, histogram) = plt.subplots(1, 2, figsize=(12, 4.5), dpi=100)
    for run in runs:
        xs = [s.sent_s for s in run.samples]
        ys = [s.latency_ms for s in run.samples]
        p50 = run.latency_ms.get("p50", float("nan"))
        timeline.plot(xs, ys, ".-", markersize=3, linewidth=0.8, label=f"{run.label} (p50 {p50:.0f} ms)")
        steady = [s.latency_ms for s in run.samples if s.sent_s >= warmup_s]
        if steady:
            histogram.hist(steady, bins=40, alpha=0.6, label=run.label)
    if warmup_s > 0:
        timeline.axvspan(0, warmup_s, color="grey", alpha=0.15, label="warm-up (not in percentiles)")
    timeline.set_xlabel("frame sent at (s)")
    timeline.set_ylabel("round-trip latency (ms)")
    timeline.set_title("latency per frame")
    timeline.grid(alpha=0.3)
    timeline.legend()
    histogram.set_xlabel("round-trip latency (ms)")
    histogram.set_ylabel("frames")
    histogram.set_title(f"latency histogram (after {warmup_s:g} s warm-up)")
    histogram.grid(alpha=0.3)
    histogram.legend()
    figure.suptitle(title)
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


SERVER_JITTER_BUFFER_UNKNOWN = "not reported by /healthz: the server's own --jitter-buffer flag (default marker)"


async def _measure_runs(config: ProfileConfig, frames: list[np.ndarray], fps: float,
                        suffix: str = "") -> list[RunReport]:
    """The main run and, with --baseline, the echo run, with config.jitter_buffer on this client."""
    runs = [await measure_run("swap" + suffix, config.endpoint, frames, fps, config, dict(config.options))]
    if config.baseline:
        if config.baseline_endpoint is not None:
            runs.append(await measure_run("echo" + suffix, config.baseline_endpoint, frames, fps, config,
                                          dict(config.options)))
        else:
            runs.append(await measure_run("echo" + suffix, config.endpoint, frames, fps, config,
                                          {**config.options, "swap": False}))
    return runs


def _difference(minuend: RunReport, subtrahend: RunReport) -> dict[str, float]:
    return {
        key: round(minuend.latency_ms[key] - subtrahend.latency_ms[key], 2) for key in ("p50", "p95", "p99", "mean")
    }


async def run_av_profile(config: ProfileConfig, frames: list[np.ndarray], fps: float,
                         server: dict[str, Any]) -> dict[str, Any]:
    """--av: the A/V offsets of one run (clients.avsync), with the server's video delay over it from /metrics."""
    before = await _scrape(config.endpoint)
    av_report = await measure_av(config.endpoint, frames, fps, config.seconds, config.options, config.jitter_buffer,
                                 config.warmup_s)
    after = await _scrape(config.endpoint)
    if before is not None and after is not None:
        av_report.server_added_ms = stage_means(before, after, "swapstream_added_latency_ms").get("all")
    height, width = frames[0].shape[:2]
    report = {"url": config.endpoint.url, "input": str(config.input) if config.input else
              f"synthetic face {width}x{height}", "fps": fps, "seconds": config.seconds, "warmup_s": config.warmup_s,
              "client_jitter_buffer": config.jitter_buffer, "server": server, "av": av_report.summary()}
    atomic_write_text(config.out / "report.json", json.dumps(report, indent=2))
    return report


async def run_profile(config: ProfileConfig) -> dict[str, Any]:
    """Measure the main run (and the baseline), write report.json and latency.png under config.out (with --av,
    the A/V offsets and report.json only)."""
    config.out.mkdir(parents=True, exist_ok=True)
    frames, fps = load_source(config)
    server = await fetch_json(config.endpoint, "/healthz")
    if config.av:
        return await run_av_profile(config, frames, fps, server)
    gains: dict[str, dict[str, float]] = {}
    if config.compare_jitter_buffers:
        # marker first, then stock: the same runs with only this client's receive buffer changed
        marker_runs = await _measure_runs(replace(config, jitter_buffer="marker"), frames, fps, ":marker")
        stock_runs = await _measure_runs(replace(config, jitter_buffer="stock"), frames, fps, ":stock")
        runs = marker_runs + stock_runs
        for marker_run, stock_run in zip(marker_runs, stock_runs):
            if marker_run.latency_ms and stock_run.latency_ms:
                gains[marker_run.label.split(":")[0]] = _difference(stock_run, marker_run)
    else:
        runs = await _measure_runs(config, frames, fps)
    height, width = frames[0].shape[:2]
    report: dict[str, Any] = {
        "url": config.endpoint.url,
        "input": str(config.input) if config.input else f"synthetic face {width}x{height}",
        "fps": fps,
        "seconds": config.seconds,
        "warmup_s": config.warmup_s,
        "client_jitter_buffer": "marker, then stock" if config.compare_jitter_buffers else config.jitter_buffer,
        "server_jitter_buffer": server.get("jitter_buffer", SERVER_JITTER_BUFFER_UNKNOWN),
        "server": server,
        "runs": {run.label: run.summary() for run in runs},
    }
    # swap - echo, from the first pair (this client's marker buffer when comparing)
    swap_run, echo_run = runs[0], runs[1] if len(runs) > 1 and runs[1].label.startswith("echo") else None
    if echo_run is not None and swap_run.latency_ms and echo_run.latency_ms:
        report["added_latency_ms"] = _difference(swap_run, echo_run)
        report["fps_out_ratio"] = round(swap_run.fps_out / echo_run.fps_out, 3) if echo_run.fps_out else None
    if config.compare_jitter_buffers:
        report["jitter_buffer_gain_ms"] = gains
    atomic_write_text(config.out / "report.json", json.dumps(report, indent=2))
    title = f"swapstream profile {config.endpoint.url}: {report['input']} at {fps:g} fps"
    plot_report(runs, config.out / "latency.png", title, config.warmup_s)
    return report


def format_summary(report: dict[str, Any]) -> str:
    """The lines `swapstream profile` prints."""
    if "av" in report:
        return format_av_summary(report["av"])
    lines = []
    for label, run in report["runs"].items():
        latency = run["latency_ms"]
        stages = ", ".join(f"{k} {v:.1f}" for k, v in sorted(run["server_stage_ms"].items())) or "n/a"
        lines.append(
            f"{label}: round trip p50 {latency.get('p50', math.nan):.1f} ms, p95 {latency.get('p95', math.nan):.1f} ms, "
            f"p99 {latency.get('p99', math.nan):.1f} ms; fps in {run['fps_in']:.1f}, out {run['fps_out']:.1f}; "
            f"dropped {run['frames_dropped']}/{run['frames_sent']}; code read on {run['decode_rate'] * 100:.1f}% "
            f"of returned frames; client jitter buffer {run['jitter_buffer']}"
        )
        lines.append(f"  server stage means (ms): {stages}")
    added = report.get("added_latency_ms")
    if added:
        lines.append(
            f"added latency (swap - echo): p50 {added['p50']:+.1f} ms, p95 {added['p95']:+.1f} ms, "
            f"p99 {added['p99']:+.1f} ms; output fps ratio {report.get('fps_out_ratio')}"
        )
    if "jitter_buffer_gain_ms" in report:
        for label, gain in report["jitter_buffer_gain_ms"].items():
            lines.append(
                f"client jitter buffer gain on {label} (stock - marker): p50 {gain['p50']:+.1f} ms, "
                f"p95 {gain['p95']:+.1f} ms"
            )
        lines.append(f"server jitter buffer: {report['server_jitter_buffer']}")
    return "\n".join(lines)



def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="swapstream profile",
        description="Measure true per-frame round-trip latency, fps and drops against a running swapstream server.",
    )
    parser.add_argument("--url", required=True, help="server base URL, e.g. http://127.0.0.1:8080")
    parser.add_argument("--input", type=Path, help="video to send, looped (default: a synthetic face rendered now)")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each measured run (default 10)")
    parser.add_argument("--fps", type=float, help="send rate (default: the input's rate; 15 for the synthetic face)")
    parser.add_argument("--size", type=parse_size, default=(640, 480), help="synthetic input size WxH (default 640x480)")
    parser.add_argument("--baseline", action="store_true",
                        help="also measure the echo pipeline (swap off) and print the latency the swap adds")
    parser.add_argument("--baseline-url", help="measure the baseline on this server (e.g. one run with --pipeline echo)")
    parser.add_argument("--out", type=Path, default=Path("profile-out"), help="folder for report.json and latency.png")
    parser.add_argument("--token", help="bearer token if the server runs with --token (default: $SWAPSTREAM_TOKEN)")
    parser.add_argument("--options", help='session options as JSON, e.g. \'{"model": "b2a"}\'')
    parser.add_argument("--jitter-buffer", choices=JITTER_BUFFER_MODES, default="marker",
                        help="this client's receive-side jitter buffer (the server has its own --jitter-buffer)")
    parser.add_argument("--compare-jitter-buffers", action="store_true",
                        help="measure with this client's jitter buffer marker, then stock, and print the gain "
                             "(overrides --jitter-buffer; the server's buffer is its own --jitter-buffer flag)")
    parser.add_argument("--warmup", type=float, default=1.0, dest="warmup_s",
                        help="seconds at the start left out of the latency percentiles (default 1)")
    parser.add_argument("--av", action="store_true",
                        help="measure A/V sync: send a flash and a click once a second and report the offset "
                             "between them in the returned stream (p50/p95)")
    return parser


def config_from_args(args: argparse.Namespace) -> ProfileConfig:
    baseline_endpoint = endpoint_from_flags(args.baseline_url, args.token) if args.baseline_url else None
    return ProfileConfig(
        endpoint=endpoint_from_flags(args.url, args.token),
        out=args.out,
        input=args.input,
        seconds=args.seconds,
        fps=args.fps,
        size=args.size,
        baseline=args.baseline or baseline_endpoint is not None,
        baseline_endpoint=baseline_endpoint,
        options=parse_options(args.options),
        jitter_buffer=args.jitter_buffer,
        warmup_s=args.warmup_s,
        compare_jitter_buffers=args.compare_jitter_buffers,
        av=args.av,
    )


def main(argv: list[str]) -> int:
    config = config_from_args(build_parser().parse_args(argv))
    report = asyncio.run(run_profile(config))
    print(format_summary(report))
    print(f"wrote {config.out / 'report.json'}" + ("" if config.av else f" and {config.out / 'latency.png'}"))
    return 0
