"""Training on a CUDA GPU against this CPU, then a 128 px model trained there for a few minutes and evaluated.

    PYTHONPATH=. python bench/gpu_train.py --out build/gpu-train            # on a machine with a CUDA GPU
    PYTHONPATH=. python bench/gpu_train.py --out build/gpu-smoke --cpu-smoke  # the same steps, tiny, on the CPU

One prepared run, at most --budget-minutes (default 8) in all:
1. speed: images/s of full training steps (both identities, all losses, Adam; bench/train_speed.py's
   `measure`) at 64, 128 and 256 px with the default model shape, on CUDA under the trainer's autocast (bf16
   where the GPU has it) against the CPU in the same run, limited to --cpu-threads (default 2: this project's
   machine). The ratio is the figure; absolute CPU numbers depend on the host.
2. data: synthetic A and B clips (seeds the demo never used) and the real photos that ship in packages for A,
   extracted at 128 px (`swapstream synth`, `python -m training.real_photos`, `swapstream extract`).
3. train: `swapstream train faces --size 128` on CUDA with the default shape for what is left of the budget
   (less what export and evaluation need); --steps is set from step 1's 128 px rate so the cosine schedule ends
   when the time does.
4. export the run (`swapstream export`) and evaluate it (`swapstream evaluate`) on held-out synthetic A frames
   (another new seed) and the held-out real photo (Grace Hopper) plus the astronaut, against a B clip.
Writes OUT/gpu_train.json and OUT/evaluation/ (the report), and prints a table. Without CUDA it exits 2 with a
message, unless --cpu-smoke (tiny sizes, a few steps, the CPU standing in for the GPU: a test of the script).
"""

from __future__ import annotations

import argparse
import csv
import json
import logging
import sys
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from bench.train_speed import SHAPES, measure
from swapstream.atomic import atomic_write_text
from swapstream.cli import main as swapstream

log = logging.getLogger("bench.gpu_train")

SEEDS = {"train_a": 21, "train_b": 22, "heldout_a": 23, "reference_b": 24}  # the demo used 11 and 12


@dataclass(frozen=True)
class Plan:
    """How big each step is: the real run on CUDA, or the smoke run on the CPU."""

    device: str
    sizes: tuple[int, ...]
    shape: str
    speed_batch: int
    gpu_steps: int
    cpu_steps: int
    train_frames: int
    real_photos: bool
    train_size: int
    train_batch: int
    train_flags: tuple[str, ...]
    min_train_steps: int
    eval_frames: int
    eval_flags: tuple[str, ...]
    reserve_minutes: float
    """Kept back from training for export and evaluation."""


GPU_PLAN = Plan(device="cuda", sizes=(64, 128, 256), shape="default", speed_batch=16, gpu_steps=20, cpu_steps=2,
                train_frames=300, real_photos=True, train_size=128, train_batch=32,
                train_flags=("--workers", "6", "--lr", "5e-4", "--lr-final", "0.1", "--checkpoint-every", "1000",
                             "--preview-every", "1000"),
                min_train_steps=200, eval_frames=120, eval_flags=("--b-frames", "40", "--still-frames", "30"),
                reserve_minutes=2.5)
SMOKE_PLAN = Plan(device="cpu", sizes=(64,), shape="tiny", speed_batch=2, gpu_steps=1, cpu_steps=1,
                  train_frames=12, real_photos=False, train_size=64, train_batch=4,
                  train_flags=("--workers", "1", "--threads", "1", "--checkpoint-every", "4", "--preview-every", "4",
                               "--encoder-channels", "8", "--bottleneck", "32", "--code-channels", "16",
                               "--decoder-channels", "16", "--residual-blocks", "0"),
                  min_train_steps=4, eval_frames=4, eval_flags=("--b-frames", "4", "--still-frames", "4",
                                                               "--samples", "2"),
                  reserve_minutes=0.0)


@dataclass
class SpeedRow:
    """Training images/s at one face size on the accelerator and on the CPU."""

    size: int
    parameters: int
    accelerator_images_per_s: float
    cpu_images_per_s: float

    @property
    def ratio(self) -> float:
        return self.accelerator_images_per_s / self.cpu_images_per_s


@dataclass
class Outcome:
    """What gpu_train.json holds."""

    device: str
    torch: str
    autocast: str
    cpu_threads: int
    speed: list[dict[str, Any]] = field(default_factory=list)
    train: dict[str, Any] = field(default_factory=dict)
    evaluation: dict[str, Any] = field(default_factory=dict)
    stages_s: dict[str, float] = field(default_factory=dict)
    seconds: float = 0.0


def run_command(*argv: str) -> None:
    """One `swapstream` command; a non-zero exit stops the bench with that command named."""
    code = swapstream([str(arg) for arg in argv])
    if code != 0:
        raise SystemExit(f"bench/gpu_train.py: `swapstream {' '.join(argv)}` exited {code}")


def measure_speed(plan: Plan, cpu_threads: int) -> list[SpeedRow]:
    """Step 1: images/s per size on plan.device (autocast as the trainer uses it) and on the CPU."""
    device = torch.device(plan.device)
    default_threads = torch.get_num_threads()
    rows = []
    for size in plan.sizes:
        accelerator, parameters = measure(SHAPES[plan.shape], size, plan.speed_batch, plan.gpu_steps, 2, device)
        torch.set_num_threads(cpu_threads)
        try:
            cpu, _ = measure(SHAPES[plan.shape], size, plan.speed_batch, plan.cpu_steps, 1, torch.device("cpu"))
        finally:
            torch.set_num_threads(default_threads)
        rows.append(SpeedRow(size, parameters, accelerator, cpu))
        log.info("%d px: %.1f images/s on %s, %.1f on the CPU", size, accelerator, plan.device, cpu)
    return rows


def prepare_data(plan: Plan, work: Path) -> tuple[Path, Path]:
    """Step 2: face sets of A (synthetic + shipped real photos) and B at the training size."""
    for identity, seed in (("a", SEEDS["train_a"]), ("b", SEEDS["train_b"])):
        run_command("synth", "--identity", identity, "--frames", str(plan.train_frames), "--seed", str(seed),
                    "--out", str(work / f"train_{identity}.mp4"))
    a_sources = [str(work / "train_a.mp4")]
    if plan.real_photos:
        from training.real_photos import main as real_photos

        real_photos(["--out", str(work / "real-photos")])
        a_sources.append(str(work / "real-photos"))
    faces_a, faces_b = work / "faces-a", work / "faces-b"
    run_command("extract", *a_sources, "--out", str(faces_a), "--size", str(plan.train_size), "--no-progress")
    run_command("extract", str(work / "train_b.mp4"), "--out", str(faces_b), "--size", str(plan.train_size),
                "--no-progress")
    return faces_a, faces_b


def train(plan: Plan, faces: tuple[Path, Path], run: Path, minutes: float, images_per_s: float) -> dict[str, Any]:
    """Step 3: train for `minutes`, with --steps from the measured rate so the schedule ends with the time."""
    steps = max(plan.min_train_steps, int(0.85 * images_per_s * minutes * 60 / (2 * plan.train_batch)))
    if plan.device == "cpu":
        steps = plan.min_train_steps
    started = time.perf_counter()
    run_command("train", "faces", "--a", str(faces[0]), "--b", str(faces[1]), "--out", str(run), "--size",
                str(plan.train_size), "--batch", str(plan.train_batch), "--steps", str(steps), "--max-minutes",
                f"{minutes:.2f}", "--device", plan.device, "--no-progress", *plan.train_flags)
    with open(run / "losses.csv", newline="") as handle:
        last = list(csv.DictReader(handle))[-1]
    return {"size": plan.train_size, "batch": plan.train_batch, "steps_planned": steps, "steps": int(last["step"]),
            "minutes": round((time.perf_counter() - started) / 60, 2),
            "images_per_s": float(last["images_per_s"]), "loss_a": float(last["loss_a"]),
            "loss_b": float(last["loss_b"])}


def evaluate(plan: Plan, run: Path, work: Path) -> dict[str, Any]:
    """Step 4: export, then `swapstream evaluate` on held-out A frames and photos against a B clip."""
    models, report = work / "models", work / "evaluation"
    run_command("export", str(run), "--out", str(models))
    run_command("synth", "--identity", "a", "--frames", str(plan.eval_frames), "--seed", str(SEEDS["heldout_a"]),
                "--out", str(work / "heldout_a.mp4"))
    run_command("synth", "--identity", "b", "--frames", str(max(plan.eval_frames, 8)), "--seed",
                str(SEEDS["reference_b"]), "--out", str(work / "reference_b.mp4"))
    a_sources = [str(work / "heldout_a.mp4")]
    if plan.real_photos:
        from evaluation.photos import main as photos

        photos(["--out", str(work / "photos"), "--lfw", "0"])
        a_sources += [str(work / "photos" / "grace_hopper.png"), str(work / "photos" / "astronaut.png")]
    run_command("evaluate", "--models", str(models), "--a", *a_sources, "--b", str(work / "reference_b.mp4"),
                "--out", str(report), *plan.eval_flags)
    data = json.loads((report / "report.json").read_text())
    figures = {}
    for source in data["sources"]:
        identity = source.get("identity") or {}
        figures[source["name"]] = {
            "mouth_correlation": source["mouth"]["correlation"], "mouth_range_ratio": source["mouth"]["range_ratio"],
            "eye_correlation": source["eye"]["correlation"], "sharpness_ratio": source["sharpness"]["median_ratio"],
            "seam_delta_e": source["seam"]["mean_delta_e"], "nearer_b": identity.get("share_nearer_b"),
        }
    return {"report": str(report), "sources": figures, "temporal": data["temporal_stability"]}


def table(outcome: Outcome) -> str:
    """The printed summary."""
    lines = [f"{outcome.device} (torch {outcome.torch}, {outcome.autocast}) vs CPU ({outcome.cpu_threads} threads)",
             f"{'size':>5} {'params':>8} {'accel img/s':>12} {'cpu img/s':>10} {'ratio':>8}"]
    for row in outcome.speed:
        lines.append(f"{row['size']:>5} {row['parameters'] / 1e6:>7.2f}M {row['accelerator_images_per_s']:>12.1f} "
                     f"{row['cpu_images_per_s']:>10.1f} {row['ratio']:>7.1f}x")
    train_info = outcome.train
    lines.append(f"trained {train_info['size']} px: {train_info['steps']} steps in {train_info['minutes']} min "
                 f"({train_info['images_per_s']:.0f} images/s), loss A {train_info['loss_a']:.4f} "
                 f"B {train_info['loss_b']:.4f}")
    lines.append(f"{'evaluated on':<20} {'mouth r':>8} {'range':>6} {'eye r':>6} {'sharp':>6} {'seam':>5} "
                 f"{'nearer B':>9}")

    def cell(value: Any, spec: str) -> str:
        return "-" if value is None else format(value, spec)

    for name, figures in outcome.evaluation["sources"].items():
        lines.append(f"{name[:20]:<20} {cell(figures['mouth_correlation'], '.2f'):>8} "
                     f"{cell(figures['mouth_range_ratio'], '.2f'):>6} {cell(figures['eye_correlation'], '.2f'):>6} "
                     f"{cell(figures['sharpness_ratio'], '.2f'):>6} {cell(figures['seam_delta_e'], '.1f'):>5} "
                     f"{cell(figures['nearer_b'], '.0%'):>9}")
    lines.append(f"total {outcome.seconds / 60:.1f} min; stages (s): "
                 + ", ".join(f"{k} {v:.0f}" for k, v in outcome.stages_s.items()))
    return "\n".join(lines)


def run_bench(out: Path, plan: Plan, budget_minutes: float, train_minutes: float, cpu_threads: int) -> Outcome:
    """All four steps within `budget_minutes`; writes OUT/gpu_train.json."""
    started = time.perf_counter()
    out.mkdir(parents=True, exist_ok=True)
    name = torch.cuda.get_device_name(0) if plan.device == "cuda" else "CPU (smoke run: no GPU)"
    bf16 = plan.device == "cuda" and torch.cuda.is_bf16_supported()
    autocast = "bf16 autocast" if bf16 else ("fp16 autocast" if plan.device == "cuda" else "fp32")
    outcome = Outcome(device=name, torch=torch.__version__, autocast=autocast, cpu_threads=cpu_threads)

    def stage(label: str, since: float) -> float:
        now = time.perf_counter()
        outcome.stages_s[label] = round(now - since, 1)
        return now

    mark = started
    rows = measure_speed(plan, cpu_threads)
    outcome.speed = [{**asdict(row), "ratio": round(row.ratio, 2)} for row in rows]
    mark = stage("speed", mark)
    faces = prepare_data(plan, out / "work")
    mark = stage("data", mark)
    left = budget_minutes - (time.perf_counter() - started) / 60 - plan.reserve_minutes
    minutes = min(train_minutes, left)
    if minutes <= 0.2:
        raise SystemExit(f"bench/gpu_train.py: only {left:.1f} min of the {budget_minutes} min budget left to train")
    rate = next((row.accelerator_images_per_s for row in rows if row.size == plan.train_size), rows[0].cpu_images_per_s)
    outcome.train = train(plan, faces, out / "work" / "run", minutes, rate)
    mark = stage("train", mark)
    outcome.evaluation = evaluate(plan, out / "work" / "run", out)
    stage("export+evaluate", mark)
    outcome.seconds = round(time.perf_counter() - started, 1)
    atomic_write_text(out / "gpu_train.json", json.dumps(asdict(outcome), indent=1) + "\n")
    return outcome


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=Path("build/gpu-train"), help="folder for JSON, data and report")
    parser.add_argument("--cpu-smoke", action="store_true", help="a tiny run of every step on the CPU (a test)")
    parser.add_argument("--budget-minutes", type=float, default=8.0, help="the whole run's limit (default 8)")
    parser.add_argument("--train-minutes", type=float, default=3.5, help="most minutes of training (default 3.5)")
    parser.add_argument("--cpu-threads", type=int, default=2, help="CPU threads for the CPU baseline (default 2)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.cpu_smoke and not torch.cuda.is_available():
        print("bench/gpu_train.py: torch sees no CUDA GPU here; run it on a machine with one, or pass --cpu-smoke "
              "for a tiny CPU run of the same steps", file=sys.stderr)
        return 2
    plan = SMOKE_PLAN if args.cpu_smoke else GPU_PLAN
    outcome = run_bench(args.out, plan, args.budget_minutes, args.train_minutes, args.cpu_threads)
    print(table(outcome))
    print(f"wrote {args.out / 'gpu_train.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
