"""Weight averaging: one swap run whose weights are the weighted mean of several runs' weights.

Runs fine-tuned from one start stay in one basin of the loss, so the mean of their weights is a model as well,
and often a better one than either end: the demo's sixth stage is the mean of the fifth stage and a run from it
with the mouth weighted 40x, which keeps most of the mouth that run gained and loses less at the eyes than it did
(docs/quality.md). Runs that did not share a start average to noise; nothing here can tell, so only average a
run with its own descendants.

    python -m training.average RUN RUN... [--weights W W...] --out RUN_DIR
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path

import torch

from swapstream.atomic import atomic_write_text
from training.checkpoint import Checkpoint, build_model, checkpoint_path, read_checkpoint, run_writer, save_checkpoint
from training.errors import CheckpointError, TrainingError

log = logging.getLogger(__name__)


def _mean_state(checkpoints: list[Checkpoint], weights: list[float]) -> dict[str, torch.Tensor]:
    first = checkpoints[0]
    total = sum(weights)
    state: dict[str, torch.Tensor] = {}
    for name, value in first.model_state.items():
        if not value.is_floating_point():
            # counters and the like: they must agree, there is nothing to average
            for other in checkpoints[1:]:
                if not torch.equal(other.model_state[name], value):
                    raise CheckpointError(f"{other.path}: {name} differs from {first.path}'s; cannot average it")
            state[name] = value
            continue
        mean = sum((w / total) * c.model_state[name].double() for w, c in zip(weights, checkpoints))
        state[name] = torch.as_tensor(mean).to(value.dtype)
    return state


def average_runs(runs: list[Path], out: Path, weights: list[float] | None = None) -> Path:
    """Write OUT/checkpoint.safetensors (and model_config.json) holding the weighted mean of the runs' swap weights.

    The runs must hold swap models of one shape; weights (default: equal) must be positive. No optimiser state is
    written: the result is for export, or for `train faces --base`.
    """
    if len(runs) < 2:
        raise TrainingError("averaging needs at least two runs")
    weights = [1.0] * len(runs) if weights is None else list(weights)
    if len(weights) != len(runs):
        raise TrainingError(f"{len(weights)} weights for {len(runs)} runs")
    if not all(w > 0 for w in weights):
        raise TrainingError(f"weights must be positive, got {weights}")
    checkpoints = [read_checkpoint(checkpoint_path(run), expected_kind="swap") for run in runs]
    first = checkpoints[0]
    for checkpoint in checkpoints[1:]:
        if checkpoint.model_config != first.model_config:
            raise CheckpointError(f"{checkpoint.path} holds a model of shape {checkpoint.model_config}, "
                                  f"not {first.path}'s {first.model_config}; only runs of one shape average")
    model = build_model("swap", first.model_config)
    model.load_state_dict(_mean_state(checkpoints, weights), strict=True)
    sources = [{"run": str(run), "weight": w, "step": c.step} for run, w, c in zip(runs, weights, checkpoints)]
    out.mkdir(parents=True, exist_ok=True)
    path = save_checkpoint(checkpoint_path(out), kind="swap", model=model, model_config=first.model_config,
                           step=max(c.step for c in checkpoints), train_config={"average_of": sources})
    atomic_write_text(out / "model_config.json", json.dumps(first.model_config, indent=2))
    log.info("wrote %s: the mean of %s", path, ", ".join(f"{s['run']} x{s['weight']:g}" for s in sources))
    return path


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m training.average`."""
    parser = argparse.ArgumentParser(prog="python -m training.average", description=__doc__.split("\n")[0])
    parser.add_argument("runs", type=Path, nargs="+", metavar="RUN",
                        help="face training runs (RUN/checkpoint.safetensors), one shape, from one start")
    parser.add_argument("--weights", type=float, nargs="+", default=None, metavar="W",
                        help="one weight per run (default: equal)")
    parser.add_argument("--out", type=Path, required=True, help="the run folder to write")
    args = parser.parse_args(argv)
    return run_writer(parser.prog, lambda: average_runs(args.runs, args.out, args.weights))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
