"""What C2PA signing adds to a recording: signing a 10 s 640x480 MP4 against copying it (the same bytes moved).

The recording is written by the client's own recorder (H.264, 15 fps) from synthetic face frames; the keys come
from `swapstream keys init`'s code. Each figure is the median of --repeat runs, in the same process:
  copy     an atomic copy of the recording (what writing the file costs anyway)
  sign     sign_mp4: hash the file, sign the manifest (ES256), write the signed copy atomically
  verify   verify_file: read the manifest back, re-hash the file, check the signature
  check    load_signing_credentials: the start-up check (read + profile checks + a test signature)

    PYTHONPATH=. .venv/bin/python bench/signing.py [--seconds 10] [--size 640x480] [--repeat 7]
"""

from __future__ import annotations

import argparse
import json
import logging
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from clients.media import parse_size  # noqa: E402
from faces.recording import Mp4Recorder  # noqa: E402
from provenance.facts import ModelFacts, RecordingFacts  # noqa: E402
from provenance.keys import make_test_credentials, write_test_credentials  # noqa: E402
from provenance.sign import sign_mp4  # noqa: E402
from provenance.signer import SigningConfig, load_signing_credentials  # noqa: E402
from provenance.verify import verify_file  # noqa: E402
from swapstream.atomic import atomic_path  # noqa: E402

log = logging.getLogger("bench.signing")


def median_seconds(action: Callable[[], object], repeat: int) -> float:
    """Median wall time of `action()` over `repeat` runs, after one warm-up run."""
    action()
    times = []
    for _ in range(repeat):
        started = time.perf_counter()
        action()
        times.append(time.perf_counter() - started)
    return statistics.median(times)


def write_clip(path: Path, seconds: float, size: tuple[int, int], fps: float) -> Path:
    """A recording as the client writes it: synthetic face frames through Mp4Recorder."""
    from faces.synthetic import IDENTITY_A, render_sequence

    distinct = min(60, round(seconds * fps))
    frames = [f.frame for f in render_sequence(IDENTITY_A, distinct, size=size, seed=3, fps=fps)]
    cycle = frames + frames[-2:0:-1]
    recorder = Mp4Recorder(path, fps)
    for index in range(round(seconds * fps)):
        recorder.write(cycle[index % len(cycle)], index / fps)
    recorder.close()
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10.0, help="recording length (default 10)")
    parser.add_argument("--size", type=parse_size, default=(640, 480), help="WIDTHxHEIGHT (default 640x480)")
    parser.add_argument("--fps", type=float, default=15.0, help="frame rate (default 15)")
    parser.add_argument("--repeat", type=int, default=7, help="timed runs per figure (default 7)")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    if args.seconds <= 0 or args.fps <= 0 or args.repeat < 1:
        parser.error("--seconds and --fps must be > 0, --repeat >= 1")
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("provenance.sign").setLevel(logging.WARNING)

    with tempfile.TemporaryDirectory(prefix="bench-signing-") as folder:
        work = Path(folder)
        log.info("writing a %.0f s %dx%d recording at %.0f fps", args.seconds, *args.size, args.fps)
        clip = write_clip(work / "clip.mp4", args.seconds, args.size, args.fps)
        keys = write_test_credentials(work / "keys", make_test_credentials("bench signer", 1))
        config = SigningConfig(keys.chain, keys.key)
        credentials = load_signing_credentials(config)
        facts = RecordingFacts("a camera stream", ModelFacts("swap_a2b", "0" * 64))

        def copy() -> None:
            with atomic_path(work / "copy.mp4") as tmp:
                shutil.copyfile(clip, tmp)

        figures = {
            "file_mb": clip.stat().st_size / 1e6,
            "copy_s": median_seconds(copy, args.repeat),
            "sign_s": median_seconds(lambda: sign_mp4(clip, work / "signed.mp4", credentials, facts), args.repeat),
            "verify_s": median_seconds(lambda: verify_file(work / "signed.mp4"), args.repeat),
            "check_s": median_seconds(lambda: load_signing_credentials(config), args.repeat),
        }
        assert verify_file(work / "signed.mp4").valid
    figures["sign_over_copy"] = figures["sign_s"] / figures["copy_s"]
    print(f"{args.seconds:.0f} s {args.size[0]}x{args.size[1]} @ {args.fps:.0f} fps, {figures['file_mb']:.2f} MB: "
          f"copy {figures['copy_s'] * 1000:.1f} ms, sign {figures['sign_s'] * 1000:.1f} ms "
          f"(x{figures['sign_over_copy']:.1f} a copy), verify {figures['verify_s'] * 1000:.1f} ms, "
          f"start-up check {figures['check_s'] * 1000:.1f} ms (median of {args.repeat})")
    if args.json:
        args.json.write_text(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
