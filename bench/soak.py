"""Soak: N sessions for T minutes through a lossy UDP relay against a `swapstream serve` child process.

    python bench/soak.py --sessions 4 --minutes 60 --loss 0.02 --jitter-ms 20 --reorder 0.01 --out soak-out

Three processes: the server (`swapstream serve`, measured through its own /proc/<pid>), the relay
(bench/udp_proxy.py, which drops, delays and reorders datagrams both ways and counts RTCP keyframe requests on the
wire) and this one, which runs the sessions with swapstream's own client pieces (`clients.webrtc.SwapPeer`, the
profiler's frame-number code `clients.framecode`, `clients.media.PacedVideoTrack`), so every returned frame is
timed against the moment it was sent.

First `--baseline-s` seconds with the relay passing everything (each session's no-loss fps), then `--minutes` with
the impairment. Every `--sample-s` seconds a row goes to soak.csv: the server's threads, open fds and RSS; its
added latency p50/p95 over the window (its /metrics histogram); frames in/out/dropped; datagrams dropped by the
relay; PLI/FIR keyframe requests and NACKs each way; and per session fps, round-trip p50/p95, the longest gap
between returned frames and reconnects. A gap over FREEZE_S is a freeze: logged when it ends, listed in
summary.json ("freezes", with when and how long) and marked on the fps plot.
At the end: soak.png (matplotlib) and summary.json with the issue-13 checks (fps at the end vs no-loss fps, thread
and fd growth, RSS growth after the first edge window, server p95 added latency last vs first edge window).
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import itertools
import json
import logging
import math
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiortc.mediastreams import MediaStreamError  # noqa: E402
from av import VideoFrame  # noqa: E402

from bench.server_process import REPO, ServerProcess, free_port  # noqa: E402
from clients import framecode  # noqa: E402
from clients.errors import ConnectionFailed  # noqa: E402
from clients.media import PacedVideoTrack, parse_size  # noqa: E402
from clients.profile import parse_prometheus  # noqa: E402
from clients.webrtc import ServerEndpoint, SwapPeer  # noqa: E402

logger = logging.getLogger("soak")

ADDED = "swapstream_added_latency_ms"
COUNTERS = {"frames_in": "swapstream_frames_in_total", "frames_out": "swapstream_frames_out_total",
            "frames_dropped": "swapstream_frames_dropped_total"}
WIRE = (("dropped", "dropped"), ("pli", "pli"), ("fir", "fir"), ("nack", "nack"), ("datagrams", "datagrams"))
FREEZE_S = 2.0
"""A returned stream with no frame for longer than this is frozen (a viewer notices well before)."""


@dataclass(frozen=True)
class SoakConfig:
    """Everything one soak run needs, built once from the flags."""

    out: Path
    sessions: int = 4
    minutes: float = 60.0
    loss: float = 0.02
    jitter_ms: float = 20.0
    reorder: float = 0.01
    delay_ms: float = 0.0
    models: Path = REPO / "models" / "demo"
    pipeline: str = "swap"
    fps: float = 15.0
    size: tuple[int, int] = (640, 480)
    sample_s: float = 10.0
    baseline_s: float = 30.0
    warmup_s: float = 5.0
    edge_minutes: float = 5.0
    seed: int = 13
    server_args: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if not 1 <= self.sessions <= 16:
            raise ValueError(f"--sessions must be in 1..16, got {self.sessions}")
        if not 0 < self.minutes <= 24 * 60:
            raise ValueError(f"--minutes must be in (0, 1440], got {self.minutes}")
        if self.sample_s <= 0 or self.baseline_s < 0 or self.warmup_s < 0:
            raise ValueError("--sample-s must be > 0; --baseline-s and --warmup-s >= 0")
        if self.pipeline == "swap" and not (self.models / "manifest.json").is_file():
            raise ValueError(f"--models {self.models}: no manifest.json there")

    @property
    def edge_s(self) -> float:
        """Length of the first and last windows compared (5 minutes, or a quarter of a shorter soak)."""
        return min(self.edge_minutes * 60.0, self.minutes * 60.0 / 4.0)


def histogram_quantile(q: float, buckets: dict[float, float]) -> float | None:
    """The q-quantile of a cumulative histogram {upper bound: count}, interpolated as Prometheus does."""
    bounds = sorted(buckets)
    if not bounds or buckets[bounds[-1]] <= 0:
        return None
    rank = q * buckets[bounds[-1]]
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            return lower + (bound - lower) * ((rank - below) / (count - below) if count > below else 0.0)
        lower, below = bound, count
    return lower


def added_buckets(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> dict[float, float]:
    """The server's added-latency histogram buckets {le: cumulative count} from a parsed /metrics."""
    buckets = {}
    for (name, labels), value in samples.items():
        if name == f"{ADDED}_bucket":
            buckets[float(dict(labels)["le"].replace("+Inf", "inf"))] = value
    return buckets


def bucket_delta(after: dict[float, float], before: dict[float, float]) -> dict[float, float]:
    return {le: count - before.get(le, 0.0) for le, count in after.items()}


def counter(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float], name: str) -> float:
    return sum(value for (metric, _), value in samples.items() if metric == name)


def _percentile(values: list[float], q: float) -> float | None:
    return round(float(np.percentile(values, q)), 2) if values else None


@dataclass
class SessionWindow:
    """What one session saw since the last sample."""

    frames: int = 0
    latencies_ms: list[float] = field(default_factory=list)
    max_gap_s: float = 0.0
    """Longest time without a returned frame in the window (a gap still open at the sample counts so far)."""


@dataclass(frozen=True)
class Freeze:
    """A returned stream that stopped for longer than FREEZE_S: from when (s into the soak) and for how long."""

    start_s: float
    length_s: float
    reconnected: bool


class SoakSession:
    """One sending and receiving client through the relay, reconnecting if its connection fails."""

    def __init__(self, index: int, endpoint: ServerEndpoint, frames: list[NDArray[np.uint8]], fps: float) -> None:
        self.index = index
        self.endpoint = endpoint
        self.frames = frames
        self.fps = fps
        self.window = SessionWindow()
        self.reconnects = 0
        self.errors: list[str] = []
        self.freezes: list[Freeze] = []
        self.clock_start = time.monotonic()
        self._last_frame_at: float | None = None
        self._reconnects_at_last_frame = 0
        self._stopping = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run(), name=f"soak-session-{self.index}")

    def take_window(self) -> SessionWindow:
        """The window since the last call; a gap still open counts up to now."""
        if self._last_frame_at is not None:
            self.window.max_gap_s = max(self.window.max_gap_s, time.monotonic() - self._last_frame_at)
        window, self.window = self.window, SessionWindow()
        return window

    def _frame_returned(self, arrived: float) -> None:
        """Count a returned frame and close the gap before it (a freeze if it was longer than FREEZE_S)."""
        self.window.frames += 1
        if self._last_frame_at is not None:
            gap = arrived - self._last_frame_at
            self.window.max_gap_s = max(self.window.max_gap_s, gap)
            if gap > FREEZE_S:
                freeze = Freeze(round(self._last_frame_at - self.clock_start, 1), round(gap, 2),
                                self.reconnects > self._reconnects_at_last_frame)
                self.freezes.append(freeze)
                logger.warning("session %d: returned video froze for %.1f s (from t=%.0f s%s)", self.index, gap,
                               freeze.start_s, ", across a reconnect" if freeze.reconnected else "")
        self._last_frame_at = arrived
        self._reconnects_at_last_frame = self.reconnects

    async def _run(self) -> None:
        while not self._stopping:
            try:
                await self._stream()
            except (ConnectionFailed, MediaStreamError, asyncio.TimeoutError) as exc:
                self.errors.append(f"{time.strftime('%H:%M:%S')} {type(exc).__name__}: {exc}")
                logger.warning("session %d: %s; reconnecting", self.index, exc)
            self.reconnects += 1
            await asyncio.sleep(1.0)

    async def _stream(self) -> None:
        source = (frame.copy() for frame in itertools.cycle(self.frames))
        track = PacedVideoTrack(source, self.fps, prepare=lambda number, rgb: framecode.stamp(rgb, number))
        async with SwapPeer(self.endpoint, send=track) as peer:
            assert peer.video is not None
            while not peer.failed and not self._stopping:
                frame = await asyncio.wait_for(peer.video.recv(), timeout=10.0)
                arrived = time.monotonic()
                assert isinstance(frame, VideoFrame)
                self._frame_returned(arrived)
                code = framecode.read(frame.to_ndarray(format="rgb24"))
                if code is None:
                    continue
                sent = track.sent_at.pop(framecode.unwrap(code, max(track.frames_sent - 1, 0)), None)
                if sent is not None:
                    self.window.latencies_ms.append((arrived - sent) * 1000.0)
                # Forget send times of frames that will never come back (dropped on the way).
                for stale in [n for n in track.sent_at if n < track.frames_sent - 10 * self.fps]:
                    del track.sent_at[stale]
            if not self._stopping:
                raise ConnectionFailed("the peer connection failed")

    async def stop(self) -> None:
        """End the session. Python 3.11's wait_for can swallow a cancellation that meets a frame arriving, so the
        loops also check `_stopping`, and the task is cancelled until it has ended."""
        self._stopping = True
        while self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait({self._task}, timeout=1.0)


class RelayProcess:
    """bench/udp_proxy.py in a child process, in front of the server."""

    def __init__(self, server_url: str, config: SoakConfig, log_path: Path) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}/"
        self._command = [sys.executable, str(REPO / "bench" / "udp_proxy.py"), "--server", server_url,
                         "--port", str(self.port), "--seed", str(config.seed)]
        self._log_path = log_path
        self._process: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> RelayProcess:
        with self._log_path.open("wb") as log:
            self._process = subprocess.Popen(self._command, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                self.stats()
                return self
            except OSError:
                if self._process.poll() is not None:
                    raise RuntimeError(f"udp_proxy exited: {self._log_path.read_text()[-2000:]}") from None
                time.sleep(0.2)
        raise RuntimeError("udp_proxy did not start within 60 s")

    def __exit__(self, *exc_info: object) -> None:
        if self._process is not None and self._process.poll() is None:
            self._process.terminate()
            try:
                self._process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait()

    def stats(self) -> dict[str, Any]:
        with urllib.request.urlopen(self.url + "_proxy/stats", timeout=5) as response:
            stats: dict[str, Any] = json.loads(response.read())
            return stats

    def impair(self, **values: float) -> None:
        request = urllib.request.Request(self.url + "_proxy/impairment", data=json.dumps(values).encode(),
                                         headers={"Content-Type": "application/json"}, method="POST")
        with urllib.request.urlopen(request, timeout=5):
            pass


def _wire_columns(now: dict[str, Any], before: dict[str, Any]) -> dict[str, int]:
    """Relay counters over the window: client->server is what the client sent, server->client what the server sent."""
    row = {}
    for direction, sender in (("client->server", "client"), ("server->client", "server")):
        for key, column in WIRE:
            row[f"{column}_from_{sender}"] = now["directions"][direction][key] - before["directions"][direction][key]
    return row


def source_frames(config: SoakConfig) -> list[NDArray[np.uint8]]:
    """A synthetic face clip (ping-pong looped), the profiler's default input."""
    from faces.synthetic import IDENTITY_A, render_sequence

    rendered = [r.frame for r in render_sequence(IDENTITY_A, 30, size=config.size, seed=3, fps=config.fps)]
    return rendered + rendered[-2:0:-1]


async def run_soak(config: SoakConfig) -> dict[str, Any]:
    """Run the soak, writing soak.csv, soak.png and summary.json under config.out; returns the summary."""
    config.out.mkdir(parents=True, exist_ok=True)
    frames = source_frames(config)
    server_args = ["--pipeline", config.pipeline, "--max-sessions", str(config.sessions), *config.server_args]
    if config.pipeline == "swap":
        server_args += ["--models", str(config.models)]
    rows: list[dict[str, Any]] = []
    added_at: list[tuple[float, dict[float, float]]] = []
    baseline_fps: dict[int, float] = {}
    with ServerProcess(server_args, log_path=config.out / "server.log") as server, \
            RelayProcess(server.url, config, config.out / "proxy.log") as relay:
        relay.impair(loss=0.0, jitter_ms=0.0, reorder=0.0, delay_ms=0.0)
        endpoint = ServerEndpoint(relay.url, timeout_s=30.0)
        sessions = [SoakSession(index, endpoint, frames, config.fps) for index in range(config.sessions)]
        for session in sessions:
            session.start()
        await asyncio.sleep(config.warmup_s)
        start = time.monotonic()
        for session in sessions:
            session.take_window()
            session.clock_start = start
        baseline_end = start + config.baseline_s
        end = baseline_end + config.minutes * 60.0
        impaired = False
        previous_metrics = parse_prometheus(server.metrics_text())
        previous_wire = relay.stats()
        previous_time = start
        added_at.append((0.0, added_buckets(previous_metrics)))
        baseline_frames = {session.index: 0 for session in sessions}
        while time.monotonic() < end:
            if not impaired and time.monotonic() >= baseline_end:
                relay.impair(loss=config.loss, jitter_ms=config.jitter_ms, reorder=config.reorder,
                             delay_ms=config.delay_ms)
                impaired = True
                baseline_fps = {index: count / max(config.baseline_s, 1e-9)
                                for index, count in baseline_frames.items()}
            next_sample = previous_time + config.sample_s
            await asyncio.sleep(max(0.0, min(next_sample, end) - time.monotonic()))
            now = time.monotonic()
            window_s = now - previous_time
            metrics = parse_prometheus(server.metrics_text())
            wire = relay.stats()
            process = server.sample()
            buckets = added_buckets(metrics)
            delta = bucket_delta(buckets, added_at[-1][1])
            added_at.append((now - start, buckets))
            row: dict[str, Any] = {
                "t_s": round(now - start, 1), "phase": "loss" if impaired else "baseline",
                "threads": process.threads, "fds": process.fds, "rss_mb": round(process.rss_mb, 1),
                "sessions": server.sessions(),
                "server_added_p50_ms": _round(histogram_quantile(0.5, delta)),
                "server_added_p95_ms": _round(histogram_quantile(0.95, delta)),
                **{name: int(counter(metrics, metric) - counter(previous_metrics, metric))
                   for name, metric in COUNTERS.items()},
                **_wire_columns(wire, previous_wire),
            }
            for session in sessions:
                window = session.take_window()
                if not impaired:
                    baseline_frames[session.index] += window.frames
                row[f"s{session.index}_fps"] = round(window.frames / window_s, 2)
                row[f"s{session.index}_rtt_p50_ms"] = _percentile(window.latencies_ms, 50)
                row[f"s{session.index}_rtt_p95_ms"] = _percentile(window.latencies_ms, 95)
                row[f"s{session.index}_max_gap_s"] = round(window.max_gap_s, 2)
                row[f"s{session.index}_reconnects"] = session.reconnects
            rows.append(row)
            _write_csv(config.out / "soak.csv", rows)
            logger.info("t=%6.0f s %s threads %d fds %d rss %.0f MB added p95 %s ms fps %s", row["t_s"], row["phase"],
                        row["threads"], row["fds"], row["rss_mb"], row["server_added_p95_ms"],
                        [row[f"s{s.index}_fps"] for s in sessions])
            previous_metrics, previous_wire, previous_time = metrics, wire, now
        if not impaired:  # a soak shorter than its baseline
            baseline_fps = {index: count / max(config.baseline_s, 1e-9) for index, count in baseline_frames.items()}
        for session in sessions:
            await session.stop()
        errors = {session.index: session.errors for session in sessions}
        freezes = {session.index: session.freezes for session in sessions}
    summary = summarize(config, rows, added_at, baseline_fps, errors)
    summary["freezes"] = {f"s{index}": [asdict(freeze) for freeze in found] for index, found in freezes.items()}
    (config.out / "summary.json").write_text(json.dumps(summary, indent=2))
    plot(config, rows, baseline_fps, config.out / "soak.png")
    return summary


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 2)


def _write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)


def _span_buckets(added_at: list[tuple[float, dict[float, float]]], start_s: float, end_s: float) -> dict[float, float]:
    """The histogram over [start_s, end_s]: the snapshot nearest each end, subtracted."""
    first = min(added_at, key=lambda item: abs(item[0] - start_s))[1]
    last = min(added_at, key=lambda item: abs(item[0] - end_s))[1]
    return bucket_delta(last, first)


def summarize(config: SoakConfig, rows: list[dict[str, Any]], added_at: list[tuple[float, dict[float, float]]],
              baseline_fps: dict[int, float], errors: dict[int, list[str]]) -> dict[str, Any]:
    """The figures issue 13 asks for, each with the numbers it compares."""
    lossy = [row for row in rows if row["phase"] == "loss"]
    if not lossy:
        return {"config": _config_dict(config), "error": "no sample in the loss phase", "rows": len(rows)}
    soak_start, soak_end = lossy[0]["t_s"] - config.sample_s, lossy[-1]["t_s"]
    edge = max(config.edge_s, config.sample_s)  # at least one sample in each edge window
    first = [row for row in lossy if row["t_s"] <= soak_start + edge + 1e-6]
    last = [row for row in lossy if row["t_s"] > soak_end - edge - 1e-6]
    fps: dict[str, Any] = {}
    for index, no_loss in baseline_fps.items():
        at_end = float(np.mean([row[f"s{index}_fps"] for row in last]))
        fps[f"s{index}"] = {"no_loss": round(no_loss, 2), "end": round(at_end, 2),
                            "ratio": round(at_end / no_loss, 3) if no_loss else None,
                            "reconnects": lossy[-1][f"s{index}_reconnects"]}
    p95_first = histogram_quantile(0.95, _span_buckets(added_at, soak_start, soak_start + edge))
    p95_last = histogram_quantile(0.95, _span_buckets(added_at, soak_end - edge, soak_end))
    threads_growth = max(row["threads"] for row in last) - max(row["threads"] for row in first)
    fds_growth = max(row["fds"] for row in last) - max(row["fds"] for row in first)
    rss_growth = lossy[-1]["rss_mb"] - first[-1]["rss_mb"]
    checks = {
        "fps_at_end_vs_no_loss_>=0.95": all(v["ratio"] is not None and v["ratio"] >= 0.95 for v in fps.values()),
        "no_thread_or_fd_growth": threads_growth <= 0 and fds_growth <= 0,
        "rss_growth_after_first_edge_<50MB": rss_growth < 50.0,
        "p95_added_last_vs_first_within_20%": (p95_first is not None and p95_last is not None
                                               and p95_last <= 1.2 * p95_first),
    }
    wire = {column: sum(row[column] for row in lossy) for column in lossy[0] if "_from_" in column}
    return {
        "config": _config_dict(config),
        "edge_window_s": edge,
        "fps": fps,
        "server_added_p95_ms": {"first_edge": _round(p95_first), "last_edge": _round(p95_last)},
        "threads": {"first_edge_max": max(r["threads"] for r in first), "last_edge_max": max(r["threads"] for r in last)},
        "fds": {"first_edge_max": max(r["fds"] for r in first), "last_edge_max": max(r["fds"] for r in last)},
        "rss_mb": {"after_first_edge": first[-1]["rss_mb"], "end": lossy[-1]["rss_mb"], "growth": round(rss_growth, 1)},
        "wire_during_loss": wire,
        "checks": checks,
        "session_errors": errors,
    }


def _config_dict(config: SoakConfig) -> dict[str, Any]:
    return {key: (str(value) if isinstance(value, Path) else value) for key, value in asdict(config).items()}


def plot(config: SoakConfig, rows: list[dict[str, Any]], baseline_fps: dict[int, float], path: Path) -> Path:
    """soak.png: fps, round trip, server added latency, threads/fds, RSS and wire events over time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t = [row["t_s"] / 60.0 for row in rows]
    figure, axes = plt.subplots(3, 2, figsize=(13, 11), dpi=90, sharex=True)
    (fps_ax, rtt_ax), (added_ax, count_ax), (rss_ax, wire_ax) = axes
    for index in range(config.sessions):
        line = fps_ax.plot(t, [row[f"s{index}_fps"] for row in rows], label=f"session {index}")[0]
        if index in baseline_fps:
            fps_ax.axhline(baseline_fps[index] * 0.95, color=line.get_color(), linestyle=":", linewidth=0.8)
        frozen = [(x, row[f"s{index}_fps"]) for x, row in zip(t, rows) if row[f"s{index}_max_gap_s"] > FREEZE_S]
        if frozen:
            fps_ax.scatter([x for x, _ in frozen], [y for _, y in frozen], marker="x", color=line.get_color(), zorder=3)
        rtt_ax.plot(t, [row[f"s{index}_rtt_p95_ms"] for row in rows], label=f"s{index} p95")
        rtt_ax.plot(t, [row[f"s{index}_rtt_p50_ms"] for row in rows], linestyle="--", color=rtt_ax.lines[-1].get_color(),
                    label=f"s{index} p50")
    fps_ax.set_title(f"fps returned per session (dotted: 95 % of no-loss fps; x: a gap over {FREEZE_S:g} s)")
    rtt_ax.set_title("round trip per frame (ms)")
    added_ax.plot(t, [row["server_added_p95_ms"] for row in rows], label="p95")
    added_ax.plot(t, [row["server_added_p50_ms"] for row in rows], label="p50")
    added_ax.set_title("server added latency (ms, /metrics)")
    count_ax.plot(t, [row["threads"] for row in rows], label="threads")
    count_ax.plot(t, [row["fds"] for row in rows], label="open fds")
    count_ax.set_title("server threads and open fds")
    rss_ax.plot(t, [row["rss_mb"] for row in rows], label="RSS")
    rss_ax.set_title("server RSS (MB)")
    for column, label in (("pli_from_server", "PLI from server"), ("pli_from_client", "PLI from clients"),
                          ("fir_from_server", "FIR from server"), ("nack_from_server", "NACK from server"),
                          ("nack_from_client", "NACK from clients")):
        wire_ax.plot(t, [row[column] for row in rows], label=label)
    wire_ax.set_title(f"RTCP feedback per {config.sample_s:g} s window")
    for ax in axes.flat:
        baseline_end = next((row["t_s"] - config.sample_s for row in rows if row["phase"] == "loss"), None)
        if baseline_end is not None:
            ax.axvspan(0, baseline_end / 60.0, color="grey", alpha=0.12)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("minutes (grey: no-loss baseline)")
    figure.suptitle(f"swapstream soak: {config.sessions} sessions, loss {config.loss:.1%}, jitter {config.jitter_ms:g} ms, "
                    f"reorder {config.reorder:.1%}, {config.size[0]}x{config.size[1]} @ {config.fps:g} fps")
    figure.tight_layout()
    figure.savefig(path)
    plt.close(figure)
    return path


def build_parser() -> argparse.ArgumentParser:
    from bench.udp_proxy import impairment_flags

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sessions", type=int, default=4, help="concurrent sessions (default 4)")
    parser.add_argument("--minutes", type=float, default=60.0, help="length of the lossy phase (default 60)")
    impairment_flags(parser)
    parser.set_defaults(loss=0.02, jitter_ms=20.0, reorder=0.01)
    parser.add_argument("--out", type=Path, required=True, help="folder for soak.csv, soak.png, summary.json, logs")
    parser.add_argument("--models", type=Path, default=REPO / "models" / "demo", help="models folder (default models/demo)")
    parser.add_argument("--pipeline", choices=("swap", "echo"), default="swap")
    parser.add_argument("--fps", type=float, default=15.0, help="send rate per session (default 15)")
    parser.add_argument("--size", type=parse_size, default=(640, 480), help="frame size (default 640x480)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples (default 10)")
    parser.add_argument("--baseline-s", type=float, default=30.0, help="no-loss seconds first (default 30)")
    parser.add_argument("--warmup-s", type=float, default=5.0, help="seconds before anything is counted (default 5)")
    parser.add_argument("--edge-minutes", type=float, default=5.0,
                        help="first and last windows compared (default 5; a quarter of a shorter soak)")
    parser.add_argument("--seed", type=int, default=13, help="the relay's random seed")
    parser.add_argument("--server-arg", action="append", default=[], dest="server_args",
                        help="extra `swapstream serve` flag, repeatable (e.g. --server-arg=--detect-every=2)")
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for chatty in ("aioice", "aiortc", "clients.webrtc"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    try:
        config = SoakConfig(out=args.out, sessions=args.sessions, minutes=args.minutes, loss=args.loss,
                            jitter_ms=args.jitter_ms, reorder=args.reorder, delay_ms=args.delay_ms, models=args.models,
                            pipeline=args.pipeline, fps=args.fps, size=args.size, sample_s=args.sample_s,
                            baseline_s=args.baseline_s, warmup_s=args.warmup_s, edge_minutes=args.edge_minutes,
                            seed=args.seed, server_args=tuple(args.server_args))
    except ValueError as exc:
        print(f"soak: error: {exc}", file=sys.stderr)
        return 2
    summary = asyncio.run(run_soak(config))
    print(json.dumps({key: summary.get(key) for key in ("fps", "server_added_p95_ms", "threads", "fds", "rss_mb",
                                                        "wire_during_loss", "checks")}, indent=2))
    print(f"wrote {config.out / 'soak.csv'}, {config.out / 'soak.png'} and {config.out / 'summary.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
