"""Round-trip latency and output fps of the stream server, echo vs swap, over loopback WebRTC.

For each mode the script starts `swapstream serve --pipeline MODE` in its own process, sends the same 640x480
video from an aiortc client through POST /offer for N seconds at a fixed frame rate, and reads each returned
frame's number from a code stamped in its top-left 200x24 px (the corner the server never draws on). Latency
is per frame: handed to the client's encoder -> decoded back at the client. The swap mode's figures minus the
echo mode's are the latency the face swap adds.

    python bench/stream_latency.py --models models/demo --seconds 20

Runs unchanged on a CUDA machine: the server's model loader picks TensorRT / CUDA / CPU by itself and the
provider is printed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import re
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiortc import RTCPeerConnection, RTCSessionDescription  # noqa: E402
from aiortc.mediastreams import MediaStreamError, MediaStreamTrack  # noqa: E402
from av import VideoFrame  # noqa: E402

from rtc.jitterbuffer import JITTER_BUFFER_MODES  # noqa: E402
from swapstream.reserved_corner import RESERVED_CORNER_HEIGHT, RESERVED_CORNER_WIDTH  # noqa: E402

CODE_BITS = 10
CODE_CELL = RESERVED_CORNER_WIDTH // CODE_BITS
CODE_HEIGHT = RESERVED_CORNER_HEIGHT
VIDEO_CLOCK = 90_000

logger = logging.getLogger("bench.stream_latency")


def stamp(rgb: np.ndarray, index: int) -> np.ndarray:
    for bit in range(CODE_BITS):
        rgb[:CODE_HEIGHT, bit * CODE_CELL:(bit + 1) * CODE_CELL] = 255 if (index >> bit) & 1 else 0
    return rgb


def read_code(rgb: np.ndarray) -> int:
    value = 0
    for bit in range(CODE_BITS):
        if rgb[6:CODE_HEIGHT - 6, bit * CODE_CELL + 5:(bit + 1) * CODE_CELL - 5].mean() > 128:
            value |= 1 << bit
    return value


class PacedTrack(MediaStreamTrack):
    """Sends frames in a loop at a fixed rate, stamping each with its number; remembers when each left."""

    kind = "video"

    def __init__(self, frames: list[np.ndarray], fps: float) -> None:
        super().__init__()
        self.frames, self.fps = frames, fps
        self.index = 0
        self.start: float | None = None
        self.sent_at: dict[int, float] = {}

    async def recv(self) -> VideoFrame:
        if self.readyState != "live":
            raise MediaStreamError
        if self.start is None:
            self.start = time.monotonic()
        delay = self.start + self.index / self.fps - time.monotonic()
        if delay > 0:
            await asyncio.sleep(delay)
        index = self.index
        self.index += 1
        frame = VideoFrame.from_ndarray(stamp(self.frames[index % len(self.frames)].copy(), index), format="rgb24")
        frame.pts, frame.time_base = int(round(index * VIDEO_CLOCK / self.fps)), Fraction(1, VIDEO_CLOCK)
        self.sent_at[index] = time.monotonic()
        return frame


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


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _get(url: str, timeout: float = 5.0) -> str:
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return response.read().decode()


def start_server(mode: str, args: argparse.Namespace, port: int, jitter_buffer: str) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "swapstream.cli", "serve", "--pipeline", mode, "--host", "127.0.0.1",
               "--port", str(port), "--jitter-buffer", jitter_buffer, "--detect-every", str(args.detect_every),
               "--max-sessions", "1"]
    if mode == "swap":
        command += ["--models", str(args.models)]
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                               text=True)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"the {mode} server exited: {process.stderr.read() if process.stderr else ''}")
        try:
            _get(f"http://127.0.0.1:{port}/healthz", timeout=1)
            return process
        except OSError:
            time.sleep(0.2)
    process.kill()
    raise SystemExit(f"the {mode} server did not answer /healthz within 60 s")


def stop_server(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def parse_stage_means(metrics: str) -> tuple[dict[str, float], float | None]:
    sums = {m[0]: float(m[1]) for m in re.findall(r'^swapstream_stage_duration_ms_sum\{stage="(\w+)"\} (\S+)$',
                                                  metrics, re.M)}
    counts = {m[0]: float(m[1]) for m in re.findall(r'^swapstream_stage_duration_ms_count\{stage="(\w+)"\} (\S+)$',
                                                    metrics, re.M)}
    stages = {s: round(sums[s] / counts[s], 2) for s in sums if counts.get(s)}
    added_sum = re.search(r"^swapstream_added_latency_ms_sum (\S+)$", metrics, re.M)
    added_count = re.search(r"^swapstream_added_latency_ms_count (\S+)$", metrics, re.M)
    added = None
    if added_sum and added_count and float(added_count.group(1)) > 0:
        added = round(float(added_sum.group(1)) / float(added_count.group(1)), 2)
    return stages, added


async def measure(base_url: str, frames: list[np.ndarray], args: argparse.Namespace,
                  jitter_buffer: str) -> tuple[dict[int, float], dict[int, float]]:
    """Stream for args.seconds; returns (sent_at, arrived_at) by frame number."""
    import aiohttp

    pc = RTCPeerConnection()
    source = PacedTrack(frames, args.fps)
    transceiver = pc.addTransceiver(source, direction="sendrecv")
    try:
        from rtc.jitterbuffer import install_on_receiver

        install_on_receiver(transceiver.receiver, jitter_buffer)
    except ImportError:
        logger.warning("rtc.jitterbuffer missing: the client keeps aiortc's stock jitter buffer")
    arrived_at: dict[int, float] = {}
    done = asyncio.Event()

    async def collect(track: MediaStreamTrack) -> None:
        try:
            while not done.is_set():
                frame = await track.recv()
                now = time.monotonic()
                code = read_code(frame.to_ndarray(format="rgb24"))
                latest = source.index - 1
                number = latest - ((latest - code) % (1 << CODE_BITS))  # unwrap the 10-bit code
                arrived_at.setdefault(number, now)
        except MediaStreamError:
            pass

    tasks: list[asyncio.Task[None]] = []
    pc.on("track", lambda track: tasks.append(asyncio.ensure_future(collect(track))))
    await pc.setLocalDescription(await pc.createOffer())
    async with aiohttp.ClientSession() as http:
        async with http.post(base_url + "offer", json={"sdp": pc.localDescription.sdp, "type": "offer",
                                                        "options": {}}) as response:
            reply = await response.json()
            if response.status != 200:
                raise SystemExit(f"/offer failed: {response.status} {reply}")
    await pc.setRemoteDescription(RTCSessionDescription(reply["sdp"], reply["type"]))
    await asyncio.sleep(args.seconds)
    done.set()
    await asyncio.sleep(0.5)  # let frames in flight arrive
    source.stop()
    await pc.close()
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    return dict(source.sent_at), arrived_at


def summarise(mode: str, jitter_buffer: str, provider: str, sent_at: dict[int, float], arrived_at: dict[int, float],
              args: argparse.Namespace, metrics: str) -> ModeResult:
    warm = args.warmup * args.fps  # frames sent during warm-up are left out
    last_sent = max(sent_at) if sent_at else 0
    window = [i for i in sent_at if warm <= i <= last_sent - args.fps * 0.5]
    received = [i for i in window if i in arrived_at]
    latencies = np.array([(arrived_at[i] - sent_at[i]) * 1000 for i in received])
    duration = (sent_at[window[-1]] - sent_at[window[0]]) if len(window) > 1 else 1.0
    stages, added = parse_stage_means(metrics)
    return ModeResult(
        mode=mode, jitter_buffer=jitter_buffer, provider=provider, seconds=round(duration, 2), frames_sent=len(window),
        frames_received=len(received), fps_out=round(len(received) / duration, 2),
        latency_ms_p50=round(float(np.percentile(latencies, 50)), 1) if len(latencies) else float("nan"),
        latency_ms_p95=round(float(np.percentile(latencies, 95)), 1) if len(latencies) else float("nan"),
        server_stage_ms=stages, server_added_ms_mean=added)


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
    for mode, jitter_buffer in runs:
        port = _free_port()
        server = start_server(mode, args, port, jitter_buffer)
        try:
            health = json.loads(_get(f"http://127.0.0.1:{port}/healthz"))
            logger.info("%s (%s jitter buffer): streaming %.0f s of %dx%d at %.0f fps (provider %s)", mode,
                        jitter_buffer, args.seconds, *args.size, args.fps, health["provider"])
            sent_at, arrived_at = asyncio.run(measure(f"http://127.0.0.1:{port}/", frames, args, jitter_buffer))
            metrics = _get(f"http://127.0.0.1:{port}/metrics")
        finally:
            stop_server(server)
        results.append(summarise(mode, jitter_buffer, health["provider"], sent_at, arrived_at, args, metrics))

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
