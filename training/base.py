"""A base checkpoint for `swapstream train faces --base`: a swap run's weights alone (no optimiser state).

The demo recipe writes one beside the exported demo models (`models/demo/base.safetensors`), so a new pair
trained from it (the Studio does) starts from a shared encoder that already knows faces, and shows a usable swap
in minutes rather than hours.

    python -m training.base RUN --out FILE
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from training.checkpoint import checkpoint_path, read_checkpoint, restore_model, run_writer, save_checkpoint

log = logging.getLogger(__name__)


def write_base(run_dir: Path, out: Path) -> Path:
    """Write the weights of `run_dir`'s swap checkpoint, its model config and step, to `out` (atomically)."""
    checkpoint = read_checkpoint(checkpoint_path(run_dir), expected_kind="swap")
    model = restore_model(checkpoint)
    train_config = {"base_of": str(run_dir), "source_train_config": checkpoint.train_config}
    save_checkpoint(out, kind="swap", model=model, model_config=checkpoint.model_config, step=checkpoint.step,
                    train_config=train_config)
    out.chmod(0o644)  # it ships with the models; the server may run as another user
    log.info("wrote base %s from %s (step %d, %d bytes)", out, run_dir, checkpoint.step, out.stat().st_size)
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m training.base`."""
    parser = argparse.ArgumentParser(prog="python -m training.base", description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path, metavar="RUN", help="a face training run (RUN/checkpoint.safetensors)")
    parser.add_argument("--out", type=Path, required=True, help="the base checkpoint file to write")
    args = parser.parse_args(argv)
    return run_writer(parser.prog, lambda: write_base(args.run, args.out))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
