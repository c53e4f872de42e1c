"""Grow a trained swap model's decoders without starting over: a base checkpoint for `swapstream train faces --base`.

The demo model takes hours of staged training; what its last stages showed (docs/quality.md) is that the detail
left to win is drawn at full size, where the decoders are narrowest (8 channels at 128 px). This widens that level
(`--decoder-min-channels`) and/or adds residual blocks there (`--full-size-blocks`), and carries every trained
weight over so that the grown model starts out drawing what the old one drew:

- a weight whose inputs grew keeps its old slice, and reads the new inputs with zeros;
- a weight whose outputs grew keeps its old rows, the new rows keep their random start (so the new channels carry
  a signal, which the zeros downstream learn to use);
- an added residual block's last convolution starts at zero, so the block passes its input on unchanged.

    python -m training.grow RUN_OR_CHECKPOINT --decoder-min-channels 16 --out FILE
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

import torch

from training.checkpoint import checkpoint_path, read_checkpoint, restore_model, run_writer, save_checkpoint
from training.errors import CheckpointError
from training.swap_model import GROWTH_DEFAULTS, SwapAutoencoder

log = logging.getLogger(__name__)


def grow_state(old: dict[str, torch.Tensor], new: dict[str, torch.Tensor],
               start_at_zero: set[str]) -> dict[str, torch.Tensor]:
    """`new` (a grown model's fresh state) with `old`'s trained weights carried over as the module docstring says;
    the new weights named in `start_at_zero` start at zero."""
    missing = sorted(set(old) - set(new))
    if missing:
        raise CheckpointError(f"the grown model lacks trained weights {', '.join(missing[:4])}: it must only grow")
    grown: dict[str, torch.Tensor] = {}
    for name, fresh in new.items():
        if name not in old:
            grown[name] = torch.zeros_like(fresh) if name in start_at_zero else fresh.clone()
            continue
        trained = old[name]
        if trained.dim() != fresh.dim() or any(t > f for t, f in zip(trained.shape, fresh.shape, strict=True)):
            raise CheckpointError(f"weight {name} {tuple(trained.shape)} cannot grow into {tuple(fresh.shape)}")
        value = fresh.clone()
        if fresh.dim() > 1 and fresh.shape[1] > trained.shape[1]:
            value[:, trained.shape[1]:] = 0.0
        value[tuple(slice(0, size) for size in trained.shape)] = trained
        grown[name] = value
    return grown


def grow_model(model: SwapAutoencoder, *, decoder_min_channels: int, full_size_blocks: int) -> SwapAutoencoder:
    """A model of `model`'s shape with the decoders' full-size level widened and/or deepened, its weights carried."""
    config = dict(model.config)
    for key, wanted in (("decoder_min_channels", decoder_min_channels), ("full_size_blocks", full_size_blocks)):
        current = config.get(key, GROWTH_DEFAULTS[key])
        if wanted < current:
            raise CheckpointError(f"--{key.replace('_', '-')} {wanted} would shrink the model (it has {current})")
        config[key] = wanted
    grown = SwapAutoencoder(**config)
    # the added blocks come last in each decoder's body; their last convolution starts at zero
    start_at_zero = {
        f"{decoder}.body.{index}.body.2.{kind}"
        for decoder, module in (("decoder_a", grown.decoder_a), ("decoder_b", grown.decoder_b))
        for index in range(len(getattr(model, decoder).body), len(module.body))
        for kind in ("weight", "bias")
    }
    grown.load_state_dict(grow_state(model.state_dict(), grown.state_dict(), start_at_zero), strict=True)
    return grown


def write_grown(source: Path, out: Path, *, decoder_min_channels: int, full_size_blocks: int) -> Path:
    """Grow the swap model in `source` (a run folder or a checkpoint file) and write it to `out` (atomically)."""
    checkpoint = read_checkpoint(checkpoint_path(source) if source.is_dir() else source, expected_kind="swap")
    model = restore_model(checkpoint)
    assert isinstance(model, SwapAutoencoder)
    grown = grow_model(model, decoder_min_channels=decoder_min_channels, full_size_blocks=full_size_blocks)
    train_config = {"grown_from": str(source), "source_train_config": checkpoint.train_config}
    save_checkpoint(out, kind="swap", model=grown, model_config=grown.config, step=checkpoint.step,
                    train_config=train_config)
    log.info("wrote %s: %s grown to %s (%d -> %d parameters)", out, source, grown.config,
             model.parameter_counts()["total"], grown.parameter_counts()["total"])
    return out


def main(argv: list[str] | None = None) -> int:
    """Entry point of `python -m training.grow`."""
    parser = argparse.ArgumentParser(prog="python -m training.grow", description=__doc__.split("\n")[0])
    parser.add_argument("source", type=Path, metavar="RUN_OR_CHECKPOINT",
                        help="a face training run folder, or a swap checkpoint file")
    parser.add_argument("--decoder-min-channels", type=int, default=GROWTH_DEFAULTS["decoder_min_channels"],
                        help="width of the decoders' narrowest (full-size) levels (default %(default)s: as before)")
    parser.add_argument("--full-size-blocks", type=int, default=GROWTH_DEFAULTS["full_size_blocks"],
                        help="residual blocks at the decoders' full size (default %(default)s)")
    parser.add_argument("--out", type=Path, required=True, help="the grown base checkpoint to write")
    args = parser.parse_args(argv)
    return run_writer(parser.prog, lambda: write_grown(args.source, args.out,
                                                       decoder_min_channels=args.decoder_min_channels,
                                                       full_size_blocks=args.full_size_blocks))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    sys.exit(main())
