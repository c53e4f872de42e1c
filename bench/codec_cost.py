"""CPU cost of a session's video codec work per frame on a media server, at 480p and 720p.

A media server decodes every frame a peer sends and encodes every frame it sends back, with aiortc's own VP8
codec classes (aiortc.codecs.vpx: PyAV's libvpx encoder and decoder with aiortc's settings: realtime deadline,
cpu-used -6, CBR at the target bitrate; one encoder thread up to 640x480, two above that on 3+ cores). This times exactly that,
in one process, over a moving synthetic face at 15 fps: encode (RGB -> yuv420p -> VP8, packetised as aiortc
sends it), decode (the RTP payloads -> yuv420p frame) and the server's own conversions around them (decoded frame
-> RGB array, RGB array -> frame). Each step is timed in CPU time of the calling thread (where libvpx runs with
one thread), so the figures hold on a busy machine where wall time would not; the whole is also given as the
process's CPU time (all threads, which includes a second encoder thread where aiortc starts one).

    PYTHONPATH=. .venv/bin/python bench/codec_cost.py
    PYTHONPATH=. .venv/bin/python bench/codec_cost.py --sizes 640x480 1280x720 --bitrates 500000 1500000 --frames 300
"""

from __future__ import annotations

import argparse
import sys
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from aiortc.codecs.vpx import DEFAULT_BITRATE, MAX_BITRATE, Vp8Decoder, Vp8Encoder, vp8_depayload  # noqa: E402
from aiortc.jitterbuffer import JitterFrame  # noqa: E402
from av import VideoFrame  # noqa: E402

FPS = 15
VIDEO_CLOCK = 90_000


@dataclass(frozen=True)
class Cost:
    """Per-frame means of one size and bitrate: CPU ms of each step (this thread) and of the whole (process)."""

    size: tuple[int, int]
    bitrate: int
    frames: int
    to_frame_ms: float
    encode_ms: float
    decode_ms: float
    to_rgb_ms: float
    cpu_ms: float
    kbit_per_frame: float


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", nargs="+", default=["640x480", "1280x720"], help="frame sizes WxH")
    parser.add_argument("--bitrates", type=int, nargs="+", default=[DEFAULT_BITRATE, MAX_BITRATE],
                        help=f"encoder target bitrates (default aiortc's start {DEFAULT_BITRATE} and its most "
                             f"{MAX_BITRATE})")
    parser.add_argument("--frames", type=int, default=225, help="frames timed per row (default 225: 15 s)")
    parser.add_argument("--distinct", type=int, default=45, help="distinct rendered frames, looped (default 45)")
    return parser.parse_args(argv)


def render(size: tuple[int, int], count: int) -> list[np.ndarray]:
    """A moving synthetic face at `size`, RGB uint8."""
    from faces.synthetic import IDENTITY_A, render_sequence

    return [r.frame for r in render_sequence(IDENTITY_A, count, size=size, seed=11, fps=FPS)]


def measure(frames: list[np.ndarray], bitrate: int, count: int) -> Cost:
    """Encode and decode `count` frames (looped) as a server does for one session; means per frame."""
    encoder, decoder = Vp8Encoder(), Vp8Decoder()
    encoder.target_bitrate = bitrate
    steps = {"to_frame": 0.0, "encode": 0.0, "decode": 0.0, "to_rgb": 0.0}
    bits = 0
    cpu_start = time.process_time()
    for index in range(count):
        rgb = frames[index % len(frames)]
        t0 = time.thread_time()
        frame = VideoFrame.from_ndarray(rgb, format="rgb24")
        frame.pts, frame.time_base = index * VIDEO_CLOCK // FPS, Fraction(1, VIDEO_CLOCK)
        t1 = time.thread_time()
        payloads, timestamp = encoder.encode(frame, force_keyframe=index == 0)
        t2 = time.thread_time()
        data = b"".join(vp8_depayload(payload) for payload in payloads)
        decoded = decoder.decode(JitterFrame(data=data, timestamp=timestamp))
        t3 = time.thread_time()
        for picture in decoded:
            picture.to_ndarray(format="rgb24")
        t4 = time.thread_time()
        bits += 8 * len(data)
        for name, seconds in (("to_frame", t1 - t0), ("encode", t2 - t1), ("decode", t3 - t2), ("to_rgb", t4 - t3)):
            steps[name] += seconds
    cpu = time.process_time() - cpu_start
    height, width = frames[0].shape[:2]
    return Cost((width, height), bitrate, count, *(steps[name] * 1000 / count for name in steps),
                cpu * 1000 / count, bits / 1000 / count)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    costs = []
    for text in args.sizes:
        width, height = (int(v) for v in text.split("x"))
        frames = render((width, height), args.distinct)
        for bitrate in args.bitrates:
            measure(frames, bitrate, 15)  # warm-up: codec set-up, first keyframe
            costs.append(measure(frames, bitrate, args.frames))
    print(f"\nVP8 through aiortc's codec classes, {args.frames} frames per row at {FPS} fps content, one process")
    print("CPU ms per frame in each step (this thread), their sum, and the process's CPU ms per frame (all threads)")
    print(f"{'size':>9} {'kbit/s':>7} {'RGB->frame':>10} {'encode':>7} {'decode':>7} {'->RGB':>6} {'sum':>6} "
          f"{'process':>7} {'kbit/frame':>10}")
    for cost in costs:
        total = cost.to_frame_ms + cost.encode_ms + cost.decode_ms + cost.to_rgb_ms
        print(f"{cost.size[0]}x{cost.size[1]:<4} {cost.bitrate // 1000:>7} {cost.to_frame_ms:>10.2f} "
              f"{cost.encode_ms:>7.2f} {cost.decode_ms:>7.2f} {cost.to_rgb_ms:>6.2f} {total:>6.2f} "
              f"{cost.cpu_ms:>7.2f} {cost.kbit_per_frame:>10.1f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
