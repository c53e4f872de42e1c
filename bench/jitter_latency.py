"""Echo round trip over loopback WebRTC with the marker and the stock jitter buffer, side by side.

Two aiortc peers in one process (clients.loopback): the client sends frames stamped with their number
(clients.framecode, as `swapstream profile` does), an echo peer sends each received frame back, the client reads
the number and times the round trip (clients.profile). Both video receivers use the chosen buffer. Runs
alternate marker, stock, marker, stock... so machine noise falls on both modes alike.

    PYTHONPATH=. .venv/bin/python bench/jitter_latency.py --seconds 10 --pairs 3 --fps 15 --size 640x480
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import sys
from dataclasses import dataclass
from pathlib import Path

from tqdm import tqdm

from clients import framecode
from clients.loopback import EchoRun, interleaved_runs, moving_texture, summarize_mode
from swapstream.atomic import atomic_write_text

MAX_DISTINCT_FRAMES = 90  # longer runs loop the texture back and forth (memory: 0.9 MB per 640x480 frame)


@dataclass(frozen=True)
class BenchConfig:
    """Flags of this benchmark."""

    seconds: float
    pairs: int
    fps: int
    width: int
    height: int
    json_out: Path | None

    def __post_init__(self) -> None:
        if self.seconds <= 1.0:
            raise ValueError(f"--seconds must be more than 1, got {self.seconds}")
        if self.pairs < 1:
            raise ValueError(f"--pairs must be at least 1, got {self.pairs}")
        if not 1 <= self.fps <= 60:
            raise ValueError(f"--fps must be in [1, 60], got {self.fps}")
        too_small = self.width < framecode.CODE_WIDTH or self.height < 2 * framecode.CODE_HEIGHT
        if too_small or self.width % 4 or self.height % 4:
            raise ValueError(f"--size {self.width}x{self.height} too small or not a multiple of 4")

    @property
    def frame_count(self) -> int:
        """Frames sent per run."""
        return int(self.seconds * self.fps)

    @property
    def warmup_frames(self) -> int:
        """The first second: keyframe and bitrate ramp-up, left out of the figures."""
        return self.fps


def parse_args(argv: list[str]) -> BenchConfig:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="video per run (default 10)")
    parser.add_argument("--pairs", type=int, default=3, help="marker+stock run pairs (default 3)")
    parser.add_argument("--fps", type=int, default=15)
    parser.add_argument("--size", default="640x480", help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--json", dest="json_out", type=Path, default=None, help="also write the figures here")
    args = parser.parse_args(argv)
    try:
        width, height = (int(v) for v in args.size.lower().split("x"))
    except ValueError:
        parser.error(f"--size must look like 640x480, got {args.size!r}")
    try:
        return BenchConfig(args.seconds, args.pairs, args.fps, width, height, args.json_out)
    except ValueError as exc:
        parser.error(str(exc))
        raise  # unreachable: parser.error exits


async def run_bench(config: BenchConfig) -> list[EchoRun]:
    frames = moving_texture((config.width, config.height), min(config.frame_count, MAX_DISTINCT_FRAMES))
    with tqdm(total=2 * config.pairs, desc="echo runs", unit="run") as progress:
        return await interleaved_runs(config.pairs, frames, config.fps, config.frame_count,
                                      on_run=lambda _: progress.update())


def main(argv: list[str]) -> int:
    config = parse_args(argv)
    runs = asyncio.run(run_bench(config))
    marker = summarize_mode(runs, "marker", config.warmup_frames)
    stock = summarize_mode(runs, "stock", config.warmup_frames)
    print(f"echo round trip, {config.width}x{config.height} @ {config.fps} fps, loopback, "
          f"{config.pairs} x {config.seconds:g} s per mode (first second left out)")
    print(f"{'buffer':8} {'p50 ms':>8} {'p95 ms':>8} {'frames back':>12}")
    for summary in (marker, stock):
        back = sum(summary.frames_back)
        sent = summary.frames_sent * config.pairs
        print(f"{summary.mode:8} {summary.p50_ms:8.1f} {summary.p95_ms:8.1f} {back:>6}/{sent}")
    print(f"gain at p50: {stock.p50_ms - marker.p50_ms:.1f} ms (one frame interval = {1000 / config.fps:.1f} ms)")
    if config.json_out is not None:
        atomic_write_text(
            config.json_out,
            json.dumps({"config": {**dataclasses.asdict(config), "json_out": str(config.json_out)},
                        "marker": dataclasses.asdict(marker), "stock": dataclasses.asdict(stock)}, indent=2),
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
