"""What the hop to Triton adds to a live session: round trip per frame through `swapstream serve` with the models
in-process and with `--inference triton://`, 1 and 4 sessions, in one run.

The profile is `swapstream profile`'s (clients.profile.measure_run, as bench/stream_latency.py uses it): a
640x480 synthetic face at 15 fps sent through POST /offer, each frame's number stamped in the corner the server
never draws on and read back, the round trip timed per frame. For each session count and each round, in turn:
- `in-process`: `swapstream serve --models M` (ONNX Runtime in the server, its micro-batcher on);
- `triton D us`: `swapstream serve --models M --inference triton://...` (no batcher in the server) against a
  `swapstream triton` whose dynamic batcher waits at most D us for company (`--queue-delays`, default 0; one
  Triton per delay, all started once for the run).
N sessions stream at once from this process; their frames after the warm-up are pooled. Each Triton row's added
p50/p95 and ratio are against the in-process row of the same round and session count. Also per row: the server
process's CPU time per frame it sent (decode, tracking, blend, encode; for in-process also inference), and for
Triton rows Triton's own means (queue wait per request, model run per execution, faces per execution) and its
processes' CPU time per face; and the server's own mean `infer` stage (in-process: the model run with any batching
wait; Triton: the whole round trip to it), the hop in the server's terms, steadier than round trips.

    PYTHONPATH=. .venv/bin/python bench/triton_hop.py --models models/demo
    PYTHONPATH=. .venv/bin/python bench/triton_hop.py --models models/demo --sessions 1 --rounds 3 --queue-delays 0 2000
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import statistics
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clients.profile import ProfileConfig, measure_run  # noqa: E402
from clients.roundtrip import RunReport  # noqa: E402
from clients.webrtc import ServerEndpoint  # noqa: E402
from fleet.process import ServeCommand, TritonCommand, descendants, process_stats  # noqa: E402
from swapstream.triton_model import MAX_QUEUE_DELAY_US, triton_model_name  # noqa: E402

log = logging.getLogger("bench.triton_hop")

IN_PROCESS = "in-process"


@dataclass(frozen=True)
class HopConfig:
    """Flags of this benchmark."""

    models: Path
    sessions: tuple[int, ...]
    queue_delays: tuple[int, ...]
    rounds: int
    seconds: float
    warmup: float
    fps: float
    size: tuple[int, int]
    detect_every: int
    json: Path | None


@dataclass
class Row:
    """One mode at one session count in one round."""

    mode: str
    sessions: int
    round: int
    p50_ms: float
    p95_ms: float
    frames: int
    fps_out: float
    server_cpu_ms_per_frame: float
    server_infer_ms: float | None
    """The server's mean `infer` stage: the model in-process (with any batching wait), or the round trip to Triton."""
    triton: dict[str, float] = field(default_factory=dict)


def parse_args(argv: list[str]) -> HopConfig:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models/demo"), help="models folder (manifest.json)")
    parser.add_argument("--sessions", type=int, nargs="+", default=[1, 4], help="session counts (default 1 4)")
    parser.add_argument("--queue-delays", type=int, nargs="+", default=[MAX_QUEUE_DELAY_US],
                        help=f"Triton dynamic-batcher max queue delays in us, one Triton each (default "
                             f"{MAX_QUEUE_DELAY_US})")
    parser.add_argument("--rounds", type=int, default=1, help="repeat every row this often, in turn (default 1)")
    parser.add_argument("--seconds", type=float, default=15.0, help="streaming time per row (default 15)")
    parser.add_argument("--warmup", type=float, default=3.0, help="seconds left out at the start (default 3)")
    parser.add_argument("--fps", type=float, default=15.0)
    parser.add_argument("--size", type=lambda s: tuple(int(v) for v in s.split("x")), default=(640, 480))
    parser.add_argument("--detect-every", type=int, default=3, help="server --detect-every (default 3, as serve)")
    parser.add_argument("--json", type=Path, help="also write every row here")
    args = parser.parse_args(argv)
    if not (args.models / "manifest.json").is_file():
        parser.error(f"--models {args.models}: no manifest.json")
    return HopConfig(args.models, tuple(args.sessions), tuple(args.queue_delays), args.rounds, args.seconds,
                     args.warmup, args.fps, args.size, args.detect_every, args.json)


def process_tree_cpu_s(pid: int) -> float:
    """User + system CPU seconds of `pid` and every process below it (tritonserver, its Python backend stubs)."""
    stats = process_stats()
    return sum(stat.cpu_s for stat in [stats[pid], *descendants(pid, stats)] if stat.pid in stats)


def pooled(reports: list[RunReport], warmup_s: float) -> tuple[float, float, int]:
    """p50, p95 and count of every session's round trips after the warm-up."""
    samples = [s.latency_ms for report in reports for s in report.samples if s.sent_s >= warmup_s]
    if not samples:
        return float("nan"), float("nan"), 0
    p50, p95 = np.percentile(samples, [50, 95])
    return float(p50), float(p95), len(samples)


async def stream_sessions(url: str, sessions: int, frames: list[np.ndarray], config: HopConfig) -> list[RunReport]:
    """`sessions` profile runs against `url` at once."""
    profile = ProfileConfig(endpoint=ServerEndpoint(url), out=Path("."), seconds=config.seconds, fps=config.fps,
                            size=config.size, warmup_s=config.warmup)
    return list(await asyncio.gather(*(measure_run(f"session {k}", profile.endpoint, frames, config.fps, profile, {})
                                       for k in range(sessions))))


def measure(mode: str, sessions: int, round_: int, frames: list[np.ndarray], config: HopConfig, logs: Path,
            triton: TritonCommand | None) -> Row:
    """One row: start the server for this mode, stream, read its CPU time and Triton's metrics, stop it."""
    extra = ("--max-sessions", str(sessions), "--detect-every", str(config.detect_every))
    if triton is not None:
        extra += ("--inference", triton.url)
    server = ServeCommand(config.models, logs, extra)
    server.start(120)
    try:
        model = triton_model_name("swap_a2b")
        triton_before = triton.metrics() if triton else {}
        triton_cpu = process_tree_cpu_s(triton.pid) if triton else 0.0
        sent_before = server.metrics().get("swapstream_frames_out_total", 0.0)
        cpu_before = process_tree_cpu_s(server.pid)
        reports = asyncio.run(stream_sessions(server.url, sessions, frames, config))
        server_cpu = process_tree_cpu_s(server.pid) - cpu_before
        sent = server.metrics().get("swapstream_frames_out_total", 0.0) - sent_before
        triton_stats: dict[str, float] = {}
        if triton is not None:
            triton_cpu = process_tree_cpu_s(triton.pid) - triton_cpu
            after = triton.metrics()

            def delta(metric: str) -> float:
                return after.get((metric, model), 0.0) - triton_before.get((metric, model), 0.0)

            requests, executions = delta("nv_inference_request_success"), delta("nv_inference_exec_count")
            faces = delta("nv_inference_count")
            if requests and executions:
                triton_stats = {"requests": requests, "faces_per_execution": faces / executions,
                                "queue_ms": delta("nv_inference_queue_duration_us") / requests / 1000,
                                "compute_ms": delta("nv_inference_compute_infer_duration_us") / executions / 1000,
                                "cpu_ms_per_face": triton_cpu * 1000 / max(faces, 1)}
    finally:
        server.stop()
    p50, p95, count = pooled(reports, config.warmup)
    fps_out = statistics.fmean(report.fps_out for report in reports)
    infer = [report.server_stage_ms["infer"] for report in reports if "infer" in report.server_stage_ms]
    row = Row(mode, sessions, round_, p50, p95, count, fps_out, server_cpu * 1000 / max(sent, 1),
              statistics.fmean(infer) if infer else None, triton_stats)
    log.info("%s, %d session(s), round %d: p50 %.1f ms, p95 %.1f ms (%d frames), %.1f fps out per session", mode,
             sessions, round_, p50, p95, count, fps_out)
    return row


def run(config: HopConfig) -> list[Row]:
    from faces.synthetic import IDENTITY_A, render_sequence

    frames = [f.frame for f in render_sequence(IDENTITY_A, 24, size=config.size, seed=3, fps=config.fps)]
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="triton-hop-") as folder, contextlib.ExitStack() as stack:
        logs = Path(folder)
        tritons: dict[str, TritonCommand] = {}
        for delay in config.queue_delays:
            triton = TritonCommand(config.models, logs, extra_args=("--threads", "1", "--max-queue-delay-us",
                                                                    str(delay)))
            print(f"swapstream triton, max queue delay {delay} us: ready in {triton.start():.1f} s")
            stack.callback(triton.stop)
            tritons[f"triton {delay} us"] = triton
        for round_ in range(1, config.rounds + 1):
            for sessions in config.sessions:
                rows.append(measure(IN_PROCESS, sessions, round_, frames, config, logs, None))
                for mode, triton in tritons.items():
                    rows.append(measure(mode, sessions, round_, frames, config, logs, triton))
    return rows


def print_rows(rows: list[Row], config: HopConfig) -> None:
    print(f"\nTriton hop, {config.size[0]}x{config.size[1]} @ {config.fps:g} fps per session, {config.seconds:g} s "
          f"per row ({config.warmup:g} s warm-up left out), detect every {config.detect_every}; added and ratio: "
          "over in-process, same round and sessions")
    print(f"{'mode':<16} {'sess':>4} {'rnd':>3} {'p50 ms':>7} {'p95 ms':>7} {'added p50':>9} {'added p95':>9} "
          f"{'ratio p50':>9} {'fps out':>7} {'srv CPU ms/frame':>16} {'srv infer':>9} {'Triton queue':>12} {'compute':>7} "
          f"{'faces/exec':>10} {'CPU ms/face':>11}")
    baseline = {(r.sessions, r.round): r for r in rows if r.mode == IN_PROCESS}
    for row in rows:
        base = baseline[(row.sessions, row.round)]
        line = (f"{row.mode:<16} {row.sessions:>4} {row.round:>3} {row.p50_ms:>7.1f} {row.p95_ms:>7.1f} "
                f"{row.p50_ms - base.p50_ms:>+9.1f} {row.p95_ms - base.p95_ms:>+9.1f} "
                f"{row.p50_ms / base.p50_ms:>9.2f} {row.fps_out:>7.1f} {row.server_cpu_ms_per_frame:>16.1f} "
                f"{row.server_infer_ms if row.server_infer_ms is not None else float('nan'):>9.2f}")
        if row.triton:
            line += (f" {row.triton['queue_ms']:>12.2f} {row.triton['compute_ms']:>7.2f} "
                     f"{row.triton['faces_per_execution']:>10.2f} {row.triton['cpu_ms_per_face']:>11.1f}")
        print(line)
    for sessions in config.sessions:
        for mode in sorted({r.mode for r in rows if r.mode != IN_PROCESS}):
            added = [r.p50_ms - baseline[(r.sessions, r.round)].p50_ms for r in rows
                     if r.mode == mode and r.sessions == sessions]
            print(f"{mode}, {sessions} session(s): added p50 over in-process "
                  f"{' / '.join(f'{a:+.1f}' for a in added)} ms across rounds")


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    config = parse_args(sys.argv[1:] if argv is None else argv)
    rows = run(config)
    print_rows(rows, config)
    if config.json:
        config.json.write_text(json.dumps({"config": {k: str(v) for k, v in asdict(config).items()},
                                           "rows": [asdict(r) for r in rows]}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
