"""Time until a Studio job's A->B output is read as B on >= 90% of held-out A faces, with and without the base.

    PYTHONPATH=. python bench/studio_time_to_swap.py [--runs base scratch] [--base models/demo/base.safetensors]
        [--seconds 30] [--minutes 20] [--judge dlib|hog] [--out build/studio-bench]

Each run renders two clips of `--seconds` (synthetic identity A and B, 30 fps, 640x480), starts the real server
app with the Studio on a loopback port, uploads them as a job (the real extract / train / export children, the
recipe the server would use, from the base checkpoint or from scratch) and keeps a copy of every checkpoint as it
appears, with the time since the upload finished. After the run (so judging takes no CPU from training) every
copy is judged: held-out A faces (frames the job never saw) go through the checkpoint's A->B path and an output
is read as B when B's centroid is nearer than A's in the judge's embedding and the output is nearer to it than
95% of real A faces are (the centroids and that distance made from other real A and B faces). The judge is independent of the trainer and swappable (--judge): `dlib` is dlib's face-recognition
ResNet (128-D descriptors, the eval extra), `hog` a colour-blind HOG descriptor of the grey face. The report
prints the fraction read as B per checkpoint and the minutes until it first reached 90%; it also writes
OUT/report.json. Run it on a quiet machine: the job runs at the Studio's lower priority with one thread.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib.util
import io
import json
import logging
import shutil
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol

import cv2
import numpy as np

log = logging.getLogger("studio_time_to_swap")

FACE_SIZE = 64
HELDOUT_FACES = 60
TARGET = 0.9


class Judge(Protocol):
    """Embeds aligned face crops (RGB uint8 S x S x 3) so that faces of one person lie close together."""

    name: str

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        """(N, D) float embeddings."""
        ...


class DlibJudge:
    """dlib's face-recognition ResNet on the crop upscaled to its 150 px input, landmarks from its 5-point model."""

    name = "dlib"

    def __init__(self) -> None:
        import dlib

        spec = importlib.util.find_spec("face_recognition_models")
        if spec is None or not spec.submodule_search_locations:
            raise SystemExit("--judge dlib needs the eval extra: pip install -e '.[eval]'")
        models = Path(spec.submodule_search_locations[0]) / "models"
        self._shape = dlib.shape_predictor(str(models / "shape_predictor_5_face_landmarks.dat"))
        self._net = dlib.face_recognition_model_v1(str(models / "dlib_face_recognition_resnet_model_v1.dat"))
        self._box = dlib.rectangle(0, 0, 149, 149)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        vectors = []
        for crop in crops:
            big = np.ascontiguousarray(cv2.resize(crop, (150, 150), interpolation=cv2.INTER_CUBIC))
            vectors.append(np.asarray(self._net.compute_face_descriptor(big, self._shape(big, self._box))))
        return np.stack(vectors)


class HogJudge:
    """A HOG descriptor of the grey crop: shape and texture, blind to skin colour."""

    name = "hog"

    def __init__(self) -> None:
        self._hog = cv2.HOGDescriptor((FACE_SIZE, FACE_SIZE), (16, 16), (8, 8), (8, 8), 9)

    def embed(self, crops: list[np.ndarray]) -> np.ndarray:
        return np.stack([self._hog.compute(cv2.cvtColor(crop, cv2.COLOR_RGB2GRAY)).ravel() for crop in crops])


JUDGES = {"dlib": DlibJudge, "hog": HogJudge}


def aligned_faces(identity: str, seed: int, count: int) -> list[np.ndarray]:
    """Faces of a synthetic identity found and aligned as the live server does (mediapipe, the template)."""
    from faces.align import align_face
    from faces.detect import FaceDetector
    from faces.synthetic import IDENTITIES, iter_sequence

    crops = []
    with FaceDetector(max_faces=1) as detector:
        for frame in iter_sequence(IDENTITIES[identity], count, size=(640, 480), seed=seed, fps=10.0):
            faces = detector.detect(frame.frame)
            if faces:
                crops.append(align_face(frame.frame, faces[0], FACE_SIZE).crop)
    return crops


@dataclass(frozen=True)
class Snapshot:
    """A checkpoint copied as it appeared."""

    seconds: float
    step: int
    path: str


async def run_job(label: str, base: Path | None, clips: tuple[Path, Path], args: argparse.Namespace) -> tuple[
        list[Snapshot], str]:
    """Upload the clips as a Studio job on a real server; copy each checkpoint as it appears. Returns the copies
    and the job's last state."""
    import aiohttp
    from aiohttp import web

    from stream_server.app import create_app
    from stream_server.config import ServerConfig
    from stream_server.studio.api import STUDIO_KEY
    from stream_server.studio.config import StudioConfig, StudioRecipe
    from stream_server.studio.progress import checkpoint_step

    out = args.out / label
    shutil.rmtree(out, ignore_errors=True)
    (out / "checkpoints").mkdir(parents=True)
    recipe = StudioRecipe(steps=args.steps, checkpoint_every=args.checkpoint_every)
    app = create_app(ServerConfig(pipeline="echo"), studio=StudioConfig(root=out / "studio", base=base, recipe=recipe))
    service = app[STUDIO_KEY]
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    snapshots: list[Snapshot] = []
    state = "?"
    try:
        async with aiohttp.ClientSession() as session:
            form = aiohttp.FormData()
            form.add_field("options", json.dumps({"name": label, "consent": {
                "statement": "synthetic identities rendered for this benchmark", "people": ["synthetic A", "B"]}}),
                content_type="application/json")
            for side, clip in zip("ab", clips, strict=True):
                form.add_field(side, io.BytesIO(clip.read_bytes()), filename=clip.name, content_type="video/mp4")
            async with session.post(f"http://127.0.0.1:{port}/api/studio/jobs", data=form) as response:
                job = await response.json()
                if response.status != 201:
                    raise SystemExit(f"{label}: the server refused the job: {job}")
            started = time.monotonic()
            run = out / "studio" / job["id"] / "work" / "run"
            last = None
            while True:
                step = checkpoint_step(run)
                if step is not None and step != last:
                    copy = out / "checkpoints" / f"step_{step:06d}.safetensors"
                    shutil.copyfile(run / "checkpoint.safetensors", copy)
                    snapshots.append(Snapshot(round(time.monotonic() - started, 1), step, str(copy)))
                    log.info("%s: checkpoint at step %d after %.1f min", label, step, snapshots[-1].seconds / 60)
                    last = step
                state = service.status(job["id"], detail=False)["state"]
                if state in ("done", "failed") or time.monotonic() - started > args.minutes * 60:
                    break
                await asyncio.sleep(0.5)
            if state == "failed":
                log.error("%s failed: %s", label, service.status(job["id"])["error"])
    finally:
        await runner.cleanup()
    return snapshots, state


@dataclass(frozen=True)
class Reading:
    """Nearest-centroid reading with a reject option: a face counts as B only if B's centroid is the nearer one
    AND it is nearer to B's centroid than 95% of real A faces are, so a blur the judge happens to place nearer B
    than A does not count as a swap (with the dlib judge the demo model's A->B passes on about 95% of held-out
    faces, the blurs of a job's first few hundred steps on none)."""

    centroids: np.ndarray
    """(2, D): A's and B's."""
    b_radius: float

    def read_as_b(self, embedded: np.ndarray) -> np.ndarray:
        distances = np.linalg.norm(embedded[:, None, :] - self.centroids[None], axis=2)
        return (distances.argmin(axis=1) == 1) & (distances[:, 1] <= self.b_radius)


def judge_run(snapshots: list[Snapshot], judge: Judge, heldout_a: list[np.ndarray],
              reading: Reading) -> list[dict[str, float]]:
    """Per snapshot: the fraction of held-out A faces whose A->B output is read as B."""
    import torch

    from training.checkpoint import read_checkpoint, restore_model

    faces = torch.from_numpy(np.stack(heldout_a).transpose(0, 3, 1, 2).astype(np.float32) / 255.0)
    rows = []
    for snapshot in snapshots:
        model = restore_model(read_checkpoint(snapshot.path, expected_kind="swap")).eval()
        with torch.no_grad():
            rgb, _ = model.decode(model.encode(faces), "b")  # type: ignore[operator]
        outputs = list((rgb.clamp(0, 1).numpy().transpose(0, 2, 3, 1) * 255 + 0.5).astype(np.uint8))
        rows.append({"minutes": round(snapshot.seconds / 60, 2), "step": snapshot.step,
                     "read_as_b": round(float(np.mean(reading.read_as_b(judge.embed(outputs)))), 3)})
    return rows


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", nargs="+", choices=("base", "scratch"), default=["base", "scratch"])
    parser.add_argument("--base", type=Path, default=Path("models/demo/base.safetensors"),
                        help="base checkpoint of the 'base' run (default models/demo/base.safetensors)")
    parser.add_argument("--seconds", type=float, default=30.0, help="length of each clip (default 30)")
    parser.add_argument("--minutes", type=float, default=20.0, help="stop a run after this long (default 20)")
    parser.add_argument("--steps", type=int, default=20_000, help="the job's steps (default 20000: time-bound)")
    parser.add_argument("--checkpoint-every", type=int, default=100, help="checkpoint interval (default 100)")
    parser.add_argument("--judge", choices=sorted(JUDGES), default="dlib")
    parser.add_argument("--out", type=Path, default=Path("build/studio-bench"))
    parser.add_argument("--rejudge", action="store_true",
                        help="judge the checkpoints kept by an earlier run in --out again (no new jobs)")
    parser.add_argument("--smoke", action="store_true",
                        help="check the bench itself end to end in minutes: 4 s clips, 300 steps, a checkpoint every "
                             "50, at most 4 minutes a run (its figures say nothing about the target)")
    args = parser.parse_args(argv)
    if args.smoke:
        args.seconds, args.steps, args.checkpoint_every, args.minutes = 4.0, 300, 50, 4.0
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if "base" in args.runs and not args.base.is_file() and not args.rejudge:
        raise SystemExit(f"--base {args.base} does not exist: `make demo-model` writes models/demo/base.safetensors, "
                         "or give another base, or run --runs scratch")
    from swapstream.cli import main as swapstream_main

    args.out.mkdir(parents=True, exist_ok=True)
    frames = str(round(args.seconds * 30))
    clips = (args.out / "a.mp4", args.out / "b.mp4")
    for identity, seed, clip in (("a", "21", clips[0]), ("b", "22", clips[1])):
        if not clip.exists():
            assert swapstream_main(["synth", "--identity", identity, "--frames", frames, "--seed", seed,
                                    "--out", str(clip)]) == 0
    judge: Judge = JUDGES[args.judge]()
    heldout_a = aligned_faces("a", 31, HELDOUT_FACES)
    reference = {side: judge.embed(aligned_faces(side, seed, HELDOUT_FACES)) for side, seed in (("a", 32), ("b", 33))}
    centroids = np.stack([reference["a"].mean(axis=0), reference["b"].mean(axis=0)])
    reading = Reading(centroids, float(np.percentile(np.linalg.norm(reference["a"] - centroids[1], axis=1), 5)))
    real_a_as_b = float(np.mean(reading.read_as_b(judge.embed(heldout_a))))
    print(f"judge {judge.name}: held-out real A read as B {real_a_as_b:.0%} ({len(heldout_a)} faces); "
          f"B radius {reading.b_radius:.3f}")

    runs: dict[str, dict[str, Any]] = {}
    earlier = json.loads((args.out / "report.json").read_text())["runs"] if args.rejudge else {}
    for label in args.runs:
        base = args.base if label == "base" else None
        if args.rejudge:
            snapshots = [Snapshot(**item) for item in earlier[label]["snapshots"]]
            state = earlier[label]["state"]
        else:
            snapshots, state = asyncio.run(run_job(label, base, clips, args))
        rows = judge_run(snapshots, judge, heldout_a, reading)
        reached = next((row for row in rows if row["read_as_b"] >= TARGET), None)
        runs[label] = {"base": str(base) if base else None, "state": state, "checkpoints": rows,
                       "minutes_to_90": reached["minutes"] if reached else None,
                       "snapshots": [asdict(s) for s in snapshots]}
        print(f"\n{label} ({'from ' + str(base) if base else 'from scratch'}; job {state})")
        print(f"{'minutes':>8} {'step':>7} {'read as B':>10}")
        for row in rows:
            print(f"{row['minutes']:8.2f} {row['step']:7d} {row['read_as_b']:10.1%}")
        print(f"minutes until >= {TARGET:.0%} read as B: {reached['minutes'] if reached else 'not within the run'}")
    print("\nminutes until >= 90% read as B: " + ", ".join(
        f"{label} {run['minutes_to_90'] if run['minutes_to_90'] is not None else 'not reached'}"
        for label, run in runs.items()))
    report = {"judge": judge.name, "seconds": args.seconds, "heldout_faces": len(heldout_a),
              "real_a_read_as_b": real_a_as_b, "b_radius": reading.b_radius, "runs": runs}
    (args.out / "report.json").write_text(json.dumps(report, indent=2))
    print(f"\nwrote {args.out / 'report.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
