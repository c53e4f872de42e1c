"""Round-trip latency and output fps of the stream server, echo vs swap, over loopback WebRTC.

For each mode the script starts `swapstream serve --pipeline MODE` in its own process and measures it with the
profiler's own loop (`clients.profile.measure_run`): the same 640x480 video sent through POST /offer for N
seconds at a fixed frame rate, each frame's number stamped in its top-left 200x24 px (`clients.framecode`, the
corner the server never draws on) and read back. Latency is per frame: handed to the client's encoder -> decoded
back at the client. The swap mode's figures minus the echo mode's are the latency the face swap adds.

    python bench/stream_latency.py --models models/demo --seconds 20

Runs unchanged on a CUDA machine: the server's model loader picks TensorRT / CUDA / CPU by itself and the
provider is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
import tempfile
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.server_process import ServerProcess  # noqa: E402
from clients.profile import ProfileConfig, measure_run  # noqa: E402
from clients.webrtc import ServerEndpoint  # noqa: E402
from rtc.jitterbuffer import JITTER_BUFFER_MODES, JitterBufferMode  # noqa: E402

logger = logging.getLogger("bench.stream_latency")


@dataclass
class ModeResult:
    """One mode's figures."""

    mode: str
    jitter_buffer: str
    provider: str
    seconds: float
    frames_sent: int
    frames_received: int
    fps_out: float
    latency_ms_p50: float
    latency_ms_p95: float
    server_stage_ms: dict[str, float] = field(default_factory=dict)
    server_added_ms_mean: float | None = None


def server_args(mode: str, args: argparse.Namespace, jitter_buffer: str) -> list[str]:
    """`swapstream serve` flags for one mode (bench.server_process.ServerProcess adds host and port)."""
    flags = ["--pipeline", mode, "--jitter-buffer", jitter_buffer, "--detect-every", str(args.detect_every),
             "--max-sessions", "1"]
    return flags + (["--models", str(args.models)] if mode == "swap" else [])


async def measure(mode: str, base_url: str, provider: str, frames: list[np.ndarray], args: argparse.Namespace,
                  jitter_buffer: JitterBufferMode) -> ModeResult:
    """Stream for args.seconds with the profiler's loop; the figures leave out args.warmup seconds at the start."""
    config = ProfileConfig(endpoint=ServerEndpoint(base_url), out=Path("."), seconds=args.seconds, fps=args.fps,
                           size=args.size, jitter_buffer=jitter_buffer, warmup_s=args.warmup)
    report = await measure_run(mode, config.endpoint, frames, args.fps, config, {})
    return ModeResult(
        mode=mode, jitter_buffer=jitter_buffer, provider=provider, seconds=round(args.seconds - args.warmup, 2),
        frames_sent=report.frames_sent, frames_received=report.frames_unique, fps_out=report.fps_out,
        latency_ms_p50=report.latency_ms.get("p50", float("nan")),
        latency_ms_p95=report.latency_ms.get("p95", float("nan")),
        server_stage_ms=report.server_stage_ms, server_added_ms_mean=report.server_added_ms)


def load_frames(args: argparse.Namespace) -> list[np.ndarray]:
    width, height = args.size
    if args.input:
        import av

        frames = []
        with av.open(str(args.input)) as container:
            for frame in container.decode(video=0):
                frames.append(frame.to_ndarray(format="rgb24", width=width, height=height))
                if len(frames) >= args.frames:
                    break
        if not frames:
            raise SystemExit(f"--input {args.input}: no video frames")
        return frames
    from faces.synthetic import IDENTITY_A, render_sequence

    logger.info("rendering %d synthetic %dx%d frames of identity A", args.frames, width, height)
    return [f.frame for f in render_sequence(IDENTITY_A, args.frames, size=(width, height), seed=3, fps=args.fps)]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=ROOT / "models" / "demo", help="models folder (manifest.json)")
    parser.add_argument("--seconds", type=float, default=15.0, help="streaming time per mode (default 15)")
    parser.add_argument("--warmup", type=float, default=2.0, help="seconds left out at the start (default 2)")
    parser.add_argument("--fps", type=float, default=15.0, help="input frame rate (default 15)")
    parser.add_argument("--size", type=lambda s: tuple(int(v) for v in s.split("x")), default=(640, 480),
                        help="frame size WxH (default 640x480)")
    parser.add_argument("--frames", type=int, default=24, help="distinct frames, sent in a loop (default 24)")
    parser.add_argument("--input", type=Path, help="a video file to send instead of rendered synthetic frames")
    parser.add_argument("--detect-every", type=int, default=3, help="server --detect-every (default 3, as serve)")
    parser.add_argument("--jitter-buffer", choices=JITTER_BUFFER_MODES, default="marker",
                        help="jitter buffer on the server and this client (default marker)")
    parser.add_argument("--compare-jitter-buffers", action="store_true",
                        help="also run echo with the other jitter buffer and print the difference")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if not (args.models / "manifest.json").is_file():
        parser.error(f"--models {args.models}: no manifest.json (build it with `make demo-model` or "
                     "`swapstream export RUN... --out DIR`)")
    if args.seconds <= args.warmup + 1:
        parser.error("--seconds must exceed --warmup by more than 1")
    return args


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("aioice").setLevel(logging.WARNING)
    args = parse_args(argv)
    frames = load_frames(args)
    other = "stock" if args.jitter_buffer == "marker" else "marker"
    runs = [("echo", args.jitter_buffer), ("swap", args.jitter_buffer)]
    if args.compare_jitter_buffers:
        runs.append(("echo", other))
    results: list[ModeResult] = []
    with tempfile.TemporaryDirectory(prefix="stream-latency-") as logs:
        for mode, jitter_buffer in runs:
            log_path = Path(logs) / f"serve-{mode}-{jitter_buffer}.log"
            with ServerProcess(server_args(mode, args, jitter_buffer), log_path, startup_timeout_s=60) as server:
                provider = server.healthz()["provider"]
                logger.info("%s (%s jitter buffer): streaming %.0f s of %dx%d at %.0f fps (provider %s)", mode,
                            jitter_buffer, args.seconds, *args.size, args.fps, provider)
                results.append(asyncio.run(measure(mode, server.url.rstrip("/"), provider, frames, args,
                                                   jitter_buffer)))

    echo, swap = results[0], results[1]
    print(f"\nstream latency, {args.size[0]}x{args.size[1]} @ {args.fps:g} fps in, {args.seconds:g} s per mode, "
          f"detect every {args.detect_every}")
    print(f"{'mode':<6} {'jitter':<7} {'provider':<22} {'sent':>5} {'back':>5} {'fps out':>8} {'p50 ms':>7} "
          f"{'p95 ms':>7}  server stage means (ms)")
    for r in results:
        stages = " ".join(f"{k}={v}" for k, v in r.server_stage_ms.items())
        print(f"{r.mode:<6} {r.jitter_buffer:<7} {r.provider:<22} {r.frames_sent:>5} {r.frames_received:>5} "
              f"{r.fps_out:>8.2f} {r.latency_ms_p50:>7.1f} {r.latency_ms_p95:>7.1f}  {stages} "
              f"(server added {r.server_added_ms_mean})")
    added_p50 = swap.latency_ms_p50 - echo.latency_ms_p50
    added_p95 = swap.latency_ms_p95 - echo.latency_ms_p95
    ratio = swap.fps_out / echo.fps_out if echo.fps_out else float("nan")
    print(f"swap over echo: added latency p50 {added_p50:+.1f} ms, p95 {added_p95:+.1f} ms; "
          f"fps ratio swap/echo {ratio:.3f}")
    print(f"targets: fps ratio >= 0.9: {'met' if ratio >= 0.9 else 'MISSED'}; "
          f"added p50 <= 30 ms: {'met' if added_p50 <= 30 else 'MISSED'}")
    if args.compare_jitter_buffers:
        marker, stock = (echo, results[2]) if args.jitter_buffer == "marker" else (results[2], echo)
        print(f"echo round trip p50: marker {marker.latency_ms_p50:.1f} ms, stock {stock.latency_ms_p50:.1f} ms "
              f"({stock.latency_ms_p50 - marker.latency_ms_p50:+.1f} ms for marker)")
    if args.json:
        args.json.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()},
                                         "modes": [asdict(r) for r in results],
                                         "added_ms_p50": added_p50, "added_ms_p95": added_p95,
                                         "fps_ratio": ratio}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
