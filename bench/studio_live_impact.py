"""What a training Studio job costs the live sessions on the same machine: output fps and round-trip latency of a
live swap session, with the machine otherwise idle and while a Studio job trains (at its lower priority, one
thread).

    PYTHONPATH=. python bench/studio_live_impact.py [--models models/demo] [--seconds 15] [--clip-seconds 30]
        [--out build/studio-live-impact]

Starts the real server (swap pipeline, --models, the Studio installed as `serve --studio` will install it) in its
own process, runs `swapstream profile --baseline` (640x480 at 15 fps; swap, then echo for the added latency),
uploads a job of two synthetic clips, waits until it trains, profiles again, then deletes the job and stops the
server. Prints both runs side by side with the ratios (training / idle) and writes OUT/report.json.
"""

from __future__ import annotations

import argparse
import asyncio
import io
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def serve(argv: list[str]) -> int:
    """The server process: `swapstream serve` flags, with the Studio installed (DIR from --studio)."""
    from stream_server.app import create_app
    from stream_server.cli import serve as run_server
    from stream_server.config import config_from_args
    from stream_server.studio.api import install
    from stream_server.studio.config import StudioConfig
    from stream_server.studio.service import StudioService

    config = config_from_args(argv)
    assert config.studio_dir is not None, "--studio DIR is required"
    app = create_app(config)
    install(app, StudioService(StudioConfig.for_server(config.studio_dir, config.studio_max_mb, config.models_dir)))
    asyncio.run(run_server(config, app))
    return 0


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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", type=Path, default=Path("models/demo"))
    parser.add_argument("--seconds", type=float, default=15.0, help="length of each profile run (default 15)")
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
    port = _free_port()
    url = f"http://127.0.0.1:{port}/"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)}
    server = subprocess.Popen([sys.executable, __file__, "--serve", "--models", str(args.models), "--port", str(port),
                               "--studio", str(studio)], cwd=ROOT, env=env)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                _json(f"{url}healthz")
                break
            except OSError:
                if time.monotonic() > deadline or server.poll() is not None:
                    raise SystemExit("the server did not start") from None
                time.sleep(0.5)
        idle = _profile(url, args.seconds, args.out / "idle")
        job_id = asyncio.run(_upload(url, clips))
        while (status := _json(f"{url}api/studio/jobs/{job_id}"))["state"] != "training" or not status["progress"]["step"]:
            if status["state"] in ("failed", "done"):
                raise SystemExit(f"the job ended before training: {status['error']}")
            time.sleep(1)
        training = _profile(url, args.seconds, args.out / "training")
        status = _json(f"{url}api/studio/jobs/{job_id}")
        _json(f"{url}api/studio/jobs/{job_id}", method="DELETE")
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=120)
    before, during = _figures(idle), _figures(training)
    print(f"\n{'':28} {'idle':>9} {'job training':>13} {'ratio':>7}")
    for key, label in (("fps_out", "output fps"), ("p50_ms", "round trip p50 (ms)"), ("p95_ms", "round trip p95 (ms)"),
                       ("added_p50_ms", "added by the swap p50 (ms)")):
        print(f"{label:28} {before[key]:9.1f} {during[key]:13.1f} {during[key] / before[key]:7.2f}")
    print(f"training meanwhile: {status['progress']['images_per_s']} images/s at step {status['progress']['step']}")
    report = {"idle": before, "training": during, "training_images_per_s": status["progress"]["images_per_s"],
              "seconds": args.seconds, "models": str(args.models)}
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    if sys.argv[1:2] == ["--serve"]:
        sys.exit(serve(sys.argv[2:]))
    sys.exit(main())
