"""What a training Studio job costs the live sessions on the same machine: output fps and round-trip latency of a
live swap session with the machine otherwise idle, and while a Studio job trains (at its lower priority, one
thread).

    PYTHONPATH=. python bench/studio_live_impact.py [--models models/demo] [--seconds 15] [--rounds 1]
        [--clip-seconds 30] [--out build/studio-live-impact]

Starts `swapstream serve --models MODELS --studio OUT/studio` in its own process, runs `swapstream profile
--baseline` (640x480 at 15 fps; swap, then echo for the added latency) `--rounds` times idle, uploads a job of two
synthetic clips, waits until it trains, profiles `--rounds` times while it trains, deletes the job, profiles
`--rounds` times idle again, and stops the server. Idle runs before and after the job bracket the training runs,
so drifting load from other work on the machine shows as the idle runs' spread. Prints every run, the ratio
training / idle (mean of the idle runs) per figure and the idle spread, and writes OUT/report.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _json(url: str, method: str = "GET") -> Any:
    with urllib.request.urlopen(urllib.request.Request(url, method=method), timeout=10) as response:
        return json.loads(response.read())


def _profile(url: str, seconds: float, out: Path) -> dict[str, Any]:
    subprocess.run([sys.executable, "-m", "swapstream.cli", "profile", "--url", url, "--seconds", str(seconds),
                    "--baseline", "--out", str(out)], check=True, cwd=ROOT)
    report: dict[str, Any] = json.loads((out / "report.json").read_text())
    return report


async def _upload(url: str, clips: list[Path]) -> str:
    import aiohttp

    form = aiohttp.FormData()
    form.add_field("options", json.dumps({"name": "live-impact", "steps": 50_000, "consent": {
        "statement": "synthetic identities rendered for this benchmark", "people": ["synthetic A", "B"]}}),
        content_type="application/json")
    for side, clip in zip("ab", clips, strict=True):
        form.add_field(side, io.BytesIO(clip.read_bytes()), filename=clip.name, content_type="video/mp4")
    async with aiohttp.ClientSession() as session:
        async with session.post(f"{url}api/studio/jobs", data=form) as response:
            job = await response.json()
            if response.status != 201:
                raise SystemExit(f"the server refused the job: {job}")
            return str(job["id"])


def _figures(report: dict[str, Any]) -> dict[str, float]:
    swap = next(run for label, run in report["runs"].items() if not label.startswith("echo"))
    return {"fps_out": swap["fps_out"], "p50_ms": swap["latency_ms"]["p50"], "p95_ms": swap["latency_ms"]["p95"],
            "added_p50_ms": report.get("added_latency_ms", {}).get("p50", float("nan"))}


FIGURES = (("fps_out", "output fps"), ("p50_ms", "round trip p50 (ms)"), ("p95_ms", "round trip p95 (ms)"),
           ("added_p50_ms", "added by the swap p50 (ms)"))


def _start_server(models: Path, studio: Path, log: Path) -> tuple[subprocess.Popen[bytes], str]:
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    with log.open("ab") as output:
        server = subprocess.Popen([sys.executable, "-m", "swapstream.cli", "serve", "--models", str(models),
                                   "--port", str(port), "--studio", str(studio)], cwd=ROOT, env=env, stdout=output,
                                  stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        try:
            _json(f"{url}healthz")
            return server, url
        except OSError:
            if time.monotonic() > deadline or server.poll() is not None:
                server.kill()
                raise SystemExit(f"the server did not start; see {log}") from None
            time.sleep(0.5)


def _wait_until_training(url: str, job_id: str) -> None:
    while (status := _json(f"{url}api/studio/jobs/{job_id}"))["state"] != "training" or not status["progress"]["step"]:
        if status["state"] in ("failed", "done"):
            raise SystemExit(f"the job ended before training: {status['error']}")
        time.sleep(1)


def _print_report(idle: list[dict[str, float]], training: list[dict[str, float]]) -> dict[str, Any]:
    """Every run, then per figure the ratio training / idle (means) and the idle runs' spread."""
    print(f"\n{'':28} " + " ".join(f"{'idle ' + str(i + 1):>9}" for i in range(len(idle)))
          + " " + " ".join(f"{'job ' + str(i + 1):>9}" for i in range(len(training)))
          + f" {'job/idle':>9} {'idle spread':>12}")
    summary: dict[str, Any] = {}
    for key, label in FIGURES:
        idle_values = [run[key] for run in idle]
        job_values = [run[key] for run in training]
        ratio = statistics.fmean(job_values) / statistics.fmean(idle_values)
        spread = (max(idle_values) - min(idle_values)) / statistics.fmean(idle_values)
        summary[key] = {"idle": idle_values, "training": job_values, "ratio": round(ratio, 3),
                        "idle_spread": round(spread, 3)}
        print(f"{label:28} " + " ".join(f"{v:9.1f}" for v in idle_values) + " "
              + " ".join(f"{v:9.1f}" for v in job_values) + f" {ratio:9.2f} {spread * 100:11.0f}%")
    return summary


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models/demo"))
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each profile run (default 15)")
    parser.add_argument("--rounds", type=int, default=1,
                        help="profile runs idle before the job, while it trains, and idle after it (default 1)")
    parser.add_argument("--clip-seconds", type=float, default=30.0, help="length of the job's clips (default 30)")
    parser.add_argument("--out", type=Path, default=Path("build/studio-live-impact"))
    args = parser.parse_args(argv)
    from swapstream.cli import main as swapstream_main

    args.out.mkdir(parents=True, exist_ok=True)
    clips = [args.out / "a.mp4", args.out / "b.mp4"]
    for identity, seed, clip in (("a", "41", clips[0]), ("b", "42", clips[1])):
        if not clip.exists():
            assert swapstream_main(["synth", "--identity", identity, "--frames", str(round(args.clip_seconds * 30)),
                                    "--seed", seed, "--out", str(clip)]) == 0
    studio = args.out / "studio"
    shutil.rmtree(studio, ignore_errors=True)
    server, url = _start_server(args.models.absolute(), studio, args.out / "server.log")
    idle: list[dict[str, float]] = []
    training: list[dict[str, float]] = []
    try:
        for index in range(args.rounds):
            idle.append(_figures(_profile(url, args.seconds, args.out / f"idle-before-{index + 1}")))
        job_id = asyncio.run(_upload(url, clips))
        _wait_until_training(url, job_id)
        for index in range(args.rounds):
            training.append(_figures(_profile(url, args.seconds, args.out / f"training-{index + 1}")))
        status = _json(f"{url}api/studio/jobs/{job_id}")
        _json(f"{url}api/studio/jobs/{job_id}", method="DELETE")
        for index in range(args.rounds):
            idle.append(_figures(_profile(url, args.seconds, args.out / f"idle-after-{index + 1}")))
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    summary = _print_report(idle, training)
    print(f"training meanwhile: {status['progress']['images_per_s']} images/s at step {status['progress']['step']}; "
          f"idle runs: {args.rounds} before the job and {args.rounds} after it")
    report = {"idle": idle, "training": training, "summary": summary,
              "training_images_per_s": status["progress"]["images_per_s"], "seconds": args.seconds,
              "models": str(args.models)}
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
